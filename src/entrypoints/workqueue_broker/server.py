"""The composition root: store + broker service + HTTP API + maintenance, on uvicorn.

Shutdown on SIGTERM or SIGINT is graceful: the server stops accepting
connections, lets requests in flight finish (up to ``shutdown_timeout``), then
maintenance stops and the store is closed; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import signal
from collections.abc import Callable, Generator

import anyio
import structlog
import uvicorn
from prometheus_client import CollectorRegistry

from workqueue_broker.admin_tokens import AdminTokens, resolve_admin_tokens
from workqueue_broker.clock import SystemClock
from workqueue_broker.config import BrokerConfig, ConfigError
from workqueue_broker.ids import uuid7
from workqueue_broker.logs import configure_logging
from workqueue_broker.maintenance import (
    CallbackDelivery,
    MaintenanceMetrics,
    MaintenancePlan,
    run_maintenance,
)
from workqueue_broker.stores import OpenedStore, open_store, parse_database_url
from workqueue_broker.work_types import broker_spec_validator
from workqueue_core.domain.errors import SchemaMismatch, StoreUnavailable
from workqueue_core.service.broker import BrokerService
from workqueue_http.callbacks import HttpxCallbackPoster, encode_record
from workqueue_http.metrics import BrokerMetrics
from workqueue_http.server import create_app

log = structlog.get_logger("workqueue.broker")


class BrokerStartError(Exception):
    """The broker could not start; the message says why in one line."""


class _Server(uvicorn.Server):
    """uvicorn's server, with signal handling that stops it without re-raising the signal.

    uvicorn re-raises a captured SIGTERM after its own shutdown, which would kill
    the process before the store is closed; here the signal only asks the server
    to exit (and ``on_exit`` answers the long-polls in flight), and the caller
    finishes the shutdown.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            installed.append(sig)
        try:
            yield
        finally:
            for number in installed:
                loop.remove_signal_handler(number)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            log.info("shutting down", signal=signal.Signals(sig).name)
        self.should_exit = True
        self.on_exit()


def new_token() -> str:
    """A fresh agent token secret."""
    return secrets.token_urlsafe(32)


async def serve(config: BrokerConfig) -> None:
    """Run the broker until SIGTERM/SIGINT; raises ``BrokerStartError`` if it cannot start."""
    location = parse_database_url(config.database_url)
    admin = resolve_admin_tokens(config)
    if admin.generated_file is not None:
        log.warning(
            "no admin token configured: generated one (mode 0600); "
            "the CLI run from this directory uses it",
            token_file=str(admin.generated_file),
        )
    else:
        log.info("admin tokens loaded", source=admin.source, count=len(admin.tokens))
    try:
        async with open_store(location, migrate=config.migrate) as opened:
            await opened.ready_check()
            await _serve_with(config, opened, admin)
    except SchemaMismatch as error:
        raise BrokerStartError(f"the store {location.describe()}: {error}") from None
    except (StoreUnavailable, OSError) as error:
        raise BrokerStartError(f"cannot open the store {location.describe()}: {error}") from None
    log.info("broker stopped")


async def _serve_with(config: BrokerConfig, opened: OpenedStore, admin: AdminTokens) -> None:
    registry = CollectorRegistry()
    http_metrics = BrokerMetrics(registry)
    service = BrokerService(
        opened.store,
        SystemClock(),
        uuid7,
        new_token,
        notifier=opened.notifier,
        spec_validator=broker_spec_validator(),
    )
    app = create_app(
        service,
        admin_tokens=admin.tokens,
        max_body_bytes=config.max_body_bytes,
        ready_check=opened.ready_check,
        metrics=http_metrics,
    )
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,  # the HTTP adapter logs each request itself
            timeout_graceful_shutdown=math.ceil(config.shutdown_timeout),
            server_header=False,
            lifespan="on",
        ),
        on_exit=service.stop_waiting,
    )
    plan = MaintenancePlan(
        config.sweep_interval, config.prune_interval, config.retention, config.callback_interval
    )
    metrics = MaintenanceMetrics(registry)
    log.info(
        "broker starting",
        url=f"http://{config.host}:{config.port}",
        store=opened.location.describe(),
        sweep_interval=config.sweep_interval,
        prune_interval=config.prune_interval,
        retention_seconds=config.retention.total_seconds(),
        callback_interval=config.callback_interval,
    )
    # httpx logs every request's URL at INFO; callback URLs may carry secrets in the query.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    failed = False
    async with HttpxCallbackPoster() as poster, anyio.create_task_group() as group:
        callbacks = CallbackDelivery(poster, encode_record)
        group.start_soon(
            run_maintenance, service, plan, metrics, http_metrics.observe_sweep, callbacks
        )
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits this way when it cannot bind or start the app
            failed = True
        group.cancel_scope.cancel()
    if failed or not server.started:
        raise BrokerStartError(f"could not listen on {config.host}:{config.port}")


def run(config: BrokerConfig) -> int:
    """Configure logging and run the broker; the process exit status."""
    configure_logging(config.log_format, config.log_level)
    try:
        asyncio.run(serve(config))
    except (BrokerStartError, ConfigError) as error:
        log.error(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
