"""Smoke test of the controller benchmark: both systems drive every Work to Succeeded.

It runs ``python -m benchmarks.controller --quick --repeat 2`` with few Works as a real process and
checks the report's shape and completeness, never its timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKS = 20


def test_quick_controller_benchmark_succeeds_every_work(tmp_path: Path) -> None:
    output = tmp_path / "controller.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.controller",
            "--quick",
            "--works",
            str(WORKS),
            "--repeat",
            "2",
            "--timeout",
            "60",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(output.read_text())
    assert report["works"] == WORKS
    assert [len(round_) for round_ in report["rounds"]] == [3, 3]
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == {"ours", "kopf", "floor"}
    for system, result in results.items():
        assert result["error"] is None, (system, result["error"])
        assert result["succeeded"] == result["stored_succeeded"] == WORKS, (system, result)
        assert result["jobs"] == WORKS, (system, result)  # one Job per Work, no duplicate
        assert result["works_per_second"] > 0
    assert results["floor"]["requests_by_verb"] == {}  # in-process: no API request at all
    for system in ("ours", "kopf"):
        result = results[system]
        assert result["requests_by_verb"]["create"] == WORKS  # the Jobs
        assert result["writes_per_work"] >= 2  # a Job create and a Work status write
        assert result["latency_p50_ms"] <= result["latency_p99_ms"]
    assert results["ours"]["reads_per_work"] == 0  # cache reads only, no get/list per Work
    assert {"throughput_ours_over_kopf", "target_throughput_2x", "target_writes_le_5"} <= set(
        report["ratios"]
    )
    assert report["machine"]["cores"] >= 1
    assert "| ours |" in completed.stdout and "| kopf |" in completed.stdout
