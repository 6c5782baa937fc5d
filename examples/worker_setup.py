"""Wiring shared by the executor examples: the store, a broker service, the work they share.

``WORKQUEUE_DATABASE_URL`` names the store both processes use:

- ``sqlite:///workqueue-example.db`` (the default): a file in the current directory;
- ``postgresql://root@127.0.0.1:5432/test?schema=workqueue_example``: PostgreSQL,
  in the given schema (created and migrated on first use).
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workqueue_core.ports import Store
from workqueue_core.service.broker import BrokerService

DEFAULT_DATABASE_URL = "sqlite:///workqueue-example.db"
THUMBNAIL = "thumbnail"
"""The work type of the examples: make a thumbnail of an image (simulated)."""


class SystemClock:
    """The wall clock (the core never reads it itself)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def database_url() -> str:
    """The store URL from the environment, or the SQLite default."""
    return os.environ.get("WORKQUEUE_DATABASE_URL", DEFAULT_DATABASE_URL)


def split_schema(url: str) -> tuple[str, str]:
    """A PostgreSQL URL without its ``schema`` query parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "workqueue")
    kept = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(("postgresql", parts.netloc, parts.path, kept, "")), schema


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[Store]:
    """Open (and migrate) the store the URL names; closed on exit."""
    if url.startswith(("postgresql://", "postgres://")):
        from workqueue_postgres import PostgresStore

        dsn, schema = split_schema(url)
        postgres = await PostgresStore.open(dsn, schema=schema)
        try:
            yield postgres
        finally:
            await postgres.close()
    elif url.startswith("sqlite:///"):
        from workqueue_sqlite import SqliteStore

        sqlite = await SqliteStore.open(url.removeprefix("sqlite:///"))
        try:
            yield sqlite
        finally:
            await sqlite.close()
    else:
        raise SystemExit(f"WORKQUEUE_DATABASE_URL must be sqlite:///PATH or postgresql://…: {url}")


@asynccontextmanager
async def open_broker(url: str | None = None) -> AsyncIterator[BrokerService]:
    """A broker service (the library's use cases) over the store the URL names."""
    async with open_store(url or database_url()) as store:
        yield BrokerService(
            store,
            SystemClock(),
            uuid.uuid4,
            lambda: secrets.token_urlsafe(32),
            notifier=getattr(store, "notifier", None),
            poll_interval=0.5,
        )


def thumbnail_spec(image: str, seconds: float = 0.1) -> str:
    """The spec of a thumbnail item: which image, and how long the (simulated) work takes."""
    return json.dumps({"image": image, "seconds": seconds})
