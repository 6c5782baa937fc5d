"""The local runner's parts and the agent's configuration, in-process (real subprocesses)."""

from __future__ import annotations

import os
import signal
import stat
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import anyio
import pytest

from workqueue_agent.config import AgentConfig, ConfigError, load_agent_config
from workqueue_agent.local import (
    EXIT_CODE,
    LocalOptions,
    LocalRunner,
    OutputTail,
    command_for,
    script_environment,
)
from workqueue_agent.main import AgentStartError, agent_token, write_token
from workqueue_core.domain.models import Failure, FailureClass, Targeting, WorkItem
from workqueue_core.executor.handlers import Job, Success
from workqueue_core.executor.runner import TIMEOUT
from workqueue_core.testing.clock import EPOCH


def job(spec: str, **fields: object) -> Job:
    values: dict[str, object] = {
        "id": UUID(int=7),
        "work_type": "shell",
        "spec": spec,
        "targeting": Targeting.everyone(),
        "created_at": EPOCH,
        "attempt": 2,
        "correlation_id": "corr",
        "claim_timeout": timedelta(seconds=30),
    }
    values.update(fields)
    return Job(WorkItem(**values))  # type: ignore[arg-type]


def test_the_output_tail_keeps_the_last_bytes_in_bounded_memory() -> None:
    tail = OutputTail(10)
    for n in range(10_000):
        tail.add(f"{n:05d}\n".encode())
        assert len(tail._buffer) <= 20
    assert tail.total == 60_000
    assert tail.text() == "998\n09999\n"
    big = OutputTail(4)
    big.add(b"x" * 1000 + b"abcd")
    assert (big.text(), big.total) == ("abcd", 1004)


def test_the_tail_is_text_without_nuls_and_within_its_bytes() -> None:
    tail = OutputTail(8)
    tail.add(b"\xff\xfe\x00ok\xff\xff\xff\xff")
    text = tail.text()
    assert "\x00" not in text
    assert len(text.encode()) <= 8


def test_an_interpreter_line_names_the_command(tmp_path: Path) -> None:
    script = tmp_path / "s"
    assert command_for("echo hi\n", script) == ["/bin/sh", "-e", str(script)]
    assert command_for("#!/usr/bin/env python3\nprint()\n", script) == [
        "/usr/bin/env",
        "python3",
        str(script),
    ]
    assert command_for("#!\necho\n", script) == ["/bin/sh", "-e", str(script)]


def test_scripts_see_the_item_but_no_workqueue_setting() -> None:
    base = {"PATH": "/bin", "WORKQUEUE_AGENT_TOKEN": "wq_secret", "workqueue_token": "x"}
    env = script_environment(job("true"), base)
    assert env == {
        "PATH": "/bin",
        "WORKQUEUE_WORK_ID": str(UUID(int=7)),
        "WORKQUEUE_WORK_TYPE": "shell",
        "WORKQUEUE_ATTEMPT": "2",
        "WORKQUEUE_CORRELATION_ID": "corr",
    }


@pytest.mark.anyio
async def test_the_runner_maps_exits_to_outcomes(tmp_path: Path) -> None:
    runner = LocalRunner(LocalOptions(kill_grace=0.2, temp_root=str(tmp_path)))
    assert await runner.run(job("echo ok\n")) == Success("ok\n")
    permanent = await runner.run(job("echo no such thing >&2\nexit 127\n"))
    assert isinstance(permanent, Failure)
    assert (permanent.failure_class, permanent.reason) == (FailureClass.PERMANENT, EXIT_CODE)
    assert permanent.message == "exit code 127; output (14 bytes) ends:\nno such thing\n"
    retry = await runner.run(job("false\necho never\n"))  # sh -e stops at false
    assert isinstance(retry, Failure) and retry.failure_class is FailureClass.RETRYABLE
    assert retry.message == "exit code 1"
    signalled = await runner.run(job("kill -KILL $$\n"))
    assert isinstance(signalled, Failure) and signalled.reason == "Signal"
    missing = await runner.run(job("#!/no/such/interpreter\n"))
    assert isinstance(missing, Failure) and missing.failure_class is FailureClass.PERMANENT
    assert list(tmp_path.iterdir()) == []  # every temporary directory was removed


