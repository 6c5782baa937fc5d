"""The broker service over the in-memory store, with a fake clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import anyio
import attrs
import pytest

from workqueue_broker.work_types import broker_spec_validator
from workqueue_core.domain.errors import (
    InvalidInput,
    LabelError,
    LeaseLost,
    SelectorError,
    SpecError,
    SpecTooLarge,
    UnknownAgent,
    UnknownWork,
)
from workqueue_core.domain.models import (
    AgentStatus,
    Completion,
    ExecutionRecord,
    Failure,
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.domain.tokens import hash_token
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.service.broker import BrokerService
from workqueue_core.service.notifier import InProcessNotifier
from workqueue_core.testing import EPOCH, FakeClock, SequentialIds, SequentialTokens
from workqueue_memory import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> BrokerService:
    store = MemoryStore(random_source=lambda: 0.0)
    return BrokerService(
        store,
        clock,
        SequentialIds(),
        SequentialTokens(),
        notifier=store.notifier,
        spec_validator=broker_spec_validator(),
    )


BUILD_WORK = """\
apiVersion: brokkr.io/v1alpha1
kind: Work
metadata:
  name: build-sample-go
spec:
  workType: build
  maxRetries: 3
  claimTimeout: 3600
  template:
    apiVersion: shipwright.io/v1beta1
    kind: Build
    metadata:
      name: sample-go
    spec:
      source:
        type: Git
        git:
          url: https://github.com/shipwright-io/sample-go
        contextDir: docker-build
      strategy:
        name: buildah
        kind: ClusterBuildStrategy
      output:
        image: registry.example.com/sample-go:latest
