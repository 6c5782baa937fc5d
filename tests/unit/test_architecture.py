"""The dependency rule of DESIGN §1, checked on the source itself.

import-linter (run by the test command) forbids named packages; these tests are
the allowlist side: the core imports nothing but the standard library, attrs,
anyio and PyYAML (Hypothesis in the testing kit only), and reads no clock,
environment or global randomness.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "workqueue_core"
ALLOWED = {"attrs", "anyio", "yaml", "workqueue_core"}
TESTING_ONLY = {"hypothesis"}
FORBIDDEN_STDLIB = {"os", "time", "random", "socket", "subprocess", "sqlite3", "threading"}
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid4"),
    ("uuid", "uuid1"),
}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_only_the_allowed_packages(path: Path) -> None:
    roots = imported_roots(ast.parse(path.read_text(), str(path)))
    allowed = ALLOWED | (TESTING_ONLY if "testing" in path.parts else set())
    third_party = {r for r in roots if r not in sys.stdlib_module_names and r != "__future__"}
    assert third_party <= allowed, f"{path.name} imports {sorted(third_party - allowed)}"
    assert not roots & FORBIDDEN_STDLIB, f"{path.name} imports {sorted(roots & FORBIDDEN_STDLIB)}"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_reads_no_clock_and_makes_no_random_ids(path: Path) -> None:
    calls = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            calls.add((node.value.id, node.attr))
    assert not calls & FORBIDDEN_CALLS, f"{path.name} uses {sorted(calls & FORBIDDEN_CALLS)}"


def test_the_check_would_catch_a_violation(tmp_path: Path) -> None:
    bad = ast.parse(
        "import os\nimport psycopg\nfrom datetime import datetime\nx = datetime.now()\n"
    )
    assert {"os", "psycopg"} <= imported_roots(bad)
    attrs_used = {
        (n.value.id, n.attr)
        for n in ast.walk(bad)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    assert ("datetime", "now") in attrs_used & FORBIDDEN_CALLS


SRC = CORE.parent
ARCHITECTURE = SRC.parent / "docs" / "architecture.md"


def _listed_modules() -> set[str]:
    """Module paths (relative to ``src/``) the layout block of architecture.md names."""
    listed: set[str] = set()
    stack: list[tuple[int, str]] = []
    text = ARCHITECTURE.read_text()
    block = text.split("## Packages and the dependency rule", 1)[1].split("```", 2)[1]
    for line in block.splitlines():
        name = line.strip().split(" ", 1)[0]
        if not name:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        path = (parent + name) if not name.startswith("src/") else name.removeprefix("src/")
        if name.endswith("/"):
            stack.append((indent, path))
        else:
            listed.add(path)
    return listed


def test_every_module_is_listed_in_architecture_md() -> None:
    modules = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    missing = sorted(modules - _listed_modules())
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_architecture_md_lists_no_module_that_does_not_exist() -> None:
    stale = sorted(p for p in _listed_modules() if not (SRC / p).is_file())
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"
