"""Smoke test of the PostgreSQL benchmark: every system drains every item (no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DSN = os.environ.get("WORKQUEUE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def test_quick_benchmark_drains_everything(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    env = {**os.environ, "WORKQUEUE_BENCH_PG": DSN}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.postgres",
            "--quick",
            "--jobs",
            "300",
            "--systems",
            "ours,floor,pgqueuer,procrastinate,executor,narrow",
            "--latency-sizes",
            "200,400",
            "--latency-samples",
            "20",
            "--notify-samples",
            "5",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(output.read_text())
    drains = report["drains"]
    assert {"ours", "floor", "pgqueuer", "procrastinate", "executor", "narrow"} <= set(drains)
    for system, result in drains.items():
        assert result["error"] is None, (system, result["error"])
        assert result["completed"] == result["submitted"] == 300, (system, result)
    assert [lat["error"] for lat in report["latency"]] == [None, None, None]
    assert all(lat["samples"] > 0 for lat in report["latency"])
    assert "| ours |" in completed.stdout


def test_http_cycles_quick_drains_everything(tmp_path: Path) -> None:
    """The HTTP benchmark drives a real broker per store; every item ends in the log."""
    output = tmp_path / "http.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.http_cycles",
            "--quick",
            "--items",
            "200",
            "--batch",
            "20",
            "--dsn",
            DSN,
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads(output.read_text())["results"]
    assert [r["store"] for r in results] == ["sqlite", "postgresql"]
    for result in results:
        assert result["verified"], result
        assert result["problem"] is None, result
        assert result["errors"] == 0, result
        assert result["items"] == 200, result
        assert result["cycles_per_second"] > 0, result
    assert "| sqlite |" in completed.stdout


def test_local_agent_benchmark_runs_every_script(tmp_path: Path) -> None:
    """The local agent benchmark drives a broker and an agent process; every script ends."""
    output = tmp_path / "agent.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.local_agent",
            "--items",
            "30",
            "--singles",
            "2",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(output.read_text())
    assert report["agent"]["items"] == 30
    assert report["agent"]["items_per_second"] > 0
    assert report["spawn_floor_per_second"] > 0
    assert "| local agent (SQLite) | 30 | 8 |" in completed.stdout
