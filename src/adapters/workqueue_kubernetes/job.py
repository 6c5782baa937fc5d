"""The ``job`` work type: each instance of a Work is one ``batch/v1`` Job.

* ``validate``: the template is exactly one Job, valid against the upstream Kubernetes
  OpenAPI schema of ``KUBERNETES_VERSION`` as ``kubernetes-validate`` ships it (strict:
  unknown fields are refused), plus the rules the schema cannot say: every container has
  an image and a DNS-1123 label for a name, unique in the pod; ``restartPolicy`` is Never
  or OnFailure; the Job is not created suspended; ``backoffLimit`` and
  ``backoffLimitPerIndex`` are absent or 0 (one retry budget: the Work's ``maxRetries``).
  The compiled schema is kept for the process (``job_schema_validator``).
* ``instance_objects``: the Job named ``instance_name(work, n)``, in the Work's namespace,
  owned by the Work (``controller`` and ``blockOwnerDeletion``), with the Work's labels and
  the instance labels (on the Job and its pod template) and ``backoffLimit: 0``.
* ``observe``: the Job's conditions read through ``CONDITION_STATES`` and
  ``FAILED_REASONS`` (every condition type and reason of the upstream ``types.go``); a
  finished Job's finish time from its terminal condition (``finished_at``).
* ``stop``: delete the Job with ``propagationPolicy: Background``.

``docs/work-controller.md`` has the reason table and the choices behind it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
from jsonschema.protocols import Validator
from kubernetes_validate import utils as validate_utils
from referencing import Registry, Resource

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import Failure, FailureClass
from workqueue_core.ports.cluster import ResourceKind
from workqueue_core.ports.work_type import InstanceState, InstanceStatus, Owner, StopStep
from workqueue_core.work.k8s_shapes import check_dns_label, read_time
from workqueue_core.work.reconcile_labels import (
    INSTANCE_LABEL,
    WORK_LABEL,
    WORK_UID_LABEL,
    instance_metadata,
)
from workqueue_core.work.safe_yaml import child_path, describe_type

__all__ = [
    "CONDITION_STATES",
    "FAILED_REASONS",
    "JOB",
    "KUBERNETES_VERSION",
    "SUCCEEDED_REASONS",
    "JobWorkType",
    "finished_at",
    "job_schema_validator",
    "observe_job",
    "validate_job",
]

KUBERNETES_VERSION: Final = "1.34"
"""The Kubernetes minor whose Job schema ``validate`` uses (a ``kubernetes-validate`` schema)."""

JOB: Final = ResourceKind(group="batch", version="v1", plural="jobs", kind="Job")

CONDITION_STATES: Final[Mapping[str, InstanceState]] = {
    "Complete": InstanceState.SUCCEEDED,
    "SuccessCriteriaMet": InstanceState.SUCCEEDED,
    "Failed": InstanceState.FAILED,
    "FailureTarget": InstanceState.RUNNING,
    "Suspended": InstanceState.PENDING,
}
"""What a Job condition of each type (with status ``True``) means for its instance.

``FailureTarget`` (the Job will fail, its pods are terminating) is still running: the
next instance must not start while they do; the outcome is read from ``Failed``.
``SuccessCriteriaMet`` is success at once: nothing follows a success, so lingering pods
do no harm.  Precedence: Complete, SuccessCriteriaMet, Failed, FailureTarget, Suspended.
"""

SUCCEEDED_REASONS: Final[Mapping[str, str]] = {
    "CompletionsReached": "the Job's pods met its completions",
    "SuccessPolicy": "the Job met its successPolicy",
}
"""Reasons of ``SuccessCriteriaMet`` / ``Complete``: both are success."""

FAILED_REASONS: Final[Mapping[str, FailureClass]] = {
    "BackoffLimitExceeded": FailureClass.RETRYABLE,
    "DeadlineExceeded": FailureClass.RETRYABLE,
    "PodFailurePolicy": FailureClass.PERMANENT,
    "MaxFailedIndexesExceeded": FailureClass.RETRYABLE,
    "FailedIndexes": FailureClass.RETRYABLE,
}
"""The class of each reason of a ``Failed`` condition; any other reason is RETRYABLE.

