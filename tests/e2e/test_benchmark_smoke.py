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
            "ours,floor,pgqueuer,procrastinate,executor",
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
    assert {"ours", "floor", "pgqueuer", "procrastinate"} <= set(drains)
    for system, result in drains.items():
        assert result["error"] is None, (system, result["error"])
        assert result["completed"] == result["submitted"] == 300, (system, result)
    assert [lat["error"] for lat in report["latency"]] == [None, None, None]
    assert all(lat["samples"] > 0 for lat in report["latency"])
    assert "| ours |" in completed.stdout
