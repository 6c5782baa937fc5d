"""The real clock: the core takes time only through the ``Clock`` port."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        return datetime.now(UTC)
