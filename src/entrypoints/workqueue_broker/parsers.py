"""Parsers of setting values, shared by the broker's, the agent's and the controller's
configuration.

Each parser takes the raw text of one setting (a flag, an environment variable, or a
TOML value rendered as text) and returns its value, or raises ``ValueError`` with a
message that ``merge_settings`` prefixes with the setting's source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

__all__ = [
    "int_between",
    "one_of",
    "parse_boolean",
    "parse_duration",
    "parse_host",
    "parse_path",
    "seconds_between",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> timedelta:
    """``"90"`` or ``"90s"``, ``"250ms"``, ``"5m"``, ``"12h"``, ``"30d"``."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 30s, 5m, 12h or 30d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def seconds_between(low: float, high: float) -> Callable[[str], float]:
    """A duration, in seconds, within ``low..high``."""

    def parse(text: str) -> float:
        seconds = parse_duration(text).total_seconds()
        if not low <= seconds <= high:
            raise ValueError(f"must be between {low:g}s and {high:g}s, got {text!r}")
        return seconds

    return parse


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An integer within ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


def one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    """One of ``options`` (lower-case; the text is matched case-insensitively)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return value

    return parse


def parse_boolean(text: str) -> bool:
    """``true``/``false``, ``yes``/``no``, ``on``/``off`` or ``1``/``0``."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_host(text: str) -> str:
    """A host name or address: not empty, at most 255 characters, no spaces."""
    value = text.strip()
    if not value or len(value) > 255 or any(c.isspace() for c in value):
        raise ValueError(f"expected a host name or address, got {text!r}")
    return value


def parse_path(text: str) -> Path:
    """A file path, ``~`` expanded."""
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text.strip()).expanduser()
