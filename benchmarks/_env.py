"""What the benchmark ran on: the machine, PostgreSQL and library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import psycopg

PG_SETTINGS = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "max_connections",
    "work_mem",
    "wal_level",
    "full_page_writes",
    "max_wal_size",
)
LIBRARIES = ("psycopg", "psycopg-pool", "pgqueuer", "procrastinate", "anyio", "workqueue")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and load average (from /proc), Python and OS."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "load_average": _load(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def versions() -> dict[str, str]:
    """Installed versions of the libraries under test."""
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _with_unit(setting: str, unit: str | None) -> str:
    """``16384`` of ``8kB`` → ``128 MB``; other values as PostgreSQL shows them."""
    sizes = {"8kB": 8 * 1024, "kB": 1024, "MB": 1024 * 1024}
    if unit in sizes and setting.isdigit():
        size = int(setting) * sizes[unit]
        return f"{size / 1024 / 1024:g} MB" if size >= 1024 * 1024 else f"{size // 1024} kB"
    return f"{setting} {unit}" if unit else setting


async def postgres(dsn: str) -> dict[str, str]:
    """Server version and the settings that matter for queue throughput."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
        found = {"server_version": str(row[0]) if row else "unknown"}
        cur = await conn.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            (list(PG_SETTINGS),),
        )
        for name, setting, unit in await cur.fetchall():
            found[name] = _with_unit(str(setting), unit)
        return found
