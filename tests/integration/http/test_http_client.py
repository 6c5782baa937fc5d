"""BrokerClient: connection errors retried with backoff, problems mapped to typed core errors."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from uuid import UUID, uuid4

import httpx
import pytest

from integration.http.support import ADMIN_TOKEN, Broker, new_service, serve
from workqueue_core.domain.errors import (
    AgentExists,
    BudgetSpent,
    InvalidInput,
    InvalidTransition,
    LabelError,
    LeaseLost,
    NotClaimable,
    NotClaimOwner,
    NotEligible,
    SchemaMismatch,
    SelectorError,
    SpecError,
    SpecTooLarge,
    StoreUnavailable,
    UnknownAgent,
    UnknownWork,
    WorkCancelled,
    WorkqueueError,
)
from workqueue_core.domain.models import ClaimToken, Failure, SubmitRequest, Targeting, WorkItem
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing import FakeClock
from workqueue_http.client import BrokerClient, BrokerError, BrokerUnreachable
from workqueue_http.problems import Problem, error_for_problem, problem_for_error
from workqueue_http.server import create_app

pytestmark = pytest.mark.anyio


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fails the first ``failures`` requests with ``error``, then forwards to a real transport."""

    def __init__(self, failures: int, error: type[httpx.TransportError]) -> None:
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error("simulated failure", request=request)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


def client(broker: Broker, transport: httpx.AsyncBaseTransport, retries: int) -> BrokerClient:
    return BrokerClient(
        broker.url, ADMIN_TOKEN, retries=retries, transport=transport, backoff=0.001
    )


async def test_connection_errors_are_retried_until_they_pass(broker: Broker) -> None:
    transport = FlakyTransport(2, httpx.ConnectError)
    async with client(broker, transport, retries=3) as admin:
        stats = await admin.stats()
    assert stats.total() == 0
    assert transport.attempts == 3


async def test_retries_run_out_with_broker_unreachable(broker: Broker) -> None:
    transport = FlakyTransport(10, httpx.ConnectError)
    async with client(broker, transport, retries=2) as admin:
        with pytest.raises(BrokerUnreachable) as raised:
            await admin.stats()
    assert isinstance(raised.value, StoreUnavailable)
    assert transport.attempts == 3


async def test_connect_errors_are_retried_even_for_claims(broker: Broker) -> None:
    admin_agent = await _register(broker, "claimer")
    transport = FlakyTransport(1, httpx.ConnectError)
    async with client(broker, transport, retries=1) as admin:
        assert await admin.claim_next(admin_agent, limit=1) == []
    assert transport.attempts == 2


async def test_read_errors_are_not_retried_for_claims_but_are_for_reads(broker: Broker) -> None:
    agent_id = await _register(broker, "reader")
    transport = FlakyTransport(1, httpx.ReadError)
    async with client(broker, transport, retries=3) as admin:
        with pytest.raises(BrokerUnreachable):
            await admin.claim_next(agent_id, limit=1)  # may have been applied: not repeated
        assert transport.attempts == 1
    transport = FlakyTransport(1, httpx.ReadError)
    async with client(broker, transport, retries=3) as admin:
        assert (await admin.get_agent(agent_id)).name == "reader"
    assert transport.attempts == 2


async def test_a_refused_connection_is_broker_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    async with BrokerClient(f"http://127.0.0.1:{port}", "t", retries=2, backoff=0.001) as c:
        with pytest.raises(BrokerUnreachable, match="ConnectError"):
            await c.stats()


async def _register(broker: Broker, name: str) -> UUID:
    async with BrokerClient(broker.url, ADMIN_TOKEN) as admin:
        return (await admin.register_agent(name)).agent.id


async def test_problems_come_back_as_typed_errors(broker: Broker) -> None:
    async with BrokerClient(broker.url, ADMIN_TOKEN) as admin:
        missing = uuid4()
        with pytest.raises(UnknownWork) as unknown:
            await admin.get(missing)
        assert unknown.value.work_id == missing
        with pytest.raises(UnknownAgent) as unknown_agent:
            await admin.get_agent(missing)
        assert unknown_agent.value.agent_id == missing
        agent = (await admin.register_agent("worker", {"zone": "a"})).agent
        with pytest.raises(AgentExists):
            await admin.register_agent("worker")
        with pytest.raises(SpecError) as spec:
            await admin.submit(
                SubmitRequest(work_type="job", spec="kind: Work\n", targeting=Targeting.everyone())
            )
        assert spec.value.detail
        item = (
            await admin.submit(
                SubmitRequest(work_type="test", spec="x", targeting=Targeting.labels("zone=a"))
            )
        ).item
        assert isinstance(item, WorkItem)
        with pytest.raises(InvalidTransition) as transition:
            await admin.approve(item.id)
        assert (transition.value.status, transition.value.event) == ("PENDING", "approve")
        other = (await admin.register_agent("other", {"zone": "b"})).agent
        with pytest.raises(NotEligible) as not_eligible:
            await admin.claim(item.id, other.id)
        assert not_eligible.value.agent_id == other.id
        claimed = await admin.claim(item.id, agent.id)
        with pytest.raises(NotClaimable):
            await admin.claim(item.id, agent.id)
        with pytest.raises(NotClaimOwner):
            await admin.heartbeat(claimed.token, other.id)
        with pytest.raises(LeaseLost) as lost:
            await admin.heartbeat(ClaimToken(item.id, 7), agent.id)
        assert (lost.value.work_id, lost.value.attempt) == (item.id, 7)
        with pytest.raises(BudgetSpent) as spent:
            await admin.heartbeat(claimed.token, agent.id, local_retries=50)
        assert spent.value.limit == 4
        await admin.cancel(item.id, reason="stop")
        with pytest.raises(WorkCancelled):
            await admin.fail(claimed.token, agent.id, Failure.retryable("x"))
        with pytest.raises(InvalidInput):
            await admin.claim_next(agent.id, limit=0)


