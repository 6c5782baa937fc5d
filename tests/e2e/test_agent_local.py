"""``workqueue agent`` with the local runner: real broker and agent processes (SQLite, PostgreSQL).

Each backend gets one broker process for the module (sweeping every 200 ms); every
test registers its own agent and targets its items at that agent by id, so tests do
not take each other's work. Scripts write their process ids to files outside their
temporary directory so the tests can check, by PID, that no process is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar
from uuid import UUID

import anyio
import httpx
import pytest
from broker_support import AgentProcess, BrokerProcess, broker_on, cli_command, free_port

from workqueue_core.domain.models import (
    ExecutionRecord,
    FailureClass,
    SubmitRequest,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_http.client import AuthError, BrokerClient

pytestmark = pytest.mark.anyio

BOUND = 60.0
"""Upper bound of every wait (a failing test fails instead of hanging)."""

HEARTBEAT = "300ms"
"""The agents' heartbeat interval in these tests."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir: Path = tmp_path_factory.mktemp(f"agent-{request.param}")
    with broker_on(request.param, workdir, {"WORKQUEUE_SWEEP_INTERVAL": "200ms"}) as process:
        yield process


@pytest.fixture
async def admin(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, broker.admin_token) as client:
        yield client


class LocalAgent(AgentProcess):
    """A ``workqueue agent`` process running scripts on this machine."""

    ENV: ClassVar[dict[str, str]] = {
        "WORKQUEUE_HEARTBEAT_INTERVAL": HEARTBEAT,
        "WORKQUEUE_KILL_GRACE": "1s",
        "WORKQUEUE_ALLOW_ROOT": "true",  # the test machine may run as root
    }


@pytest.fixture
async def new_agent(
    admin: BrokerClient, broker: BrokerProcess, tmp_path: Path
) -> AsyncIterator[object]:
    made: list[LocalAgent] = []

    async def make(*args: str) -> LocalAgent:
        issued = await admin.register_agent(f"agent-{len(made)}-{tmp_path.name}")
        agent = LocalAgent(broker, issued.agent.id, issued.token, tmp_path, list(args))
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


async def submit(
    admin: BrokerClient,
    agent: AgentProcess,
    script: str,
    *,
    max_retries: int = 0,
    base_delay: float = 0.05,
    claim_timeout: float = 60.0,
    correlation_id: str | None = None,
) -> UUID:
    request = SubmitRequest(
        work_type="shell",
        spec=script,
        targeting=Targeting.agents(agent.agent_id),
        retry_policy=RetryPolicy(
            max_retries=max_retries,
            base_delay=timedelta(seconds=base_delay),
            max_delay=timedelta(seconds=1),
        ),
        claim_timeout=timedelta(seconds=claim_timeout),
        correlation_id=correlation_id,
    )
    item = (await admin.submit(request)).item
    return item.id


async def ended(admin: BrokerClient, work_id: UUID, agent: AgentProcess) -> ExecutionRecord:
    """Wait for the item's log record (failing with the agent's log when it does not come)."""
    with anyio.fail_after(BOUND):
        while True:
            state = await admin.get(work_id)
            if isinstance(state, ExecutionRecord):
                return state
            assert agent.process is None or agent.process.poll() is None, agent.log_text()
            await anyio.sleep(0.05)


async def read_pids(path: Path, count: int) -> list[int]:
    """The first ``count`` process ids a script wrote to ``path`` (waiting for them)."""
    with anyio.fail_after(BOUND):
        while True:
            if path.exists():
                pids = [int(p) for p in path.read_text().split()]
                if len(pids) >= count:
                    return pids[:count]
            await anyio.sleep(0.02)


def alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


async def all_gone(pids: list[int]) -> None:
    with anyio.fail_after(BOUND):
        while any(alive(p) for p in pids):
            await anyio.sleep(0.02)


def long_script(pid_file: Path, seconds: int = 60) -> str:
    """A script that records its own pid and a child's, then waits for the child."""
    return f"echo $$ >> {pid_file}\nsleep {seconds} &\necho $! >> {pid_file}\nwait\n"


# --- outcomes ---------------------------------------------------------------------------


