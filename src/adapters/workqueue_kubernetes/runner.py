"""The Kubernetes runner: a claimed item runs as a ``Work`` resource (DESIGN §9).

``KubernetesRunner`` is a ``Runner`` for the core ``Worker`` (``workqueue agent
--kubernetes``).  For each claimed attempt it builds the claim's Work
(``workqueue_core.work.claim_work``: name from work id + attempt, labels work id and
agent id, annotations claim token and correlation id, ``spec.maxRetries`` = min(the local
retry limit, the item's remaining budget)), creates it (AlreadyExists: the Work of this
claim exists already, from before a restart: it is adopted), and waits for its terminal
phase through an informer on the agent's Works (list + watch; no polling).  Meanwhile
every change of ``status.retries`` goes to ``Job.report_local_retries``, which the
worker's heartbeats carry to the broker (the one budget).  The terminal status maps to
``Success(result)`` (the Work's ``status.result`` as JSON) or the ``Failure`` its
``Retryable`` condition and reason say (``work_outcome``).

When the attempt is cancelled (the claim was lost or cancelled, the budget is spent, the
worker gives it up) the Work is deleted with propagation Background: the garbage
collector deletes its instances.  A finished Work is deleted ``finished_ttl`` seconds
after its outcome was handed to the worker (time for the report; a restarted agent
deletes the Works whose claims it no longer holds, ``resume``).

The Works are reconciled by a ``WorkController`` (in the same process, selecting the
agent's Works by label, or a separate ``workqueue controller``); the runner only creates,
reads and deletes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import ExecutionRecord, Failure, WorkItem
from workqueue_core.executor.handlers import Job, Outcome, Success
from workqueue_core.work.claim_work import (
    agent_selector,
    claim_held,
    claim_token_of,
    claim_work,
    format_claim_token,
    work_name,
)
from workqueue_core.work.reconcile_outcome import work_outcome
from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.resource import WorkResourceStatus
from workqueue_kubernetes.informer import Backoff, CacheEvent, Informer
from workqueue_kubernetes.port import (
    WORKS,
    AlreadyExists,
    ClusterClient,
    ClusterError,
    Invalid,
    NotFound,
    PropagationPolicy,
    Unavailable,
    object_key,
)

__all__ = [
    "INVALID_WORK",
    "WORK_DELETED",
    "WORK_FORBIDDEN",
    "WORK_NOT_CREATED",
    "ClaimLookup",
    "KubernetesRunner",
]

log = logging.getLogger("workqueue.agent.kubernetes")

INVALID_WORK = "InvalidWork"
"""Permanent: the item's spec is no valid Work, or the API server refused the Work."""

WORK_FORBIDDEN = "WorkForbidden"
"""Retryable: the API server forbade creating the Work (RBAC, quota, policy)."""

WORK_NOT_CREATED = "WorkNotCreated"
"""Retryable: the API server refused the create otherwise (404: no such namespace, 401)."""

WORK_DELETED = "WorkDeleted"
"""Retryable: the Work was deleted by someone else before it finished."""

_DELETE_TIMEOUT = 10.0

ClaimLookup = Callable[[UUID], Awaitable[WorkItem | ExecutionRecord | None]]
"""The broker's view of an item the agent may hold (None: not visible to the agent)."""


