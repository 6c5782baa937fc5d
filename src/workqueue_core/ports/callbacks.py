"""How completion callbacks leave the process: the HTTP adapter implements ``CallbackPoster``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from workqueue_core.domain.models import ExecutionRecord

__all__ = ["CallbackPoster", "RecordEncoder"]


class CallbackPoster(Protocol):
    """Sends one callback; the HTTP adapter implements it."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """POST ``body`` to ``url`` and return the status; follows no redirect.

        Raises ``CallbackTransportError`` when no status came back within ``timeout``
        seconds. The message must not contain the URL's credentials.
        """
        ...


RecordEncoder = Callable[[ExecutionRecord], bytes]
"""The JSON body of a callback: the record as the API returns it for ``GET /work/{id}``."""
