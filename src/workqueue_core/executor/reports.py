"""Reporting attempts to the broker: batched completions and retried failure reports.

Completions of several handlers that finish close together go out in one
``complete_many_quiet`` call (answered ``None`` per completed entry: the worker does
not read log records): a reporter task sends whatever has gathered while its
previous call was in flight (no added delay), and the handlers' tasks do not wait
for the answer. A report that meets ``StoreUnavailable`` or a
timeout is retried a few times; repeating a report with the same token is safe
(complete is idempotent per token, a repeated fail is refused as lease lost).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import anyio
import attrs

from workqueue_core.domain.errors import StoreUnavailable, WorkqueueError
from workqueue_core.domain.models import Completion

__all__ = ["CompletionReporter", "ReportPolicy", "call_with_retries"]

log = logging.getLogger("workqueue.worker")

T = TypeVar("T")
K = TypeVar("K")

MAX_COMPLETION_BATCH = 1000


class _CompletionSink(Protocol):
    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]: ...


@attrs.frozen
class ReportPolicy:
    """How hard a report is tried: attempts, the bound on each call, the pause between."""

    attempts: int = 3
    call_timeout: float = 10.0
    pause: float = 0.2


async def call_with_retries(call: Callable[[], Awaitable[T]], policy: ReportPolicy) -> T:
    """Run ``call``; on ``StoreUnavailable``, ``OSError`` or a timeout, try again (bounded).

    Raises the last ``StoreUnavailable`` when every attempt failed; other errors
    (lease lost, invalid input) propagate at once.
    """
    last: Exception = StoreUnavailable("no attempt was made")
    for attempt in range(policy.attempts):
        if attempt:
            await anyio.sleep(policy.pause * 2 ** (attempt - 1))
        with anyio.move_on_after(policy.call_timeout):
            try:
                return await call()
            except (StoreUnavailable, OSError) as error:
                last = error
                continue
        last = StoreUnavailable(f"no answer within {policy.call_timeout} s")
    if isinstance(last, StoreUnavailable):
        raise last
    raise StoreUnavailable(str(last)) from last


class CompletionReporter(Generic[K]):
    """Sends completions with ``complete_many_quiet`` from a task of its own, one call at a time
    while it runs.

    ``put(key, completion)`` queues a completion without waiting; ``run()`` (started
    in the worker's task group) sends whatever has gathered while the previous call
    was in flight, and hands each answer to ``on_answer(key, answer)``: ``None``
    (completed), or the error the broker answered for that entry. When ``run()`` is
    cancelled it sends what is queued in a shielded scope and closes: ``put`` then
    returns False and the caller reports with ``send`` itself.
    """

    def __init__(
        self,
        sink: _CompletionSink,
        policy: ReportPolicy,
        on_answer: Callable[[K, WorkqueueError | None], None],
    ) -> None:
        self._sink = sink
        self._policy = policy
        self._on_answer = on_answer
        self._queue: list[tuple[K, Completion]] = []
        self._wake: anyio.Event | None = None
        self._closed = False

    def put(self, key: K, completion: Completion) -> bool:
        """Queue one completion; False when the reporter has stopped (send it yourself)."""
        if self._closed:
            return False
        self._queue.append((key, completion))
        if self._wake is not None:
            self._wake.set()
        return True

    async def run(self) -> None:
        """Send queued completions until cancelled; then send the rest and close."""
        try:
            while True:
                if not self._queue:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    self._wake = None
                with anyio.CancelScope(shield=True):
                    await self._send_queued()
        finally:
            self._closed = True
            with anyio.CancelScope(shield=True):
                while self._queue:
                    await self._send_queued()

    async def _send_queued(self) -> None:
        batch = self._queue[:MAX_COMPLETION_BATCH]
        del self._queue[:MAX_COMPLETION_BATCH]
        answers = await self.send([completion for _, completion in batch])
        for (key, _), answer in zip(batch, answers, strict=True):
            try:
                self._on_answer(key, answer)
            except Exception:  # one bad callback must not strand the other answers
                log.exception("handling the answer to a completion failed")

    async def send(self, completions: Sequence[Completion]) -> list[WorkqueueError | None]:
        """Send ``completions`` now (retried); one answer per entry, never raises."""
        try:
            answered = await call_with_retries(
                lambda: self._sink.complete_many_quiet(completions), self._policy
            )
            if len(answered) != len(completions):
                raise StoreUnavailable(
                    f"complete_many_quiet answered {len(answered)} outcomes "
                    f"for {len(completions)} completions"
                )
            return list(answered)
        except StoreUnavailable as error:
            return [error] * len(completions)
        except WorkqueueError as error:
            # one entry spoilt the whole call (e.g. a result the broker refuses): one by one
            if len(completions) == 1:
                return [error]
            return [(await self.send([c]))[0] for c in completions]
        except Exception as error:  # a broken source must not strand the waiters
            log.exception("completion report failed")
            return [StoreUnavailable(f"{type(error).__name__}: {error}")] * len(completions)
