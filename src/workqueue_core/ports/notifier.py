"""Wake-ups for claimers waiting for eligible work."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Notifier"]


@runtime_checkable
class Notifier(Protocol):
    """Wakes claimers waiting for eligible work.

    A claimer calls ``mark()`` before it looks for work and, finding none,
    ``wait(timeout, since=mark)``: a wake-up between the two is not lost.
    """

    def mark(self) -> int:
        """A position in the stream of wake-ups."""
        ...

    async def wait(self, timeout: float, since: int | None = None) -> bool:
        """Wait for a wake-up after ``since`` or ``timeout`` seconds; True if woken."""
        ...

    def notify(self) -> None:
        """Wake this process's waiters now."""
        ...
