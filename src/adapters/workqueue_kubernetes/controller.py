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

The answer of every create and status write goes into the informer's cache at once
(``Informer.remember``, client-go's mutation cache), so the next reconcile of the Work
neither sends the version its own write replaced (a 409) nor creates again what it has
just created.

Progress is written at most every ``ControllerOptions.status_delay`` seconds (the Job
controller batches its status updates the same way): a status that only reports a
running instance's progress — phase Running, the same ``retries``, no retry scheduled —
is held for up to that long, and the Work is reconciled from the cache as if it were
written.  When the instance finishes within the delay, the terminal status replaces the
held one and a short-lived Work costs one status write instead of two.  Anything else
(a terminal phase, a retry scheduled) is written at once and supersedes a held status;
a status someone else changed drops it.  A held status lost with the process is a lost
status write, which the reconcile already survives (the next decision writes it again
from what it observes).

A reconcile that raises is retried with per-key exponential backoff (the queue's rate
limiter); a success forgets the key's failures. There is no polling loop: between events
and requeues the controller waits.

The same ``WorkController`` runs in ``workqueue controller`` and inside the agent
process: both build it with a ``ClusterClient`` and a ``WorkTypes`` registry and call
``run``.
"""

from __future__ import annotations

import logging
import time
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
from workqueue_core.ports.work_type import StopStep
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
from workqueue_core.work.resource import WorkPhase, WorkResource, WorkResourceStatus
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
    status_delay: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    """Seconds a progress-only status may wait to be written (0: write every status at
    once)."""


@attrs.define
class _Held:
    """A progress status decided but not written yet (see the module's docstring)."""

    status: WorkResourceStatus
    base: object
    """The cached ``status`` it was decided from: if the Work's status changes otherwise,
    the held one is dropped and the Work decided afresh."""
    since: float
    """``time.monotonic()`` when the first held status was decided."""


def _progress_only(status: WorkResourceStatus, current: WorkResourceStatus) -> bool:
    """Whether writing ``status`` over ``current`` only reports a running instance's
    progress (and may wait)."""
    return (
        status.phase is WorkPhase.RUNNING
        and status.next_retry_time is None
        and not current.phase.is_terminal
        and status.retries == current.retries
    )


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
        self._held: dict[str, _Held] = {}
        self._parsed: dict[str, tuple[Mapping[str, Any], WorkResource]] = {}
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
            self._held.pop(key, None)
            self._parsed.pop(key, None)
            return None  # deleted: its instances go with it (owner references)
        parsed = self._parsed.get(key)
        if parsed is not None and parsed[0] is obj:
            work = parsed[1]  # the cache replaces an object on every change
        else:
            try:
                work = WorkResource.from_mapping(obj)
            except SpecError as error:
                log.warning("Work %s is not valid and is left alone: %s", key, error)
                return None
            self._parsed[key] = (obj, work)
        held = self._held.get(key)
        if held is not None:
            if held.base != obj.get("status"):
                del self._held[key]  # the status changed otherwise: decide afresh
            else:
                work = attrs.evolve(work, status=held.status)
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
            await self._perform(key, obj, work, decision)
        except _Refused as refused:
            # The API server will never take this instance: it counts as failed.
            decision = apply_refused(work, observed, now, work_type, policy, refused.failure)
            log.warning("Work %s: the instance was refused (%s)", key, refused.failure.message)
            await self._perform(key, obj, work, decision)
        await self._write_held_when_due(key, obj)
        return decision

    def _owned_objects(self, key: str) -> list[Mapping[str, Any]]:
        objects: list[Mapping[str, Any]] = []
        for kind, object_key in sorted(self._owned.get(key, ()), key=lambda e: e[1]):
            found = self._instances[kind].get(object_key)
            if found is not None:
                objects.append(found)
        return objects

    async def _perform(
        self, key: str, obj: Mapping[str, Any], work: WorkResource, decision: Decision
    ) -> None:
        """Perform ``decision``, made for ``work`` (``obj`` as cached, with the held
        status if there is one)."""
        namespace = work.metadata.namespace
        for action in decision.actions:
            if isinstance(action, StopInstance):
                for step in action.steps:
                    await self._stop(step, namespace)
            elif isinstance(action, ApplyInstance):
                for instance in action.objects:
                    await self._create(instance, namespace)
            elif isinstance(action, WriteStatus):
                if not self._hold(key, obj, work.status, action.status):
                    held = key in self._held
                    await self._write_status(key, obj, action.status)
                    if held:
                        # The held status's wake-up is moot; a requeue of this decision
                        # comes after the write and arms the key again.
                        self.queue.cancel_delayed(key)
            elif isinstance(action, Requeue):
                self.queue.add_after(key, max(action.after, timedelta(0)).total_seconds())

    def _hold(
        self,
        key: str,
        obj: Mapping[str, Any],
        current: WorkResourceStatus,
        status: WorkResourceStatus,
    ) -> bool:
        """Hold ``status`` instead of writing it, if it may wait; True when held."""
        delay = self._options.status_delay
        if delay <= 0 or not _progress_only(status, current):
            return False
        now = time.monotonic()
        held = self._held.get(key)
        if held is None:
            self._held[key] = _Held(status, obj.get("status"), now)
            self.stats.status_writes_held += 1
            return True
        if now - held.since >= delay:
            return False
        held.status = status
        return True

    async def _write_held_when_due(self, key: str, obj: Mapping[str, Any]) -> None:
        """Write the held status once its delay has passed, else reconcile again then.

        Called after every reconcile: an event's immediate ``add`` cancels a delayed
        one, so each reconcile arms the key's delay anew."""
        held = self._held.get(key)
        if held is None:
            return
        remaining = self._options.status_delay - (time.monotonic() - held.since)
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return
        await self._write_status(key, obj, held.status)

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
            created = await self._client.create(kind, obj, namespace=namespace)
        except AlreadyExists:
            return
        except ClusterError as error:
            refused = _refusal(error)
            if refused is None:
                raise
            raise _Refused(refused) from error
        self.stats.created += 1
        labels = (created.get("metadata") or {}).get("labels") or {}
        if WORK_UID_LABEL in labels:  # what the instance informer selects, and so watches
            event = self._instances[kind].remember(created)
            if event is not None:
                self._index_instance(kind, event)

    async def _write_status(
        self, key: str, obj: Mapping[str, Any], status: WorkResourceStatus
    ) -> None:
        """Write ``status`` over the cached Work ``obj`` (sending its version)."""
        body = {**obj, "status": status.to_mapping()}
        namespace = (obj.get("metadata") or {}).get("namespace")
        written = await self._client.replace_status(WORKS, body, namespace=namespace)
        self._held.pop(key, None)
        self._works.remember(written)
        self.stats.status_writes += 1
        if status.phase.is_terminal:
            self.stats.outcomes[status.phase.value] += 1

    # --- informer handlers ----------------------------------------------------------

    def _on_work(self, event: CacheEvent) -> None:
        if event.type is CacheEventType.DELETED:
            self._owned.pop(event.key, None)
            self._held.pop(event.key, None)
            self._parsed.pop(event.key, None)
        self.queue.add(event.key)

    def _index_instance(self, kind: ResourceKind, event: CacheEvent) -> str | None:
        """Record which Work controls the object of ``event``; that Work's key."""
        owner = controller_owner_key(event.object, WORKS)
        if owner is None:
            return None
        entry = (kind, event.key)
        if event.type is CacheEventType.DELETED:
            owned = self._owned.get(owner)
            if owned is not None:
                owned.discard(entry)
                if not owned:
                    del self._owned[owner]
        else:
            self._owned.setdefault(owner, set()).add(entry)
        return owner

    def _on_instance(self, kind: ResourceKind) -> Callable[[CacheEvent], None]:
        def handle(event: CacheEvent) -> None:
            owner = self._index_instance(kind, event)
            if owner is not None:
                self.queue.add(owner)

        return handle