"""


def request(**overrides: object) -> SubmitRequest:
    fields: dict[str, object] = {
        "work_type": "build",
        "spec": BUILD_WORK,
        "targeting": Targeting.everyone(),
    }
    fields.update(overrides)
    return SubmitRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "error", "words"),
    [
        ({"work_type": "Build!"}, InvalidInput, "work_type"),
        ({"work_type": ""}, InvalidInput, "work_type"),
        ({"spec": "x" * (1_048_577)}, SpecTooLarge, "limit"),
        ({"priority": 40_000}, InvalidInput, "priority"),
        ({"claim_timeout": timedelta(0)}, InvalidInput, "claim_timeout"),
        ({"claim_timeout": timedelta(days=8)}, InvalidInput, "claim_timeout"),
        ({"not_before": datetime(2030, 1, 1)}, InvalidInput, "timezone"),
        ({"callback_url": "ftp://x"}, InvalidInput, "callback_url"),
        ({"idempotency_key": "k" * 300}, InvalidInput, "idempotency_key"),
        ({"labels": {"bad key!": "v"}}, LabelError, "invalid labels: .*bad key!"),
        ({"labels": {f"k{n}": "v" for n in range(65)}}, LabelError, "at most 64 labels"),
    ],
)
async def test_submit_rejects_bad_input_and_stores_nothing(
    service: BrokerService, overrides: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        await service.submit(request(**overrides))
    assert (await service.stats()).total() == 0


@pytest.mark.parametrize(
    ("work_type", "spec", "path", "words"),
    [
        ("build", "a: [unclosed", "", "line"),
        ("build", "a: &a [1]\nb: [*a, *a, *a]\n" + "c: [*a]\n" * 200, "", "alias"),
        ("build", BUILD_WORK.replace("image: registry", "imag: registry"), "spec.template", None),
        ("build", BUILD_WORK.replace("maxRetries: 3", "maxRetries: -1"), "spec.maxRetries", None),
        ("job", BUILD_WORK, "spec.workType", "submitted as 'job'"),
        ("build", BUILD_WORK.replace("kind: Work", "kind: Job"), "kind", None),
    ],
    ids=[
        "bad-yaml",
        "alias-bomb",
        "build-without-output-image",
        "negative-retries",
        "wrong-work-type",
        "not-a-work",
    ],
)
async def test_kubernetes_work_types_need_a_valid_work_resource(
    service: BrokerService, work_type: str, spec: str, path: str, words: str | None
) -> None:
    with pytest.raises(SpecError, match=words) as raised:
        await service.submit(request(work_type=work_type, spec=spec))
    assert raised.value.path.startswith(path)
    assert (await service.stats()).total() == 0


async def test_other_work_types_keep_their_spec_opaque(service: BrokerService) -> None:
    item = (await service.submit(request(work_type="backup", spec="{{ not yaml"))).item
    assert isinstance(item, WorkItem) and item.spec == "{{ not yaml"


def test_targeting_must_be_explicit() -> None:
    with pytest.raises(InvalidInput, match="empty selector"):
        Targeting()


async def test_idempotency_key_returns_the_original_and_creates_nothing(
    service: BrokerService,
) -> None:
    first = await service.submit(request(idempotency_key="deploy-42"))
    other = BUILD_WORK.replace("sample-go:latest", "other:latest")
    again = await service.submit(request(idempotency_key="deploy-42", spec=other))
    assert first.created and not again.created
    assert again.item.id == first.item.id
    assert isinstance(again.item, WorkItem) and again.item.spec == BUILD_WORK
    assert (await service.stats()).total() == 1


async def test_approval_holds_work_until_approved(service: BrokerService) -> None:
    agent = (await service.register_agent("a1")).agent
    held = (await service.submit(request(requires_approval=True))).item
    assert held.status is WorkStatus.HELD
    assert await service.claim_next(agent.id) == []
    await service.approve(held.id)
    claimed = await service.claim_next(agent.id)
    assert [i.id for i in claimed] == [held.id]


async def test_agent_tokens_are_issued_once_and_stored_hashed(service: BrokerService) -> None:
    issued = await service.register_agent("builder", labels={"gpu": "true"})
    stored = await service.get_agent(issued.agent.id)
    assert issued.token.startswith("wq_")
    assert stored.token_hash == hash_token(issued.token)
    assert issued.token not in repr(stored) and issued.token not in repr(issued)
    assert (await service.authenticate_agent(issued.token)) == stored
    assert await service.authenticate_agent(issued.token + "x") is None
    assert await service.authenticate_agent("not-a-token") is None


async def test_lifecycle_claim_heartbeat_complete_and_timeline(
    service: BrokerService, clock: FakeClock
) -> None:
    agent = (await service.register_agent("a1", labels={"zone": "a"})).agent
    item = (
        await service.submit(request(targeting=Targeting.labels("zone=a"), correlation_id="c-1"))
    ).item
    [claimed] = await service.claim_next(agent.id, ["build"], limit=5)
    assert claimed.lease_expires_at == clock.now() + timedelta(hours=1)
    clock.advance(600)
    beat = await service.heartbeat(claimed.token, agent.id)
    assert beat.lease_expires_at == clock.now() + timedelta(hours=1)
    record = await service.complete(claimed.token, agent.id, result="sha256:abc")
    assert record.success and record.result == "sha256:abc"
    assert await service.get(item.id) == record
    timeline = await service.events(item.id)
    assert [(e.from_status, e.to_status) for e in timeline] == [
        (None, WorkStatus.PENDING),
        (WorkStatus.PENDING, WorkStatus.CLAIMED),
        (WorkStatus.CLAIMED, WorkStatus.SUCCEEDED),
    ]
    assert {e.correlation_id for e in timeline} == {"c-1"}
    assert [r.id for r in await service.list_log(LogQuery())] == [item.id]


async def test_retry_then_dead_letter_then_requeue(
    service: BrokerService, clock: FakeClock
) -> None:
    agent = (await service.register_agent("a1")).agent
    policy = RetryPolicy(max_retries=1, base_delay=timedelta(seconds=10))
    item = (await service.submit(request(retry_policy=policy))).item
    [first] = await service.claim_next(agent.id)
    retried = await service.fail(first.token, agent.id, Failure.retryable("Timeout"))
    assert isinstance(retried, WorkItem) and retried.not_before == clock.now() + timedelta(
        seconds=10
    )
    assert await service.claim_next(agent.id) == []
    clock.advance(10)
    [second] = await service.claim_next(agent.id)
    dead = await service.fail(second.token, agent.id, Failure.retryable("Timeout"))
    assert isinstance(dead, ExecutionRecord) and dead.status is WorkStatus.FAILED
    requeued = await service.requeue(item.id)
    assert requeued.status is WorkStatus.PENDING and requeued.executions == 0
    with pytest.raises(LeaseLost):
        await service.heartbeat(second.token, agent.id)


async def test_sweep_and_prune_use_the_clock(service: BrokerService, clock: FakeClock) -> None:
    agent = (await service.register_agent("a1")).agent
    await service.submit(request(claim_timeout=timedelta(seconds=30)))
    [claimed] = await service.claim_next(agent.id)
    clock.advance(29)
    assert await service.sweep() == []
    clock.advance(1)
    [swept] = await service.sweep()
    assert isinstance(swept, WorkItem) and swept.status is WorkStatus.PENDING
    assert swept.last_error is not None and swept.last_error.reason == "LeaseExpired"
    done = await service.cancel(claimed.id, reason="no longer needed")
    clock.advance(3600)
    assert await service.prune(timedelta(hours=2)) == 0
    assert await service.prune(timedelta(minutes=30)) == 1
    with pytest.raises(UnknownWork):
        await service.get(done.id)
    with pytest.raises(UnknownWork):
        await service.events(done.id)


async def test_relabel_and_drain_change_eligibility_at_once(service: BrokerService) -> None:
    agent = (await service.register_agent("a1", labels={"gpu": "false"})).agent
    item = (await service.submit(request(targeting=Targeting.labels("gpu=true")))).item
    assert await service.pending(agent.id) == []
    await service.update_agent(agent.id, labels={"gpu": "true"})
    assert [i.id for i in await service.pending(agent.id)] == [item.id]
    drained = await service.drain_agent(agent.id)
    assert drained.status is AgentStatus.DRAINING
    assert await service.claim_next(agent.id) == []
    with pytest.raises(LabelError, match="invalid labels"):
        await service.update_agent(agent.id, labels={"-bad": "x"})
    with pytest.raises(UnknownAgent):
        await service.get_agent(item.id)


async def test_queries_filter_and_paginate(service: BrokerService, clock: FakeClock) -> None:
    for n in range(5):
        await service.submit(request(work_type="backup" if n % 2 else "test", spec="opaque"))
        clock.advance(1)
    backups = await service.list_work(WorkQuery(work_type="backup"))
    assert len(backups) == 2 and {i.work_type for i in backups} == {"backup"}
    first = await service.list_work(WorkQuery(limit=3))
    from workqueue_core.domain.models import Cursor

    rest = await service.list_work(
        WorkQuery(limit=3, after=Cursor(first[-1].created_at, first[-1].id))
    )
    assert len(first) == 3 and len(rest) == 2
    assert {i.id for i in first}.isdisjoint({i.id for i in rest})
    with pytest.raises(InvalidInput):
        await service.list_work(WorkQuery(limit=0))


async def test_long_poll_claim_is_woken_by_a_submit(service: BrokerService) -> None:
    agent = (await service.register_agent("a1")).agent
    got = []

    async def waiter() -> None:
        got.extend(await service.claim_next(agent.id, wait=30))

    with anyio.fail_after(10):  # a liveness bound: without a wake-up it would wait 30 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            item = (await service.submit(request())).item
    assert [i.id for i in got] == [item.id]


async def test_notifier_wakes_waiters_and_times_out() -> None:
    notifier = InProcessNotifier()
    assert await notifier.wait(0.01) is False
    woken = []

    async def wait() -> None:
        woken.append(await notifier.wait(30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            notifier.notify()
    assert woken == [True, True]


async def test_notifier_keeps_a_wake_up_that_came_before_the_wait() -> None:
    notifier = InProcessNotifier()
    mark = notifier.mark()
    notifier.notify()  # arrives between "looked, found nothing" and "wait"
    with anyio.fail_after(5):
        assert await notifier.wait(30, since=mark) is True
    assert await notifier.wait(0.01, since=notifier.mark()) is False


async def test_long_poll_finds_work_whose_not_before_passed_without_a_wake_up() -> None:
    clock = FakeClock(EPOCH)
    store = MemoryStore()
    service = BrokerService(store, clock, SequentialIds(), SequentialTokens(), poll_interval=0.02)
    agent = (await service.register_agent("a1")).agent
    item = (await service.submit(request(not_before=EPOCH + timedelta(seconds=5)))).item

    async def pass_time() -> None:
        await anyio.sleep(0.05)
        clock.advance(10)  # no notify: only the periodic re-check can see it

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pass_time)
            got = await service.claim_next(agent.id, wait=5)
    assert [i.id for i in got] == [item.id]


async def test_long_poll_without_a_notifier_still_waits_and_returns_empty() -> None:
    clock = FakeClock(EPOCH)
    service = BrokerService(
        MemoryStore(), clock, SequentialIds(), SequentialTokens(), poll_interval=0.01
    )
    agent = (await service.register_agent("a1")).agent
    started = anyio.current_time()
    assert await service.claim_next(agent.id, wait=0.1) == []
    assert anyio.current_time() - started >= 0.1


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"targeting": None},
        {"targeting": {}},
        {"retry_policy": None},
        {"claim_timeout": 60},
        {"priority": 1.5},
        {"priority": True},
        {"not_before": "2030-01-01"},
        {"spec": "a\x00b", "work_type": "test"},
        {"spec": "lone \ud800 surrogate", "work_type": "test"},
        {"correlation_id": "\udfff"},
    ],
    ids=repr,
)
async def test_malformed_requests_are_refused_before_they_can_jam_the_queue(
    service: BrokerService, overrides: dict[str, object]
) -> None:
    agent = (await service.register_agent("a1")).agent
    with pytest.raises(InvalidInput):
        await service.submit(request(**overrides))
    good = (await service.submit(request())).item
    assert [i.id for i in await service.claim_next(agent.id)] == [good.id]


async def test_a_huge_retry_delay_saturates_instead_of_breaking_the_sweep(
    service: BrokerService, clock: FakeClock
) -> None:
    agent = (await service.register_agent("a1")).agent
    huge = RetryPolicy(base_delay=timedelta(days=3_000_000), max_delay=timedelta(days=3_000_000))
    await service.submit(request(retry_policy=huge, claim_timeout=timedelta(seconds=5)))
    await service.claim_next(agent.id)
    clock.advance(5)
    [swept] = await service.sweep()
    assert isinstance(swept, WorkItem)
    assert swept.not_before is not None and swept.not_before.year == 9999


async def test_waiters_are_woken_only_after_the_event_is_written() -> None:
    seen: list[int] = []
    store = MemoryStore(random_source=lambda: 0.0)
    service = BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())
    store.state._on_pending = lambda: seen.append(len(store.state._events))
    await service.submit(request())
    assert seen == [1]


# --- API traps ------------------------------------------------------------------------


async def test_a_bare_string_of_work_types_is_refused_not_split_into_letters(
    service: BrokerService,
) -> None:
    agent = (await service.register_agent("a1")).agent
    await service.submit(request(work_type="b", spec="opaque"))
    with pytest.raises(InvalidInput, match="list of work type names"):
        await service.claim_next(agent.id, "build")
    with pytest.raises(InvalidInput, match="list of work type names"):
        await service.pending(agent.id, "b")
    assert await service.pending(agent.id, []) == []
    assert await service.claim_next(agent.id, []) == []
    assert [i.work_type for i in await service.claim_next(agent.id, ["b"])] == ["b"]


async def test_a_memory_store_built_on_a_given_state_wakes_its_waiters() -> None:
    earlier: list[str] = []
    state = ReferenceStore(lambda: 0.0, on_pending=lambda: earlier.append("own"))
    store = MemoryStore(state=state)
    service = BrokerService(
        store, FakeClock(), SequentialIds(), SequentialTokens(), notifier=store.notifier
    )
    agent = (await service.register_agent("a1")).agent
    got: list[WorkItem] = []

    async def waiter() -> None:
        got.extend(await service.claim_next(agent.id, wait=30))

    with anyio.fail_after(10):  # a liveness bound: the poll interval alone would take 1 s+
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            mark = store.notifier.mark()
            item = (await service.submit(request())).item
            assert store.notifier.mark() != mark
    assert [i.id for i in got] == [item.id]
    assert earlier  # the state's own listener still runs


async def test_rotating_a_token_replaces_its_hash(service: BrokerService) -> None:
    issued = await service.register_agent("a1")
    await service.store.update_agent(issued.agent.id, token_hash=hash_token("wq_new-secret"))
    assert await service.authenticate_agent(issued.token) is None
    assert (await service.authenticate_agent("wq_new-secret")) is not None
    # update_agent (the use case) never touches the hash
    await service.update_agent(issued.agent.id, labels={"zone": "a"})
    assert (await service.authenticate_agent("wq_new-secret")) is not None


async def test_item_and_agent_labels_have_their_own_error(service: BrokerService) -> None:
    with pytest.raises(LabelError) as raised:
        await service.submit(request(labels={"team": "not valid!"}))
    assert "selector" not in str(raised.value) and raised.value.code == "invalid-labels"
    with pytest.raises(LabelError):
        await service.register_agent("a1", labels={"a/b/c": "x"})
    with pytest.raises(SelectorError, match="invalid label selector"):
        Targeting.labels("zone in (a")


async def _claimed(service: BrokerService) -> tuple[WorkItem, UUID]:
    agent = (await service.register_agent("a1")).agent
    await service.submit(request(work_type="test", spec="opaque"))
    [item] = await service.claim_next(agent.id)
    return item, agent.id


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda s, i, a: s.fail(i.token, a, Failure.retryable("R" * 257)), "reason"),
        (lambda s, i, a: s.fail(i.token, a, Failure.permanent("X", "m" * 4097)), "message"),
        (lambda s, i, a: s.fail(i.token, a, Failure.permanent("X", "é" * 2049)), "message"),
        (lambda s, i, a: s.fail(i.token, a, Failure.permanent("a\x00b")), "NUL"),
        (lambda s, i, a: s.fail(i.token, a, Failure.retryable("X"), -1), "local_retries"),
        (lambda s, i, a: s.complete(i.token, a, "r" * 65_537), "result"),
        (lambda s, i, a: s.complete(i.token, a, "r\x00"), "NUL"),
        (
            lambda s, i, a: s.complete_many([Completion(i.token, a, "r" * 65_537)]),
            "result",
        ),
        (
            lambda s, i, a: s.complete_many_quiet([Completion(i.token, a, "r" * 65_537)]),
            "result",
        ),
        (
            lambda s, i, a: s.complete_many_quiet([Completion(i.token, a)] * 1001),
            "at most 1000",
        ),
        (lambda s, i, a: s.heartbeat(i.token, a, -1), "local_retries"),
        (lambda s, i, a: s.cancel(i.id, reason="c" * 4097), "cancel reason"),
        (
            lambda s, i, a: s.update_agent(a, annotations={f"k{n}": "" for n in range(65)}),
            "annotations",
        ),
        (lambda s, i, a: s.update_agent(a, annotations={"k": "v" * 4097}), "annotation"),
        (lambda s, i, a: s.update_agent(a, annotations={"": "v"}), "annotation keys"),
        (lambda s, i, a: s.register_agent("a2", annotations={"k": "\x00"}), "NUL"),
        (lambda s, i, a: s.complete(i.token, a, "\ud800"), "Unicode"),
    ],
    ids=[
        "reason",
        "message",
        "message-bytes",
        "nul-reason",
        "negative-local-retries",
        "result",
        "nul-result",
        "batch-result",
        "quiet-batch-result",
        "quiet-batch-size",
        "heartbeat-retries",
        "cancel-reason",
        "annotation-count",
        "annotation-size",
        "annotation-key",
        "nul-annotation",
        "lone-surrogate",
    ],
)
async def test_reports_and_annotations_are_size_bounded(
    service: BrokerService,
    call: Callable[[BrokerService, WorkItem, UUID], Awaitable[object]],
    words: str,
) -> None:
    item, agent_id = await _claimed(service)
    with pytest.raises(InvalidInput, match=words):
        await call(service, item, agent_id)
    after = await service.get(item.id)
    assert after == item  # nothing changed
    assert (await service.get_agent(agent_id)).annotations == {}


async def test_reports_at_the_limits_are_accepted(service: BrokerService, clock: FakeClock) -> None:
    item, agent_id = await _claimed(service)
    retried = await service.fail(
        item.token, agent_id, Failure.retryable("R" * 256, "é" * 2048), local_retries=0
    )
    assert isinstance(retried, WorkItem) and retried.last_error is not None
    assert retried.last_error.message == "é" * 2048
    annotations = {f"k{n}": "v" * 4096 for n in range(64)}
    agent = await service.update_agent(agent_id, annotations=annotations)
    assert agent.annotations == annotations
    issued = await service.register_agent("a2")
    clock.advance(3600)
    [again] = await service.claim_next(issued.agent.id)
    record = await service.complete(again.token, issued.agent.id, "r" * 65_536)
    assert record.result == "r" * 65_536


class RequeueDuringGetStore(MemoryStore):
    """Requeues the item from the log just after ``get`` missed it, as a racing admin would."""

    def __init__(self) -> None:
        super().__init__(random_source=lambda: 0.0)
        self.race: UUID | None = None

    async def get_record(self, work_id: UUID) -> ExecutionRecord | None:
        if self.race == work_id:
            self.race = None
            await self.requeue(work_id, "racing-admin", EPOCH)
        return await super().get_record(work_id)


async def test_get_does_not_call_an_item_requeued_between_its_reads_unknown() -> None:
    store = RequeueDuringGetStore()
    service = BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())
    agent = (await service.register_agent("a1")).agent
    await service.submit(request(work_type="test", spec="opaque"))
    [item] = await service.claim_next(agent.id)
    await service.fail(item.token, agent.id, Failure.permanent("Broken"))
    store.race = item.id
    found = await service.get(item.id)
    assert isinstance(found, WorkItem) and found.status is WorkStatus.PENDING
    with pytest.raises(UnknownWork):
        await service.get(UUID(int=999))


async def test_stop_waiting_answers_long_polls_in_flight_and_later_ones_at_once() -> None:
    store = MemoryStore()
    service = BrokerService(
        store, FakeClock(EPOCH), SequentialIds(), SequentialTokens(), notifier=store.notifier
    )
    agent = (await service.register_agent("a1")).agent
    answers: list[list[WorkItem]] = []

    async def long_poll() -> None:
        answers.append(await service.claim_next(agent.id, wait=30))
        answers.append(await service.pending(agent.id, wait=30.0))

    with anyio.fail_after(10):  # a liveness bound: without stop_waiting both wait 30 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(long_poll)
            await anyio.sleep(0.05)
            service.stop_waiting()
    assert answers == [[], []]
    item = (await service.submit(request())).item
    with anyio.fail_after(10):  # work is still found, and handed out, without waiting
        got = await service.claim_next(agent.id, wait=30)
        assert await service.claim_next(agent.id, wait=30) == []
    assert [i.id for i in got] == [item.id]


async def test_a_quiet_batch_completion_answers_none_and_logs_the_record(
    service: BrokerService,
) -> None:
    item, agent_id = await _claimed(service)
    stale = attrs.evolve(item.token, attempt=item.token.attempt + 1)
    answers = await service.complete_many_quiet(
        [Completion(item.token, agent_id, "done"), Completion(stale, agent_id)]
    )
    assert answers[0] is None
    assert isinstance(answers[1], LeaseLost)
    record = await service.store.get_record(item.id)
    assert record is not None and record.status is WorkStatus.SUCCEEDED
    assert record.result == "done"
    # idempotent per token, as complete_many: the repeat is answered None again
    assert await service.complete_many_quiet([Completion(item.token, agent_id, "done")]) == [None]
