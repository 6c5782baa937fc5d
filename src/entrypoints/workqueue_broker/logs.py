"""structlog for the broker: JSON lines when stderr is not a terminal, console otherwise.

Tracebacks never include frame locals, which could hold tokens.

The standard library's loggers (uvicorn, litestar) go through the same renderer,
so the process writes one format to one stream.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
import structlog.tracebacks

_NOISY = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar")


def use_json(log_format: str, stream: TextIO) -> bool:
    """``auto`` means JSON unless the stream is a terminal."""
    if log_format == "auto":
        return not stream.isatty()
    return log_format == "json"


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) in one format."""
    out = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json(log_format, out):
        # Tracebacks without frame locals: locals hold request headers (tokens).
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
