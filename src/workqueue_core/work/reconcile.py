"""The Work controller's decision: observed Work + observed instances + now → actions.

``reconcile`` is pure: no I/O, no clock, no memory between calls.  Everything it has
already done is visible in what it observes: the Work's ``status`` (written by the
previous decision) and the instance objects (created by it).  A controller calls it from
its informer caches on every event for a Work or one of its objects, performs the actions
in order, and calls it again on the next event or when a ``Requeue`` is due.

Instance *n* is the template's *n*-th run (0 first, *n* the *n*-th retry).  The status
records which one is current:

* ``status.retries`` is the current instance's index;
* ``TemplateApplied`` ``True`` says it was applied (its ``lastTransitionTime`` is when);
  ``False`` with ``status.nextRetryTime`` says it waits for its backoff;
* a terminal ``phase`` (Succeeded, Failed) is final: later decisions only stop leftover
  instances and record ``observedGeneration``.

Rules (``docs/work-controller.md`` has the full table):

1. A Work being deleted: stop every live instance; nothing else.
2. A terminal Work: stop live instances; record ``observedGeneration``.
   (A Work whose work type the process does not know fails permanently.)
3. Instances other than the current one that are still live are stopped.
4. The current instance succeeded: phase Succeeded, ``completionTime``, ``status.result``.
5. It failed: a permanent failure, or a retryable one with ``retries == maxRetries``,
   ends the Work Failed; otherwise ``retries`` + 1 and ``nextRetryTime`` = the failure's
   time + the backoff (the item's ``RetryPolicy``, see ``reconcile_policy``), rounded up
   to a whole second and at least the next one.  The failure's time is the instance's
   ``finished_at`` (at most now), or now when the work type gives none or the controller
   itself gives up on the instance (rules 6, 7).
6. It is pending (no progress) for ``claimTimeout`` seconds since it was applied: it is
   stopped and fails retryably (reason ``NoProgress``).
7. It is missing although applied: after a grace of ``INSTANCE_GRACE`` (the informer may
   not have seen the create yet) it fails retryably (reason ``InstanceMissing``).
8. Not applied yet, due, and no other instance live once this decision's stops are done
   (a deleted instance is gone at once; one stopped by a patch is waited for until it
   finishes): apply it (after the work type's template checks), phase Running,
   ``startTime``.

Actions come in the order to perform them: stops of stale instances, then the apply, then
the status write (with the Work's ``resourceVersion``: on a conflict, re-read and
reconcile again), then the stop of an instance given up on in this decision, then at most
one requeue.  Applying before writing the status makes a lost status write harmless:
instance names are deterministic, so the next decision's create answers AlreadyExists.
Stopping a stuck instance after the write keeps its reason (``NoProgress``) if the write
is lost; once written, rule 2 or 3 stops it if the stop itself was lost.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

import attrs

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import Failure, FailureClass
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.ports.work_type import InstanceState, InstanceStatus, Owner, StopStep, WorkType
from workqueue_core.work.reconcile_policy import retry_policy_for
from workqueue_core.work.resource import (
    API_VERSION,
    CONDITION_TEMPLATE_APPLIED,
    CONDITION_TEMPLATE_SUCCEEDED,
    KIND,
    Condition,
    WorkPhase,
    WorkResource,
    WorkResourceStatus,
)
from workqueue_core.work.templates import template_paths

__all__ = [
    "CONDITION_RETRYABLE",
    "INSTANCE_GRACE",
    "Action",
    "ApplyInstance",
    "Decision",
    "Requeue",
    "StopInstance",
    "WriteStatus",
    "apply_refused",
    "format_time",
    "jitter_sample",
    "owner_of",
    "parse_time",
    "reconcile",
]

CONDITION_RETRYABLE: Final = "Retryable"
"""Set on a Failed Work: ``True`` when the last failure was retryable (the local budget is
spent; the broker may retry the item elsewhere), ``False`` when it was permanent."""

INSTANCE_GRACE: Final = timedelta(seconds=30)
"""How long an applied instance may be missing from the observation before it counts as
lost: the informer cache may lag the create by a moment."""

_MAX_MESSAGE: Final = 2048
_REASON: Final = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
_SECOND: Final = timedelta(seconds=1)
_APPLIED: Final = "Applied"
_RETRY_SCHEDULED: Final = "RetryScheduled"


# --- actions -------------------------------------------------------------------


@attrs.frozen
class ApplyInstance:
    """Create the objects of instance ``index`` (an AlreadyExists answer means done)."""

    index: int
    objects: tuple[Mapping[str, Any], ...]


@attrs.frozen
class StopInstance:
    """Perform ``steps`` (from ``WorkType.stop``) to stop instance ``index``; a NotFound
    answer means done."""

    index: int
    steps: tuple[StopStep, ...]


@attrs.frozen
class WriteStatus:
    """Replace the Work's status with ``status`` through the status subresource, sending
    ``resource_version`` (optimistic concurrency: on 409 re-read and reconcile again)."""

    status: WorkResourceStatus
    resource_version: str | None


@attrs.frozen
class Requeue:
    """Reconcile this Work again after ``after`` even if nothing changes."""

    after: timedelta


Action: TypeAlias = ApplyInstance | StopInstance | WriteStatus | Requeue


@attrs.frozen
class Decision:
    """What to do, in order."""

    actions: tuple[Action, ...] = ()

    @property
    def writes(self) -> tuple[Action, ...]:
        """The actions that change the cluster (everything but the requeue)."""
        return tuple(a for a in self.actions if not isinstance(a, Requeue))

    @property
    def requeue_after(self) -> timedelta | None:
        """When to reconcile again regardless of events, if at all."""
        return next((a.after for a in self.actions if isinstance(a, Requeue)), None)

    @property
    def status(self) -> WorkResourceStatus | None:
        """The status this decision writes, if any."""
        return next((a.status for a in self.actions if isinstance(a, WriteStatus)), None)


# --- time ------------------------------------------------------------------------


def format_time(when: datetime) -> str:
    """``when`` as a Kubernetes ``metav1.Time``: UTC, whole seconds (truncated)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time (as the Work's status holds them) as an aware datetime."""
    return datetime.fromisoformat(text)


def _ceil_seconds(when: datetime) -> datetime:
    whole = when.replace(microsecond=0)
    return whole if whole == when else whole + _SECOND


def jitter_sample(work_uid: str, retry: int) -> float:
    """The jitter sample in ``[0, 1)`` of a Work's ``retry``-th retry: derived from the
    Work's uid, so every decision about that retry computes the same delay."""
    digest = hashlib.sha256(f"{work_uid}/{retry}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- observed instances ----------------------------------------------------------------


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _deleting(obj: Mapping[str, Any]) -> bool:
    return _metadata(obj).get("deletionTimestamp") is not None


def _contains(obj: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Whether applying the merge patch ``patch`` to ``obj`` would change nothing."""
    for key, value in patch.items():
        if value is None:
            if key in obj:
                return False
        elif isinstance(value, Mapping):
            inner = obj.get(key)
            if not isinstance(inner, Mapping) or not _contains(inner, value):
                return False
        elif obj.get(key) != value:
            return False
    return True


@attrs.frozen
class _Instance:
    index: int
    objects: tuple[Mapping[str, Any], ...]
    status: InstanceStatus

    @property
    def finished(self) -> bool:
        return self.status.state in (InstanceState.SUCCEEDED, InstanceState.FAILED)

    @property
    def live(self) -> bool:
        """Not finished and not being deleted: it may still run."""
        return not self.finished and any(not _deleting(o) for o in self.objects)

    def pending_stop(self, work_type: WorkType) -> tuple[StopStep, ...]:
        """The stop steps the observation does not yet show done."""
        pending: list[StopStep] = []
        for step in work_type.stop(self.objects):
            target = next(
                (
                    o
                    for o in self.objects
                    # list responses leave kind out of their items
                    if o.get("kind", step.kind.kind) == step.kind.kind
                    and _metadata(o).get("name") == step.name
                ),
                None,
            )
            if target is None or _deleting(target):
                continue
            if step.patch is not None and _contains(target, step.patch):
                continue
            pending.append(step)
        return tuple(pending)

    def gone_after(self, steps: Sequence[StopStep]) -> bool:
        """Whether performing ``steps`` deletes every object of the instance still there
        (a deleted object runs nothing more; a patched one may run until it honours the
        patch)."""
        deleted = {step.name for step in steps if step.patch is None}
        return all(_deleting(o) or _metadata(o).get("name") in deleted for o in self.objects)


# --- status helpers ----------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _reason(text: str, fallback: str) -> str:
    """``text`` as a condition reason (CamelCase); ``fallback`` if nothing usable is left."""
    if _REASON.fullmatch(text) and len(text) <= 1024:
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_,:]", "", text).lstrip("0123456789_,:").rstrip(",:")[:1024]
    return cleaned if cleaned and _REASON.fullmatch(cleaned) else fallback


def _with_condition(
    status: WorkResourceStatus,
    now: datetime,
    condition_type: str,
    value: str,
    reason: str,
    message: str,
) -> WorkResourceStatus:
    """``status`` with the condition set; ``lastTransitionTime`` kept unless ``value`` changed."""
    old = status.condition(condition_type)
    message = _clip(message)
    if old is not None and (old.status, old.reason, old.message) == (value, reason, message):
        return status
    keep = old is not None and old.status == value
    new = Condition(
        type=condition_type,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=old.last_transition_time if keep and old else format_time(now),
        observed_generation=old.observed_generation if old else None,
    )
    if old is None:
        return attrs.evolve(status, conditions=(*status.conditions, new))
    conditions = tuple(new if c.type == condition_type else c for c in status.conditions)
    return attrs.evolve(status, conditions=conditions)


def _describe(status: InstanceStatus) -> str:
    state = status.state.value.lower()
    return f"{state}: {status.message}" if status.message else state


def _applied_at(status: WorkResourceStatus, now: datetime) -> datetime:
    applied = status.condition(CONDITION_TEMPLATE_APPLIED)
    if applied is None or applied.status != "True" or applied.last_transition_time is None:
        return now
    return parse_time(applied.last_transition_time)


def _is_applied(status: WorkResourceStatus) -> bool:
    applied = status.condition(CONDITION_TEMPLATE_APPLIED)
    return (
        status.phase is WorkPhase.RUNNING
        and status.next_retry_time is None
        and applied is not None
        and applied.status == "True"
    )


def owner_of(work: WorkResource) -> Owner:
    """The ``Owner`` of a Work's instances; the Work must come from the API server."""
    metadata = work.metadata
    if metadata.uid is None or metadata.namespace is None:
        raise ValueError(
            f"Work {metadata.name!r} has no uid or namespace: reconcile only Works read"
            " from the API server"
        )
    return Owner(
        api_version=API_VERSION,
        kind=KIND,
        name=metadata.name,
        namespace=metadata.namespace,
        uid=metadata.uid,
        labels=dict(metadata.labels),
    )


# --- the decision --------------------------------------------------------------------


@attrs.frozen
class _Reconciler:
    work: WorkResource
    owner: Owner
    now: datetime
    work_type: WorkType | None
    instances: Mapping[int, _Instance]
    base: WorkResourceStatus
    """The observed status with ``observedGeneration`` brought up to date."""

    @property
    def index(self) -> int:
        return self.base.retries

    def stops(self, *, everything: bool) -> list[Action]:
        actions: list[Action] = []
        for index in sorted(self.instances):
            instance = self.instances[index]
            if instance.live and (everything or index != self.index):
                assert self.work_type is not None, "instances are read through a work type"
                steps = instance.pending_stop(self.work_type)
                if steps:
                    actions.append(StopInstance(index, steps))
        return actions

    def decide(
        self,
        status: WorkResourceStatus,
        actions: Sequence[Action] = (),
        requeue: timedelta | None = None,
        after: Sequence[Action] = (),
    ) -> Decision:
        """``actions``, the status write if the status changes, ``after``, the requeue."""
        result = list(actions)
        if status != self.work.status:
            result.append(WriteStatus(status, self.work.metadata.resource_version))
        result.extend(after)
        if requeue is not None:
            result.append(Requeue(max(requeue, timedelta(0))))
        return Decision(tuple(result))

    def running(self, state: InstanceStatus) -> WorkResourceStatus:
        """The status while the current instance is applied and in ``state``."""
        n = self.index
        status = attrs.evolve(
            self.base,
            phase=WorkPhase.RUNNING,
            start_time=self.base.start_time or format_time(self.now),
            next_retry_time=None,
            message=_clip(f"instance {n} {_describe(state)}"),
        )
        status = _with_condition(
            status, self.now, CONDITION_TEMPLATE_APPLIED, "True", _APPLIED, f"instance {n} applied"
        )
        return _with_condition(
            status,
            self.now,
            CONDITION_TEMPLATE_SUCCEEDED,
            "Unknown",
            _reason(state.reason, state.state.value),
            state.message,
        )

    def succeeded(self, state: InstanceStatus) -> Decision:
        n = self.index
        status = attrs.evolve(
            self.base,
            phase=WorkPhase.SUCCEEDED,
            start_time=self.base.start_time or format_time(self.now),
            completion_time=format_time(self.now),
            next_retry_time=None,
            message=_clip(f"instance {n} {_describe(state)}"),
            result=dict(state.results),
        )
        status = _with_condition(
            status, self.now, CONDITION_TEMPLATE_APPLIED, "True", _APPLIED, f"instance {n} applied"
        )
        status = _with_condition(
            status,
            self.now,
            CONDITION_TEMPLATE_SUCCEEDED,
            "True",
            _reason(state.reason, "Succeeded"),
            state.message,
        )
        return self.decide(status, self.stops(everything=False))

    def failed_terminally(
        self,
        failure: Failure,
        message: str,
        actions: Sequence[Action],
        *,
        applied_reason: str | None = None,
        after: Sequence[Action] = (),
    ) -> Decision:
        reason = _reason(failure.reason, "Failed")
        status = attrs.evolve(
            self.base,
            phase=WorkPhase.FAILED,
            start_time=self.base.start_time or format_time(self.now),
            completion_time=format_time(self.now),
            next_retry_time=None,
            message=_clip(message),
        )
        if applied_reason is not None:
            status = _with_condition(
                status,
                self.now,
                CONDITION_TEMPLATE_APPLIED,
                "False",
                applied_reason,
                failure.message,
            )
        status = _with_condition(
            status, self.now, CONDITION_TEMPLATE_SUCCEEDED, "False", reason, failure.message
        )
        retryable = failure.failure_class is FailureClass.RETRYABLE
        status = _with_condition(
            status,
            self.now,
            CONDITION_RETRYABLE,
            "True" if retryable else "False",
            reason,
            "the broker may retry the item" if retryable else "the failure is permanent",
        )
        return self.decide(status, actions, after=after)

    def failed(
        self,
        failure: Failure,
        actions: Sequence[Action],
        policy: RetryPolicy,
        after: Sequence[Action] = (),
        failed_at: datetime | None = None,
    ) -> Decision:
        """The current instance failed: retry it within the budget, or end the Work.

        ``after`` follows the status write: stopping the instance given up on comes after
        recording it, so a lost write leaves that instance to be judged again.
        ``failed_at`` is when the instance failed, if its work type says: the backoff
        counts from it, so the retry's due time does not depend on when the failure is
        observed.  A time after ``now`` (clock skew) counts as ``now``.
        """
        n = self.index
        reason = _reason(failure.reason, "Failed")
        cause = f"{reason}: {failure.message}" if failure.message else reason
        max_retries = self.work.spec.max_retries
        if failure.failure_class is FailureClass.PERMANENT:
            return self.failed_terminally(
                failure, f"instance {n} failed permanently ({cause})", actions, after=after
            )
        if n >= max_retries:
            return self.failed_terminally(
                failure,
                f"instance {n} failed ({cause}); no retries left (maxRetries {max_retries})",
                actions,
                after=after,
            )
        retry = n + 1
        delay = policy.delay(retry, jitter_sample(self.owner.uid, retry))
        start = self.now if failed_at is None else min(failed_at, self.now)
        # Status times have whole seconds: due is the next whole second at the earliest,
        # so scheduling a retry and applying it are always two decisions (a retry due
        # already, its failure long past, is applied by the next decision, at once).
        due = max(_ceil_seconds(start + delay), self.now.replace(microsecond=0) + _SECOND)
        status = attrs.evolve(
            self.base,
            phase=WorkPhase.RUNNING,
            retries=retry,
            start_time=self.base.start_time or format_time(self.now),
            next_retry_time=format_time(due),
            message=_clip(
                f"instance {n} failed ({cause}); instance {retry} (retry {retry} of"
                f" {max_retries}) due at {format_time(due)}"
            ),
        )
        status = _with_condition(
            status,
            self.now,
            CONDITION_TEMPLATE_APPLIED,
            "False",
            _RETRY_SCHEDULED,
            f"instance {retry} due at {format_time(due)}",
        )
        status = _with_condition(
            status, self.now, CONDITION_TEMPLATE_SUCCEEDED, "False", reason, failure.message
        )
        return self.decide(status, actions, due - self.now, after)

    def apply(self, actions: list[Action]) -> Decision:
        """Apply the current instance (the caller checked it is due and alone)."""
        n = self.index
        spec = self.work.spec
        assert self.work_type is not None, "unknown work types fail before any apply"
        if n > spec.max_retries:
            failure = Failure.retryable(
                "RetriesExhausted",
                f"maxRetries is {spec.max_retries}, lowered while instance {n} was waiting",
            )
            return self.failed_terminally(
                failure, f"instance {n} not applied: {failure.message}", actions
            )
        try:
            with template_paths(single=len(spec.templates) == 1, prefix="spec.template"):
                self.work_type.validate(spec.templates)
                objects = self.work_type.instance_objects(self.owner, spec.templates, n)
        except SpecError as error:
            failure = Failure.permanent("InvalidTemplate", str(error))
            return self.failed_terminally(
                failure,
                f"instance {n} not applied: {error}",
                actions,
                applied_reason="InvalidTemplate",
            )
        fresh = self.work_type.observe(objects)
        actions.append(ApplyInstance(n, tuple(objects)))
        requeue = timedelta(seconds=spec.claim_timeout)
        pending = fresh.state is InstanceState.PENDING
        return self.decide(self.running(fresh), actions, requeue if pending else None)


def _read_instances(
    observed: Mapping[int, Sequence[Mapping[str, Any]]], work_type: WorkType | None
) -> dict[int, _Instance]:
    instances: dict[int, _Instance] = {}
    if work_type is None:
        return instances
    for index, objects in observed.items():
        if objects:
            found = tuple(objects)
            instances[index] = _Instance(index, found, work_type.observe(found))
    return instances


def reconcile(
    work: WorkResource,
    observed: Mapping[int, Sequence[Mapping[str, Any]]],
    now: datetime,
    work_type: WorkType | None,
    policy: RetryPolicy,
) -> Decision:
    """Decide what the controller does for ``work``.

    ``observed`` holds the Work's instance objects as the cluster shows them, by instance
    index (``reconcile_labels.group_instances``).  ``policy`` is the controller's default
    backoff; a Work's ``workqueue.dev/retry-policy`` annotation overrides it, and
    ``spec.maxRetries`` is the budget.  ``work_type`` is the one registered under
    ``spec.workType``, or None when the process knows no such work type: the Work then
    fails permanently (reason ``UnknownWorkType``).  ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if work_type is not None and work_type.name != work.spec.work_type:
        raise ValueError(
            f"work type {work_type.name!r} cannot reconcile a Work of {work.spec.work_type!r}"
        )
    owner = owner_of(work)
    status = work.status
    generation = work.metadata.generation
    base = status if generation is None else attrs.evolve(status, observed_generation=generation)
    r = _Reconciler(work, owner, now, work_type, _read_instances(observed, work_type), base)

    if work.metadata.deletion_timestamp is not None:
        return Decision(tuple(r.stops(everything=True)))
    if status.phase.is_terminal:
        return r.decide(base, r.stops(everything=True))
    if work_type is None:
        failure = Failure.permanent(
            "UnknownWorkType", f"no work type {work.spec.work_type!r} is registered here"
        )
        return r.failed_terminally(failure, f"the Work cannot run: {failure.message}", ())
    stops = r.stops(everything=False)
    try:
        backoff = retry_policy_for(work.metadata.annotations, policy)
    except SpecError as error:
        failure = Failure.permanent("InvalidRetryPolicy", str(error))
        return r.failed_terminally(
            failure, f"the Work cannot run: {error}", r.stops(everything=True)
        )

    n = r.index
    current = r.instances.get(n)
    if current is not None and current.status.state is InstanceState.SUCCEEDED:
        return r.succeeded(current.status)
    if current is not None and current.status.failure is not None:
        return r.failed(
            current.status.failure, stops, backoff, failed_at=current.status.finished_at
        )
    if current is not None and current.live:
        applied_at = _applied_at(base, now)
        deadline = applied_at + timedelta(seconds=work.spec.claim_timeout)
        if current.status.state is InstanceState.RUNNING:
            return r.decide(r.running(current.status), stops)
        if now < deadline:
            return r.decide(r.running(current.status), stops, deadline - now)
        waited = int((now - applied_at).total_seconds())
        detail = f" ({current.status.message})" if current.status.message else ""
        failure = Failure.retryable(
            "NoProgress",
            f"instance {n} made no progress for {waited} s (claimTimeout"
            f" {work.spec.claim_timeout} s){detail}; its pods may be stuck on an image pull"
            " or unschedulable",
        )
        steps = current.pending_stop(work_type)
        stop_current: list[Action] = [StopInstance(n, steps)] if steps else []
        return r.failed(failure, stops, backoff, stop_current)
    if _is_applied(base):
        appear_by = _applied_at(base, now) + INSTANCE_GRACE
        if current is None and now < appear_by:
            return r.decide(base, stops, appear_by - now)
        failure = Failure.retryable(
            "InstanceMissing",
            f"the objects of instance {n} disappeared before it finished (deleted by someone"
            " else, or by a ttlSecondsAfterFinished)",
        )
        return r.failed(failure, stops, backoff)
    if base.next_retry_time is not None:
        due = parse_time(base.next_retry_time)
        if now < due:
            return r.decide(base, stops, due - now)
    stopping = {a.index: a.steps for a in stops if isinstance(a, StopInstance)}
    for index, instance in r.instances.items():
        if index != n and instance.live and not instance.gone_after(stopping.get(index, ())):
            return r.decide(base, stops)  # wait until it has stopped
    return r.apply(stops)


def apply_refused(
    work: WorkResource,
    observed: Mapping[int, Sequence[Mapping[str, Any]]],
    now: datetime,
    work_type: WorkType,
    policy: RetryPolicy,
    failure: Failure,
) -> Decision:
    """Decide after the API server refused to create instance ``status.retries`` (the
    ``ApplyInstance`` of the last decision) with an error no retry of the call can fix:
    the instance counts as failed with ``failure``.

    The controller picks the class: ``422 Invalid`` or ``400`` (a rule of the API server
    or an admission webhook the work type's checks do not know) is permanent; ``403``
    for an exceeded quota is retryable.  The arguments are ``reconcile``'s; a Work being
    deleted, already terminal or with that instance present is decided by ``reconcile``.
    """
    if (
        work.metadata.deletion_timestamp is not None
        or work.status.phase.is_terminal
        or observed.get(work.status.retries)
    ):
        return reconcile(work, observed, now, work_type, policy)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    generation = work.metadata.generation
    status = work.status
    base = status if generation is None else attrs.evolve(status, observed_generation=generation)
    instances = _read_instances(observed, work_type)
    r = _Reconciler(work, owner_of(work), now, work_type, instances, base)
    try:
        backoff = retry_policy_for(work.metadata.annotations, policy)
    except SpecError:
        return reconcile(work, observed, now, work_type, policy)
    return r.failed(failure, r.stops(everything=False), backoff)
