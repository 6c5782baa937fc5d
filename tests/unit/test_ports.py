"""The agent-side port is one signature set that both brokers satisfy, checked by mypy.

``BrokerService`` (in-process) and ``BrokerClient`` (HTTP) must both be ``WorkSource``s,
structurally: a method renamed or a parameter changed on either side is a type error
here, not a surprise for a ``Worker`` at run time.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
from workqueue_core.ports.agent import WorkSource
from workqueue_core.service.broker import BrokerService
from workqueue_http.client import BrokerClient


def in_process(service: BrokerService) -> WorkSource:
    return service


def over_http(client: BrokerClient) -> WorkSource:
    return client
"""

BROKEN = """
from workqueue_core.ports.agent import WorkSource


class Partial:
    async def claim_next(self) -> list[object]:
        return []


def wrong(partial: Partial) -> WorkSource:
    return partial
"""


def run_mypy(source: str, tmp_path: Path) -> tuple[str, int]:
    module = tmp_path / "check_ports.py"
    module.write_text(textwrap.dedent(source))
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(module),
        ]
    )
    return stdout + stderr, status


@pytest.mark.slow
def test_broker_service_and_client_both_satisfy_the_agent_port(tmp_path: Path) -> None:
    output, status = run_mypy(CHECK, tmp_path)
    assert status == 0, output


@pytest.mark.slow
def test_the_structural_check_refuses_a_partial_source(tmp_path: Path) -> None:
    output, status = run_mypy(BROKEN, tmp_path)
    assert status == 1
    assert 'Incompatible return value type (got "Partial", expected "WorkSource")' in output
