"""Handler tasks: what the worker's task group promised, kept for plain asyncio tasks."""

from __future__ import annotations

import asyncio
import contextvars

import anyio
import pytest

from workqueue_core.executor.tasks import HandlerTasks

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
