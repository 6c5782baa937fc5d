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
