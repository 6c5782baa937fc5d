"""Agents over real HTTP: who a token is, rotation and revocation, last seen, unknown agents,
the bound on listed agent ids, and what a former holder may read."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID, uuid4

import httpx
import pytest

from integration.http.support import Broker, admin_headers
from integration.http.test_http_auth import API_CALLS, problem_code
from workqueue_core.domain.limits import MAX_AGENT_IDS
from workqueue_core.domain.models import SubmitRequest, Targeting, WorkItem
from workqueue_http.client import BrokerClient

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_agent_token_finds_its_own_agent_and_an_admin_token_none(
    admin: BrokerClient, broker: Broker, http: httpx.AsyncClient
) -> None:
    issued = await admin.register_agent("me")
    async with BrokerClient(broker.url, issued.token, retries=0) as agent:
        assert (await agent.whoami()).id == issued.agent.id
    response = await http.get("/api/v1/agents/me", headers=admin_headers())
    assert (response.status_code, problem_code(response)) == (403, "forbidden")


async def test_a_rotated_or_revoked_token_gets_401_on_every_route_at_once(
    admin: BrokerClient, http: httpx.AsyncClient
) -> None:
    issued = await admin.register_agent("rotating")
    old = bearer(issued.token)
    assert (await http.get("/api/v1/agents/me", headers=old)).status_code == 200
    rotated = await http.post(f"/api/v1/agents/{issued.agent.id}/token", headers=admin_headers())
    assert rotated.status_code == 200
    new = bearer(rotated.json()["token"])
    for method, path in API_CALLS:
        response = await http.request(method, path, headers=old, json={})
        assert (response.status_code, problem_code(response)) == (401, "unauthorized"), path
    assert (await http.get("/api/v1/agents/me", headers=new)).status_code == 200

    revoked = await http.post(f"/api/v1/agents/{issued.agent.id}/revoke", headers=admin_headers())
    assert (revoked.status_code, revoked.json()["status"]) == (200, "INACTIVE")
    for method, path in [*API_CALLS, ("GET", "/api/v1/agents/me")]:
        response = await http.request(method, path, headers=new, json={})
        assert (response.status_code, problem_code(response)) == (401, "unauthorized"), path


async def test_an_agent_made_inactive_by_patch_is_refused_too(
    admin: BrokerClient, http: httpx.AsyncClient
) -> None:
    issued = await admin.register_agent("parked")
    await http.patch(
        f"/api/v1/agents/{issued.agent.id}", json={"status": "INACTIVE"}, headers=admin_headers()
    )
    response = await http.post(
        f"/api/v1/agents/{issued.agent.id}/heartbeat", headers=bearer(issued.token)
    )
    assert response.status_code == 401


async def test_any_authenticated_agent_call_counts_as_seen(
    admin: BrokerClient, broker: Broker
) -> None:
    issued = await admin.register_agent("seen")
    assert (await admin.get_agent(issued.agent.id)).last_seen_at is None
    async with BrokerClient(broker.url, issued.token, retries=0) as agent:
        assert await agent.claim_next(issued.agent.id) == []
    seen = await admin.get_agent(issued.agent.id)
    assert seen.last_seen_at == broker.clock.now()


FAILURE = {"failure_class": "RETRYABLE", "reason": "X"}
ACTING_FOR: dict[str, Callable[[str, str], tuple[str, dict[str, object]]]] = {
    "complete-many": lambda agent, work: (
        f"/api/v1/agents/{agent}/work/complete",
        {"completions": [{"work_id": work, "attempt": 1}]},
    ),
    "complete": lambda agent, work: (
        f"/api/v1/work/{work}/complete",
        {"attempt": 1, "agent_id": agent},
    ),
    "heartbeat": lambda agent, work: (
        f"/api/v1/work/{work}/heartbeat",
        {"attempt": 1, "agent_id": agent},
    ),
    "release": lambda agent, work: (
        f"/api/v1/work/{work}/release",
        {"attempt": 1, "agent_id": agent},
    ),
    "fail": lambda agent, work: (
        f"/api/v1/work/{work}/fail",
        {"attempt": 1, "agent_id": agent, "failure": FAILURE},
    ),
}


@pytest.mark.parametrize("route", sorted(ACTING_FOR))
async def test_an_admin_acting_for_an_unknown_agent_gets_404_unknown_agent(
    admin: BrokerClient, http: httpx.AsyncClient, route: str
) -> None:
    known = await admin.register_agent("known")
    item = (await admin.submit(SubmitRequest("test", "x", Targeting.everyone()))).item
    claimed = await admin.claim(item.id, known.agent.id)
    path, body = ACTING_FOR[route](str(uuid4()), str(item.id))
    response = await http.post(path, json=body, headers=admin_headers())
    assert (response.status_code, problem_code(response)) == (404, "unknown-agent")
    assert (await admin.get(item.id)) == claimed  # nothing changed


async def test_targeting_lists_at_most_max_agent_ids(http: httpx.AsyncClient) -> None:
    ids = [str(UUID(int=n)) for n in range(1, MAX_AGENT_IDS + 2)]
    body = {"work_type": "test", "spec": "x", "targeting": {"agent_ids": ids}}
    response = await http.post("/api/v1/work", json=body, headers=admin_headers())
    assert (response.status_code, problem_code(response)) == (422, "invalid-input")
    assert f"the limit is {MAX_AGENT_IDS}" in response.json()["detail"]
    body["targeting"] = {"agent_ids": ids[:MAX_AGENT_IDS]}
    response = await http.post("/api/v1/work", json=body, headers=admin_headers())
    assert response.status_code == 201


async def test_a_former_holder_reads_only_what_it_finished(
    admin: BrokerClient, broker: Broker, http: httpx.AsyncClient
) -> None:
    """docs/api.md: an agent reads items it holds now and the records of runs it ended."""
    issued = await admin.register_agent("holder")
    headers = bearer(issued.token)
    async with BrokerClient(broker.url, issued.token, retries=0) as agent:
        first = (await admin.submit(SubmitRequest("test", "x", Targeting.everyone()))).item
        assert isinstance(first, WorkItem)
        (claimed,) = await agent.claim_next(issued.agent.id)
        assert (await http.get(f"/api/v1/work/{first.id}", headers=headers)).status_code == 200
        await agent.release(claimed.token, issued.agent.id, "handing back")
        response = await http.get(f"/api/v1/work/{first.id}", headers=headers)
        assert (response.status_code, problem_code(response)) == (403, "forbidden")
        (again,) = await agent.claim_next(issued.agent.id)
        await agent.complete(again.token, issued.agent.id, "done")
    for path in (f"/api/v1/work/{first.id}", f"/api/v1/work/{first.id}/events"):
        assert (await http.get(path, headers=headers)).status_code == 200
