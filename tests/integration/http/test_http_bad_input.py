"""Bad input over real HTTP: each gets its specific 4xx and problem type, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration.http.support import (
    BUILD_WORK,
    Broker,
    admin_headers,
    running_broker,
    server_errors,
)
from workqueue_http.nesting import MAX_JSON_DEPTH
from workqueue_http.problems import PROBLEM_BASE

pytestmark = pytest.mark.anyio

MISSING = "00000000-0000-0000-0000-0000000000ee"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """One broker for the module (each test checks only what it changes); never a 5xx."""
    with running_broker() as running:
        yield running
        assert server_errors(running) == []


async def total(http: httpx.AsyncClient) -> int:
    stats = await http.get("/api/v1/stats", headers=admin_headers())
    return int(stats.json()["total"])


def submit_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"work_type": "test", "spec": "x", "targeting": {"selector": {}}}
    body.update(fields)
    return body


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    assert body["detail"]
    return body


async def submit(http: httpx.AsyncClient, body: Any) -> httpx.Response:
    """POST /work with ``body`` as JSON, or as raw text when it is a string."""
    if isinstance(body, str):
        headers = {**admin_headers(), "Content-Type": "application/json"}
        return await http.post("/api/v1/work", content=body.encode(), headers=headers)
    return await http.post("/api/v1/work", json=body, headers=admin_headers())


ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "expected"),
    [
        (submit_body(work_type="build", spec="a: [unclosed"), 422, "invalid-spec", None, None),
        (submit_body(work_type="build", spec=ALIAS_BOMB), 422, "invalid-spec", None, None),
        (
            submit_body(work_type="build", spec=BUILD_WORK.replace("image: registry", "imag: r")),
            422,
            "invalid-spec",
            "path",
            "spec.template",
        ),
        (
            submit_body(work_type="build", spec="apiVersion: v1\nkind: ConfigMap\n"),
            422,
            "invalid-spec",
            None,
            None,
        ),
        (
            submit_body(work_type="job", spec=BUILD_WORK),
            422,
            "invalid-spec",
            "path",
            "spec.workType",
        ),
        (
            submit_body(targeting={"selector": "zone in (a,b"}),
            422,
            "invalid-selector",
            "position",
            None,
        ),
        (
            submit_body(
                targeting={"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}
            ),
            422,
            "invalid-selector",
            None,
            None,
        ),
        (submit_body(targeting={}), 422, "invalid-input", None, None),
        (submit_body(retry_policy={"max_retries": -1}), 422, "invalid-input", None, None),
        (
            '{"work_type": "t", "spec": "x", "targeting": {}, "claim_timeout": 1e999}',
            400,
            "bad-request",
            None,
            None,
        ),
        (
            '{"work_type": "t", "spec": "\\ud800", "targeting": {"selector": {}}}',
            400,
            "bad-request",
            None,
            None,
        ),
        (submit_body(retry_policy={"base_delay": 1e300}), 422, "invalid-input", None, None),
        (submit_body(retry_policy={"multiplier": 0.5}), 422, "invalid-input", None, None),
        (submit_body(claim_timeout=-5), 422, "invalid-input", None, None),
        (submit_body(claim_timeout=10**30), 422, "invalid-input", None, None),
        (submit_body(priority=10**6), 422, "invalid-input", None, None),
        (submit_body(priority=10**30), 422, "invalid-input", None, None),
        (submit_body(priority="high"), 400, "bad-request", None, None),
        (submit_body(work_type="Not A Type!"), 422, "invalid-input", None, None),
        (submit_body(spec="nul\x00byte"), 422, "invalid-input", None, None),
        (submit_body(labels={"bad key!": "v"}), 422, "invalid-labels", None, None),
        (submit_body(not_before="2030-01-01T00:00:00"), 400, "bad-request", None, None),
        (submit_body(callback_url="ftp://example.com"), 422, "invalid-input", None, None),
        ({"spec": "x"}, 400, "bad-request", None, None),
        ([1, 2, 3], 400, "bad-request", None, None),
    ],
    ids=[
        "invalid-yaml",
        "alias-bomb",
        "build-without-output-image",
        "build-not-a-work-resource",
        "wrong-work-type",
        "invalid-selector-text",
        "invalid-selector-operator",
        "no-targeting",
        "negative-max-retries",
        "infinite-delay",
        "lone-surrogate",
        "huge-delay",
        "multiplier-below-one",
        "negative-claim-timeout",
        "huge-claim-timeout",
        "priority-out-of-range",
        "priority-overflows-int64",
        "priority-not-a-number",
        "bad-work-type",
        "nul-in-spec",
        "bad-label-key",
        "naive-not-before",
        "non-http-callback",
        "missing-fields",
        "not-an-object",
    ],
)
async def test_bad_submits_get_their_specific_problem(
    http: httpx.AsyncClient,
    body: Any,
    status: int,
    code: str,
    field: str | None,
    expected: str | None,
) -> None:
    before = await total(http)
    response = await submit(http, body)
    assert response.status_code == status, response.text
    details = problem(response)
    assert details["type"] == PROBLEM_BASE + code
    if field is not None:
        assert field in details, details
        if expected is not None:
            assert str(details[field]).startswith(expected), details
    assert await total(http) == before


def refused_for_depth(response: httpx.Response) -> None:
    """``response`` is the 400 of a body nested deeper than the limit, naming the limit."""
    assert response.status_code == 400, response.text
    details = problem(response)
    assert details["type"] == PROBLEM_BASE + "bad-request"
    assert details["limit"] == MAX_JSON_DEPTH
    assert f"limit of {MAX_JSON_DEPTH} levels" in details["detail"]


def deep_selector(depth: int, *, arrays: bool = False) -> str:
    """A selector (as JSON text) nesting ``depth`` levels itself."""
    if arrays:
        return '{"matchLabels":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def submit_text(selector: str) -> str:
    """A submit body around ``selector``: two levels above it."""
    return '{"work_type": "t", "spec": "x", "targeting": {"selector": ' + selector + "}}"


@pytest.mark.parametrize(
    "selector",
    ['{"a":' * 5000 + "1" + "}" * 5000, '{"matchLabels":' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["deep-objects", "deep-arrays"],
)
async def test_deeply_nested_json_is_400(http: httpx.AsyncClient, selector: str) -> None:
    before = await total(http)
    refused_for_depth(await submit(http, submit_text(selector)))
    assert await total(http) == before


@pytest.mark.parametrize("arrays", [False, True], ids=["objects", "arrays"])
async def test_a_submit_at_the_depth_limit_is_decoded_and_one_more_is_refused(
    http: httpx.AsyncClient, arrays: bool
) -> None:
    before = await total(http)
    at_limit = submit_text(deep_selector(MAX_JSON_DEPTH - 2, arrays=arrays))
    response = await submit(http, at_limit)
    # Decoded: the service judges the (invalid) selector.
    assert (response.status_code, problem(response)["type"]) == (
        422,
        PROBLEM_BASE + "invalid-selector",
    ), response.text
    refused_for_depth(await submit(http, submit_text(deep_selector(MAX_JSON_DEPTH - 1))))
    assert await total(http) == before


async def test_brackets_inside_strings_do_not_count(http: httpx.AsyncClient) -> None:
    before = await total(http)
    text = '[{"\\' * 2000 + "]}" * 100
    response = await submit(http, submit_body(spec=text, correlation_id="[" * 200))
    assert response.status_code == 201, response.text
    assert response.json()["work"]["item"]["spec"] == text
    assert await total(http) == before + 1


async def submit_batch(http: httpx.AsyncClient, *items: str) -> httpx.Response:
    """POST /work/batch with ``items`` given as JSON text."""
    body = '{"items": [' + ", ".join(items) + "]}"
    headers = {**admin_headers(), "Content-Type": "application/json"}
    return await http.post("/api/v1/work/batch", content=body.encode(), headers=headers)


async def test_a_batch_submit_deeper_than_the_limit_is_refused_whole(
    http: httpx.AsyncClient,
) -> None:
    before = await total(http)
    good = json.dumps(submit_body())
    # items [ { targeting { selector: four levels above the selector.
    deep = '{"work_type": "t", "spec": "x", "targeting": {"selector": %s}}'
    at_limit = deep % deep_selector(MAX_JSON_DEPTH - 4)
    response = await submit_batch(http, good, at_limit)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["created"] is True
    assert results[1]["error"]["type"] == PROBLEM_BASE + "invalid-selector"
    over = deep % deep_selector(MAX_JSON_DEPTH - 3, arrays=True)
    response = await submit_batch(http, good, over)
    refused_for_depth(response)
    assert await total(http) == before + 1


@pytest.mark.parametrize(
    ("path", "body", "shallower_status", "shallower_code"),
    [
        (
            f"/api/v1/work/{MISSING}/complete",
            '{"attempt": 1, "result": null, "x": %s}',
            422,
            "invalid-input",  # decoded: the admin names no agent
        ),
        (f"/api/v1/agents/{MISSING}/work/complete", '{"completions": %s}', 400, "bad-request"),
        (f"/api/v1/agents/{MISSING}/work/claim", '{"work_types": %s}', 400, "bad-request"),
    ],
    ids=["complete", "complete-many", "claim-next"],
)
async def test_other_json_routes_refuse_deep_bodies_before_anything_else(
    http: httpx.AsyncClient, path: str, body: str, shallower_status: int, shallower_code: str
) -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH  # in the body: one level more
    headers = {**admin_headers(), "Content-Type": "application/json"}
    refused_for_depth(await http.post(path, content=(body % deep).encode(), headers=headers))
    shallower = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    response = await http.post(path, content=(body % shallower).encode(), headers=headers)
    details = problem(response)
    assert (response.status_code, details["type"]) == (
        shallower_status,
        PROBLEM_BASE + shallower_code,
    )
    assert "limit" not in details, details


async def test_alias_bomb_names_the_aliases(http: httpx.AsyncClient) -> None:
    details = problem(await submit(http, submit_body(work_type="build", spec=ALIAS_BOMB)))
    assert "alias" in details["detail"].lower()


async def test_a_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    big = submit_body(spec="x" * (5 * 1024 * 1024))
    response = await submit(http, big)
    assert response.status_code == 413
    assert problem(response)["type"] == PROBLEM_BASE + "body-too-large"


async def test_a_chunked_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(6):
            yield b"x" * (1024 * 1024)

    response = await http.post(
        "/api/v1/work",
        content=chunks(),
        headers={**admin_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert problem(response)["type"] == PROBLEM_BASE + "body-too-large"


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("GET", f"/api/v1/work/{MISSING}", None, "unknown-work"),
        ("DELETE", f"/api/v1/work/{MISSING}", None, "unknown-work"),
        ("GET", f"/api/v1/work/{MISSING}/events", None, "unknown-work"),
        ("POST", f"/api/v1/work/{MISSING}/approve", None, "unknown-work"),
        ("POST", f"/api/v1/work/{MISSING}/requeue", None, "unknown-work"),
        ("POST", f"/api/v1/work/{MISSING}/heartbeat", {"attempt": 1, "agent_id": MISSING}, None),
        ("GET", f"/api/v1/agents/{MISSING}", None, "unknown-agent"),
        ("GET", f"/api/v1/agents/{MISSING}/work/pending", None, "unknown-agent"),
        ("POST", f"/api/v1/agents/{MISSING}/work/claim", {}, "unknown-agent"),
        ("PATCH", f"/api/v1/agents/{MISSING}", {"labels": {}}, "unknown-agent"),
        ("POST", f"/api/v1/agents/{MISSING}/drain", None, "unknown-agent"),
        ("POST", f"/api/v1/agents/{MISSING}/heartbeat", None, "unknown-agent"),
        ("GET", "/api/v1/work/not-a-uuid", None, "route-not-found"),
        ("GET", "/api/v1/nothing-here", None, "route-not-found"),
    ],
)
async def test_unknown_ids_are_404(
    http: httpx.AsyncClient, method: str, path: str, body: Any, code: str | None
) -> None:
    response = await http.request(method, path, json=body, headers=admin_headers())
    assert response.status_code == 404, response.text
    details = problem(response)
    if code is not None:
        assert details["type"] == PROBLEM_BASE + code


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/v1/work", {"limit": 0}, "invalid-input"),
        ("/api/v1/work", {"limit": 100_000}, "invalid-input"),
        ("/api/v1/work", {"limit": "many"}, "bad-request"),
        ("/api/v1/work", {"after": "not-a-cursor"}, "invalid-input"),
        ("/api/v1/work", {"status": "SLEEPING"}, "bad-request"),
        ("/api/v1/work-log", {"claimed_by": "nobody"}, "bad-request"),
        ("/api/v1/agents", {"status": "ASLEEP"}, "bad-request"),
    ],
)
async def test_bad_query_parameters(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], code: str
) -> None:
    response = await http.get(path, params=params, headers=admin_headers())
    assert 400 <= response.status_code < 500
    assert problem(response)["type"] == PROBLEM_BASE + code


async def test_bad_waits_and_claim_bodies(http: httpx.AsyncClient) -> None:
    registered = await http.post("/api/v1/agents", json={"name": "a"}, headers=admin_headers())
    agent_id = registered.json()["agent"]["id"]
    for params in ({"wait": 31}, {"wait": -1}, {"wait": "nan"}, {"wait": "inf"}):
        response = await http.get(
            f"/api/v1/agents/{agent_id}/work/pending", params=params, headers=admin_headers()
        )
        assert response.status_code == 422, params
        assert problem(response)["type"] == PROBLEM_BASE + "invalid-input"
    for body in ({"wait": 60}, {"limit": 0}, {"limit": 5000}, {"work_types": ["x"] * 101}):
        response = await http.post(
            f"/api/v1/agents/{agent_id}/work/claim", json=body, headers=admin_headers()
        )
        assert response.status_code == 422, body
    response = await http.post(
        f"/api/v1/work/{MISSING}/fail",
        json={
            "attempt": 1,
            "agent_id": agent_id,
            "failure": {"failure_class": "MAYBE", "reason": "x"},
        },
        headers=admin_headers(),
    )
    assert response.status_code == 400
    response = await http.post("/api/v1/agents", json={"name": "a"}, headers=admin_headers())
    assert (response.status_code, problem(response)["type"]) == (409, PROBLEM_BASE + "agent-exists")
    response = await http.post("/api/v1/agents", json={"name": ""}, headers=admin_headers())
    assert (response.status_code, problem(response)["type"]) == (
        422,
        PROBLEM_BASE + "invalid-input",
    )


async def test_a_conflicting_state_change_is_409(http: httpx.AsyncClient) -> None:
    created = await submit(http, submit_body())
    work_id = created.json()["work"]["item"]["id"]
    response = await http.post(f"/api/v1/work/{work_id}/approve", headers=admin_headers())
    assert (response.status_code, problem(response)["type"]) == (
        409,
        PROBLEM_BASE + "invalid-transition",
    )
    assert problem(response)["state"] == "PENDING"
    response = await http.delete(f"/api/v1/work/{work_id}", headers=admin_headers())
    assert response.status_code == 200
    response = await http.delete(f"/api/v1/work/{work_id}", headers=admin_headers())
    assert response.status_code == 409


async def test_wrong_methods_and_media_are_problems(http: httpx.AsyncClient) -> None:
    response = await http.put("/api/v1/work", headers=admin_headers())
    assert (response.status_code, problem(response)["type"]) == (
        405,
        PROBLEM_BASE + "method-not-allowed",
    )
    response = await http.post(
        "/api/v1/work", content=b"\xff\xfe not json", headers=admin_headers()
    )
    assert (response.status_code, problem(response)["type"]) == (400, PROBLEM_BASE + "bad-request")
