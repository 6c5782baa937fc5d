"""The Work controller: informers feed a key queue; workers reconcile one Work at a time.

Level-triggered, in the manner of controller-runtime: an informer keeps a cache of the
Works and one of each kind of object the registered work types create (Jobs, BuildRuns,
…, selected by the ``workqueue.dev/work-uid`` label). Any change of a Work, or of an
object whose controlling owner is a Work, queues that Work's key. A worker takes the
key, reads the Work and its instance objects **from the caches** (never from the API
server), calls the pure ``workqueue_core.work.reconcile.reconcile``, and performs the
actions it returns, in order:

* stop steps (delete with the step's propagation policy, or a merge patch; NotFound is
  done);
* the create of the next instance's objects (AlreadyExists is done: names are
  deterministic);
* the status write, a PUT to the status subresource carrying the Work's
  ``resourceVersion`` (a 409 Conflict means the cache was stale: the key is reconciled
  again, with backoff, once the cache has caught up — never a blind overwrite);
* a requeue after a delay (a retry's backoff, a claim timeout to check).

A reconcile that raises is retried with per-key exponential backoff (the queue's rate
limiter); a success forgets the key's failures. There is no polling loop: between events
and requeues the controller waits.

The same ``WorkController`` runs in ``workqueue controller`` and inside the agent
process: both build it with a ``ClusterClient`` and a ``WorkTypes`` registry and call
``run``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
from anyio.abc import TaskStatus

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import Failure
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.ports.cluster import (
    WORKS,
    AlreadyExists,
    ClusterClient,
    ClusterError,
    Conflict,
    Invalid,
    NotFound,
    PropagationPolicy,
    ResourceKind,
)
from workqueue_core.ports.work_type import StopStep, WorkType
from workqueue_core.work.reconcile import (
    ApplyInstance,
    Decision,
    Requeue,
    StopInstance,
    WriteStatus,
    apply_refused,
    reconcile,
)
from workqueue_core.work.reconcile_labels import WORK_UID_LABEL, group_instances
from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.resource import WorkResource
from workqueue_kubernetes.informer import (
    Backoff,
    CacheEvent,
    CacheEventType,
    Informer,
    controller_owner_key,
)
from workqueue_kubernetes.keyqueue import KeyQueue, QueueShutDown
from workqueue_kubernetes.metrics import ControllerStats

__all__ = ["ControllerOptions", "WorkController"]

log = logging.getLogger("workqueue.controller")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _concurrency(_: object, __: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 256:
        raise ValueError(f"concurrency must be in 1..256, got {value}")


@attrs.frozen
class ControllerOptions:
    """Which Works to reconcile, and how many at once.

    ``namespace`` None watches every namespace. ``work_selector`` narrows the Works (an
    agent's embedded controller reconciles only the Works labelled with its own id).
    ``retry_policy`` is the backoff for Works without a ``workqueue.dev/retry-policy``
    annotation.
    """

    namespace: str | None = None
    work_selector: str | None = None
    concurrency: int = attrs.field(default=4, validator=_concurrency)
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    watch_timeout: int = 300
    informer_backoff: Backoff = attrs.field(factory=Backoff)


class _Refused(Exception):
    """The API server refused an instance object for good (``apply_refused`` decides)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _refusal(error: ClusterError) -> Failure | None:
    """The failure a refused create stands for, or None when a retry of the call may work.

    422 Invalid and 400 (an API server rule or an admission webhook the work type's
    checks do not know) are permanent; 403 (an exceeded quota, a policy) is retryable
    under the Work's budget; anything else (409, 429, 5xx, no connection) is retried as
    a call.
    """
    detail = f"HTTP {error.status} {error.reason}: {error.message}"[:1024]
    if isinstance(error, Invalid) or error.status == 400:
        return Failure.permanent("InstanceInvalid", detail)
    if error.status == 403:
        return Failure.retryable("InstanceForbidden", detail)
    return None


class WorkController:
    """Reconciles ``Work`` resources through the registered work types."""

    def __init__(
        self,
        client: ClusterClient,
        work_types: WorkTypes,
        options: ControllerOptions | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._client = client
        self._work_types = work_types
        self._options = options or ControllerOptions()
        self._clock = clock
        self.queue = KeyQueue(base_delay=0.05, max_delay=60.0)
        self.stats = ControllerStats()
        self._ready = False
        opts = self._options
        self._works = Informer(
            client,
            WORKS,
            namespace=opts.namespace,
            label_selector=opts.work_selector,
            backoff=opts.informer_backoff,
            watch_timeout=opts.watch_timeout,
        )
        self._works.add_handler(self._on_work)
        self._kinds: dict[tuple[str, str], ResourceKind] = {}
        for work_type in work_types:
            for kind in work_type.kinds:
                self._kinds[(kind.api_version, kind.kind)] = kind
        self._instances: dict[ResourceKind, Informer] = {}
        self._owned: dict[str, set[tuple[ResourceKind, str]]] = {}
        for kind in self._kinds.values():
            informer = Informer(
                client,
                kind,
                namespace=opts.namespace,
                label_selector=WORK_UID_LABEL,
                backoff=opts.informer_backoff,
                watch_timeout=opts.watch_timeout,
            )
            informer.add_handler(self._on_instance(kind))
            self._instances[kind] = informer

    # --- reading ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every informer has listed and the workers run."""
        return self._ready

    @property
    def informers(self) -> tuple[Informer, ...]:
        """The Work informer, then one per instance kind."""
        return (self._works, *self._instances.values())

    def phase_counts(self) -> dict[str, int]:
        """Cached Works by ``status.phase`` (``Pending`` when they have none yet)."""
        counts: dict[str, int] = {}
        for work in self._works.objects():
            status = work.get("status") or {}
            phase = str(status.get("phase") or "Pending")
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    # --- running ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the informers and ``concurrency`` workers until cancelled; ``started``
        once every cache has synced."""
        try:
            async with anyio.create_task_group() as tg:
                for informer in self.informers:
                    tg.start_soon(informer.run)
                for informer in self.informers:
                    await informer.wait_synced()
                for _ in range(self._options.concurrency):
                    tg.start_soon(self._worker)
                self._ready = True
                log.info(
                    "controller synced: %d Works, kinds %s",
                    len(self._works.keys()),
                    ", ".join(k.kind for k in self._instances) or "-",
                )
                task_status.started()
        finally:
            self._ready = False

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.reconcile_key(key)
            except Conflict as conflict:
                self.stats.conflicts += 1
                log.debug("conflict on %s (%s); reconciling again", key, conflict.message)
                self.queue.add_rate_limited(key)
            except Exception as error:  # any cause: retried with backoff, never lost
                self.stats.errors += 1
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile of %s failed (%s); again in %.2f s", key, error, delay)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    async def reconcile_key(self, key: str) -> Decision | None:
        """Reconcile the Work cached under ``key`` once; the decision made, or None."""
        self.stats.reconciles += 1
        obj = self._works.get(key)
        if obj is None:
            return None  # deleted: its instances go with it (owner references)
        try:
            work = WorkResource.from_mapping(obj)
        except SpecError as error:
            log.warning("Work %s is not valid and is left alone: %s", key, error)
            return None
        work_type = self._work_types.get(work.spec.work_type)
        if work_type is None:
            log.warning(
                "Work %s has work type %r, which this controller does not run",
                key,
                work.spec.work_type,
            )
            return None
        uid = work.metadata.uid or ""
        observed = group_instances(uid, self._owned_objects(key))
        now = self._clock()
        policy = self._options.retry_policy
        decision = reconcile(work, observed, now, work_type, policy)
        try:
            await self._perform(key, obj, work_type, decision)
        except _Refused as refused:
            # The API server will never take this instance: it counts as failed.
            decision = apply_refused(work, observed, now, work_type, policy, refused.failure)
            log.warning("Work %s: the instance was refused (%s)", key, refused.failure.message)
            await self._perform(key, obj, work_type, decision)
        return decision

    def _owned_objects(self, key: str) -> list[Mapping[str, Any]]:
        objects: list[Mapping[str, Any]] = []
        for kind, object_key in sorted(self._owned.get(key, ()), key=lambda e: e[1]):
            found = self._instances[kind].get(object_key)
            if found is not None:
                objects.append(found)
        return objects

    async def _perform(
        self, key: str, work: Mapping[str, Any], work_type: WorkType, decision: Decision
    ) -> None:
        namespace = (work.get("metadata") or {}).get("namespace")
        for action in decision.actions:
            if isinstance(action, StopInstance):
                for step in action.steps:
                    await self._stop(step, namespace)
            elif isinstance(action, ApplyInstance):
                for obj in action.objects:
                    await self._create(obj, namespace)
            elif isinstance(action, WriteStatus):
                await self._write_status(work, action)
            elif isinstance(action, Requeue):
                self.queue.add_after(key, max(action.after, timedelta(0)).total_seconds())

    async def _stop(self, step: StopStep, namespace: str | None) -> None:
        try:
            if step.patch is None:
                await self._client.delete(
                    step.kind,
                    step.name,
                    namespace=namespace,
                    propagation_policy=PropagationPolicy(step.propagation),
                )
            else:
                await self._client.merge_patch(
                    step.kind, step.name, step.patch, namespace=namespace
                )
        except NotFound:
            return
        self.stats.stops += 1

    async def _create(self, obj: Mapping[str, Any], namespace: str | None) -> None:
        kind = self._kinds.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if kind is None:
            raise ClusterError(
                f"a work type made a {obj.get('apiVersion')} {obj.get('kind')}, which is not"
                " among its kinds"
            )
        try:
            await self._client.create(kind, obj, namespace=namespace)
        except AlreadyExists:
            return
        except ClusterError as error:
            refused = _refusal(error)
            if refused is None:
                raise
            raise _Refused(refused) from error
        self.stats.created += 1

    async def _write_status(self, work: Mapping[str, Any], action: WriteStatus) -> None:
        metadata = dict(work.get("metadata") or {})
        if action.resource_version is not None:
            metadata["resourceVersion"] = action.resource_version
        body = {**work, "metadata": metadata, "status": action.status.to_mapping()}
        await self._client.replace_status(WORKS, body, namespace=metadata.get("namespace"))
        self.stats.status_writes += 1
        if action.status.phase.is_terminal:
            self.stats.outcomes[action.status.phase.value] += 1

    # --- informer handlers ----------------------------------------------------------

    def _on_work(self, event: CacheEvent) -> None:
        if event.type is CacheEventType.DELETED:
            self._owned.pop(event.key, None)
        self.queue.add(event.key)

    def _on_instance(self, kind: ResourceKind) -> Callable[[CacheEvent], None]:
        def handle(event: CacheEvent) -> None:
            owner = controller_owner_key(event.object, WORKS)
            if owner is None:
                return
            entry = (kind, event.key)
            if event.type is CacheEventType.DELETED:
                owned = self._owned.get(owner)
                if owned is not None:
                    owned.discard(entry)
                    if not owned:
                        del self._owned[owner]
            else:
                self._owned.setdefault(owner, set()).add(entry)
            self.queue.add(owner)

        return handle
