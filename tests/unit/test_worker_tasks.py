"""Handler tasks: what the worker's task group promised, kept for plain asyncio tasks."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

import anyio
import pytest

from workqueue_core.executor.tasks import Entry, HandlerTasks

pytestmark = pytest.mark.anyio

HANG_GUARD = 10.0

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")


def no_crash() -> None:
    raise AssertionError("no task should crash here")


async def ended(tasks: HandlerTasks) -> None:
    while len(tasks):
        await anyio.sleep(0.001)


async def test_close_cancels_the_running_tasks_and_waits_for_their_shielded_reports() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    started = anyio.Event()
    reported: list[str] = []

    async def hang(name: str) -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.02)  # a report sent on the way out
                reported.append(name)

    async def quick() -> None:
        reported.append("quick")

    tasks.start(hang("a"), "hang a")
    tasks.start(hang("b"), "hang b")
    tasks.start(quick(), "quick")
    with anyio.fail_after(HANG_GUARD):
        await started.wait()
        assert await tasks.close() == []
    assert sorted(reported) == ["a", "b", "quick"]
    assert len(tasks) == 0


async def test_a_task_closed_before_its_first_step_still_runs_its_clean_up() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    steps: list[str] = []

    async def handler() -> None:
        steps.append("started")
        try:
            await anyio.sleep_forever()
        finally:
            steps.append("reported")  # the worker reports the claim here

    tasks.start(handler(), "handler")
    with anyio.fail_after(HANG_GUARD):
        await tasks.close()  # no checkpoint in between: the task has not run yet
    assert steps == ["started", "reported"]


async def test_a_shielded_section_in_a_task_is_not_interrupted() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    inside = anyio.Event()
    steps: list[str] = []

    async def committing() -> None:
        with anyio.CancelScope(shield=True):
            inside.set()
            await anyio.sleep(0.1)
            steps.append("committed")
        await anyio.sleep_forever()

    tasks.start(committing(), "committing")
    with anyio.fail_after(HANG_GUARD):
        await inside.wait()
        tasks.cancel_all()
        await ended(tasks)
    assert steps == ["committed"]


async def test_a_cancellation_the_task_absorbs_is_delivered_again() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    started = anyio.Event()
    steps: list[str] = []

    async def stubborn() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except asyncio.CancelledError:
            steps.append("absorbed one")  # a library that swallows a cancellation
        await anyio.sleep(HANG_GUARD)
        steps.append("worked on")  # pragma: no cover

    tasks.start(stubborn(), "stubborn")
    with anyio.fail_after(HANG_GUARD / 2):
        await started.wait()
        await tasks.close()
    assert steps == ["absorbed one"]


async def test_tasks_started_after_cancel_all_start_cancelled() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    tasks.cancel_all()
    steps: list[str] = []

    async def late() -> None:
        steps.append("started")
        await anyio.sleep_forever()

    tasks.start(late(), "late")
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert steps == ["started"]


async def test_close_waits_through_a_second_cancellation_then_raises_it() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    started = anyio.Event()
    reported: list[str] = []

    async def reporting() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.2)
                reported.append("reported")

    async def closer() -> None:
        await tasks.close()

    tasks.start(reporting(), "reporting")
    await started.wait()
    closing = asyncio.get_running_loop().create_task(closer())
    await anyio.sleep(0.05)
    closing.cancel()  # a plain cancel passes anyio's shields
    with anyio.fail_after(HANG_GUARD), pytest.raises(asyncio.CancelledError):
        await closing
    assert reported == ["reported"]  # close() ended only after the report


async def test_a_crash_is_logged_signalled_at_once_and_returned_by_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))
    later = anyio.Event()

    async def broken() -> None:
        raise LookupError("a bug in the worker")

    async def also_broken() -> None:
        await later.wait()
        raise KeyError("a second bug")

    tasks.start(broken(), "broken")
    tasks.start(also_broken(), "also broken")
    with anyio.fail_after(HANG_GUARD):
        while not crashes:
            await anyio.sleep(0.001)
        later.set()
        await ended(tasks)
        raised = await tasks.close()
    assert [type(e) for e in raised] == [LookupError, KeyError]
    assert crashes == [None, None]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [LookupError, KeyError]
    assert await tasks.close() == []  # returned once


class Abort(BaseException):
    """Not an Exception, as pytest.fail's is not."""


async def test_a_base_exception_is_a_crash_too() -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))

    async def aborting() -> None:
        raise Abort("from a handler")

    tasks.start(aborting(), "aborting")
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert crashes == [None]
    [raised] = await tasks.close()
    assert isinstance(raised, Abort)


