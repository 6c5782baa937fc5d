"""A real broker for HTTP tests: uvicorn on a free loopback port, in a thread, over MemoryStore.

The server runs in its own thread and event loop, so both async tests (httpx,
``BrokerClient``) and synchronous ones (schemathesis) drive it over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import attrs
import uvicorn
from litestar import Litestar

from workqueue_broker.work_types import broker_spec_validator
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing import FakeClock, SequentialIds, SequentialTokens
from workqueue_http.server import create_app
from workqueue_memory import MemoryStore

ADMIN_TOKEN = "admin-secret-for-tests"

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


@attrs.frozen
class Broker:
    """A running broker: its URL, and the clock and service behind it."""

    url: str
    clock: FakeClock
    service: BrokerService
    app: Litestar


def new_service(clock: FakeClock) -> BrokerService:
    store = MemoryStore(random_source=lambda: 0.0)
    return BrokerService(
        store,
        clock,
        SequentialIds(),
        SequentialTokens(),
        notifier=store.notifier,
        spec_validator=broker_spec_validator(),
        poll_interval=0.2,
    )


@contextlib.contextmanager
def serve(app: Litestar) -> Iterator[str]:
    """Run ``app`` on uvicorn on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as error:  # surfaced to the test below
            errors.append(error)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"the test broker did not start: {errors}")
        if time.monotonic() > deadline:
            raise RuntimeError("the test broker did not start within 15 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def running_broker(*, max_body_bytes: int = 1_048_576) -> Iterator[Broker]:
    """A fresh broker over an empty MemoryStore and a FakeClock."""
    clock = FakeClock()
    service = new_service(clock)
    app = create_app(service, admin_tokens=[ADMIN_TOKEN], max_body_bytes=max_body_bytes)
    with serve(app) as url:
        yield Broker(url=url, clock=clock, service=service, app=app)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def server_errors(broker: Broker) -> list[tuple[str, str, str]]:
    """(method, route, status) of every 5xx response the broker served."""
    metrics = broker.app.state["metrics"]
    found = []
    for family in metrics.registry.collect():
        if family.name != "workqueue_http_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_count") and labels["status"].startswith("5"):
                found.append((labels["method"], labels["route"], labels["status"]))
    return found
