"""An in-process ``Notifier``: wakes waiting claimers in the same event loop."""

from __future__ import annotations

import anyio


class InProcessNotifier:
    """Wakes every current waiter on ``notify()``; waiters that arrive later wait for the next."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        """Wake everyone waiting now."""
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float) -> bool:
        """Wait for the next ``notify()`` or ``timeout`` seconds; True if notified."""
        if self._event is None:
            self._event = anyio.Event()
        event = self._event
        with anyio.move_on_after(timeout):
            await event.wait()
            return True
        return False
