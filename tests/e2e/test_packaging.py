"""The wheel installs every package top-level, as users import them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_every_package_top_level(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("workqueue-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    packages = {
        folder.name
        for parent in ("adapters", "entrypoints")
        for folder in (ROOT / "src" / parent).iterdir()
        if (folder / "__init__.py").is_file()
    }
    assert tops == {"workqueue_core"} | packages
    assert {"workqueue_memory", "workqueue_broker", "workqueue_cli"} <= packages
    for required in (
        "workqueue_core/py.typed",
        "workqueue_core/testing/conformance/__init__.py",
        "workqueue_core/testing/conformance/machine.py",
        "workqueue_memory/store.py",
        "workqueue_memory/py.typed",
    ):
        assert required in names, required
