"""The README's broker quickstart, as a user runs it, with the installed ``workqueue`` command.

Terminal 1: ``.venv/bin/workqueue broker`` in an empty directory, with no
configuration at all: SQLite in ``./workqueue.db``, an admin token generated
into ``./workqueue-admin-token`` (mode 0600). Terminal 2, in the same directory:
``workqueue submit`` and ``workqueue list`` find the broker and the token by
themselves. (The test uses the project's venv rather than creating one, and a
free port through ``WORKQUEUE_PORT`` rather than the default 8080.)
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from broker_support import free_port, wait_ready

WORKQUEUE = Path(sys.executable).parent / "workqueue"


def clean_env(port: int) -> dict[str, str]:
    """The user's environment: no WORKQUEUE_ settings but the port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKQUEUE_")}
    env["WORKQUEUE_PORT"] = str(port)
    return env


def test_zero_config_broker_and_a_second_terminal(tmp_path: Path) -> None:
    assert WORKQUEUE.exists(), "the console script is installed with the project"
    port = free_port()
    env = clean_env(port)
    log_path = tmp_path / "terminal-1.log"
    with log_path.open("wb") as log:
        broker = subprocess.Popen(
            [str(WORKQUEUE), "broker"], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", broker, log_path.read_text)
        token_file = tmp_path / "workqueue-admin-token"
        assert (tmp_path / "workqueue.db").exists()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert "workqueue-admin-token" in log_path.read_text()

        def terminal_2(*args: str, stdin: str | None = None) -> str:
            done = subprocess.run(
                [str(WORKQUEUE), *args],
                cwd=tmp_path,
                env=env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        work_id, status = terminal_2(
            "submit", "-", "--type", "test", "--everyone", stdin="echo hello\n"
        ).split()
        assert status == "PENDING"
        listing = terminal_2("list")
        assert work_id in listing
        assert "PENDING" in listing
        assert "echo hello" in terminal_2("get", work_id)
    finally:
        broker.send_signal(signal.SIGTERM)
        status_code = broker.wait(60)
    log_text = log_path.read_text()
    assert status_code == 0, log_text
    assert token not in log_text  # the token is never logged, only where it is
    assert "broker stopped" in log_text


AGENT = ".venv/bin/workqueue agent --register laptop"
SUBMIT = (
    "echo 'echo \"hello from $(uname -s)\"' | .venv/bin/workqueue submit - --type shell --everyone"
)


def test_the_walkthrough_runs_a_script_end_to_end_on_one_machine(tmp_path: Path) -> None:
    """README: broker in terminal 1, ``workqueue agent`` in 2, submit + get/events in 3.

    The commands are the README's own (checked verbatim), run by ``sh`` in a directory
    where ``.venv`` links to the project's venv. The test machine may run as root, so
    the agent gets ``WORKQUEUE_ALLOW_ROOT`` from the environment when it does.
    """
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for command in (AGENT, SUBMIT, ".venv/bin/workqueue get <work-id>"):
        assert command in readme, command
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = free_port()
    env = clean_env(port)
    if os.geteuid() == 0:
        env["WORKQUEUE_ALLOW_ROOT"] = "true"
    logs = {n: tmp_path / f"terminal-{n}.log" for n in (1, 2)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with logs[1].open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [str(WORKQUEUE), "broker"], cwd=tmp_path, env=env, stdout=log, stderr=log
                )
            )
        wait_ready(f"http://127.0.0.1:{port}", processes[0], logs[1].read_text)
        with logs[2].open("wb") as log:
            processes.append(
                subprocess.Popen(
                    ["sh", "-c", f"exec {AGENT}"], cwd=tmp_path, env=env, stdout=log, stderr=log
                )
            )

        def terminal_3(command: str) -> str:
            done = subprocess.run(
                ["sh", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        work_id, status = terminal_3(SUBMIT).split()
        assert status == "PENDING"
        deadline = time.monotonic() + 60
        while "SUCCEEDED" not in (shown := terminal_3(f".venv/bin/workqueue get {work_id}")):
            assert processes[1].poll() is None, logs[2].read_text()
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        assert f"hello from {os.uname().sysname}" in shown
        events = terminal_3(f".venv/bin/workqueue events {work_id}")
        assert [line.split()[-1] for line in events.splitlines()[1:]] == [
            "submitted",
            "claimed",
            "succeeded",
        ]
        token_file = tmp_path / "workqueue-agent-laptop.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT if process is processes[-1] else signal.SIGTERM)
                process.wait(60)
    assert processes[1].returncode == 0, logs[2].read_text()
    assert token_file.read_text().strip() not in logs[2].read_text()