class KubernetesRunner:
    """Runs claimed attempts of Kubernetes work types as ``Work`` resources.

    Start ``run_informer`` in a task group before the worker runs (``tg.start``: it
    returns once the informer has listed); ``run`` waits for it in any case.
    """

    def __init__(
        self,
        client: ClusterClient,
        work_types: WorkTypes,
        *,
        agent_id: UUID,
        namespace: str,
        local_retry_limit: int | None = None,
        finished_ttl: float = 300.0,
        backoff: Backoff | None = None,
        watch_timeout: int = 300,
    ) -> None:
        self._client = client
        self._work_types = work_types
        self._agent_id = agent_id
        self._namespace = namespace
        self._local_retry_limit = local_retry_limit
        self._finished_ttl = finished_ttl
        self._backoff = backoff or Backoff(initial=0.2, maximum=10.0)
        self._informer = Informer(
            client,
            WORKS,
            namespace=namespace,
            label_selector=agent_selector(agent_id),
            backoff=self._backoff,
            watch_timeout=watch_timeout,
        )
        self._informer.add_handler(self._on_event)
        self._waiters: dict[str, anyio.Event] = {}
        self._task_group: TaskGroup | None = None

    @property
    def work_types(self) -> list[str]:
        return sorted(self._work_types.names)

    @property
    def informer(self) -> Informer:
        """The informer on this agent's Works."""
        return self._informer

    # --- running ----------------------------------------------------------------------

    async def run_informer(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the cache of this agent's Works (and delete finished ones) until cancelled."""
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            tg.start_soon(self._informer.run)
            await self._informer.wait_synced()
            task_status.started()

    def _on_event(self, event: CacheEvent) -> None:
        waiter = self._waiters.pop(event.key, None)
        if waiter is not None:
            waiter.set()

    async def run(self, job: Job) -> Outcome:
        # an attempt released before it started (a stopping worker) creates nothing
        await anyio.lowlevel.checkpoint_if_cancelled()
        item = job.item
        try:
            work = claim_work(
                item,
                self._agent_id,
                self._namespace,
                local_retry_limit=self._local_retry_limit,
                work_types=self._work_types,
            )
        except SpecError as error:
            return Failure.permanent(INVALID_WORK, f"the item's spec is no valid Work: {error}")
        name = work.metadata.name
        try:
            refused = await self._create(work.to_mapping())
            if refused is not None:
                return refused
            outcome = await self._wait(job, name)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.delete(name)
            raise
        self._delete_later(name)
        return outcome

    async def _create(self, body: Mapping[str, Any]) -> Failure | None:
        """Create the Work (an existing one of the same name is adopted); a failure when the
        API server refuses it, else None. Only ``Unavailable`` (no connection, 429, 5xx) is
        retried, with backoff: a retry changes nothing for the other answers, and the
        attempt would hold its claim without end."""
        failures = 0
        while True:
            try:
                created = await self._client.create(WORKS, body, namespace=self._namespace)
            except AlreadyExists:
                log.info("adopting the existing Work %s", object_key(body))
                return None
            except ClusterError as error:
                if isinstance(error, Invalid) or error.status == 400:
                    return Failure.permanent(INVALID_WORK, f"the API server refused it: {error}")
                if error.status == 403:
                    return Failure.retryable(WORK_FORBIDDEN, str(error))
                if not isinstance(error, Unavailable):  # 404 (no such namespace), 401, ...
                    return Failure.retryable(WORK_NOT_CREATED, f"{error.status}: {error}")
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("creating a Work failed (%s); again in %.1f s", error, delay)
                await anyio.sleep(delay)
            else:
                self._informer.remember(created)
                return None

    async def _wait(self, job: Job, name: str) -> Outcome:
        """Wait for the Work ``name`` to finish, reporting its local retries."""
        key = f"{self._namespace}/{name}"
        await self._informer.wait_synced()
        try:
            while True:
                waiter = self._waiters.get(key)
                if waiter is None:
                    waiter = self._waiters[key] = anyio.Event()
                obj = self._informer.get(key)
                if obj is None:
                    # the cache may lag the server (a re-list whose snapshot predates the
                    # create, a watch behind an adopted Work): only a read says it is gone
                    obj = await self._read(name)
                    if obj is None:
                        return Failure.retryable(WORK_DELETED, f"the Work {key} was deleted")
                    if waiter.is_set():
                        continue  # the cache changed during the read: look again
                outcome = self._outcome(job, key, obj)
                if outcome is not None:
                    return outcome
                await waiter.wait()  # the next change of the cached Work
        finally:
            waiter = self._waiters.get(key)
            if waiter is not None and not waiter.is_set():
                del self._waiters[key]

    @staticmethod
    def _outcome(job: Job, key: str, obj: Mapping[str, Any]) -> Outcome | None:
        """The Work's outcome once it finished (None before); reports its local retries."""
        try:
            status = WorkResourceStatus.from_mapping(obj.get("status") or {})
        except SpecError as error:
            log.warning("the Work %s has an unreadable status: %s", key, error)
            return None
        job.report_local_retries(status.retries)
        outcome = work_outcome(status)
        if outcome is None:
            return None
        if outcome.failure is not None:
            return outcome.failure
        result = dict(outcome.result)
        return Success(json.dumps(result, sort_keys=True) if result else None)

    async def _read(self, name: str) -> Mapping[str, Any] | None:
        """The Work ``name`` as the API server has it, or None when it does not exist; other
        errors are retried with backoff. The cache is left alone: its watch brings the Work
        (a stale answer put there could hide a deletion the watch already reported)."""
        failures = 0
        while True:
            try:
                return await self._client.get(WORKS, name, namespace=self._namespace)
            except NotFound:
                return None
            except ClusterError as error:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("reading the Work %s failed (%s); again in %.1f s", name, error, delay)
                await anyio.sleep(delay)

    # --- deleting -----------------------------------------------------------------------

    async def delete(self, name: str) -> None:
        """Delete the Work ``name`` (its instances go with it); gone already is fine."""
        with anyio.move_on_after(_DELETE_TIMEOUT):
            try:
                await self._client.delete(
                    WORKS,
                    name,
                    namespace=self._namespace,
                    propagation_policy=PropagationPolicy.BACKGROUND,
                )
                log.info("deleted the Work %s/%s", self._namespace, name)
            except NotFound:
                pass
            except ClusterError as error:
                log.warning("deleting the Work %s failed: %s", name, error)

    def _delete_later(self, name: str) -> None:
        if self._task_group is None:
            return

        async def later() -> None:
            await anyio.sleep(self._finished_ttl)
            await self.delete(name)

        self._task_group.start_soon(later)

    # --- restart ----------------------------------------------------------------------

    async def resume(self, lookup: ClaimLookup) -> list[WorkItem]:
        """The items whose Works this agent left behind and whose claims it still holds
        (to hand to ``Worker.resume``); the Works of claims it no longer holds (lost,
        cancelled, finished) are deleted."""
        listed = await self._client.list(
            WORKS, namespace=self._namespace, label_selector=agent_selector(self._agent_id)
        )
        items: list[WorkItem] = []
        for obj in listed.items:
            metadata = obj.get("metadata") or {}
            name = str(metadata.get("name"))
            token = claim_token_of(metadata.get("annotations") or {})
            value = None if token is None else await lookup(token.work_id)
            if (
                token is not None
                and name == work_name(token.work_id, token.attempt)
                and claim_held(value, token, self._agent_id)
                and isinstance(value, WorkItem)
            ):
                items.append(value)
                log.info("resuming the Work %s (claim %s)", name, format_claim_token(token))
            else:
                log.info("the claim of the Work %s is no longer held: deleting it", name)
                await self.delete(name)
        return items