async def test_a_task_cancelled_from_outside_before_it_ran_is_a_crash() -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))
    steps: list[str] = []

    async def handler() -> None:
        steps.append("ran")  # pragma: no cover

    before = asyncio.all_tasks()
    tasks.start(handler(), "doomed")
    [task] = asyncio.all_tasks() - before
    task.cancel()  # e.g. a sweep over every task of the loop
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert steps == []
    assert crashes == [None]  # the worker is told: that claim is beyond its reach
    [raised] = await tasks.close()
    assert "'doomed' was cancelled before it ran" in str(raised)


async def test_each_task_has_its_own_context_variables() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    current.set("parent")
    seen: dict[str, str] = {}
    both_set = anyio.Event()
    count = 0

    async def handler(name: str) -> None:
        nonlocal count
        assert current.get() == "parent"  # a copy of the starter's context
        current.set(name)
        count += 1
        if count == 2:
            both_set.set()
        await both_set.wait()
        seen[name] = current.get()

    tasks.start(handler("a"), "a")
    tasks.start(handler("b"), "b")
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert seen == {"a": "a", "b": "b"}
    assert current.get() == "parent"


async def test_a_cancel_scope_in_a_task_cancels_that_task_only() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    scopes = [anyio.CancelScope(), anyio.CancelScope()]
    entered = [anyio.Event(), anyio.Event()]
    outcome: dict[int, str] = {}

    async def handler(n: int) -> None:
        with scopes[n]:
            entered[n].set()
            await anyio.sleep(0.2 if n else HANG_GUARD)
            outcome[n] = "finished"
            return
        outcome[n] = "cancelled"  # the worker's "lease lost": the task goes on

    tasks.start(handler(0), "first")
    tasks.start(handler(1), "second")
    with anyio.fail_after(HANG_GUARD):
        await entered[0].wait()
        await entered[1].wait()
        scopes[0].cancel()
        await ended(tasks)
    assert outcome == {0: "cancelled", 1: "finished"}


# --- start_many: coroutines that end without suspending share a task ------------------


def entry(coro: Coroutine[Any, Any, None], name: str) -> Entry:
    return (coro, anyio.CancelScope(), name)


def new_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - before


async def test_entries_that_never_suspend_share_one_task_with_a_context_each() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    current.set("parent")
    seen: list[tuple[str, str, asyncio.Task[Any] | None]] = []

    async def quick(name: str) -> None:
        seen.append((name, current.get(), asyncio.current_task()))
        current.set(name)  # must not leak into the next entry's context

    before = asyncio.all_tasks()
    tasks.start_many([entry(quick(n), n) for n in ("a", "b", "c")])
    assert len(new_tasks(before)) == 1
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert [(n, value) for n, value, _ in seen] == [(n, "parent") for n in ("a", "b", "c")]
    assert len({task for _, _, task in seen}) == 1
    assert current.get() == "parent"


async def test_an_entry_that_suspends_keeps_its_task_and_the_later_ones_get_their_own() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    go = anyio.Event()
    steps: list[str] = []
    task_of: dict[str, asyncio.Task[Any] | None] = {}

    async def quick(name: str) -> None:
        task_of[name] = asyncio.current_task()
        steps.append(name)

    async def waiting(name: str) -> None:
        task_of[name] = asyncio.current_task()
        steps.append(f"{name} waits")
        await go.wait()
        assert asyncio.current_task() is task_of[name]  # resumed in the same task
        steps.append(f"{name} goes on")

    tasks.start_many(
        [
            entry(quick("a"), "a"),
            entry(waiting("b"), "b"),
            entry(waiting("c"), "c"),
            entry(quick("d"), "d"),
        ]
    )
    with anyio.fail_after(HANG_GUARD):
        while len(steps) < 4:
            await anyio.sleep(0.001)
        # every entry has started although two of them are waiting
        assert sorted(steps) == ["a", "b waits", "c waits", "d"]
        assert len(tasks) == 2  # b kept a's task, c got its own; d's has ended
        go.set()
        await ended(tasks)
    assert sorted(steps[4:]) == ["b goes on", "c goes on"]
    assert task_of["a"] is task_of["b"]
    assert len({task_of["b"], task_of["c"], task_of["d"]}) == 3


