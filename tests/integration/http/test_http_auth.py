"""The auth matrix of DESIGN §7, over real HTTP: 401 without a valid token, 403 outside rights."""

from __future__ import annotations

from uuid import UUID

import attrs
import httpx
import pytest

from integration.http.support import ADMIN_TOKEN, Broker, admin_headers
from workqueue_core.domain.errors import NotClaimOwner, NotEligible
from workqueue_core.domain.models import WorkStatus
from workqueue_http.client import AuthError, BrokerClient
from workqueue_http.problems import PROBLEM_BASE

pytestmark = pytest.mark.anyio

ANY = "00000000-0000-0000-0000-0000000000ff"

API_CALLS = [
    ("POST", "/api/v1/work"),
    ("POST", "/api/v1/work/batch"),
    ("GET", "/api/v1/work"),
    ("GET", f"/api/v1/work/{ANY}"),
    ("DELETE", f"/api/v1/work/{ANY}"),
    ("GET", f"/api/v1/work/{ANY}/events"),
    ("POST", f"/api/v1/work/{ANY}/approve"),
    ("POST", f"/api/v1/work/{ANY}/requeue"),
    ("POST", f"/api/v1/work/{ANY}/claim"),
    ("POST", f"/api/v1/work/{ANY}/heartbeat"),
    ("POST", f"/api/v1/work/{ANY}/complete"),
    ("POST", f"/api/v1/work/{ANY}/fail"),
    ("POST", f"/api/v1/work/{ANY}/release"),
    ("GET", "/api/v1/work-log"),
    ("GET", f"/api/v1/agents/{ANY}/work/pending"),
    ("POST", f"/api/v1/agents/{ANY}/work/claim"),
    ("POST", f"/api/v1/agents/{ANY}/work/complete"),
    ("POST", "/api/v1/agents"),
    ("GET", "/api/v1/agents"),
    ("GET", f"/api/v1/agents/{ANY}"),
    ("PATCH", f"/api/v1/agents/{ANY}"),
    ("POST", f"/api/v1/agents/{ANY}/heartbeat"),
    ("POST", f"/api/v1/agents/{ANY}/drain"),
    ("GET", "/api/v1/stats"),
]


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == response.status_code
    return str(body["type"]).removeprefix(PROBLEM_BASE)


@attrs.frozen
class World:
    """Two agents (A in zone a, B in zone b) and one item targeted only to B."""

    a_id: UUID
    a: dict[str, str]
    b_id: UUID
    b: dict[str, str]
    only_b: UUID