ERRORS: list[WorkqueueError] = [
    UnknownWork(UUID(int=1)),
    UnknownAgent(UUID(int=2)),
    InvalidTransition(UUID(int=1), "PENDING", "approve"),
    NotClaimable(UUID(int=1), "it is CLAIMED"),
    NotEligible(UUID(int=1), UUID(int=2), "the agent is DRAINING"),
    LeaseLost(UUID(int=1), 3, "the claim is no longer held"),
    WorkCancelled(UUID(int=1), 2),
    NotClaimOwner(UUID(int=1), UUID(int=2)),
    BudgetSpent(UUID(int=1), 4),
    AgentExists("agent 'a' exists"),
    InvalidInput("limit must be in 1..1000"),
    SelectorError("expected a value", 7),
    LabelError("bad key"),
    SpecError("mapping expected", "spec.template"),
    SpecTooLarge("too big"),
    StoreUnavailable("connection refused"),
    SchemaMismatch("not migrated"),
]


@pytest.mark.parametrize("error", ERRORS, ids=[type(e).__name__ for e in ERRORS])
def test_every_core_error_survives_the_wire(error: WorkqueueError) -> None:
    import msgspec

    problem = problem_for_error(error)
    assert problem.type == f"https://workqueue.dev/problems/{error.code}"
    wire = msgspec.json.decode(msgspec.json.encode(problem), type=Problem)
    back = error_for_problem(wire)
    assert type(back) is type(error)
    assert str(back) == str(error)
    for name in ("work_id", "agent_id", "attempt", "reason", "limit", "position", "path"):
        assert getattr(back, name, None) == getattr(error, name, None), name


MIRRORED = [
    "submit",
    "get",
    "list_work",
    "list_log",
    "pending",
    "claim",
    "claim_next",
    "heartbeat",
    "complete",
    "complete_many",
    "complete_many_quiet",
    "fail",
    "cancel",
    "approve",
    "requeue",
    "events",
    "stats",
    "register_agent",
    "get_agent",
    "list_agents",
    "update_agent",
    "drain_agent",
    "agent_heartbeat",
]


@pytest.mark.parametrize("name", MIRRORED)
def test_the_client_mirrors_the_service(name: str) -> None:
    service_method = getattr(BrokerService, name)
    client_method = getattr(BrokerClient, name)
    assert inspect.iscoroutinefunction(client_method)
    assert inspect.signature(client_method) == inspect.signature(service_method)


class UnavailableStore:
    """A store that has lost its connection: every call raises StoreUnavailable."""

    def __getattr__(self, name: str) -> object:
        async def unavailable(*args: object, **kwargs: object) -> object:
            raise StoreUnavailable("connection to the store lost")

        return unavailable


@pytest.fixture
def broken_broker() -> Iterator[str]:
    service = new_service(FakeClock())
    service.store = UnavailableStore()  # type: ignore[assignment]
    with serve(create_app(service, admin_tokens=[ADMIN_TOKEN])) as url:
        yield url


async def test_an_unavailable_store_is_503_and_store_unavailable(broken_broker: str) -> None:
    async with httpx.AsyncClient(base_url=broken_broker) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["type"] == "https://workqueue.dev/problems/not-ready"
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
    async with BrokerClient(broken_broker, ADMIN_TOKEN, retries=0) as admin:
        with pytest.raises(StoreUnavailable, match="connection to the store lost"):
            await admin.stats()
    async with BrokerClient(broken_broker, "wq_agent-token", retries=0) as agent:
        with pytest.raises(StoreUnavailable):
            await agent.stats()  # resolving the agent token needs the store


async def test_non_problem_errors_are_broker_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/stats":
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(418, json={"not": "a problem"})

    transport = httpx.MockTransport(handler)
    async with BrokerClient("http://broker", "t", transport=transport) as c:
        with pytest.raises(StoreUnavailable):
            await c.stats()
        with pytest.raises(BrokerError) as raised:
            await c.list_agents()
        assert raised.value.status == 418