async def test_scopes_and_timeouts_entered_before_the_first_suspension_stay_in_their_task() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    steps: list[str] = []

    async def anyio_bounded() -> None:
        with anyio.fail_after(HANG_GUARD):
            await anyio.sleep(0.01)
        steps.append("anyio scope")

    async def asyncio_bounded() -> None:
        async with asyncio.timeout(HANG_GUARD):
            await asyncio.sleep(0.01)
        steps.append("asyncio timeout")

    async def timed_out() -> None:
        with anyio.move_on_after(0.01):
            await anyio.sleep_forever()
        steps.append("moved on")

    async def with_task_group() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.01)
        steps.append("task group")

    async def quick() -> None:
        steps.append("quick")

    tasks.start_many(
        [
            entry(anyio_bounded(), "anyio"),
            entry(asyncio_bounded(), "asyncio"),
            entry(timed_out(), "moved on"),
            entry(with_task_group(), "task group"),
            entry(quick(), "quick"),
        ]
    )
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert sorted(steps) == ["anyio scope", "asyncio timeout", "moved on", "quick", "task group"]
    assert await tasks.close() == []


async def test_cancelling_one_entry_that_started_in_a_shared_task_cancels_it_alone() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    outcome: dict[str, str] = {}
    waiting = anyio.Event()

    async def lost(name: str) -> None:
        outcome[name] = "started"
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # the worker settles the attempt, shielded
                outcome[name] = "cancelled, settled"
            raise

    async def finishing(name: str) -> None:
        outcome[name] = "started"
        await waiting.wait()
        outcome[name] = "finished"

    entries = [
        entry(finishing("first"), "first"),
        entry(lost("lost"), "lost"),
        entry(finishing("last"), "last"),
    ]
    tasks.start_many(entries)
    with anyio.fail_after(HANG_GUARD):
        while len(outcome) < 3:
            await anyio.sleep(0.001)
        entries[1][1].cancel()  # the claim of the middle one is lost
        while outcome["lost"] != "cancelled, settled":
            await anyio.sleep(0.001)
        assert outcome["first"] == outcome["last"] == "started"
        waiting.set()
        await ended(tasks)
    assert outcome == {"first": "finished", "lost": "cancelled, settled", "last": "finished"}


async def test_a_crash_before_suspending_does_not_keep_the_later_entries_from_running() -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))
    steps: list[str] = []

    async def broken() -> None:
        raise LookupError("a bug")

    async def aborting() -> None:
        raise Abort("not an Exception")

    async def quick(name: str) -> None:
        steps.append(name)

    async def waiting() -> None:
        await anyio.sleep(0.01)
        steps.append("waited")

    tasks.start_many(
        [
            entry(broken(), "broken"),
            entry(quick("a"), "a"),
            entry(aborting(), "aborting"),
            entry(waiting(), "waiting"),
            entry(quick("b"), "b"),
        ]
    )
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert sorted(steps) == ["a", "b", "waited"]
    assert crashes == [None, None]
    assert [type(e) for e in await tasks.close()] == [LookupError, Abort]


async def test_entries_started_after_cancel_all_are_cancelled_at_their_first_checkpoint() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    tasks.cancel_all()
    steps: list[str] = []

    async def quick() -> None:
        steps.append("quick")  # no checkpoint: it ends as it would in a task of its own

    async def late(name: str) -> None:
        steps.append(name)
        try:
            await anyio.sleep_forever()
        finally:
            steps.append(f"{name} cancelled")

    tasks.start_many([entry(late("a"), "a"), entry(quick(), "quick"), entry(late("b"), "b")])
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert sorted(steps) == ["a", "a cancelled", "b", "b cancelled", "quick"]


async def test_a_shared_task_cancelled_before_it_ran_is_a_crash_per_entry() -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))
    steps: list[str] = []

    async def handler() -> None:
        steps.append("ran")  # pragma: no cover

    before = asyncio.all_tasks()
    tasks.start_many([entry(handler(), "doomed"), entry(handler(), "doomed too")])
    [task] = new_tasks(before)
    task.cancel()
    with anyio.fail_after(HANG_GUARD):
        await ended(tasks)
    assert steps == []
    assert crashes == [None, None]
    raised = await tasks.close()
    assert len(raised) == 2
    assert all("'doomed' was cancelled before it ran" in str(e) for e in raised)


async def test_close_waits_for_entries_of_a_shared_task_that_is_still_starting() -> None:
    tasks = HandlerTasks(on_crash=no_crash)
    steps: list[str] = []

    async def handler(name: str) -> None:
        steps.append(name)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)
                steps.append(f"{name} reported")

    tasks.start_many([entry(handler(n), n) for n in ("a", "b", "c")])
    with anyio.fail_after(HANG_GUARD):
        assert await tasks.close() == []  # no checkpoint in between: nothing has run yet
    assert sorted(steps) == ["a", "a reported", "b", "b reported", "c", "c reported"]
