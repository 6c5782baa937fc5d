"""``workqueue agent --health-port/--health-host``: flags, environment, TOML; bad values refused."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from workqueue_agent.config import ConfigError, load_agent_config


def test_the_health_port_is_off_unless_given() -> None:
    config = load_agent_config({}, {})
    assert (config.health_host, config.health_port) == ("127.0.0.1", 0)


def test_health_settings_come_from_flags_over_environment_over_file(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text('[agent]\nhealth_port = 9000\nhealth_host = "0.0.0.0"\n')
    config = load_agent_config({}, {}, toml)
    assert (config.health_host, config.health_port) == ("0.0.0.0", 9000)
    env = {"WORKQUEUE_HEALTH_PORT": "9001", "WORKQUEUE_HEALTH_HOST": "::"}
    config = load_agent_config({}, env, toml)
    assert (config.health_host, config.health_port) == ("::", 9001)
    config = load_agent_config({"health_port": "9002"}, env, toml)
    assert (config.health_host, config.health_port) == ("::", 9002)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("health_port", "-1"),
        ("health_port", "65536"),
        ("health_port", "http"),
        ("health_host", ""),
    ],
)
def test_bad_health_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.replace("_", "[-_]")):
        load_agent_config({name: value}, {})


@pytest.mark.parametrize("flag", ["--health-port", "--health-host"])
def test_the_cli_refuses_a_bad_health_setting_with_a_message(flag: str) -> None:
    value = "70000" if flag == "--health-port" else ""
    answer = subprocess.run(
        [sys.executable, "-m", "workqueue_cli", "agent", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode != 0
    assert flag.removeprefix("--") in answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr


def test_a_health_port_in_use_stops_the_agent_with_a_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        answer = subprocess.run(
            [
                *(sys.executable, "-m", "workqueue_cli", "agent", "--allow-root"),
                *("--health-port", str(port), "--agent-token", "x"),
                *("--url", "http://127.0.0.1:9"),  # never reached: the port is bound first
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert answer.returncode == 2, answer.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr
