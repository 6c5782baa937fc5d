"""schemathesis against the served OpenAPI document: no 5xx, every response as documented.

The broker runs on uvicorn on a loopback port with some agents and work in it, so
generated ids sometimes hit real rows. Bounded: at most 25 fuzzed examples per
operation, authenticated as admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from integration.http.support import (
    ADMIN_TOKEN,
    BUILD_WORK,
    Broker,
    admin_headers,
    new_service,
    running_broker,
    server_errors,
)
from workqueue_core.testing import FakeClock
from workqueue_http.server import OPENAPI_PATH, create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


def seed(url: str) -> None:
    """Agents, queued work, a claim and a log record, so ids are not all unknown."""
    with httpx.Client(base_url=url, headers=admin_headers()) as http:
        agent = http.post("/api/v1/agents", json={"name": "seed", "labels": {"zone": "a"}})
        agent_id = agent.json()["agent"]["id"]
        for n, work_type in enumerate(("test", "build", "backup")):
            spec = BUILD_WORK if work_type == "build" else "x"
            http.post(
                "/api/v1/work",
                json={"work_type": work_type, "spec": spec, "targeting": {"selector": {}}},
                headers={"Idempotency-Key": f"seed-{n}"},
            ).raise_for_status()
        claimed = http.post(f"/api/v1/agents/{agent_id}/work/claim", json={"limit": 2})
        item = claimed.json()["items"][0]
        http.post(
            f"/api/v1/work/{item['id']}/complete",
            json={"attempt": item["attempt"], "agent_id": agent_id},
        ).raise_for_status()


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as running:
        seed(running.url)
        yield running
        assert server_errors(running) == []


def openapi_document() -> dict[str, Any]:
    """The document every broker serves at ``OPENAPI_PATH`` (checked against the served one)."""
    app = create_app(new_service(FakeClock()), admin_tokens=[ADMIN_TOKEN])
    return app.openapi_schema.to_schema()


DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": 25, "mode": "all"},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


def test_the_served_document_is_the_one_tested(broker: Broker) -> None:
    served = httpx.get(broker.url + OPENAPI_PATH)
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    assert served.json()["openapi"].startswith("3.1")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], broker: Broker) -> None:
    case.call_and_validate(
        base_url=broker.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=CHECKS,
        timeout=40,
    )
