"""The composition root of ``workqueue controller``: cluster client, work types, controller,
leader election, health server and signals.

The first SIGTERM or SIGINT stops the process: the reconciles in flight are cancelled
(every action is idempotent, so a successor repeats nothing twice), and a leader releases
its Lease so a standby replica takes over at once.
"""

from __future__ import annotations

import signal

import anyio
import structlog
from anyio.abc import TaskStatus

from workqueue_broker.logs import configure_logging
from workqueue_broker.probes import health_server
from workqueue_controller.config import ControllerConfig
from workqueue_controller.health import ReplicaState, controller_health_app
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.ports.work_type import WorkType
from workqueue_core.work.registry import WorkTypes
from workqueue_kubernetes.client import load_configuration, open_cluster_client
from workqueue_kubernetes.controller import ControllerOptions, WorkController
from workqueue_kubernetes.job import JobWorkType
from workqueue_kubernetes.leader import LeaderElection, LeaderElector
from workqueue_kubernetes.port import ClusterClient, ClusterError, NotFound
from workqueue_shipwright import BuildWorkType

__all__ = ["controller_work_types", "run", "serve", "served_work_types"]

log = structlog.get_logger("workqueue.controller")


def controller_work_types() -> WorkTypes:
    """The work types the controller runs: ``build`` (Shipwright) and ``job``."""
    return WorkTypes([BuildWorkType(), JobWorkType()])


async def served_work_types(
    client: ClusterClient, work_types: WorkTypes, namespace: str | None
) -> WorkTypes:
    """The work types whose resource kinds the cluster serves.

    A kind is probed with a list narrowed to one name; a 404 means the API server does not
    serve it (Shipwright is not installed): its work type is left out with a warning, so
    its Works fail ``UnknownWorkType`` instead of the controller waiting forever for an
    informer that cannot list.  Any other error keeps the work type (its informer retries).
    """
    served: list[WorkType] = []
    for work_type in work_types:
        missing = []
        for kind in work_type.kinds:
            try:
                await client.list(
                    kind, namespace=namespace, field_selector="metadata.name=workqueue-probe"
                )
            except NotFound:
                missing.append(f"{kind.plural}.{kind.group or 'core'}/{kind.version}")
            except ClusterError:
                pass
        if missing:
            log.warning(
                "work type not served by this cluster; its Works fail UnknownWorkType",
                work_type=work_type.name,
                missing=", ".join(missing),
            )
        else:
            served.append(work_type)
    return WorkTypes(served)


def _options(config: ControllerConfig) -> ControllerOptions:
    return ControllerOptions(
        namespace=config.namespace,
        concurrency=config.concurrency,
        status_delay=config.status_delay,
        retry_policy=RetryPolicy(
            base_delay=config.retry_base_delay,
            max_delay=max(config.retry_max_delay, config.retry_base_delay),
        ),
    )


async def reconcile_with_election(
    client: ClusterClient,
    work_types: WorkTypes,
    config: ControllerConfig,
    state: ReplicaState,
) -> None:
    """Reconcile while this replica holds the Lease (or always, without election)."""
    options = _options(config)

    async def lead() -> None:
        controller = WorkController(client, work_types, options)
        state.controller = controller
        state.leading = True
        log.info("reconciling", namespace=config.namespace or "*", identity=config.identity)
        try:
            await controller.run()
        finally:
            state.leading = False

    if not config.leader_elect:
        await lead()
        return
    election = LeaderElection(
        name=config.lease_name,
        namespace=config.lease_namespace_or_default,
        identity=config.identity,
        lease_duration=config.lease_duration,
        renew_deadline=config.renew_deadline,
        retry_period=config.retry_period,
    )
    await LeaderElector(client, election).run(lead)


async def serve(
    config: ControllerConfig,
    work_types: WorkTypes | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the controller until cancelled or signalled."""
    configuration = await load_configuration(
        str(config.kubeconfig) if config.kubeconfig is not None else None, config.context
    )
    async with open_cluster_client(configuration) as client:
        registry = work_types
        if registry is None:
            registry = await served_work_types(client, controller_work_types(), config.namespace)
        state = ReplicaState(
            WorkController(client, registry, _options(config)),
            leader_election=config.leader_elect,
        )
        async with anyio.create_task_group() as tg:
            if config.health_port:
                server = health_server(
                    controller_health_app(state), config.health_host, config.health_port
                )
                tg.start_soon(server.serve)

            async def watch_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for signum in signals:
                        log.info("shutting down", signal=signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_signals)
            task_status.started()
            await reconcile_with_election(client, registry, config, state)
            tg.cancel_scope.cancel()


def run(config: ControllerConfig) -> int:
    """The process: configure logging, serve, and return the exit status."""
    configure_logging(config.log_format, config.log_level)
    log.info(
        "controller starting",
        namespace=config.namespace or "*",
        leader_elect=config.leader_elect,
        identity=config.identity,
    )
    anyio.run(serve, config)
    log.info("controller stopped")
    return 0
