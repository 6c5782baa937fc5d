"""``/healthz`` and ``/readyz`` of the agent process (served by ``workqueue_broker.probes``).

* ``/healthz``: 200 while the process's event loop answers;
* ``/readyz``: 200 once the worker claims (with ``--kubernetes``, after the runner's
  informer has listed the agent's Works); 503 while the agent starts, and while it drains
  after the first SIGTERM.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs

from workqueue_agent.signals import run_until_signalled
from workqueue_broker.config import ConfigError
from workqueue_broker.probes import HealthApp, health_server, listen
from workqueue_core.executor.worker import Worker

__all__ = ["AgentHealth", "run_worker", "serve_health"]

log = logging.getLogger("workqueue.agent")


@attrs.define
class AgentHealth:
    """What ``/readyz`` reports: the worker, once it claims."""

    worker: Worker | None = None

    @property
    def ready(self) -> bool:
        return self.worker is not None and not self.worker.stopping


@asynccontextmanager
async def serve_health(host: str, port: int, state: AgentHealth) -> AsyncIterator[None]:
    """Serve ``state`` on ``host:port`` while the block runs; nothing when ``port`` is 0.

    ``ConfigError`` when the port cannot be bound (in use, an address not of this host).
    """
    if not port:
        yield
        return
    try:
        sock = listen(host, port)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"--health-port: cannot listen on {host}:{port}: {reason}") from None
    server = health_server(HealthApp(lambda: state.ready), host, port)
    log.info("/healthz and /readyz on %s:%d", host, port)
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield
            finally:
                tg.cancel_scope.cancel()


async def run_worker(worker: Worker, state: AgentHealth) -> None:
    """Run ``worker`` until signalled (``run_until_signalled``); ready once it claims."""
    async with anyio.create_task_group() as tg:
        await tg.start(run_until_signalled, worker)
        state.worker = worker
