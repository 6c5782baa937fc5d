"""``POST /work/batch``: several submissions in one request, each standing alone."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from integration.http.support import ADMIN_TOKEN, Broker, admin_headers, serve
from workqueue_core.domain.errors import InvalidInput, StoreUnavailable
from workqueue_core.domain.limits import MAX_BATCH
from workqueue_core.domain.models import (
    SubmitRequest,
    SubmitResult,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing import FakeClock, SequentialIds, SequentialTokens
from workqueue_http.client import BrokerClient
from workqueue_http.server import create_app
from workqueue_memory import MemoryStore

pytestmark = pytest.mark.anyio


def work(**fields: object) -> SubmitRequest:
    values: dict[str, object] = {
        "work_type": "test",
        "spec": "run the tests",
        "targeting": Targeting.everyone(),
    }
    values.update(fields)
    return SubmitRequest(**values)  # type: ignore[arg-type]


def body(spec: str, **fields: object) -> dict[str, object]:
    return {"work_type": "test", "spec": spec, "targeting": {"selector": {}}, **fields}


async def test_entries_are_stored_in_order_and_keys_answer_the_original(
    admin: BrokerClient,
) -> None:
    first = (await admin.submit(work(spec="earlier", idempotency_key="k-1"))).item
    results = await admin.submit_many(
        [
            work(spec="one"),
            work(spec="again", idempotency_key="k-1"),  # used before: the original
            work(spec="two", labels={"n": "2"}, priority=3),
            work(spec="three", idempotency_key="k-2"),
            work(spec="three again", idempotency_key="k-2"),  # used in this very batch
        ]
    )
    assert [type(r).__name__ for r in results] == ["SubmitResult"] * 5
    created = [r.created for r in results]  # type: ignore[union-attr]
    assert created == [True, False, True, True, False]
    items = [r.item for r in results]  # type: ignore[union-attr]
    assert items[1].id == first.id and items[1].spec == "earlier"
    assert items[4].id == items[3].id
    assert [i.spec for i in items] == ["one", "earlier", "two", "three", "three"]
    queued = await admin.list_work(WorkQuery(limit=100))
    assert sorted(i.spec for i in queued) == ["earlier", "one", "three", "two"]
    stored = {i.id: i for i in queued}
    two = stored[items[2].id]
    assert isinstance(two, WorkItem)
    assert (two.priority, dict(two.labels), two.status) == (3, {"n": "2"}, WorkStatus.PENDING)


async def test_a_bad_entry_gets_its_problem_and_the_others_are_stored(
    broker: Broker, http: httpx.AsyncClient, admin: BrokerClient
) -> None:
    response = await http.post(
        "/api/v1/work/batch",
        headers=admin_headers(),
        json={
            "items": [
                body("fine"),
                body("bad selector", targeting={"selector": "zone in (a"}),
                body("bad text", correlation_id="nul\x00"),
                body("also fine"),
            ]
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["error"] is None for r in results] == [True, False, False, True]
    assert results[1]["error"]["status"] == 422 and results[1]["work"] is None
    assert results[2]["error"]["status"] == 422
    assert [r["work"]["item"]["spec"] for r in results if r["work"]] == ["fine", "also fine"]
    assert sorted(i.spec for i in await admin.list_work(WorkQuery())) == ["also fine", "fine"]
    # the client turns an entry's problem into the typed error a single submit raises
    ok, bad = await admin.submit_many([work(spec="typed"), work(correlation_id="nul\x00")])
    assert isinstance(ok, SubmitResult) and ok.created and ok.item.spec == "typed"
    assert isinstance(bad, InvalidInput)


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
async def test_an_empty_or_oversized_batch_is_refused_whole(
    http: httpx.AsyncClient, admin: BrokerClient, count: int
) -> None:
    response = await http.post(
        "/api/v1/work/batch",
        headers=admin_headers(),
        json={"items": [body(f"item {i}") for i in range(count)]},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await admin.list_work(WorkQuery()) == []


async def test_the_client_splits_large_batches(admin: BrokerClient) -> None:
    requests = [work(spec=f"item {i}") for i in range(MAX_BATCH + 5)]
    results = await admin.submit_many(requests)
    assert len(results) == MAX_BATCH + 5
    assert all(isinstance(r, SubmitResult) and r.created for r in results)
    stats = await admin.stats()
    assert stats.total(WorkStatus.PENDING) == MAX_BATCH + 5


async def test_only_admins_submit_batches(broker: Broker, admin: BrokerClient) -> None:
    agent = await admin.register_agent("agent-a")
    async with httpx.AsyncClient(base_url=broker.url) as http:
        as_agent = await http.post(
            "/api/v1/work/batch",
            headers={"Authorization": f"Bearer {agent.token}"},
            json={"items": [body("x")]},
        )
        anonymous = await http.post("/api/v1/work/batch", json={"items": [body("x")]})
        as_admin = await http.post(
            "/api/v1/work/batch",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"items": [body("x")]},
        )
    assert (as_agent.status_code, anonymous.status_code, as_admin.status_code) == (403, 401, 200)
    assert len(await admin.list_work(WorkQuery())) == 1


class FailingAfter(MemoryStore):
    """A store whose submits fail as unreachable after the first ``good`` ones."""

    def __init__(self, good: int) -> None:
        super().__init__(random_source=lambda: 0.0)
        self.good = good
        self.calls = 0

    async def submit(self, item: WorkItem, actor: str, now: datetime) -> SubmitResult:
        self.calls += 1
        if self.calls > self.good:
            raise StoreUnavailable("the database went away")
        return await super().submit(item, actor, now)


@pytest.mark.parametrize("good", [0, 2])
async def test_a_store_failure_stops_the_batch_where_it_happened(good: int) -> None:
    store = FailingAfter(good)
    service = BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())
    with serve(create_app(service, admin_tokens=[ADMIN_TOKEN])) as url:
        async with httpx.AsyncClient(base_url=url, headers=admin_headers()) as http:
            response = await http.post(
                "/api/v1/work/batch", json={"items": [body(f"item {i}") for i in range(5)]}
            )
    assert store.calls == good + 1  # no entry after the failure was tried
    if good == 0:  # nothing stored: the request failed as a whole
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["work"]["item"]["spec"] for r in results[:good]] == ["item 0", "item 1"]
    assert [r["error"]["status"] for r in results[good:]] == [503] * (5 - good)
    assert all(r["work"] is None for r in results[good:])


async def test_the_idempotency_key_header_is_refused_for_a_batch(
    http: httpx.AsyncClient, admin: BrokerClient
) -> None:
    response = await http.post(
        "/api/v1/work/batch",
        headers={**admin_headers(), "Idempotency-Key": "k"},
        json={"items": [body("x")]},
    )
    assert response.status_code == 422, response.text
    assert await admin.list_work(WorkQuery()) == []


@pytest.mark.parametrize("key", ["  spaced  ", "clé-ünïcode-鍵"])
async def test_any_key_the_broker_accepts_goes_through_the_client(
    admin: BrokerClient, key: str
) -> None:
    first = await admin.submit(work(spec="first", idempotency_key=key))
    again = await admin.submit(work(spec="second", idempotency_key=key))
    [batched] = await admin.submit_many([work(spec="third", idempotency_key=key)])
    assert first.created and not again.created
    assert isinstance(batched, SubmitResult) and not batched.created
    assert again.item.id == first.item.id == batched.item.id
    assert first.item.idempotency_key == key


@pytest.mark.parametrize("good", [0, MAX_BATCH + 2])
async def test_the_client_keeps_what_was_stored_when_a_later_request_fails(good: int) -> None:
    """Requests 1 and 2 store ``good`` items, the rest fail; nothing earlier is lost."""
    store = FailingAfter(good)
    service = BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())
    requests = [work(spec=f"item {i}") for i in range(2 * MAX_BATCH + 10)]
    with serve(create_app(service, admin_tokens=[ADMIN_TOKEN])) as url:
        async with BrokerClient(url, ADMIN_TOKEN, retries=0) as client:
            if good == 0:  # nothing stored: the error itself is raised
                with pytest.raises(StoreUnavailable):
                    await client.submit_many(requests)
                assert store.calls == 1
                return
            results = await client.submit_many(requests)
            stats = await client.stats()
    # request 1 stored all; request 2 stored 2, then its entries carry the 503; request 3
    # failed as a whole (503 before storing), so its entries carry that error too
    assert store.calls == good + 2
    assert len(results) == len(requests)
    stored = [r for r in results if isinstance(r, SubmitResult)]
    assert [r.item.spec for r in stored] == [f"item {i}" for i in range(good)]
    assert all(isinstance(r, StoreUnavailable) for r in results[good:])
    assert stats.total(WorkStatus.PENDING) == good
