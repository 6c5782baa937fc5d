"""Time, ids, secrets and randomness: the core reads none of them itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol
from uuid import UUID

__all__ = ["Clock", "IdSource", "RandomSource", "TokenSource"]

RandomSource = Callable[[], float]
"""Returns a float in ``[0, 1)``; drives retry jitter."""

IdSource = Callable[[], UUID]
"""Returns a new unique id."""

TokenSource = Callable[[], str]
"""Returns a new high-entropy secret (an agent token)."""


class Clock(Protocol):
    """Where the current time comes from."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...
