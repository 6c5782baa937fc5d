"""Deterministic clocks and id sources for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._now = start

    def now(self) -> datetime:
        """The current fake time."""
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (seconds when a number) and return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (not earlier than now)."""
        if when < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = when


class SequentialIds:
    """UUIDs 1, 2, 3, … (readable in failure reports); ``base`` keeps sources apart."""

    def __init__(self, base: int = 0) -> None:
        self._next = base

    def __call__(self) -> UUID:
        self._next += 1
        return UUID(int=self._next)


class SequentialTokens:
    """Distinct token secrets for tests."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"test-token-{self._next:08d}"
