"""Completion callbacks over the in-memory store, with a fake poster and a fake clock.

``deliver_due`` posts each due record once and records the outcome on the item's
timeline; these tests drive it step by step on the fake clock: retries with
backoff, abandonment, leases, requeue and prune, and the submit-time URL checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from uuid import UUID

import attrs
import pytest

from workqueue_core.domain.callbacks import (
    CALLBACK_ACTOR,
    CallbackPolicy,
    CallbackTransportError,
    delivery_attempts,
)
from workqueue_core.domain.errors import InvalidInput, InvalidTransition, UnknownWork
from workqueue_core.domain.models import (
    ExecutionRecord,
    Failure,
    SubmitRequest,
    Targeting,
    WorkStatus,
)
from workqueue_core.domain.replay import agrees, replay
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.service.broker import BrokerService
from workqueue_core.service.callbacks import deliver_due
from workqueue_core.service.validation import check_callback_url
from workqueue_core.testing import FakeClock, SequentialIds, SequentialTokens
from workqueue_memory import MemoryStore

pytestmark = pytest.mark.anyio

URL = "https://user:secret@hooks.example.com/done?x=1"


@attrs.define
class Post:
    url: str
    body: bytes
    headers: dict[str, str]
    timeout: float


@attrs.define
class FakePoster:
    """Answers with the scripted statuses (an exception is raised instead), then 200."""

    script: list[int | Exception] = attrs.field(factory=list)
    posts: list[Post] = attrs.field(factory=list)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        self.posts.append(Post(url, body, dict(headers), timeout))
        answer = self.script.pop(0) if self.script else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


def encode(record: ExecutionRecord) -> bytes:
    return f"{record.id} {record.status.value}".encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> BrokerService:
    store = MemoryStore(random_source=lambda: 0.0)
    return BrokerService(store, clock, SequentialIds(), SequentialTokens(), notifier=store.notifier)


async def finish(
    service: BrokerService,
    callback_url: str | None = URL,
    outcome: str = "succeed",
) -> UUID:
    """Submit an item with ``callback_url``, claim it and end it as ``outcome``."""
    agent = (await service.register_agent(f"agent-{len(await service.list_agents())}")).agent
    submitted = await service.submit(
        SubmitRequest(
            "noop",
            "{}",
            Targeting.everyone(),
            retry_policy=RetryPolicy(max_retries=0),
            callback_url=callback_url,
        )
    )
    work_id = submitted.item.id
    if outcome == "cancel":
        await service.cancel(work_id, reason="not needed")
        return work_id
    [item] = await service.claim_next(agent.id)
    if outcome == "succeed":
        await service.complete(item.token, agent.id, result="ok")
    else:
        await service.fail(item.token, agent.id, Failure.permanent("Broken"))
    return work_id


async def deliver(service: BrokerService, poster: FakePoster, policy: CallbackPolicy) -> int:
    return await deliver_due(service.store, poster, service.clock, policy, encode)


def callback_events(events: list[object]) -> list[str]:
    return [e.detail for e in events if getattr(e, "actor", None) == CALLBACK_ACTOR]


async def test_fails_twice_then_delivers_once_with_backoff(
    service: BrokerService, clock: FakeClock
) -> None:
    work_id = await finish(service)
    poster = FakePoster([500, 503])
    policy = CallbackPolicy()

    assert await deliver(service, poster, policy) == 1  # due at once: HTTP 500
    assert await deliver(service, poster, policy) == 0  # not before the 10 s backoff
    clock.advance(timedelta(seconds=9))
    assert await deliver(service, poster, policy) == 0
    clock.advance(timedelta(seconds=1))
    assert await deliver(service, poster, policy) == 1  # HTTP 503, retry after 20 s
    clock.advance(timedelta(seconds=19))
    assert await deliver(service, poster, policy) == 0
    clock.advance(timedelta(seconds=1))
    assert await deliver(service, poster, policy) == 1  # 200: delivered
    clock.advance(timedelta(days=1))
    assert await deliver(service, poster, policy) == 0  # delivered once, never again

    assert len(poster.posts) == 3
    record = await service.store.get_record(work_id)
    assert record is not None
    assert {p.body for p in poster.posts} == {encode(record)}
    assert [p.headers["X-Workqueue-Delivery-Attempt"] for p in poster.posts] == ["1", "2", "3"]
    assert poster.posts[0].headers["X-Workqueue-Work-Id"] == str(work_id)
    assert poster.posts[0].headers["X-Workqueue-Status"] == "SUCCEEDED"
    assert all(p.url == URL and p.timeout == policy.timeout for p in poster.posts)

    events = await service.events(work_id)
    details = callback_events(events)
    assert details[0].startswith(
        "callback failed: HTTP 500 (attempt 1); retry at 2030-01-01T00:00:10"
    )
    assert details[1].startswith(
        "callback failed: HTTP 503 (attempt 2); retry at 2030-01-01T00:00:30"
    )
    assert details[2] == "callback delivered: HTTP 200 (attempt 3)"
    assert all("secret" not in detail for detail in details)
    attempts = [e for e in events if e.actor == CALLBACK_ACTOR]
    assert all(e.from_status is e.to_status is WorkStatus.SUCCEEDED for e in attempts)
    assert [e.at for e in attempts] == [
        record.finished_at,
        record.finished_at + timedelta(seconds=10),
        record.finished_at + timedelta(seconds=30),
    ]
    assert agrees(replay(events), record)  # the timeline still replays to the record


async def test_abandoned_after_max_attempts(service: BrokerService, clock: FakeClock) -> None:
    work_id = await finish(service, outcome="fail")
    refused = CallbackTransportError("ConnectError: [Errno 111] Connection refused")
    poster = FakePoster([refused, 500, refused])
    policy = CallbackPolicy(max_attempts=3)
    for _ in range(3):
        assert await deliver(service, poster, policy) == 1
        clock.advance(timedelta(hours=1))
    assert await deliver(service, poster, policy) == 0
    assert len(poster.posts) == 3
    details = callback_events(await service.events(work_id))
    assert details[0].startswith("callback failed: ConnectError: [Errno 111] Connection refused")
    assert details[1].startswith("callback failed: HTTP 500 (attempt 2)")
    assert details[2] == (
        "callback abandoned after 3 attempts: ConnectError: [Errno 111] Connection refused"
    )
    with pytest.raises(InvalidTransition, match="no delivery is pending"):
        await service.store.record_callback(
            work_id, clock.now(), delivered=True, detail="late", retry_at=None
        )


async def test_a_redirect_is_a_failure_not_followed(service: BrokerService) -> None:
    work_id = await finish(service)
    poster = FakePoster([302])
    assert await deliver(service, poster, CallbackPolicy()) == 1
    assert callback_events(await service.events(work_id))[0].startswith(
        "callback failed: HTTP 302 (attempt 1)"
    )


async def test_cancelled_items_are_called_back_and_items_without_url_are_not(
    service: BrokerService,
) -> None:
    cancelled = await finish(service, outcome="cancel")
    silent = await finish(service, callback_url=None)
    poster = FakePoster()
    assert await deliver(service, poster, CallbackPolicy()) == 1
    assert [p.headers["X-Workqueue-Work-Id"] for p in poster.posts] == [str(cancelled)]
    assert poster.posts[0].headers["X-Workqueue-Status"] == "CANCELED"
    assert callback_events(await service.events(silent)) == []
    with pytest.raises(InvalidTransition):
        await service.store.record_callback(
            silent, service.clock.now(), delivered=True, detail="x", retry_at=None
        )


async def test_due_records_come_oldest_first_up_to_the_limit(
    service: BrokerService, clock: FakeClock
) -> None:
    first = await finish(service)
    clock.advance(1)
    second = await finish(service)
    due = await service.store.callbacks_due(clock.now(), limit=1)
    assert [r.id for r in due] == [first]
    assert [r.id for r in await service.store.callbacks_due(clock.now())] == [first, second]


async def test_a_lease_hides_taken_records_until_it_runs_out(
    service: BrokerService, clock: FakeClock
) -> None:
    work_id = await finish(service)
    lease = timedelta(minutes=5)
    assert [r.id for r in await service.store.callbacks_due(clock.now(), lease=lease)] == [work_id]
    assert await service.store.callbacks_due(clock.now(), lease=lease) == []  # taken
    clock.advance(lease)
    assert [r.id for r in await service.store.callbacks_due(clock.now())] == [work_id]
    with pytest.raises(InvalidInput, match="lease"):
        await service.store.callbacks_due(clock.now(), lease=timedelta(0))


async def test_requeue_clears_the_delivery_and_a_new_end_starts_a_new_one(
    service: BrokerService, clock: FakeClock
) -> None:
    work_id = await finish(service, outcome="fail")
    poster = FakePoster([500])
    assert await deliver(service, poster, CallbackPolicy()) == 1
    await service.requeue(work_id)
    clock.advance(timedelta(hours=1))
    assert await service.store.callbacks_due(clock.now()) == []
    with pytest.raises(InvalidTransition, match="PENDING"):
        await service.store.record_callback(
            work_id, clock.now(), delivered=True, detail="x", retry_at=None
        )
    agent = (await service.register_agent("again")).agent
    [item] = await service.claim_next(agent.id)
    await service.complete(item.token, agent.id)
    assert await deliver(service, poster, CallbackPolicy()) == 1
    events = await service.events(work_id)
    assert delivery_attempts(events) == 1  # the attempt before the requeue does not count
    assert poster.posts[-1].headers["X-Workqueue-Delivery-Attempt"] == "1"
    assert callback_events(events)[-1] == "callback delivered: HTTP 200 (attempt 1)"


async def test_prune_removes_the_delivery_with_the_record(
    service: BrokerService, clock: FakeClock
) -> None:
    work_id = await finish(service)
    clock.advance(timedelta(days=2))
    assert await service.prune(timedelta(days=1)) == 1
    assert await service.store.callbacks_due(clock.now()) == []
    with pytest.raises(UnknownWork):
        await service.store.record_callback(
            work_id, clock.now(), delivered=True, detail="x", retry_at=None
        )


async def test_an_item_requeued_while_being_delivered_is_left_alone(
    service: BrokerService,
) -> None:
    work_id = await finish(service, outcome="fail")

    class RequeueingPoster(FakePoster):
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
        ) -> int:
            await service.requeue(work_id)
            return await super().post(url, body, headers, timeout)

    poster = RequeueingPoster()
    assert await deliver(service, poster, CallbackPolicy()) == 1
    assert callback_events(await service.events(work_id)) == []
    item = await service.store.get(work_id)
    assert item is not None and item.status is WorkStatus.PENDING


async def test_outcomes_are_reported() -> None:
    store = MemoryStore(random_source=lambda: 0.0)
    clock = FakeClock()
    service = BrokerService(store, clock, SequentialIds(), SequentialTokens())
    work_id = await finish(service)
    seen = []
    await deliver_due(store, FakePoster([404]), clock, CallbackPolicy(), encode, 10, seen.append)
    assert [(o.work_id, o.attempt, o.delivered) for o in seen] == [(work_id, 1, False)]
    assert seen[0].retry_at == clock.now() + timedelta(seconds=10)


async def test_a_post_of_a_replaced_record_is_not_counted_for_the_new_one(
    service: BrokerService, clock: FakeClock
) -> None:
    """Requeued and ended again while its old record was being posted: the 200 for
    the old record does not mark the new record's delivery done."""
    work_id = await finish(service, outcome="fail")
    agent = (await service.register_agent("again")).agent

    class ReplacingPoster(FakePoster):
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
        ) -> int:
            await service.requeue(work_id)
            clock.advance(1)
            [item] = await service.claim_next(agent.id)
            await service.complete(item.token, agent.id)
            return await super().post(url, body, headers, timeout)

    replacing = ReplacingPoster()
    assert await deliver(service, replacing, CallbackPolicy()) == 1
    assert replacing.posts[0].body == f"{work_id} FAILED".encode()
    assert callback_events(await service.events(work_id)) == []  # nothing recorded
    record = await service.store.get_record(work_id)
    assert record is not None
    with pytest.raises(InvalidTransition, match="replaced"):
        await service.store.record_callback(
            work_id,
            clock.now(),
            delivered=True,
            detail="x",
            retry_at=None,
            finished_at=record.finished_at - timedelta(seconds=1),
        )
    poster = FakePoster()
    assert await deliver(service, poster, CallbackPolicy()) == 1  # the new record is due
    assert [p.body for p in poster.posts] == [f"{work_id} SUCCEEDED".encode()]
    assert poster.posts[0].headers["X-Workqueue-Finished-At"] == record.finished_at.isoformat()


