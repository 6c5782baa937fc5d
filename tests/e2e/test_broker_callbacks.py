"""Completion callbacks from a real broker process to a real local HTTP receiver.

The broker runs with a short callback interval; an item submitted with a
``callback_url`` is claimed and completed (another is cancelled) over the API,
and the receiver gets each record once, in the body ``GET /work/{id}`` returns.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker_support import BrokerProcess, broker_on

from workqueue_core.domain.models import SubmitRequest, Targeting, WorkStatus
from workqueue_http.client import BrokerClient

pytestmark = pytest.mark.anyio

WAIT = 30.0
"""Seconds to wait for a delivery before failing (the interval is 100 ms)."""


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server answering 200; yields its base URL and what it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"callbacks-{request.param}")
    with broker_on(request.param, workdir, {"WORKQUEUE_CALLBACK_INTERVAL": "100ms"}) as process:
        yield process


@pytest.fixture
async def admin(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, broker.admin_token) as client:
        yield client


def wait_for(received: list[dict[str, Any]], count: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) >= count, f"only {len(received)} of {count} callbacks arrived"


async def test_the_receiver_gets_the_finished_record_once(
    broker: BrokerProcess, admin: BrokerClient
) -> None:
    work_type = f"cb-{uuid.uuid4().hex[:8]}"
    agent = await admin.register_agent(f"agent-{work_type}")
    with receiver() as (base, received):
        hook = base.replace("http://", "http://hook:s3cret@") + "/done?token=t0ken"
        done = await admin.submit(
            SubmitRequest(work_type, "{}", Targeting.everyone(), callback_url=hook)
        )
        dropped = await admin.submit(
            SubmitRequest(work_type, "{}", Targeting.everyone(), callback_url=base + "/dropped")
        )
        quiet = await admin.submit(SubmitRequest(work_type, "{}", Targeting.everyone()))
        async with BrokerClient(broker.url, agent.token) as worker:
            claimed = await worker.claim(done.item.id, agent.agent.id)
            await worker.complete(claimed.token, agent.agent.id, result="sha256:feed")
        await admin.cancel(dropped.item.id, reason="not needed")
        await admin.cancel(quiet.item.id)
        wait_for(received, 2)
        time.sleep(0.5)  # several more intervals: nothing is delivered twice
        by_path = {r["path"]: r for r in received}

    assert len(received) == 2
    assert set(by_path) == {"/done?token=t0ken", "/dropped"}
    async with httpx.AsyncClient(
        base_url=broker.url, headers={"Authorization": f"Bearer {broker.admin_token}"}
    ) as http:
        for path, work_id in (("/done?token=t0ken", done.item.id), ("/dropped", dropped.item.id)):
            answer = await http.get(f"/api/v1/work/{work_id}")
            assert answer.status_code == 200
            body = json.loads(by_path[path]["body"])
            assert body == answer.json()  # the same wire format as GET /work/{id}
            assert by_path[path]["headers"]["X-Workqueue-Work-Id"] == str(work_id)
    body = json.loads(by_path["/done?token=t0ken"]["body"])
    assert body["item"]["status"] == "SUCCEEDED"
    assert body["result"] == "sha256:feed"
    assert json.loads(by_path["/dropped"]["body"])["item"]["status"] == "CANCELED"

    events = await admin.events(done.item.id)
    assert [e.detail for e in events if e.actor == "callback"] == [
        "callback delivered: HTTP 204 (attempt 1)"
    ]
    assert events[-1].to_status is WorkStatus.SUCCEEDED
    assert [e.actor for e in await admin.events(quiet.item.id)][-1] == "admin"
    log = broker.log_text()
    assert "callback delivered" in log
    assert "s3cret" not in log and "t0ken" not in log
