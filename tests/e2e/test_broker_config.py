"""The broker's configuration (flags, environment, TOML), store URLs, admin tokens, shutdown."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from broker_support import BrokerProcess, cli_command, free_port, new_admin_token, wait_ready

from workqueue_broker.admin_tokens import resolve_admin_tokens
from workqueue_broker.config import BrokerConfig, ConfigError, load_config
from workqueue_broker.maintenance import prune_once, sweep_once
from workqueue_broker.parsers import parse_duration
from workqueue_broker.stores import StoreLocation, parse_database_url
from workqueue_core.domain.models import LogQuery, SubmitRequest, Targeting, WorkQuery, WorkStatus
from workqueue_core.service.broker import BrokerService
from workqueue_core.testing.clock import FakeClock
from workqueue_memory import MemoryStore


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./workqueue.db", StoreLocation("sqlite", path=Path("workqueue.db"))),
        ("sqlite:///data/q.db", StoreLocation("sqlite", path=Path("data/q.db"))),
        ("sqlite:////var/lib/wq.db", StoreLocation("sqlite", path=Path("/var/lib/wq.db"))),
        ("memory://", StoreLocation("memory")),
        (
            "postgresql://u:p@db:5432/app?schema=jobs&sslmode=require",
            StoreLocation(
                "postgresql", dsn="postgresql://u:p@db:5432/app?sslmode=require", schema="jobs"
            ),
        ),
        (
            "postgres://db/app",
            StoreLocation("postgresql", dsn="postgresql://db/app", schema="workqueue"),
        ),
    ],
)
def test_database_urls(url: str, expected: StoreLocation) -> None:
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "workqueue.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "mysql://db/app",
        "memory://x",
        "postgresql://db/app?schema=Robert');DROP",
    ],
)
def test_bad_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_database_url(url)


def test_described_urls_carry_no_password() -> None:
    text = parse_database_url("postgresql://user:s3cret@db:5432/app?schema=q").describe()
    assert "s3cret" not in text
    assert "db:5432/app" in text and "q" in text


def test_durations() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("30d") == timedelta(days=30)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("-5s")


def test_flags_win_over_environment_over_file(tmp_path: Path) -> None:
    config_file = tmp_path / "broker.toml"
    config_file.write_text(
        'host = "0.0.0.0"\nport = 9000\nretention = "7d"\nsweep_interval = "2s"\n'
        f'admin_tokens = ["{"a" * 20}", "{"b" * 20}"]\n'
    )
    config = load_config(
        {"port": "9100"},
        {"WORKQUEUE_PORT": "9050", "WORKQUEUE_SWEEP_INTERVAL": "500ms"},
        config_file,
    )
    assert config.port == 9100
    assert config.sweep_interval == 0.5
    assert config.host == "0.0.0.0"
    assert config.retention == timedelta(days=7)
    assert config.admin_tokens == ("a" * 20, "b" * 20)
    assert config.prune_interval == BrokerConfig().prune_interval
    assert "a" * 20 not in repr(config)


def test_configuration_errors_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WORKQUEUE_PORT"):
        load_config({}, {"WORKQUEUE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="--log-format"):
        load_config({"log_format": "xml"}, {})
    with pytest.raises(ConfigError, match="at least 16"):
        load_config({}, {"WORKQUEUE_ADMIN_TOKENS": "short"})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, {}, bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config({}, {}, unknown)
    via_env = tmp_path / "env.toml"
    via_env.write_text("[broker]\nport = 9999\n")
    assert load_config({}, {"WORKQUEUE_CONFIG": str(via_env)}).port == 9999


def test_zero_config_generates_one_token_file_and_reuses_it(tmp_path: Path) -> None:
    first = resolve_admin_tokens(BrokerConfig(), tmp_path)
    token_file = tmp_path / "workqueue-admin-token"
    assert first.generated_file == token_file
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    [token] = first.tokens
    assert len(token) >= 40
    assert token not in repr(first)
    again = resolve_admin_tokens(BrokerConfig(), tmp_path)
    assert again.tokens == (token,)
    assert again.generated_file is None


def test_configured_tokens_generate_nothing(tmp_path: Path) -> None:
    configured = resolve_admin_tokens(BrokerConfig(admin_tokens=("c" * 20,)), tmp_path)
    assert configured.tokens == ("c" * 20,)
    assert not (tmp_path / "workqueue-admin-token").exists()
    token_file = tmp_path / "tokens"
    token_file.write_text("# admins\n" + "d" * 20 + "\n\n" + "e" * 20 + "\n")
    from_file = resolve_admin_tokens(BrokerConfig(admin_token_file=token_file), tmp_path)
    assert from_file.tokens == ("d" * 20, "e" * 20)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="no token"):
        resolve_admin_tokens(BrokerConfig(admin_token_file=empty), tmp_path)


def test_toml_configured_broker_shuts_down_gracefully_during_a_long_poll(tmp_path: Path) -> None:
    """SIGTERM with a claim long-poll in flight: the poll is answered at once with what it
    found (nothing), not cut off when the shutdown timeout runs out; the process exits 0,
    the store is closed (SQLite checkpoints and removes its WAL file on a clean close)."""
    port = free_port()
    token = new_admin_token()
    (tmp_path / "broker.toml").write_text(
        f'port = {port}\ndatabase_url = "sqlite:///{tmp_path / "q.db"}"\n'
        f'admin_tokens = ["{token}"]\nshutdown_timeout = "5s"\nlog_format = "json"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKQUEUE_")}
    log_path = tmp_path / "broker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*cli_command(), "broker", "--config", str(tmp_path / "broker.toml")],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path.read_text)
        headers = {"Authorization": f"Bearer {token}"}
        agent = httpx.post(
            f"{url}/api/v1/agents", json={"name": "poller"}, headers=headers, timeout=10
        ).json()
        answers: list[object] = []

        def long_poll() -> None:
            try:
                answer = httpx.post(
                    f"{url}/api/v1/agents/{agent['agent']['id']}/work/claim",
                    json={"limit": 1, "wait": 30},
                    headers=headers,
                    timeout=60,
                )
            except httpx.HTTPError as error:  # cut off at the shutdown timeout
                answers.append(error)
            else:
                answers.append((answer.status_code, answer.json()))

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(1.0)  # let the long-poll reach the broker
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
        poller.join(60)
        assert not poller.is_alive()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log_path.read_text()
    assert "shutting down" in text and "broker stopped" in text
    assert token not in text
    assert not (tmp_path / "q.db-wal").exists()
    # answered (the shutdown timeout is 5 s, the poll's wait 30 s: a cut-off would be an error)
    assert answers == [(200, {"items": []})]


def test_broker_restart_keeps_the_queue(tmp_path: Path) -> None:
    broker = BrokerProcess(f"sqlite:///{tmp_path / 'keep.db'}", tmp_path)
    try:
        broker.start()
        headers = {"Authorization": f"Bearer {broker.admin_token}"}
        body = {"work_type": "test", "spec": "x", "targeting": {"selector": {}}}
        created = httpx.post(f"{broker.url}/api/v1/work", json=body, headers=headers, timeout=10)
        assert created.status_code == 201, created.text
        assert broker.stop() == 0
        broker.start()
        listed = httpx.get(f"{broker.url}/api/v1/work", headers=headers, timeout=10)
        assert created.json()["work"]["item"]["id"] in listed.text
    finally:
        broker.close()


@pytest.mark.anyio
async def test_maintenance_sweeps_in_batches_and_prunes_after_retention() -> None:
    clock = FakeClock()
    store = MemoryStore()
    service = BrokerService(store, clock, uuid.uuid4, lambda: "t" * 32, notifier=store.notifier)
    agent = (await service.register_agent("maint")).agent
    for n in range(3):
        await service.submit(
            SubmitRequest(
                work_type="test",
                spec=str(n),
                targeting=Targeting.everyone(),
                claim_timeout=timedelta(seconds=10),
            )
        )
    claimed = await service.claim_next(agent.id, limit=3)
    assert len(claimed) == 3
    seen: list[int] = []
    assert await sweep_once(service, lambda batch: seen.append(len(batch))) == 0
    clock.advance(timedelta(seconds=11))
    assert await sweep_once(service, lambda batch: seen.append(len(batch))) == 3
    assert seen == [3]
    assert {i.status for i in await service.list_work(WorkQuery())} == {WorkStatus.PENDING}

    clock.advance(timedelta(seconds=61))  # the default backoff before the first retry
    [again] = await service.claim_next(agent.id, limit=1)
    await service.complete(again.token, agent.id)
    assert await prune_once(service, timedelta(days=30)) == 0
    clock.advance(timedelta(days=31))
    assert await prune_once(service, timedelta(days=30)) == 1
    assert await service.list_log(LogQuery()) == []
