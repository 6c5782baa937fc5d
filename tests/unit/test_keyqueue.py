"""The controller's key queue: coalescing, one worker per key, delays and backoff."""

from __future__ import annotations

import anyio
import pytest

from workqueue_kubernetes.keyqueue import KeyQueue, QueueShutDown

pytestmark = pytest.mark.anyio


async def nothing_within(queue: KeyQueue, seconds: float = 0.05) -> bool:
    with anyio.move_on_after(seconds):
        await queue.get()
        return False
    return True


async def test_a_key_added_many_times_waits_once() -> None:
    queue = KeyQueue()
    for _ in range(5):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    with anyio.fail_after(5):
        assert [await queue.get(), await queue.get()] == ["ns/a", "ns/b"]
    assert await nothing_within(queue)


async def test_a_key_held_by_a_worker_is_not_handed_out_again_until_done() -> None:
    queue = KeyQueue()
    queue.add("ns/a")
    with anyio.fail_after(5):
        held = await queue.get()
    queue.add("ns/a")  # an event while the worker reconciles
    assert await nothing_within(queue), "a second worker got a key that is being processed"
    queue.done(held)
    with anyio.fail_after(5):
        assert await queue.get() == "ns/a"
    queue.done("ns/a")
    assert await nothing_within(queue)


async def test_delayed_keys_come_when_due_and_the_earliest_delay_wins() -> None:
    queue = KeyQueue()
    queue.add_after("ns/late", 30)
    queue.add_after("ns/soon", 30)
    queue.add_after("ns/soon", 0.01)
    queue.add_after("ns/soon", 20)  # later than what is scheduled: ignored
    assert queue.delayed == 2
    with anyio.fail_after(5):
        assert await queue.get() == "ns/soon"
    assert await nothing_within(queue)
    queue.add("ns/late")  # an immediate add does not wait for the delay
    with anyio.fail_after(5):
        assert await queue.get() == "ns/late"
    assert queue.delayed == 0


async def test_a_waiting_get_wakes_for_a_key_added_later() -> None:
    queue = KeyQueue()
    got: list[str] = []
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            got.append(await queue.get())

        tg.start_soon(take)
        await anyio.sleep(0.01)
        queue.add_after("ns/a", 0.01)
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.005)
    assert got == ["ns/a"]


async def test_rate_limited_delays_double_until_forgotten() -> None:
    queue = KeyQueue(base_delay=1.0, max_delay=5.0)
    assert [queue.add_rate_limited("ns/a") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert queue.failures("ns/a") == 5
    queue.forget("ns/a")
    assert queue.failures("ns/a") == 0
    assert queue.add_rate_limited("ns/a") == 1.0


async def test_shut_down_hands_out_what_is_ready_then_refuses() -> None:
    queue = KeyQueue()
    queue.add("ns/a")
    queue.add_after("ns/b", 30)
    queue.shut_down()
    queue.add("ns/c")
    with anyio.fail_after(5):
        assert await queue.get() == "ns/a"
        with pytest.raises(QueueShutDown):
            await queue.get()


def test_delays_must_be_positive_and_ordered() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        KeyQueue(base_delay=0)
    with pytest.raises(ValueError, match="base_delay"):
        KeyQueue(base_delay=2, max_delay=1)


async def test_a_cancelled_delay_never_comes_and_a_new_one_does() -> None:
    queue = KeyQueue()
    queue.add_after("ns/a", 0.01)
    queue.add_after("ns/b", 0.02)
    queue.cancel_delayed("ns/a")
    queue.cancel_delayed("ns/missing")  # nothing to cancel: nothing happens
    assert queue.delayed == 1
    with anyio.fail_after(5):
        assert await queue.get() == "ns/b"
    queue.done("ns/b")
    assert await nothing_within(queue)
    queue.add_after("ns/a", 0.01)  # the cancelled key can be delayed again
    with anyio.fail_after(5):
        assert await queue.get() == "ns/a"