async def test_success_puts_the_output_in_the_result(
    admin: BrokerClient, new_agent: object
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    script = (
        'test -z "${WORKQUEUE_AGENT_TOKEN:-}" || { echo token leaked; exit 3; }\n'
        'test -z "$(ls -A)" || { echo cwd not empty; exit 3; }\n'
        'echo "attempt=$WORKQUEUE_ATTEMPT corr=$WORKQUEUE_CORRELATION_ID id=$WORKQUEUE_WORK_ID"\n'
        "echo to-stderr >&2\n"
    )
    work_id = await submit(admin, agent, script, correlation_id="corr-42")
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.SUCCEEDED, record
    assert record.result == f"attempt=1 corr=corr-42 id={work_id}\nto-stderr\n"
    assert record.item.executions == 1


async def test_an_interpreter_line_picks_the_interpreter(
    admin: BrokerClient, new_agent: object
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    work_id = await submit(admin, agent, "#!/usr/bin/env python3\nprint(6 * 7)\n")
    record = await ended(admin, work_id, agent)
    assert (record.status, record.result) == (WorkStatus.SUCCEEDED, "42\n")


async def test_exit_2_fails_for_good_at_once(admin: BrokerClient, new_agent: object) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    work_id = await submit(admin, agent, "echo bad usage\nexit 2\n", max_retries=3)
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 1
    error = record.item.last_error
    assert error is not None and error.failure_class is FailureClass.PERMANENT
    assert error.message.startswith("exit code 2") and error.message.endswith("bad usage\n")


async def test_exit_1_is_retried_with_backoff_then_fails(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    runs = tmp_path / "runs"
    work_id = await submit(
        admin, agent, f"echo $WORKQUEUE_ATTEMPT >> {runs}\nexit 1\n", max_retries=2
    )
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.FAILED
    assert record.item.executions == 3  # max_retries + 1 runs
    assert runs.read_text().split() == ["1", "2", "3"]
    error = record.item.last_error
    assert error is not None and error.failure_class is FailureClass.RETRYABLE
    retries = [e.detail for e in await admin.events(work_id) if "retry after" in e.detail]
    assert len(retries) == 2, retries  # two backoffs, then the budget was spent


async def test_a_timeout_kills_the_whole_process_group(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    agent = await new_agent("--timeout", "1s")  # type: ignore[operator]
    agent.start()
    pid_file = tmp_path / "pids"
    work_id = await submit(admin, agent, long_script(pid_file))
    pids = await read_pids(pid_file, 2)
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.FAILED
    assert record.item.last_error is not None and record.item.last_error.reason == "Timeout"
    await all_gone(pids)


async def test_a_cancel_at_the_broker_kills_the_running_script(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    pid_file = tmp_path / "pids"
    work_id = await submit(admin, agent, long_script(pid_file))
    pids = await read_pids(pid_file, 2)
    await admin.cancel(work_id, reason="not needed")
    await all_gone(pids)  # the next heartbeat (every 300 ms) says cancelled
    assert agent.process is not None and agent.process.poll() is None


async def test_a_killed_agent_leaves_its_claim_to_the_sweep_and_a_restart_runs_it(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    pid_file = tmp_path / "pids"
    script = (
        f"if [ $WORKQUEUE_ATTEMPT = 1 ]; then echo $$ >> {pid_file}; sleep 30; fi\n"
        "echo ran attempt $WORKQUEUE_ATTEMPT\n"
    )
    work_id = await submit(admin, agent, script, max_retries=2, claim_timeout=1.0)
    [orphan] = await read_pids(pid_file, 1)
    try:
        agent.signal(signal.SIGKILL)
        assert await agent.wait() == -signal.SIGKILL
        with anyio.fail_after(BOUND):
            while not isinstance(state := await admin.get(work_id), WorkItem) or (
                state.status is not WorkStatus.PENDING
            ):
                await anyio.sleep(0.05)
        assert state.executions == 1  # the sweep charged the lost run
        agent.start()
        record = await ended(admin, work_id, agent)
    finally:
        os.killpg(orphan, signal.SIGKILL)  # the first run, orphaned by the kill -9
    assert (record.status, record.result) == (WorkStatus.SUCCEEDED, "ran attempt 2\n")
    assert record.item.executions == 2
    details = [e.detail for e in await admin.events(work_id)]
    assert any("LeaseExpired" in d for d in details), details


async def test_sigterm_drains_and_releases_what_is_left_uncharged(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    agent = await new_agent("--grace-period", "1s", "--concurrency", "2")  # type: ignore[operator]
    agent.start()
    pid_file = tmp_path / "pids"
    quick_file = tmp_path / "quick"
    slow_id = await submit(admin, agent, long_script(pid_file), max_retries=1)
    quick_id = await submit(admin, agent, f"echo $$ > {quick_file}\nsleep 0.5\necho quick\n")
    pids = await read_pids(pid_file, 2)
    await read_pids(quick_file, 1)
    agent.signal(signal.SIGTERM)
    assert await agent.wait() == 0, agent.log_text()
    await all_gone(pids)
    quick = await admin.get(quick_id)
    assert isinstance(quick, ExecutionRecord) and quick.result == "quick\n"
    slow = await admin.get(slow_id)
    assert isinstance(slow, WorkItem)
    assert (slow.status, slow.attempt, slow.executions, slow.last_error) == (
        WorkStatus.PENDING,
        1,
        0,
        None,
    )
    events = await admin.events(slow_id)
    assert [e.executions for e in events] == [0, 1, 0]  # submitted, claimed, released
    assert events[-1].detail.startswith("released: Shutdown")
    assert "1 released" in agent.log_text()


async def probe(url: str, status: int, agent: AgentProcess) -> None:
    """Wait until ``url`` answers ``status`` (failing with the agent's log when it does not)."""
    with anyio.fail_after(BOUND):
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                assert agent.process is not None and agent.process.poll() is None, agent.log_text()
                try:
                    if (await http.get(url)).status_code == status:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                await anyio.sleep(0.05)


async def test_the_health_port_is_ready_while_claiming_and_not_while_draining(
    admin: BrokerClient, new_agent: object, tmp_path: Path
) -> None:
    port = free_port()
    agent = await new_agent("--health-port", str(port), "--grace-period", "5m")  # type: ignore[operator]
    agent.start()
    base = f"http://127.0.0.1:{port}"
    await probe(f"{base}/healthz", 200, agent)
    await probe(f"{base}/readyz", 200, agent)
    assert f"/healthz and /readyz on 127.0.0.1:{port}" in agent.log_text()
    pid_file = tmp_path / "pids"
    await submit(admin, agent, long_script(pid_file), max_retries=1)
    pids = await read_pids(pid_file, 2)
    agent.signal(signal.SIGTERM)  # drains: the script may run for the grace period
    await probe(f"{base}/readyz", 503, agent)
    async with httpx.AsyncClient(timeout=5.0) as http:
        assert (await http.get(f"{base}/healthz")).status_code == 200  # alive while draining
        assert (await http.get(f"{base}/metrics")).status_code == 404  # the agent has none
    assert all(alive(p) for p in pids), agent.log_text()  # still draining, not stopped
    agent.signal(signal.SIGTERM)  # a second signal stops at once
    assert await agent.wait() == 0, agent.log_text()
    await all_gone(pids)
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(timeout=5.0) as http:
            await http.get(f"{base}/healthz")


async def test_no_health_port_is_served_by_default(admin: BrokerClient, new_agent: object) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    work_id = await submit(admin, agent, "echo up\n")
    await ended(admin, work_id, agent)  # the agent runs
    assert "/healthz and /readyz on" not in agent.log_text()  # as the health test's agent does


async def test_a_hundred_mib_of_output_does_not_grow_the_agent(
    admin: BrokerClient, new_agent: object
) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    warm = await submit(admin, agent, "echo warm\n")
    await ended(admin, warm, agent)
    before = vm_kib(agent.pid, "VmRSS")
    work_id = await submit(admin, agent, "head -c 104857600 /dev/zero | tr '\\0' x\necho\n")
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.SUCCEEDED
    assert record.result is not None and len(record.result) == 16_384  # the default tail
    peak = vm_kib(agent.pid, "VmHWM")
    assert peak - before < 20 * 1024, f"RSS grew from {before} KiB to a peak of {peak} KiB"


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# --- tokens -----------------------------------------------------------------------------


def cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKQUEUE_URL": broker.url, "WORKQUEUE_TOKEN": broker.admin_token}
    return subprocess.run(
        [*cli_command(), *args], env=env, capture_output=True, text=True, timeout=BOUND
    )


async def test_token_rotate_and_revoke_shut_the_old_token_out_at_once(
    admin: BrokerClient, broker: BrokerProcess, tmp_path: Path
) -> None:
    name = f"rotating-{tmp_path.name}"
    issued = await admin.register_agent(name)
    async with BrokerClient(broker.url, issued.token, retries=0) as old:
        assert (await old.whoami()).id == issued.agent.id
        rotated = cli(broker, "agents", "token", "rotate", name)
        assert rotated.returncode == 0, rotated.stderr
        new_token = rotated.stdout.split("token:")[1].split()[0]
        with pytest.raises(AuthError) as refused:
            await old.whoami()
        assert refused.value.status == 401
        with pytest.raises(AuthError):
            await old.claim_next(issued.agent.id)
    async with BrokerClient(broker.url, new_token, retries=0) as new:
        assert (await new.whoami()).id == issued.agent.id
        revoked = cli(broker, "agents", "revoke", name)
        assert revoked.returncode == 0, revoked.stderr
        assert "INACTIVE" in revoked.stdout
        for call in (new.whoami(), new.agent_heartbeat(issued.agent.id)):
            with pytest.raises(AuthError) as refused:
                await call
            assert refused.value.status == 401
    shown = cli(broker, "agents", "get", name)
    assert "INACTIVE" in shown.stdout and "last seen:" in shown.stdout


async def test_a_revoked_agent_stops_with_one_line(admin: BrokerClient, new_agent: object) -> None:
    agent = await new_agent()  # type: ignore[operator]
    agent.start()
    warm = await submit(admin, agent, "echo up\n")
    await ended(admin, warm, agent)
    await admin.revoke_agent(agent.agent_id)
    status = await agent.wait()
    lines = [line for line in agent.log_text().splitlines() if "error" in line.lower()]
    assert status == 1, agent.log_text()
    assert "Traceback" not in agent.log_text()
    assert lines and "refused this agent's token (401" in lines[-1], agent.log_text()
