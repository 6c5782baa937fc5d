"""``workqueue agent --kubernetes``: claimed work runs as ``Work`` resources in a cluster.

The composition of the Kubernetes agent: a cluster client, the ``KubernetesRunner`` (one
Work per claim), by default the ``WorkController`` in the same process (reconciling only
the Works labelled with this agent's id: no leader election needed, each agent owns its
Works), and the core ``Worker`` around the runner. Of the work types it is given (by
default ``build`` and ``job``) it claims those whose kinds the cluster serves (as
``workqueue controller`` registers them): without Shipwright, only ``job``. On start
the agent resumes the Works it left behind (``KubernetesRunner.resume``): those whose
claims the broker says it still holds run on and are reported once; the others are
deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

import anyio

from workqueue_agent.config import AgentConfig, ConfigError
from workqueue_agent.health import AgentHealth, run_worker
from workqueue_controller.process import served_work_types
from workqueue_core.domain.errors import UnknownWork
from workqueue_core.domain.models import Agent, ExecutionRecord, WorkItem
from workqueue_core.executor.runner import Runner
from workqueue_core.executor.worker import Worker
from workqueue_core.ports.work_type import WorkType
from workqueue_core.work.claim_work import agent_selector
from workqueue_core.work.registry import WorkTypes
from workqueue_http.client import AuthError, BrokerClient
from workqueue_kubernetes.client import load_configuration, open_cluster_client
from workqueue_kubernetes.controller import ControllerOptions, WorkController
from workqueue_kubernetes.job import JobWorkType
from workqueue_kubernetes.port import NotFound
from workqueue_kubernetes.runner import ClaimLookup, KubernetesRunner
from workqueue_shipwright import BuildWorkType

__all__ = ["DEFAULT_NAMESPACE", "kubernetes_work_types", "serve_kubernetes"]

log = logging.getLogger("workqueue.agent")

DEFAULT_NAMESPACE = "default"


def _known() -> dict[str, WorkType]:
    return {"job": JobWorkType(), "build": BuildWorkType()}


def kubernetes_work_types(names: tuple[str, ...]) -> WorkTypes:
    """The registry of the Kubernetes work types ``names`` (``ConfigError`` for others)."""
    known = _known()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"--kubernetes runs the work types {', '.join(sorted(known))}; not {', '.join(unknown)}"
        )
    return WorkTypes([known[name] for name in names])


def _lookup(client: BrokerClient) -> ClaimLookup:
    async def lookup(work_id: UUID) -> WorkItem | ExecutionRecord | None:
        try:
            return await client.get(work_id)
        except UnknownWork:  # forgotten (its record pruned): no claim to hold
            return None
        except AuthError as error:
            if error.status == 403:  # an item the agent no longer holds
                return None
            raise

    return lookup


async def serve_kubernetes(
    config: AgentConfig,
    client: BrokerClient,
    agent: Agent,
    worker_for: Callable[[Runner], Worker],
    health: AgentHealth | None = None,
) -> Worker:
    """Run the Kubernetes agent until a signal; the worker (for its stats).

    ``health`` turns ready once the runner's informer has listed and the worker claims.
    """
    work_types = kubernetes_work_types(config.work_types)
    namespace = config.namespace or DEFAULT_NAMESPACE
    if config.kubeconfig is not None and not config.kubeconfig.is_file():
        raise ConfigError(f"the kubeconfig file {config.kubeconfig} does not exist")
    try:
        configuration = await load_configuration(
            str(config.kubeconfig) if config.kubeconfig is not None else None, config.context
        )
    except Exception as error:  # kubernetes-asyncio's ConfigException, a file it cannot read
        raise ConfigError(f"cannot load the Kubernetes configuration: {error}") from None
    async with open_cluster_client(configuration) as cluster:
        work_types = await served_work_types(cluster, work_types, namespace)
        if not len(work_types):
            raise ConfigError(
                f"the cluster serves none of the work types {', '.join(config.work_types)} "
                "(for build, install Shipwright)"
            )
        runner = KubernetesRunner(
            cluster,
            work_types,
            agent_id=agent.id,
            namespace=namespace,
            local_retry_limit=config.local_retries,
            finished_ttl=config.work_ttl,
        )
        try:
            resumed = await runner.resume(_lookup(client))
        except NotFound:
            raise ConfigError(
                "the cluster does not serve works.brokkr.io: install the Work CRD "
                "(kubectl apply -f deploy/crds/work.yaml)"
            ) from None
        worker = worker_for(runner)
        worker.resume(resumed)
        log.info(
            "agent %s runs %s as Works in namespace %s (%d resumed, controller %s)",
            agent.name,
            ",".join(work_types.names),
            namespace,
            len(resumed),
            "in process" if config.controller else "elsewhere",
        )
        async with anyio.create_task_group() as tg:
            if config.controller:
                controller = WorkController(
                    cluster,
                    work_types,
                    ControllerOptions(namespace=namespace, work_selector=agent_selector(agent.id)),
                )
                await tg.start(controller.run)
            await tg.start(runner.run_informer)
            await run_worker(worker, health if health is not None else AgentHealth())
            tg.cancel_scope.cancel()
    return worker