@pytest.mark.anyio
async def test_the_timeout_is_the_claim_timeout_unless_configured(tmp_path: Path) -> None:
    runner = LocalRunner(LocalOptions(kill_grace=0.2, timeout=0.3))
    with anyio.fail_after(30):
        outcome = await runner.run(job("sleep 30\n"))
    assert isinstance(outcome, Failure) and outcome.reason == TIMEOUT
    default = LocalRunner(LocalOptions(kill_grace=0.2))
    with anyio.fail_after(30):
        outcome = await default.run(job("sleep 30\n", claim_timeout=timedelta(seconds=1)))
    assert isinstance(outcome, Failure) and outcome.reason == TIMEOUT


def test_flags_win_over_the_environment_over_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text('[agent]\nconcurrency = 3\nlabels = "zone=a"\nwork-types = ["shell", "x"]\n')
    env = {"WORKQUEUE_CONCURRENCY": "5", "WORKQUEUE_GRACE_PERIOD": "2m"}
    config = load_agent_config({"concurrency": "7"}, env, toml)
    assert config.concurrency == 7
    assert config.grace_period == 120.0
    assert config.labels == {"zone": "a"}
    assert config.work_types == ("shell", "x")
    assert load_agent_config({}, env, toml).concurrency == 5
    assert load_agent_config({}, {}, toml).concurrency == 3
    assert load_agent_config({}, {"WORKQUEUE_PORT": "9001"}).url == "http://127.0.0.1:9001"
    toml.write_text("conccurency = 3\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_agent_config({}, {}, toml)
    with pytest.raises(ConfigError, match="WORKQUEUE_WORK_TYPES"):
        load_agent_config({}, {"WORKQUEUE_WORK_TYPES": "Shell!"})


def test_the_token_file_is_created_new_and_private(tmp_path: Path) -> None:
    path = tmp_path / "t.token"
    write_token(path, "wq_abc")
    assert path.read_text() == "wq_abc\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(AgentStartError, match="cannot create"):
        write_token(path, "wq_other")  # never overwritten
    assert path.read_text() == "wq_abc\n"


@pytest.mark.anyio
async def test_an_existing_token_file_is_used_without_registering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_token(Path("workqueue-agent-laptop.token"), "wq_kept")
    # no broker and no admin token: registering would fail
    assert await agent_token(AgentConfig(register="laptop")) == "wq_kept"
    assert await agent_token(AgentConfig(agent_token="wq_given")) == "wq_given"
    with pytest.raises(AgentStartError, match="does not exist"):
        await agent_token(AgentConfig(agent_token_file=tmp_path / "missing"))


@pytest.mark.anyio
async def test_a_process_that_left_the_group_does_not_hold_the_outcome(tmp_path: Path) -> None:
    pid_file = tmp_path / "escaped"
    script = (
        f"setsid sh -c 'echo $$ > {pid_file}.new; mv {pid_file}.new {pid_file}; "
        "exec sleep 30' &\n"
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done\n"
        "echo done\n"
    )
    runner = LocalRunner(LocalOptions(kill_grace=0.2))
    try:
        with anyio.fail_after(20):
            outcome = await runner.run(job(script))
        assert outcome == Success("done\n")
    finally:
        with anyio.fail_after(20):
            while not pid_file.exists() or not pid_file.read_text().strip():
                await anyio.sleep(0.02)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.anyio
async def test_processes_a_finished_script_left_behind_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    script = f"sleep 30 &\necho $! > {pid_file}\necho done\n"
    runner = LocalRunner(LocalOptions(kill_grace=5.0))
    with anyio.fail_after(20):
        outcome = await runner.run(job(script))
    assert outcome == Success("done\n")  # not held until the timeout by the child's pipe
    child = int(pid_file.read_text())
    with anyio.fail_after(20):
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            await anyio.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"
