"""An in-process ``Notifier``: wakes waiting claimers in the same event loop."""

from __future__ import annotations

import anyio


class InProcessNotifier:
    """Wakes every waiter on ``notify()``.

    ``mark()`` before looking for work and ``wait(timeout, since=mark)`` after
    finding none: a notification that arrived in between is not lost.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._generation = 0

    def notify(self) -> None:
        """Wake everyone waiting now, and every later ``wait`` whose mark is older."""
        self._generation += 1
        self._event.set()
        self._event = anyio.Event()

    def mark(self) -> int:
        """The current notification count, to pass to ``wait(since=...)``."""
        return self._generation

    async def wait(self, timeout: float, since: int | None = None) -> bool:
        """Wait for a ``notify()`` after ``since`` (or from now), at most ``timeout`` seconds."""
        if since is not None and self._generation != since:
            return True
        event = self._event
        with anyio.move_on_after(timeout):
            await event.wait()
            return True
        return False
