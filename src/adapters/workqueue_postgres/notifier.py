"""Wake-ups from PostgreSQL LISTEN/NOTIFY: the ``Notifier`` port across brokers.

Each store sends ``NOTIFY`` on its schema's channel in the transaction that makes an
item PENDING or changes an agent; commits deliver it to every listener. The
notifier listens on a dedicated connection, reconnects when it is lost, and after
every (re)connection wakes its waiters so they look again: a notification sent
while it was disconnected is not lost, only coalesced.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

import psycopg
from psycopg import sql as pgsql

from workqueue_core.service.notifier import InProcessNotifier


def channel_for(schema: str) -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, as PostgreSQL requires)."""
    name = f"workqueue.{schema}"
    if len(name.encode()) <= 63:
        return name
    return "workqueue." + hashlib.sha256(schema.encode()).hexdigest()[:40]


class PostgresNotifier:
    """A ``Notifier`` fed by LISTEN on one channel; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        *,
        connect_kwargs: dict[str, Any] | None = None,
        retry_delay: float = 0.5,
    ) -> None:
        self._dsn = dsn
        self.channel = channel
        self._kwargs = dict(connect_kwargs or {})
        self._retry_delay = retry_delay
        self._local = InProcessNotifier()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0
        """How many times the listener has (re)connected."""

    def notify(self) -> None:
        """Wake this process's waiters (what a received NOTIFY does)."""
        self._local.notify()

    def mark(self) -> int:
        """A position in the stream of wake-ups."""
        return self._local.mark()

    async def wait(self, timeout: float, since: int | None = None) -> bool:
        """Wait for a wake-up after ``since`` or ``timeout`` seconds; True if woken."""
        return await self._local.wait(timeout, since)

    @property
    def listening(self) -> bool:
        """True while the listener's connection is up."""
        return self._listening.is_set()

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; return once LISTEN is in place (or after ``timeout``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listening.clear()

    async def _run(self) -> None:
        listen = pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel))
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, **self._kwargs
                )
                async with conn:
                    await conn.execute(listen)
                    self.connections += 1
                    self._listening.set()
                    self._local.notify()  # whatever happened while away: look again
                    async for _ in conn.notifies():
                        self._local.notify()
            except (psycopg.OperationalError, psycopg.InterfaceError):
                pass
            self._listening.clear()
            await asyncio.sleep(self._retry_delay)