async def test_records_are_taken_only_as_many_as_are_posted_at_once(
    service: BrokerService, clock: FakeClock
) -> None:
    """A slow receiver cannot keep taken records waiting past their lease."""
    for _ in range(5):
        await finish(service)
    taken: list[int] = []
    store = service.store
    original = store.callbacks_due

    async def spy(now: object, limit: int = 100, lease: object = None) -> object:
        records = await original(now, limit, lease)  # type: ignore[arg-type]
        taken.append(len(records))
        return records

    store.callbacks_due = spy  # type: ignore[method-assign]
    policy = CallbackPolicy(concurrency=2)
    assert await deliver_due(store, FakePoster(), clock, policy, encode, limit=4) == 4
    assert taken == [2, 2]
    assert await deliver_due(store, FakePoster(), clock, policy, encode, limit=4) == 1
    assert taken == [2, 2, 1]


def test_policy_bounds() -> None:
    assert CallbackPolicy().retry_at(7, FakeClock().now()) is not None
    assert CallbackPolicy().retry_at(8, FakeClock().now()) is None
    assert CallbackPolicy().backoff.delay(20) == timedelta(hours=1)
    with pytest.raises(InvalidInput):
        CallbackPolicy(max_attempts=0)
    with pytest.raises(InvalidInput):
        CallbackPolicy(timeout=0)
    with pytest.raises(InvalidInput, match="lease"):
        CallbackPolicy(timeout=60, lease=timedelta(seconds=30))
    with pytest.raises(InvalidInput, match="jitter"):
        CallbackPolicy(backoff=RetryPolicy(jitter=Jitter.FULL))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://hooks.example.com:8443/a/b?c=d&e=%20f",
        "HTTPS://EXAMPLE.COM/x",
        "http://127.0.0.1:9000/cb",
        "http://[::1]:9000/cb",
        "https://user:pass@example.com/",
    ],
)
def test_callback_urls_accepted(url: str) -> None:
    check_callback_url(url)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http"),
        ("file:///etc/passwd", "http"),
        ("javascript:alert(1)", "http"),
        ("example.com/x", "http"),
        ("//example.com/x", "http"),
        ("http://", "host"),
        ("http:///path", "host"),
        ("http://exa mple.com/", "printable"),
        ("http://example.com/\r\nX-Injected: 1", "printable"),
        ("http://exämple.com/", "printable"),
        ("http://example.com:99999/", "valid URL"),
        ("http://example.com:port/", "valid URL"),
        ("http://[::1/", "valid URL"),
        ("http://example.com/#frag", "fragment"),
    ],
)
async def test_callback_urls_refused_at_submit(
    service: BrokerService, url: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_callback_url(url)
    with pytest.raises(InvalidInput, match="callback_url"):
        await service.submit(SubmitRequest("noop", "{}", Targeting.everyone(), callback_url=url))
    assert (await service.stats()).total() == 0
