"""Turning connection failures into the core's ``StoreUnavailable``, without secrets."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


def where(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, never its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured server"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or ''}"


def describe(operation: str, dsn: str, error: BaseException) -> str:
    """A one-line message for a failed ``operation``: what, where and why, minus secrets."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        reason = reason.replace(str(password), "***")
    return (
        f"PostgreSQL at {where(dsn)} is unavailable during {operation}: "
        f"{type(error).__name__}: {reason}"
    )