async def make_world(http: httpx.AsyncClient) -> World:
    agents = []
    for name, zone in (("agent-a", "a"), ("agent-b", "b")):
        response = await http.post(
            "/api/v1/agents", json={"name": name, "labels": {"zone": zone}}, headers=admin_headers()
        )
        assert response.status_code == 201
        agents.append(response.json())
    submitted = await http.post(
        "/api/v1/work",
        json={"work_type": "test", "spec": "x", "targeting": {"selector": "zone=b"}},
        headers=admin_headers(),
    )
    assert submitted.status_code == 201
    a, b = agents
    return World(
        a_id=UUID(a["agent"]["id"]),
        a={"Authorization": f"Bearer {a['token']}"},
        b_id=UUID(b["agent"]["id"]),
        b={"Authorization": f"Bearer {b['token']}"},
        only_b=UUID(submitted.json()["work"]["item"]["id"]),
    )


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer wrong-token", "Basic YWRtaW46YWRtaW4=", f"Token {ADMIN_TOKEN}"],
    ids=["missing", "empty", "wrong", "basic", "other-scheme"],
)
async def test_every_api_route_needs_a_valid_token(
    http: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in API_CALLS:
        response = await http.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert problem_code(response) == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_health_and_metrics_need_no_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert "workqueue_http_request_duration_seconds" in metrics.text


async def test_an_agent_acts_only_as_itself(http: httpx.AsyncClient) -> None:
    w = await make_world(http)

    # A may not look at B's pending list, claim for B, or claim B's work.
    response = await http.get(f"/api/v1/agents/{w.b_id}/work/pending", headers=w.a)
    assert (response.status_code, problem_code(response)) == (403, "forbidden")
    response = await http.post(f"/api/v1/agents/{w.b_id}/work/claim", json={}, headers=w.a)
    assert (response.status_code, problem_code(response)) == (403, "forbidden")
    response = await http.post(f"/api/v1/work/{w.only_b}/claim", json={}, headers=w.a)
    assert (response.status_code, problem_code(response)) == (403, "not-eligible")
    response = await http.post(
        f"/api/v1/work/{w.only_b}/claim", json={"agent_id": str(w.b_id)}, headers=w.a
    )
    assert (response.status_code, problem_code(response)) == (403, "forbidden")

    # A's own pending list does not show B's work; B's does, and B claims it.
    own = await http.get(f"/api/v1/agents/{w.a_id}/work/pending", headers=w.a)
    assert (own.status_code, own.json()["items"]) == (200, [])
    claimed = await http.post(f"/api/v1/work/{w.only_b}/claim", json={}, headers=w.b)
    assert claimed.status_code == 200
    attempt = claimed.json()["attempt"]

    # A may not heartbeat, complete or fail B's claim, nor read it.
    token = {"attempt": attempt}
    failure = {"failure_class": "RETRYABLE", "reason": "Timeout"}
    for action, body in (
        ("heartbeat", token),
        ("complete", token),
        ("fail", {**token, "failure": failure}),
        ("release", {**token, "reason": "shutdown"}),
    ):
        response = await http.post(f"/api/v1/work/{w.only_b}/{action}", json=body, headers=w.a)
        assert (response.status_code, problem_code(response)) == (403, "not-claim-owner"), action
        spoofed = {**body, "agent_id": str(w.b_id)}
        response = await http.post(f"/api/v1/work/{w.only_b}/{action}", json=spoofed, headers=w.a)
        assert (response.status_code, problem_code(response)) == (403, "forbidden"), action
    for path in (f"/api/v1/work/{w.only_b}", f"/api/v1/work/{w.only_b}/events"):
        response = await http.get(path, headers=w.a)
        assert (response.status_code, problem_code(response)) == (403, "forbidden")
    response = await http.post(
        f"/api/v1/agents/{w.b_id}/work/complete",
        json={"completions": [{"work_id": str(w.only_b), "attempt": attempt}]},
        headers=w.a,
    )
    assert (response.status_code, problem_code(response)) == (403, "forbidden")
    for path in (f"/api/v1/agents/{w.b_id}/heartbeat", f"/api/v1/agents/{w.b_id}/drain"):
        response = await http.post(path, headers=w.a)
        assert (response.status_code, problem_code(response)) == (403, "forbidden")
    response = await http.get(f"/api/v1/agents/{w.b_id}", headers=w.a)
    assert (response.status_code, problem_code(response)) == (403, "forbidden")

    # B's claim is untouched; B reads and completes its own work.
    item = await http.get(f"/api/v1/work/{w.only_b}", headers=w.b)
    assert item.status_code == 200
    assert (item.json()["item"]["status"], item.json()["item"]["attempt"]) == ("CLAIMED", attempt)
    done = await http.post(f"/api/v1/work/{w.only_b}/complete", json=token, headers=w.b)
    assert (done.status_code, done.json()["item"]["status"]) == (200, "SUCCEEDED")


async def test_agents_cannot_do_admin_work(http: httpx.AsyncClient) -> None:
    w = await make_world(http)
    admin_only = [
        ("POST", "/api/v1/work", {"work_type": "test", "spec": "x", "targeting": {"selector": {}}}),
        (
            "POST",
            "/api/v1/work/batch",
            {"items": [{"work_type": "test", "spec": "x", "targeting": {"selector": {}}}]},
        ),
        ("GET", "/api/v1/work", None),
        ("GET", "/api/v1/work-log", None),
        ("DELETE", f"/api/v1/work/{w.only_b}", None),
        ("POST", f"/api/v1/work/{w.only_b}/approve", None),
        ("POST", f"/api/v1/work/{w.only_b}/requeue", None),
        ("POST", "/api/v1/agents", {"name": "intruder"}),
        ("GET", "/api/v1/agents", None),
        ("PATCH", f"/api/v1/agents/{w.a_id}", {"labels": {"zone": "b"}}),
        ("GET", "/api/v1/stats", None),
    ]
    for method, path, body in admin_only:
        response = await http.request(method, path, json=body, headers=w.a)
        assert (response.status_code, problem_code(response)) == (403, "forbidden"), path
    stats = await http.get("/api/v1/stats", headers=admin_headers())
    assert stats.json()["total"] == 1  # nothing an agent tried changed anything
    agent = await http.get(f"/api/v1/agents/{w.a_id}", headers=w.a)
    assert agent.json()["labels"] == {"zone": "a"}


async def test_admin_can_do_everything(http: httpx.AsyncClient) -> None:
    w = await make_world(http)
    admin = admin_headers()
    pending = await http.get(f"/api/v1/agents/{w.b_id}/work/pending", headers=admin)
    assert [i["id"] for i in pending.json()["items"]] == [str(w.only_b)]
    response = await http.post(f"/api/v1/work/{w.only_b}/claim", json={}, headers=admin)
    assert (response.status_code, problem_code(response)) == (422, "invalid-input")
    response = await http.post(
        f"/api/v1/work/{w.only_b}/claim", json={"agent_id": str(w.a_id)}, headers=admin
    )
    assert (response.status_code, problem_code(response)) == (409, "not-eligible")
    claimed = await http.post(
        f"/api/v1/work/{w.only_b}/claim", json={"agent_id": str(w.b_id)}, headers=admin
    )
    assert claimed.status_code == 200
    token = {"attempt": claimed.json()["attempt"], "agent_id": str(w.b_id)}
    beat = await http.post(f"/api/v1/work/{w.only_b}/heartbeat", json=token, headers=admin)
    assert beat.status_code == 200
    done = await http.post(f"/api/v1/work/{w.only_b}/complete", json=token, headers=admin)
    assert (done.status_code, done.json()["item"]["status"]) == (200, "SUCCEEDED")
    for method, path in (
        ("GET", "/api/v1/work"),
        ("GET", "/api/v1/work-log"),
        ("GET", f"/api/v1/work/{w.only_b}"),
        ("GET", f"/api/v1/work/{w.only_b}/events"),
        ("GET", "/api/v1/agents"),
        ("GET", f"/api/v1/agents/{w.a_id}"),
        ("POST", f"/api/v1/agents/{w.a_id}/heartbeat"),
        ("POST", f"/api/v1/agents/{w.a_id}/drain"),
        ("GET", "/api/v1/stats"),
    ):
        response = await http.request(method, path, headers=admin)
        assert response.status_code == 200, (path, response.text)


async def test_the_client_raises_typed_errors_for_auth_failures(
    http: httpx.AsyncClient, broker: Broker
) -> None:
    w = await make_world(http)
    async with BrokerClient(broker.url, "wq_not-a-real-token", retries=0) as stranger:
        with pytest.raises(AuthError) as raised:
            await stranger.stats()
        assert raised.value.status == 401
    a_token = w.a["Authorization"].removeprefix("Bearer ")
    b_token = w.b["Authorization"].removeprefix("Bearer ")
    async with (
        BrokerClient(broker.url, a_token) as agent_a,
        BrokerClient(broker.url, b_token) as agent_b,
    ):
        with pytest.raises(AuthError) as raised:
            await agent_a.pending(w.b_id)
        assert raised.value.status == 403
        with pytest.raises(NotEligible) as not_eligible:
            await agent_a.claim(w.only_b, w.a_id)
        assert (not_eligible.value.work_id, not_eligible.value.agent_id) == (w.only_b, w.a_id)
        item = await agent_b.claim(w.only_b, w.b_id)
        with pytest.raises(NotClaimOwner):
            await agent_a.complete(item.token, w.a_id)
        assert (await agent_b.complete(item.token, w.b_id)).status is WorkStatus.SUCCEEDED


async def test_requests_are_logged_without_their_tokens(http: httpx.AsyncClient) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        w = await make_world(http)
        await http.get(f"/api/v1/agents/{w.a_id}/work/pending", headers=w.a)
        await http.get("/api/v1/stats", headers={"Authorization": "Bearer wq_guessed-token"})
    requests = [
        (e["method"], e["route"], e["status"], e["caller"]) for e in logs if e["event"] == "request"
    ]
    assert ("GET", "/api/v1/agents/{agent_id}/work/pending", 200, f"agent:{w.a_id}") in requests
    assert ("GET", "/api/v1/stats", 401, None) in requests
    secrets = [ADMIN_TOKEN, w.a["Authorization"].removeprefix("Bearer "), "wq_guessed-token"]
    for entry in logs:
        text = repr(entry)
        assert not any(secret in text for secret in secrets), entry
