"""The store named by a database URL: ``sqlite:///PATH``, ``postgresql://…`` or ``memory://``.

Adapters are imported only when their URL is used, so a SQLite broker does not
need psycopg installed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import attrs

from workqueue_broker.config import ConfigError
from workqueue_core.ports import Notifier, RandomSource, Store

StoreKind = Literal["sqlite", "postgresql", "memory"]
DEFAULT_SCHEMA = "workqueue"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@attrs.frozen
class StoreLocation:
    """A parsed database URL: the kind of store and where it is."""

    kind: StoreKind
    path: Path | None = None
    dsn: str | None = attrs.field(default=None, repr=False)
    schema: str = DEFAULT_SCHEMA

    def describe(self) -> str:
        """Where the store is, without credentials (safe to log)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        if self.kind == "memory":
            return "memory://"
        parts = urlsplit(self.dsn or "")
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path} (schema {self.schema})"


def parse_database_url(url: str) -> StoreLocation:
    """Parse a database URL; ``ConfigError`` names what is wrong with it."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError(
            "the database URL must look like sqlite:///PATH, postgresql://… or memory://"
        )
    scheme = scheme.lower()
    if scheme == "memory":
        if rest not in ("", "/"):
            raise ConfigError("memory:// takes no path")
        return StoreLocation("memory")
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path (as SQLAlchemy spells them)
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
        path_text = rest[1:].split("?", 1)[0]
        if path_text in ("", ":memory:"):
            raise ConfigError("a SQLite URL needs a file path (use memory:// for no file)")
        return StoreLocation("sqlite", path=Path(path_text))
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = DEFAULT_SCHEMA
        kept = []
        for key, value in query:
            if key == "schema":
                schema = value
            else:
                kept.append((key, value))
        if not _SCHEMA_RE.match(schema):
            raise ConfigError(
                "the schema must be 1-63 characters of a-z, 0-9 and _, not starting with a digit"
            )
        dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
        return StoreLocation("postgresql", dsn=dsn, schema=schema)
    raise ConfigError(
        f"unknown database URL scheme {scheme!r}: use sqlite:///PATH, postgresql://… or memory://"
    )


@attrs.frozen
class OpenedStore:
    """An open store, its notifier, and the readiness probe of ``/readyz``."""

    store: Store
    notifier: Notifier
    ready_check: Callable[[], Awaitable[None]]
    location: StoreLocation


_PROBE_ID = UUID(int=0)


def _probe(store: Store) -> Callable[[], Awaitable[None]]:
    async def ready_check() -> None:
        # A cheap indexed read of the queue table: fails when the store is unreachable
        # or its schema is missing or unknown.
        await store.get(_PROBE_ID)

    return ready_check


def _missing_extra(error: ImportError, extra: str) -> ConfigError:
    return ConfigError(
        f"this store needs the {extra!r} extra (pip install 'workqueue[{extra}]'): {error}"
    )


@asynccontextmanager
async def open_store(
    location: StoreLocation, *, migrate: bool = True, random_source: RandomSource | None = None
) -> AsyncIterator[OpenedStore]:
    """Open (and by default migrate) the store; close it on exit."""
    if location.kind == "memory":
        from workqueue_memory import MemoryStore

        memory = MemoryStore(random_source)
        yield OpenedStore(memory, memory.notifier, _probe(memory), location)
        return
    if location.kind == "sqlite":
        from workqueue_sqlite import SqliteStore

        assert location.path is not None
        if location.path.parent != Path() and not location.path.parent.is_dir():
            raise ConfigError(f"the directory of the SQLite file {location.path} does not exist")
        sqlite = await SqliteStore.open(location.path, random_source=random_source, migrate=migrate)
        try:
            yield OpenedStore(sqlite, sqlite.notifier, _probe(sqlite), location)
        finally:
            await sqlite.close()
        return
    try:
        from workqueue_postgres import PostgresStore
    except ImportError as error:
        raise _missing_extra(error, "postgres") from None
    assert location.dsn is not None
    postgres = await PostgresStore.open(
        location.dsn, schema=location.schema, random_source=random_source, migrate=migrate
    )
    try:
        yield OpenedStore(postgres, postgres.notifier, _probe(postgres), location)
    finally:
        await postgres.close()


async def migrate_store(location: StoreLocation) -> int:
    """Apply pending migrations; returns the schema version now in place."""
    if location.kind == "memory":
        return 0
    if location.kind == "sqlite":
        import workqueue_sqlite

        assert location.path is not None
        return await workqueue_sqlite.migrate(location.path)
    try:
        import workqueue_postgres
    except ImportError as error:
        raise _missing_extra(error, "postgres") from None
    assert location.dsn is not None
    return await workqueue_postgres.migrate(location.dsn, location.schema)
