"""Handler tasks: what the worker's task group promised, kept for plain asyncio tasks."""

from __future__ import annotations

import asyncio
import contextvars

import anyio
import pytest

from workqueue_core.worker_tasks import HandlerTasks

pytestmark = pytest.mark.anyio

HANG_GUARD = 10.0

current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")


async def test_close_cancels_the_running_tasks_and_waits_for_their_cleanup() -> None:
    crashes: list[None] = []
    tasks = HandlerTasks(on_crash=lambda: crashes.append(None))
    started = anyio.Event()
    cleaned: list[str] = []

    async def hang(name: str) -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # a report sent on the way out
                cleaned.append(name)
            raise

    async def quick() -> None:
        cleaned.append("quick")

    tasks.start(hang("a"), "hang a")
    tasks.start(hang("b"), "hang b")
    tasks.start(quick(), "quick")
    with anyio.fail_after(HANG_GUARD):
        await started.wait()
        await tasks.close()
    assert sorted(cleaned) == ["a", "b", "quick"]
    assert len(tasks) == 0
    assert crashes == []  # a cancellation is not a crash


async def test_a_task_closed_before_its_first_step_still_runs_its_clean_up() -> None:
    tasks = HandlerTasks(on_crash=lambda: None)
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


async def test_a_crash_is_signalled_at_once_and_raised_by_close() -> None:
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
        with pytest.raises(LookupError, match="a bug in the worker"):
            await tasks.close()
    assert crashes == [None]  # the first crash only
    await tasks.close()  # raised once: a second close has nothing to raise


async def test_each_task_has_its_own_context_variables() -> None:
    tasks = HandlerTasks(on_crash=lambda: None)
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
        await both_set.wait()
        while len(tasks):
            await anyio.sleep(0.001)
    assert seen == {"a": "a", "b": "b"}
    assert current.get() == "parent"


async def test_a_cancel_scope_in_a_task_cancels_that_task_only() -> None:
    tasks = HandlerTasks(on_crash=lambda: None)
    scopes = [anyio.CancelScope(), anyio.CancelScope()]
    entered = [anyio.Event(), anyio.Event()]
    outcome: dict[int, str] = {}

    async def handler(n: int) -> None:
        with scopes[n]:
            entered[n].set()
            await anyio.sleep(0.5 if n else HANG_GUARD)
            outcome[n] = "finished"
            return
        outcome[n] = "cancelled"  # the worker's "lease lost": the task goes on

    tasks.start(handler(0), "first")
    tasks.start(handler(1), "second")
    with anyio.fail_after(HANG_GUARD):
        await entered[0].wait()
        await entered[1].wait()
        scopes[0].cancel()
        while len(tasks):
            await anyio.sleep(0.001)
        await tasks.close()
    assert outcome == {0: "cancelled", 1: "finished"}
