"""Reporting attempts to the broker: batched completions and retried failure reports.

Completions of several handlers that finish close together go out in one
``complete_many`` call: the first reporter flushes whatever has gathered while its
call was in flight (no added delay). A report that meets ``StoreUnavailable`` or a
timeout is retried a few times; repeating a report with the same token is safe
(complete is idempotent per token, a repeated fail is refused as lease lost).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import anyio
import anyio.lowlevel
import attrs

from workqueue_core.errors import StoreUnavailable, WorkqueueError
from workqueue_core.models import Completion, ExecutionRecord

__all__ = ["CompletionBatcher", "ReportPolicy", "call_with_retries"]

log = logging.getLogger("workqueue.worker")

T = TypeVar("T")

MAX_COMPLETION_BATCH = 1000


class _CompletionSink(Protocol):
    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]: ...


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


@attrs.define
class _Pending:
    completion: Completion
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: ExecutionRecord | WorkqueueError | None = None


class CompletionBatcher:
    """Gathers completions and sends them with ``complete_many``, one call at a time.

    Call ``complete`` inside a shielded cancel scope: the caller that starts a flush
    keeps flushing until the buffer is empty and wakes every waiter, so it must
    not be interrupted.
    """

    def __init__(self, sink: _CompletionSink, policy: ReportPolicy) -> None:
        self._sink = sink
        self._policy = policy
        self._buffer: list[_Pending] = []
        self._flushing = False

    async def complete(self, completion: Completion) -> ExecutionRecord | WorkqueueError:
        """Record one success; returns its log record or the error the broker answered."""
        entry = _Pending(completion)
        self._buffer.append(entry)
        if not self._flushing:
            self._flushing = True
            try:
                await anyio.lowlevel.checkpoint()  # let handlers ending in this same step join
                while self._buffer:
                    batch = self._buffer[:MAX_COMPLETION_BATCH]
                    del self._buffer[:MAX_COMPLETION_BATCH]
                    await self._flush(batch)
            finally:
                self._flushing = False
        await entry.done.wait()
        assert entry.outcome is not None
        return entry.outcome

    async def _flush(self, batch: list[_Pending]) -> None:
        interrupted = StoreUnavailable("the completion report was interrupted")
        outcomes: Sequence[ExecutionRecord | WorkqueueError] = [interrupted] * len(batch)
        try:
            answered = await call_with_retries(
                lambda: self._sink.complete_many([p.completion for p in batch]), self._policy
            )
            if len(answered) != len(batch):
                raise StoreUnavailable(
                    f"complete_many answered {len(answered)} outcomes for {len(batch)} completions"
                )
            outcomes = answered
        except StoreUnavailable as error:
            outcomes = [error] * len(batch)
        except WorkqueueError as error:
            # one entry spoilt the whole call (e.g. a result the broker refuses): one by one
            outcomes = [error] if len(batch) == 1 else [await self._one(p) for p in batch]
        except Exception as error:  # a broken source must not strand the waiters
            log.exception("completion report failed")
            outcomes = [StoreUnavailable(f"{type(error).__name__}: {error}")] * len(batch)
        finally:
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
                entry.done.set()

    async def _one(self, entry: _Pending) -> ExecutionRecord | WorkqueueError:
        try:
            [outcome] = await call_with_retries(
                lambda: self._sink.complete_many([entry.completion]), self._policy
            )
        except WorkqueueError as error:
            return error
        except Exception as error:
            return StoreUnavailable(f"{type(error).__name__}: {error}")
        return outcome