``PodFailurePolicy`` is a ``FailJob`` rule the user wrote: permanent by their own word.
``BackoffLimitExceeded`` (a pod failed; the limit is 0), ``DeadlineExceeded`` (the Job's
``activeDeadlineSeconds``: a timeout, transient like any other), ``FailedIndexes`` and
``MaxFailedIndexesExceeded`` (an index's pod failed; with ``backoffLimitPerIndex`` 0 the
same as a pod failure) are retryable within the Work's budget.
"""

_ORDER: Final = ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget", "Suspended")
_RETRY_FIELDS: Final = ("backoffLimit", "backoffLimitPerIndex")
_RESTART_POLICIES: Final = ("Never", "OnFailure")
_TYPE_NAMES: Final = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


# --- validation -------------------------------------------------------------------


def _path(prefix: str, parts: Sequence[str | int]) -> str:
    path = prefix
    for part in parts:
        path = child_path(path, part)
    return path


def _is_strict_integer(_: object, value: object) -> bool:
    # JSON 2.0 does not decode into a Go int32: an integer field takes integers only.
    return isinstance(value, int) and not isinstance(value, bool)


_StrictIntegers = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", _is_strict_integer
    ),
)


@functools.cache
def job_schema_validator() -> Validator:
    """The strict batch/v1 Job schema of ``KUBERNETES_VERSION`` from ``kubernetes-validate``,
    compiled once per process.

    ``kubernetes_validate.validate`` builds the same validator (Draft 2020-12, the bundled
    ``_definitions.json`` as its registry) on every call, re-reading 1.5 MB of JSON: 50
    times slower than reusing it.  A test checks both agree.  One difference: an integer
    field takes integers only (``2.0`` is refused, as the API server's decoder does).
    """
    versions = [
        v
        for v in validate_utils.all_versions()
        if validate_utils.major_minor(v) == KUBERNETES_VERSION
    ]
    if not versions:
        raise RuntimeError(
            f"kubernetes-validate {kubernetes_validate.__version__} ships no schema for"
            f" Kubernetes {KUBERNETES_VERSION}"
        )
    folder = f"kubernetes-json-schema/v{versions[-1]}-local-strict"
    schema = validate_utils.schema_contents(f"{folder}/job-batch-v1.json", KUBERNETES_VERSION)
    definitions = validate_utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry: Registry[Any] = Resource.from_contents(definitions) @ (
        Resource.from_contents(schema) @ Registry()
    )
    validator: Validator = _StrictIntegers(schema, registry=registry)
    return validator


def _schema_error(error: jsonschema.ValidationError) -> SpecError:
    """A ``kubernetes-validate`` (jsonschema) error as a ``SpecError`` at ``[0]...``."""
    parts: list[str | int] = list(error.absolute_path)
    instance: Any = error.instance
    rule: Any = error.validator_value
    message: str = error.message
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        schema: Any = error.schema
        known = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        unknown = sorted(key for key in instance if key not in known)
        if unknown:
            parts.append(unknown[0])
            message = f"unknown field {unknown[0]!r} (Kubernetes {KUBERNETES_VERSION} Job schema)"
    elif error.validator == "required" and isinstance(instance, Mapping):
        missing = next((key for key in rule if key not in instance), None)
        if missing is not None:
            parts.append(missing)
            message = "required field is missing"
    elif error.validator == "type":
        types = [t for t in (rule if isinstance(rule, list) else [rule]) if t != "null"]
        names = " or ".join(_TYPE_NAMES.get(t, str(t)) for t in types)
        message = f"expected {names}, found {describe_type(instance)}"
    elif error.validator == "enum":
        message = f"expected one of {', '.join(map(str, rule))}, found {instance!r}"
    return SpecError(message, _path("[0]", parts))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _check_rules(job: Mapping[str, Any]) -> None:
    """What the schema does not say; the schema already checked the types."""
    spec = _mapping(job.get("spec"))
    for field in _RETRY_FIELDS:
        value = spec.get(field)
        if value is not None and value != 0:
            raise SpecError(
                f"must be 0 or left out, found {value}: retries are governed by the Work's"
                " maxRetries (one retry budget), and the Job's own retries would multiply it",
                f"[0].spec.{field}",
            )
    if spec.get("suspend") is True:
        raise SpecError("a suspended Job would never run; leave suspend out", "[0].spec.suspend")
    if "template" not in spec:
        raise SpecError("required field is missing", "[0].spec.template")
    if "spec" not in _mapping(spec.get("template")):
        raise SpecError("required field is missing", "[0].spec.template.spec")
    pod_path = "[0].spec.template.spec"
    pod = _mapping(_mapping(spec.get("template")).get("spec"))
    restart = pod.get("restartPolicy")
    if restart not in _RESTART_POLICIES:
        found = "nothing" if restart is None else repr(restart)
        raise SpecError(
            f"a Job's pods need restartPolicy Never or OnFailure, found {found}",
            f"{pod_path}.restartPolicy",
        )
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        containers = pod.get(field)
        if not isinstance(containers, list):
            continue
        if field == "containers" and not containers:
            raise SpecError("needs at least one container", f"{pod_path}.containers")
        for i, container in enumerate(containers):
            path = f"{pod_path}.{field}[{i}]"
            name = _mapping(container).get("name")
            if isinstance(name, str):
                check_dns_label(name, f"{path}.name")
                if name in names:
                    raise SpecError(f"duplicate container name {name!r}", f"{path}.name")
                names.add(name)
            image = _mapping(container).get("image")
            if image is None:
                raise SpecError("required field is missing", f"{path}.image")
            if not image:
                raise SpecError("must not be empty", f"{path}.image")


def validate_job(job: Mapping[str, Any]) -> None:
    """Check one Job template; ``SpecError`` paths start ``[0]``."""
    if job.get("apiVersion") != "batch/v1":
        raise SpecError(f"expected 'batch/v1', found {job.get('apiVersion')!r}", "[0].apiVersion")
    if job.get("kind") != "Job":
        raise SpecError(f"expected 'Job', found {job.get('kind')!r}", "[0].kind")
    error = jsonschema.exceptions.best_match(job_schema_validator().iter_errors(job))
    if error is not None:
        raise _schema_error(error)
    _check_rules(job)


# --- instances -------------------------------------------------------------------------


def _conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The Job's conditions whose status is ``True``, by type."""
    found: dict[str, Mapping[str, Any]] = {}
    conditions = _mapping(job.get("status")).get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("status") == "True":
            condition_type = condition.get("type")
            if isinstance(condition_type, str):
                found.setdefault(condition_type, condition)
    return found


def _count(status: Mapping[str, Any], field: str) -> int:
    value = status.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(condition: Mapping[str, Any], field: str) -> str:
    value = condition.get(field)
    return value if isinstance(value, str) else ""


def finished_at(job: Mapping[str, Any], condition: Mapping[str, Any]) -> datetime | None:
    """When a finished Job finished: the ``lastTransitionTime`` of ``condition``, the
    terminal condition its state is read from (``Complete``, else ``SuccessCriteriaMet``;
    ``Failed``).  A success without one falls back to ``status.completionTime`` (written
    with ``Complete``, on success only); a failure has no other time (``FailureTarget``'s
    is when the failure was decided, with pods still terminating).  None when absent or
    not a time."""
    when = read_time(condition.get("lastTransitionTime"))
    if when is None and condition.get("type") in ("Complete", "SuccessCriteriaMet"):
        when = read_time(_mapping(job.get("status")).get("completionTime"))
    return when


def observe_job(job: Mapping[str, Any]) -> InstanceStatus:
    """One Job's status as an instance status (see ``CONDITION_STATES``; a finished Job's
    time from ``finished_at``)."""
    name = _text(_mapping(job.get("metadata")), "name")
    conditions = _conditions(job)
    for condition_type in _ORDER:
        condition = conditions.get(condition_type)
        if condition is None:
            continue
        reason = _text(condition, "reason") or condition_type
        message = _text(condition, "message")
        state = CONDITION_STATES[condition_type]
        if state is InstanceState.SUCCEEDED:
            return InstanceStatus(
                state,
                reason,
                message,
                results={"job": name},
                finished_at=finished_at(job, condition),
            )
        if state is InstanceState.FAILED:
            failure_class = FAILED_REASONS.get(reason, FailureClass.RETRYABLE)
            failure = Failure(failure_class, reason, message or f"Job {name} failed ({reason})")
            return InstanceStatus(
                state,
                reason,
                failure.message,
                failure=failure,
                finished_at=finished_at(job, condition),
            )
        if state is InstanceState.RUNNING:
            detail = f": {message}" if message else ""
            return InstanceStatus(
                state, "FailureTarget", f"Job {name} is failing ({reason}{detail})"
            )
        return InstanceStatus(state, "Suspended", f"Job {name} is suspended ({reason})")
    status = _mapping(job.get("status"))
    ran = any(_count(status, f) for f in ("ready", "succeeded", "failed", "terminating"))
    if ran:
        return InstanceStatus(InstanceState.RUNNING, "JobRunning", f"Job {name} has run a pod")
    return InstanceStatus(InstanceState.PENDING, "JobPending", f"Job {name}: no pod has run yet")


def _is_job(obj: Mapping[str, Any]) -> bool:
    # List responses leave kind out of their items: a missing kind is a Job here.
    return bool(obj.get("kind", "Job") == "Job")


class JobWorkType:
    """``job``: one batch/v1 Job per instance (implements ``WorkType``)."""

    @property
    def name(self) -> str:
        """``job``."""
        return "job"

    @property
    def kinds(self) -> Sequence[ResourceKind]:
        """Jobs."""
        return (JOB,)

    def validate(self, templates: Sequence[Mapping[str, Any]]) -> None:
        """Exactly one valid Job (see the module docstring); paths start ``[0]``."""
        if len(templates) != 1:
            raise SpecError(
                f"job work takes exactly one batch/v1 Job, found {len(templates)} objects", ""
            )
        validate_job(templates[0])

    def instance_objects(
        self, owner: Owner, templates: Sequence[Mapping[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        """The Job of instance ``index``: the template renamed, owned and labelled."""
        job: dict[str, Any] = copy.deepcopy(dict(templates[0]))
        metadata = instance_metadata(owner, index, _mapping(job.get("metadata")))
        labels = metadata["labels"]
        job["metadata"] = metadata
        job.pop("status", None)
        spec: dict[str, Any] = job.setdefault("spec", {})
        spec["backoffLimit"] = 0
        pod_template: dict[str, Any] = spec.setdefault("template", {})
        pod_metadata: dict[str, Any] = pod_template.setdefault("metadata", {}) or {}
        pod_template["metadata"] = pod_metadata
        pod_metadata["labels"] = {
            **_mapping(pod_metadata.get("labels")),
            WORK_LABEL: labels[WORK_LABEL],
            WORK_UID_LABEL: labels[WORK_UID_LABEL],
            INSTANCE_LABEL: labels[INSTANCE_LABEL],
        }
        return [job]

    def observe(self, objects: Sequence[Mapping[str, Any]]) -> InstanceStatus:
        """The instance's Job read as a status; no Job: pending (the reconcile decides
        whether a missing Job is not created yet or lost)."""
        job = next((o for o in objects if _is_job(o)), None)
        if job is None:
            return InstanceStatus(InstanceState.PENDING, "JobNotFound", "the Job does not exist")
        return observe_job(job)

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        """Delete the Job; ``Background`` propagation lets the garbage collector remove
        its pods."""
        steps: list[StopStep] = []
        for obj in objects:
            name = _mapping(obj.get("metadata")).get("name")
            if _is_job(obj) and isinstance(name, str):
                steps.append(StopStep(JOB, name, None, "Background"))
        return steps
