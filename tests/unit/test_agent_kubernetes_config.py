"""``workqueue agent --kubernetes`` settings: flags, environment, TOML; bad values refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workqueue_agent.config import KUBERNETES_WORK_TYPES, ConfigError, load_agent_config
from workqueue_agent.kubernetes import kubernetes_work_types


def test_kubernetes_settings_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(
        '[agent]\nkubernetes = true\nnamespace = "builds"\nlocal_retries = "2"\n'
        'kubeconfig = "/etc/kube/config"\ncontext = "prod"\nwork_ttl = "1m"\n'
    )
    config = load_agent_config({}, {}, toml)
    assert config.kubernetes
    assert (config.namespace, config.local_retries, config.context) == ("builds", 2, "prod")
    assert config.kubeconfig == Path("/etc/kube/config")
    assert config.work_ttl == 60.0
    assert config.controller
    assert config.work_types == KUBERNETES_WORK_TYPES  # job, not shell
    env = {"WORKQUEUE_LOCAL_RETRIES": "0", "WORKQUEUE_CONTROLLER": "false"}
    config = load_agent_config({"local_retries": "all"}, env, toml)
    assert config.local_retries is None  # the whole remaining budget
    assert not config.controller
    assert load_agent_config({}, {}).kubernetes is False
    assert load_agent_config({}, {}).work_types == ("shell",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("local_retries", "-1"),
        ("local_retries", "101"),
        ("local_retries", "many"),
        ("namespace", "Not_A_Name"),
        ("kubernetes", "maybe"),
    ],
)
def test_bad_kubernetes_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_agent_config({name: value}, {})


def test_only_kubernetes_work_types_run_on_kubernetes() -> None:
    assert kubernetes_work_types(("job",)).names == frozenset({"job"})
    with pytest.raises(ConfigError, match="shell"):
        kubernetes_work_types(("job", "shell"))


def test_the_cli_refuses_a_bad_local_retry_limit_with_a_message() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "workqueue_cli", "agent", "--kubernetes", "--local-retries", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode != 0
    assert "local" in answer.stderr and "Traceback" not in answer.stderr
