"""Real broker processes for end-to-end tests.

``BrokerProcess`` runs ``python -m workqueue_cli broker`` on a free loopback port
against a database URL (a temporary SQLite file, or a temporary PostgreSQL
schema), waits for ``/readyz``, and can be stopped gracefully, killed with
SIGKILL and restarted on the same database and port.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, ClassVar
from uuid import UUID

import anyio
import attrs
import httpx

PG_DSN = os.environ.get("WORKQUEUE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_command() -> list[str]:
    """How to run the ``workqueue`` command with this interpreter."""
    return [sys.executable, "-m", "workqueue_cli"]


def new_admin_token() -> str:
    """A fresh admin token for a test broker."""
    return "wqadmin_test_" + secrets.token_urlsafe(24)


@attrs.define
class BrokerProcess:
    """One broker process; ``start`` and ``kill`` may be repeated on the same database."""

    database_url: str
    workdir: Path
    admin_token: str = attrs.field(factory=new_admin_token, repr=False)
    port: int = attrs.field(factory=free_port)
    extra_env: dict[str, str] = attrs.field(factory=dict)
    extra_args: list[str] = attrs.field(factory=list)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the broker's stderr/stdout goes (appended across restarts)."""
        return self.workdir / "broker.log"

    def log_text(self) -> str:
        """Everything the broker wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def environment(self) -> dict[str, str]:
        """The broker's environment: configuration by ``WORKQUEUE_…`` variables."""
        env = dict(os.environ)
        env.update(
            {
                "WORKQUEUE_HOST": "127.0.0.1",
                "WORKQUEUE_PORT": str(self.port),
                "WORKQUEUE_DATABASE_URL": self.database_url,
                "WORKQUEUE_ADMIN_TOKENS": self.admin_token,
                "WORKQUEUE_LOG_FORMAT": "json",
                "WORKQUEUE_SHUTDOWN_TIMEOUT": "2s",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Start the broker and wait until ``/readyz`` answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*cli_command(), "broker", *self.extra_args],
            cwd=self.workdir,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.starts += 1
        wait_ready(self.url, self.process, self.log_text)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        """Make sure the process is gone and the log closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None


def wait_ready(url: str, process: subprocess.Popen[bytes], log: object) -> None:
    """Poll ``/readyz`` until 200; fail with the broker's log if it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log() if callable(log) else ""
            raise RuntimeError(f"the broker exited with {process.returncode}:\n{text}")
        try:
            answer = httpx.get(f"{url}/readyz", timeout=2.0)
        except httpx.HTTPError as error:
            last = repr(error)
        else:
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        time.sleep(0.1)
    process.kill()
    text = log() if callable(log) else ""
    raise RuntimeError(f"the broker was not ready within {START_TIMEOUT}s ({last}):\n{text}")


@contextmanager
def running_broker(database_url: str, workdir: Path, **kwargs: object) -> Iterator[BrokerProcess]:
    """A started broker, stopped (SIGTERM) afterwards."""
    broker = BrokerProcess(database_url, workdir, **kwargs)  # type: ignore[arg-type]
    try:
        broker.start()
        yield broker
        broker.stop()
    finally:
        broker.close()


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A database URL on a fresh PostgreSQL schema, dropped afterwards."""
    import psycopg

    schema = f"wq_e2e_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def database_url(kind: str, workdir: Path) -> Iterator[str]:
    """A database URL of the given kind (``sqlite`` or ``postgresql``), cleaned up afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'workqueue.db'}"
    elif kind == "postgresql":
        with postgres_schema_url() as url:
            yield url
    else:
        raise ValueError(kind)


@contextmanager
def broker_on(kind: str, workdir: Path, extra_env: dict[str, str]) -> Iterator[BrokerProcess]:
    """A started broker on a fresh ``sqlite`` or ``postgresql`` database, all cleaned up after."""
    with database_url(kind, workdir) as url, running_broker(url, workdir, extra_env=extra_env) as b:
        yield b


@attrs.define
class AgentProcess:
    """A ``workqueue agent`` process for one registered agent (restartable).

    Subclasses set ``ENV`` (settings on top of the broker's URL, the agent's token and a
    500 ms claim wait), ``STOP`` (the signal ``close`` sends first) and ``command``.
    """

    ENV: ClassVar[dict[str, str]] = {}
    STOP: ClassVar[signal.Signals] = signal.SIGKILL

    broker: BrokerProcess
    agent_id: UUID
    token: str = attrs.field(repr=False)
    workdir: Path
    args: list[str] = attrs.field(factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self) -> list[str]:
        """The command line: ``workqueue agent`` and ``args``."""
        return [*cli_command(), "agent", *self.args]

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                "WORKQUEUE_URL": self.broker.url,
                "WORKQUEUE_AGENT_TOKEN": self.token,
                "WORKQUEUE_CLAIM_WAIT": "500ms",
                **self.ENV,
            }
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and wait for the process to end."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    async def wait(self, bound: float = 60.0) -> int:
        assert self.process is not None
        process = self.process
        return await anyio.to_thread.run_sync(lambda: process.wait(bound))

    def close(self) -> None:
        """Stop a process still running: ``STOP`` first, SIGKILL if it outlives 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.STOP)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)
