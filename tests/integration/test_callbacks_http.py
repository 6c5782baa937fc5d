"""Completion callbacks to a real local HTTP server, through the httpx poster.

The receiver is a ``http.server`` in a thread that answers from a script (500
twice, then 200, ...). ``deliver_due`` runs against the memory, SQLite and
PostgreSQL stores on a fake clock, so the backoff is stepped through without
waiting.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

import attrs
import msgspec
import pytest

from workqueue_core.domain.callbacks import CALLBACK_ACTOR, CallbackPolicy
from workqueue_core.domain.models import Event, Failure, SubmitRequest, Targeting, WorkStatus
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.ports import Store
from workqueue_core.service.broker import BrokerService
from workqueue_core.service.callbacks import deliver_due
from workqueue_core.testing import FakeClock, SequentialIds, SequentialTokens
from workqueue_http import wire
from workqueue_http.callbacks import HttpxCallbackPoster, encode_record, redact_url
from workqueue_memory import MemoryStore
from workqueue_sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@attrs.define
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class Receiver:
    """What the server answers (status, extra headers, body) and what it received."""

    url: str
    script: list[tuple[int, dict[str, str], bytes]]
    received: list[Received] = attrs.field(factory=list)
    hang: threading.Event = attrs.field(factory=threading.Event)
    release: threading.Event = attrs.field(factory=threading.Event)


@contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    """A local HTTP server answering ``statuses`` in turn, then 200."""
    state = Receiver("", [(s, {}, b"") for s in statuses])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            if state.hang.is_set():
                state.release.wait(5)  # not in time
            status, headers, reply = state.script.pop(0) if state.script else (200, {}, b"ok")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the poster may close without reading
                self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://hook:s3cret@127.0.0.1:{server.server_address[1]}/hooks/done?token=abc"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@asynccontextmanager
async def store_of(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore(random_source=lambda: 0.0)
    elif kind == "sqlite":
        async with await SqliteStore.open(tmp_path / "wq.db", random_source=lambda: 0.0) as store:
            yield store
    else:
        from pg_support import fresh_postgres_store  # only PostgreSQL tests need psycopg

        async with fresh_postgres_store(random_source=lambda: 0.0) as store:
            yield store


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrokerService]:
    async with store_of(request.param, tmp_path) as store:
        yield BrokerService(store, FakeClock(), SequentialIds(), SequentialTokens())


@pytest.fixture
async def poster() -> AsyncIterator[HttpxCallbackPoster]:
    async with HttpxCallbackPoster() as made:
        yield made


async def finish(service: BrokerService, url: str, *, fail: bool = False) -> UUID:
    agent = (await service.register_agent(f"agent-{len(await service.list_agents())}")).agent
    submitted = await service.submit(
        SubmitRequest(
            "noop",
            '{"n": 1}',
            Targeting.everyone(),
            retry_policy=RetryPolicy(max_retries=0),
            callback_url=url,
        )
    )
    [item] = await service.claim_next(agent.id)
    if fail:
        await service.fail(item.token, agent.id, Failure.permanent("Broken", "it broke"))
    else:
        await service.complete(item.token, agent.id, result="sha256:abc")
    return submitted.item.id


def attempts(events: list[Event]) -> list[Event]:
    return [e for e in events if e.actor == CALLBACK_ACTOR]


async def test_fails_twice_then_succeeds_delivered_once_attempts_in_the_events(
    service: BrokerService, poster: HttpxCallbackPoster
) -> None:
    clock = service.clock
    assert isinstance(clock, FakeClock)
    policy = CallbackPolicy(timeout=5.0)
    with receiver(500, 500) as hook:
        work_id = await finish(service, hook.url)
        made = 0
        for _ in range(10):
            made += await deliver_due(service.store, poster, clock, policy, encode_record)
            clock.advance(timedelta(seconds=10))
        assert made == 3
        received = list(hook.received)

    assert len(received) == 3
    record = await service.store.get_record(work_id)
    assert record is not None
    for number, request in enumerate(received, start=1):
        assert request.path == "/hooks/done?token=abc"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Workqueue-Work-Id"] == str(work_id)
        assert request.headers["X-Workqueue-Status"] == "SUCCEEDED"
        assert request.headers["X-Workqueue-Delivery-Attempt"] == str(number)
        assert request.headers["Authorization"].startswith("Basic ")  # the URL's credentials
        assert request.body == encode_record(record)
    body = json.loads(received[-1].body)
    assert body["item"]["id"] == str(work_id)
    assert body["item"]["status"] == "SUCCEEDED"
    assert body["result"] == "sha256:abc"
    # The body is the record as the API shows it: the callback URL without its secrets.
    assert record.item.callback_url is not None
    shown = redact_url(record.item.callback_url)
    assert "token" not in shown and "@" not in shown
    assert body["item"]["callback_url"] == shown
    assert wire.view_in(msgspec.json.decode(received[-1].body, type=wire.WorkView)) == attrs.evolve(
        record, item=attrs.evolve(record.item, callback_url=shown)
    )

    events = attempts(await service.events(work_id))
    assert [e.detail.split(";")[0] for e in events] == [
        "callback failed: HTTP 500 (attempt 1)",
        "callback failed: HTTP 500 (attempt 2)",
        "callback delivered: HTTP 200 (attempt 3)",
    ]
    assert "retry at" in events[0].detail and "retry at" in events[1].detail
    assert all(e.from_status is e.to_status is WorkStatus.SUCCEEDED for e in events)
    assert all("s3cret" not in e.detail and "token=abc" not in e.detail for e in events)
    clock.advance(timedelta(days=1))
    assert await service.store.callbacks_due(clock.now()) == []


async def test_a_redirect_is_not_followed(
    service: BrokerService, poster: HttpxCallbackPoster
) -> None:
    with receiver() as hook:
        hook.script.append((307, {"Location": "/elsewhere"}, b""))
        work_id = await finish(service, hook.url, fail=True)
        await deliver_due(service.store, poster, service.clock, CallbackPolicy(), encode_record)
        paths = [r.path for r in hook.received]
    assert paths == ["/hooks/done?token=abc"]  # /elsewhere was never asked for
    [event] = attempts(await service.events(work_id))
    assert event.detail.startswith("callback failed: HTTP 307 (attempt 1)")
    assert event.to_status is WorkStatus.FAILED


async def test_a_large_response_body_is_not_read(
    service: BrokerService, poster: HttpxCallbackPoster
) -> None:
    with receiver() as hook:
        hook.script.append((200, {}, b"x" * 5_000_000))
        work_id = await finish(service, hook.url)
        await deliver_due(service.store, poster, service.clock, CallbackPolicy(), encode_record)
    [event] = attempts(await service.events(work_id))
    assert event.detail == "callback delivered: HTTP 200 (attempt 1)"


async def test_a_receiver_that_does_not_answer_times_out(
    service: BrokerService, poster: HttpxCallbackPoster
) -> None:
    with receiver() as hook:
        hook.hang.set()
        work_id = await finish(service, hook.url)
        policy = CallbackPolicy(timeout=0.3)
        await deliver_due(service.store, poster, service.clock, policy, encode_record)
        hook.release.set()
    [event] = attempts(await service.events(work_id))
    assert event.detail.startswith("callback failed: no answer within 0.3s (attempt 1)")


async def test_connection_refused_is_a_failed_attempt_without_secrets(
    service: BrokerService, poster: HttpxCallbackPoster
) -> None:
    with receiver() as hook:
        url = hook.url
    work_id = await finish(service, url)  # the server is gone: nothing listens there
    await deliver_due(service.store, poster, service.clock, CallbackPolicy(), encode_record)
    [event] = attempts(await service.events(work_id))
    assert event.detail.startswith("callback failed: ConnectError")
    assert "s3cret" not in event.detail and "hook:" not in event.detail
    assert "token=abc" not in event.detail


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert redact_url("https://u:p@example.com:8443/a/b?t=1#f") == "https://example.com:8443/a/b"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/x"
    assert redact_url("http://example.com:bad/") == "<invalid URL>"
