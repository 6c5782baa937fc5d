"""The README's first command runs the quickstart; it must keep working as a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_prints_the_timeline() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "SUCCEEDED after 2 runs: sha256:4f1c" in lines[0]
    transitions = [line.split()[1:4] for line in lines[1:]]
    assert transitions == [
        ["-", "->", "PENDING"],
        ["PENDING", "->", "CLAIMED"],
        ["CLAIMED", "->", "PENDING"],
        ["PENDING", "->", "CLAIMED"],
        ["CLAIMED", "->", "SUCCEEDED"],
    ]
