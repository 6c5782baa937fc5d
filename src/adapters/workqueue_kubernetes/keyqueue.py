"""The controller's queue of keys to reconcile (client-go's rate-limited work queue).

Informer events add the key of the object they concern (``namespace/name``); reconcile
workers take keys one at a time. The queue guarantees what a level-triggered
controller needs:

* a key waits in the queue at most once, however often it is added (events coalesce);
* a key is handed to one worker at a time: added while being processed, it is marked
  dirty and queued again when that worker calls ``done``;
* ``add_after`` delays a key (a retry's backoff, a timeout to check); the earliest
  delay wins, and an immediate ``add`` does not wait for it;
* ``add_rate_limited`` delays a key by its failures so far (``base * 2**n``, capped),
  and ``forget`` resets them after a success.

Time is anyio's monotonic clock (``anyio.current_time``); nothing polls: ``get``
sleeps until a key is added or the earliest delayed key is due.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import anyio

__all__ = ["KeyQueue", "QueueShutDown"]


class QueueShutDown(Exception):
    """``get`` on a queue that was shut down and has nothing left to hand out."""


class KeyQueue:
    """De-duplicated keys, one worker per key, with delayed and rate-limited adds."""

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 60.0) -> None:
        if not 0 < base_delay <= max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._sequence = 0
        self._failures: dict[str, int] = {}
        self._wakeup = anyio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        """Keys waiting to be handed out now (the queue depth)."""
        return len(self._ready)

    @property
    def delayed(self) -> int:
        """Keys waiting for their delay to pass."""
        return len(self._due)

    @property
    def processing(self) -> int:
        """Keys a worker holds now."""
        return len(self._processing)

    def add(self, key: str) -> None:
        """Queue ``key`` now (once), or mark it to run again if a worker holds it."""
        if self._shut_down:
            return
        self._due.pop(key, None)
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._wake()

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds, unless it is due sooner already."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = anyio.current_time() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        self._sequence += 1
        heapq.heappush(self._delayed, (due, self._sequence, key))
        self._wake()

    def cancel_delayed(self, key: str) -> None:
        """Forget ``key``'s delayed add, if any (an immediate add stays queued)."""
        self._due.pop(key, None)

    def add_rate_limited(self, key: str) -> float:
        """Queue ``key`` after a delay that doubles with each failure since ``forget``."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._max_delay, self._base_delay * math.pow(2, failures))
        self.add_after(key, delay)
        return delay

    def failures(self, key: str) -> int:
        """Rate-limited adds of ``key`` since it was last forgotten."""
        return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        """Reset ``key``'s failure count (its reconcile succeeded)."""
        self._failures.pop(key, None)

    async def get(self) -> str:
        """The next key to process; waits for one. The caller must call ``done(key)``."""
        while True:
            self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            if self._shut_down:
                raise QueueShutDown
            wakeup = self._wakeup
            if self._delayed:
                timeout = max(0.0, self._delayed[0][0] - anyio.current_time())
                with anyio.move_on_after(timeout):
                    await wakeup.wait()
            else:
                await wakeup.wait()

    def done(self, key: str) -> None:
        """The worker finished ``key``; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        """Refuse new keys; ``get`` raises ``QueueShutDown`` once the ready keys are out."""
        self._shut_down = True
        self._delayed.clear()
        self._due.clear()
        self._wake()

    def _promote_due(self) -> None:
        now = anyio.current_time()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self.add(key)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = anyio.Event()
