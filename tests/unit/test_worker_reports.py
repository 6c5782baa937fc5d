"""The completion reporter: batching, per-entry answers, refusals and a cancelled run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import anyio
import pytest

from workqueue_core.domain.errors import InvalidInput, LeaseLost, StoreUnavailable, WorkqueueError
from workqueue_core.domain.models import (
    ClaimToken,
    Completion,
)
from workqueue_core.executor.reports import CompletionReporter, ReportPolicy

pytestmark = pytest.mark.anyio

AGENT = uuid4()
AT = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = ReportPolicy(attempts=2, call_timeout=5.0, pause=0.001)


def completion(result: str | None = None) -> Completion:
    return Completion(ClaimToken(uuid4(), 1), AGENT, result)


class Sink:
    """A broker's ``complete_many_quiet``: refuses results named ``bad`` (the whole call, as
    a broker validating its input does), or is unreachable ``down`` times."""

    def __init__(self, down: int = 0) -> None:
        self.calls: list[list[Completion]] = []
        self.down = down
        self.gate: anyio.Event | None = None

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        self.calls.append(list(completions))
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            self.down -= 1
            raise StoreUnavailable("down")
        if any(c.result == "bad" for c in completions):
            raise InvalidInput("result refused")
        return [
            None if c.result != "stale" else LeaseLost(c.token.work_id, c.token.attempt)
            for c in completions
        ]


class Answers:
    def __init__(self) -> None:
        self.got: dict[UUID, WorkqueueError | None] = {}

    def __call__(self, key: UUID, answer: WorkqueueError | None) -> None:
        self.got[key] = answer


async def until(condition: object) -> None:
    with anyio.fail_after(5):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.001)


async def test_completions_queued_during_a_call_go_out_together_in_the_next() -> None:
    sink, answers = Sink(), Answers()
    sink.gate = anyio.Event()
    reporter = CompletionReporter(sink, POLICY, answers)
    first, *rest = [completion() for _ in range(5)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.run)
        assert reporter.put(first.token.work_id, first)
        await until(lambda: len(sink.calls) == 1)
        for c in rest:  # while the first call is in flight
            assert reporter.put(c.token.work_id, c)
        sink.gate.set()
        await until(lambda: len(answers.got) == 5)
        tg.cancel_scope.cancel()
    assert [len(call) for call in sink.calls] == [1, 4]
    assert all(a is None for a in answers.got.values())


async def test_each_entry_gets_its_own_answer() -> None:
    sink, answers = Sink(), Answers()
    reporter = CompletionReporter(sink, POLICY, answers)
    good, stale = completion(), completion("stale")
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.run)
        reporter.put(good.token.work_id, good)
        reporter.put(stale.token.work_id, stale)
        await until(lambda: len(answers.got) == 2)
        tg.cancel_scope.cancel()
    assert answers.got[good.token.work_id] is None
    assert isinstance(answers.got[stale.token.work_id], LeaseLost)


async def test_a_refused_entry_is_sent_alone_and_spoils_nothing_else() -> None:
    sink = Sink()
    reporter = CompletionReporter(sink, POLICY, Answers())
    batch = [completion(), completion("bad"), completion()]
    answers = await reporter.send(batch)
    assert answers[0] is None
    assert isinstance(answers[1], InvalidInput)
    assert answers[2] is None
    assert [len(call) for call in sink.calls] == [3, 1, 1, 1]


async def test_an_unreachable_broker_is_retried_then_answered_for_every_entry() -> None:
    reporter = CompletionReporter(Sink(down=1), POLICY, Answers())
    assert await reporter.send([completion()] * 2) == [None, None]
    reporter = CompletionReporter(Sink(down=5), POLICY, Answers())
    answers = await reporter.send([completion(), completion()])
    assert [type(a) for a in answers] == [StoreUnavailable, StoreUnavailable]


async def test_a_cancelled_run_sends_what_is_queued_and_then_refuses_puts() -> None:
    sink, answers = Sink(), Answers()
    sink.gate = anyio.Event()
    reporter = CompletionReporter(sink, POLICY, answers)
    queued = [completion() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.run)
        reporter.put(queued[0].token.work_id, queued[0])
        await until(lambda: len(sink.calls) == 1)
        for c in queued[1:]:
            reporter.put(c.token.work_id, c)
        tg.cancel_scope.cancel()  # mid-call: the call is shielded, the rest still goes
        sink.gate.set()
    assert set(answers.got) == {c.token.work_id for c in queued}
    late = completion()
    assert reporter.put(late.token.work_id, late) is False
    assert late.token.work_id not in answers.got


async def test_a_failing_answer_handler_does_not_strand_the_others() -> None:
    seen: list[UUID] = []

    def on_answer(key: UUID, answer: WorkqueueError | None) -> None:
        seen.append(key)
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    reporter = CompletionReporter(Sink(), POLICY, on_answer)
    batch = [completion() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(reporter.run)
        for c in batch:
            reporter.put(c.token.work_id, c)
        await until(lambda: len(seen) == 3)
        tg.cancel_scope.cancel()
    assert seen == [c.token.work_id for c in batch]
