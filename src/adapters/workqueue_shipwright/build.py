"""The ``build`` work type: a Shipwright v1beta1 Build and/or BuildRun per instance.

* ``validate``: accepted template shapes are a Build alone (each instance gets a BuildRun
  for it); a Build and a BuildRun whose ``spec.build.name`` is the Build's name; a BuildRun
  alone that embeds its build in ``spec.build.spec``.  Each object is checked against its
  real CRD schema (``schemas``), then Shipwright's own rules (``rules``), then the shape
  of the whole.
* ``instance_objects``: instance *n* is the Build (if templated) and a BuildRun, both
  named ``instance_name(work, n)``, in the Work's namespace, owned by the Work
  (``controller``, ``blockOwnerDeletion``), with the Work's and the instance labels; the
  BuildRun names the instance's Build (or keeps its embedded build).  A Build's
  ``retention.atBuildDeletion`` is dropped: the Work owns both objects.
* ``observe``: the BuildRun's ``Succeeded`` condition read through
  ``reasons.BUILD_RUN_REASONS`` (every reason of the upstream source, classified;
  ``BuildRegistrationFailed`` by the reason of the instance's Build when known); a
  failure's message carries ``status.failureDetails``; a success's results are the image
  digest and size (``status.output``) and the Git commit (``status.source.git``).
* ``stop``: cancel the BuildRun with a merge patch of ``spec.state: BuildRunCanceled``;
  the instance stays live until Shipwright reports it canceled (its pod gone).

``docs/work-controller.md`` has the reason table and the choices behind it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import Failure, FailureClass
from workqueue_core.ports.cluster import ResourceKind
from workqueue_core.ports.work_type import InstanceState, InstanceStatus, Owner, StopStep
from workqueue_core.work.k8s_shapes import expect_mapping, read_time, required_field
from workqueue_core.work.reconcile_labels import instance_metadata
from workqueue_core.work.templates import template_metadata
from workqueue_shipwright.reasons import BUILD_RUN_REASONS, CANCELED, ReasonClass
from workqueue_shipwright.rules import check_build_run_spec, check_build_spec
from workqueue_shipwright.schemas import check_object

__all__ = [
    "BUILD",
    "BUILD_RUN",
    "CANCEL_PATCH",
    "SHIPWRIGHT_API_VERSION",
    "BuildWorkType",
    "build_run_results",
    "observe_build_run",
]

SHIPWRIGHT_API_VERSION: Final = "shipwright.io/v1beta1"
BUILD: Final = ResourceKind("shipwright.io", "v1beta1", "builds", "Build")
BUILD_RUN: Final = ResourceKind("shipwright.io", "v1beta1", "buildruns", "BuildRun")
REGISTRATION_FAILED: Final = "BuildRegistrationFailed"
CANCEL_PATCH: Final[Mapping[str, Any]] = {"spec": {"state": CANCELED}}
"""The merge patch that cancels a BuildRun (``BuildRunSpec.State``, ``BuildRunStateCancel``)."""


def _check_one(template: Mapping[str, Any], path: str) -> str:
    """Check one template on its own; returns its kind."""
    if template.get("apiVersion") != SHIPWRIGHT_API_VERSION:
        raise SpecError(
            f"build work takes {SHIPWRIGHT_API_VERSION} objects, found"
            f" {template.get('apiVersion')!r}",
            f"{path}.apiVersion",
        )
    kind = str(template.get("kind"))
    if kind not in ("Build", "BuildRun"):
        raise SpecError(
            f"build work takes a Build and a BuildRun, found {template.get('kind')!r}",
            f"{path}.kind",
        )
    expect_mapping(required_field(template, "spec", path), f"{path}.spec")
    check_object(kind, template, path)
    if kind == "Build":
        check_build_spec(template["spec"], f"{path}.spec")
    else:
        check_build_run_spec(template["spec"], f"{path}.spec")
    return kind


def validate_build_templates(templates: Sequence[Mapping[str, Any]]) -> None:
    """Check a ``build`` Work's templates; paths start with ``[index]``."""
    builds: list[tuple[int, Mapping[str, Any]]] = []
    runs: list[tuple[int, Mapping[str, Any]]] = []
    for i, template in enumerate(templates):
        kind = _check_one(template, f"[{i}]")
        (builds if kind == "Build" else runs).append((i, template))
    if len(builds) > 1:
        raise SpecError("build work takes one Build", f"[{builds[1][0]}].kind")
    if len(runs) > 1:
        raise SpecError("build work takes one BuildRun", f"[{runs[1][0]}].kind")
    if not runs:
        return
    run_index, run = runs[0]
    build_ref = run["spec"]["build"]
    if build_ref.get("spec") is not None:
        if builds:
            raise SpecError(
                "the BuildRun embeds its build in spec.build.spec, so this Build would be unused",
                f"[{builds[0][0]}].kind",
            )
        return
    referenced = build_ref.get("name")
    build_names = [template_metadata(build, "").get("name") for _, build in builds]
    if referenced not in build_names:
        raise SpecError(
            f"refers to Build {referenced!r}, but the templates hold no Build of that name"
            " (give the Build a fixed metadata.name, or embed the build in spec.build.spec)",
            f"[{run_index}].spec.build.name",
        )


# --- instances -------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(mapping: Mapping[str, Any], field: str) -> str:
    value = mapping.get(field)
    return value if isinstance(value, str) else ""


def _kind_of(obj: Mapping[str, Any]) -> str:
    """``Build`` or ``BuildRun``; list responses may leave ``kind`` out of their items, and
    then the spec tells (a BuildRun's ``spec.build`` is required, a Build has none)."""
    kind = obj.get("kind")
    if isinstance(kind, str):
        return kind
    return "BuildRun" if "build" in _mapping(obj.get("spec")) else "Build"


def _instance_object(
    template: Mapping[str, Any], owner: Owner, index: int, kind: str
) -> dict[str, Any]:
    """``template`` (or an empty BuildRun) as an object of instance ``index``."""
    obj: dict[str, Any] = copy.deepcopy(dict(template))
    source = _mapping(obj.get("metadata"))
    metadata = instance_metadata(owner, index, source)
    obj["apiVersion"] = SHIPWRIGHT_API_VERSION
    obj["kind"] = kind
    obj["metadata"] = metadata
    obj.pop("status", None)
    spec: dict[str, Any] = obj.setdefault("spec", {})
    embedded: object = spec
    if kind == "BuildRun":
        build_ref = spec.get("build")
        embedded = build_ref.get("spec") if isinstance(build_ref, dict) else None
    if isinstance(embedded, dict):
        _drop_owner_retention(embedded)
    return obj


def _drop_owner_retention(spec: dict[str, Any]) -> None:
    """Drop ``retention.atBuildDeletion``: it asks Shipwright to make the Build the
    BuildRun's controller owner, which the Work already is (the BuildRun would fail with
    ``SetOwnerReferenceFailed``); the Work owning both gives what it asks, BuildRuns that
    go with their Build."""
    retention = spec.get("retention")
    if isinstance(retention, dict) and "atBuildDeletion" in retention:
        spec["retention"] = {k: v for k, v in retention.items() if k != "atBuildDeletion"}
        if not spec["retention"]:
            del spec["retention"]


def _succeeded_condition(build_run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = _mapping(build_run.get("status")).get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == "Succeeded":
            return condition
    return None


def build_run_results(build_run: Mapping[str, Any]) -> dict[str, str]:
    """What a succeeded BuildRun produced: ``buildRun`` (its name), ``image`` (the output
    image it pushed), ``digest`` and ``size`` (``status.output``), ``commit`` and
    ``branch`` (``status.source.git``: ``commitSha``, ``branchName``) and
    ``sourceDigest`` (``status.source.ociArtifact.digest``); absent fields are left out."""
    status = _mapping(build_run.get("status"))
    results: dict[str, str] = {}
    name = _text(_mapping(build_run.get("metadata")), "name")
    if name:
        results["buildRun"] = name
    spec_output = _mapping(_mapping(build_run.get("spec")).get("output"))
    build_output = _mapping(_mapping(status.get("buildSpec")).get("output"))
    image = _text(spec_output, "image") or _text(build_output, "image")
    if image:
        results["image"] = image
    output = _mapping(status.get("output"))
    if _text(output, "digest"):
        results["digest"] = _text(output, "digest")
    size = output.get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        results["size"] = str(size)
    source = _mapping(status.get("source"))
    git = _mapping(source.get("git"))
    if _text(git, "commitSha"):
        results["commit"] = _text(git, "commitSha")
    if _text(git, "branchName"):
        results["branch"] = _text(git, "branchName")
    oci = _mapping(source.get("ociArtifact"))
    if _text(oci, "digest"):
        results["sourceDigest"] = _text(oci, "digest")
    return results


def _failure_details(status: Mapping[str, Any]) -> str:
    """``status.failureDetails`` as one line (empty when there are none)."""
    details = _mapping(status.get("failureDetails"))
    parts = []
    reason, message = _text(details, "reason"), _text(details, "message")
    if reason or message:
        parts.append(": ".join(p for p in (reason, message) if p))
    location = _mapping(details.get("location"))
    where = "/".join(p for p in (_text(location, "pod"), _text(location, "container")) if p)
    if where:
        parts.append(f"at {where}")
    return "; ".join(parts)


def _finished_at(status: Mapping[str, Any], condition: Mapping[str, Any]) -> datetime | None:
    """The terminal ``Succeeded`` condition's ``lastTransitionTime``, else
    ``status.completionTime`` (Shipwright writes both when a BuildRun finishes)."""
    return read_time(condition.get("lastTransitionTime")) or read_time(status.get("completionTime"))


def _registration_class(build: Mapping[str, Any] | None) -> ReasonClass | None:
    """The class of the reason of a Build that failed registration (``status.registered``
    not True), when the table knows it as a failure; else None."""
    status = _mapping((build or {}).get("status"))
    if status.get("registered") in (None, "", "True"):
        return None
    known = BUILD_RUN_REASONS.get(_text(status, "reason"))
    if known is None or known.reason_class not in (ReasonClass.PERMANENT, ReasonClass.RETRYABLE):
        return None
    return known.reason_class


def observe_build_run(
    build_run: Mapping[str, Any], build: Mapping[str, Any] | None = None
) -> InstanceStatus:
    """One BuildRun's status as an instance status (see ``reasons.BUILD_RUN_REASONS``).

    ``BuildRegistrationFailed`` stands for any reason of the Build's validation
    (``buildrun.go``); with the instance's ``build`` at hand it is classified by that
    reason (``RemoteRepositoryUnreachable`` is retryable), else permanent."""
    name = _text(_mapping(build_run.get("metadata")), "name")
    status = _mapping(build_run.get("status"))
    canceling = _mapping(build_run.get("spec")).get("state") == CANCELED
    condition = _succeeded_condition(build_run)
    if condition is None:
        detail = "; cancel requested" if canceling else ""
        return InstanceStatus(
            InstanceState.PENDING,
            "BuildRunPending",
            f"BuildRun {name}: not picked up by Shipwright yet{detail}",
        )
    reason = _text(condition, "reason")
    message = _text(condition, "message")
    known = BUILD_RUN_REASONS.get(reason)
    reason_class = known.reason_class if known is not None else None
    if reason == REGISTRATION_FAILED:
        reason_class = _registration_class(build) or reason_class
    value = condition.get("status")
    if value == "True":
        return InstanceStatus(
            InstanceState.SUCCEEDED,
            reason or "Succeeded",
            message or f"BuildRun {name} succeeded",
            results=build_run_results(build_run),
            finished_at=_finished_at(status, condition),
        )
    if value == "False":
        reason = reason or "Failed"
        if reason_class in (ReasonClass.PERMANENT, ReasonClass.CANCELED):
            failure_class = FailureClass.PERMANENT
        else:
            failure_class = FailureClass.RETRYABLE  # any other reason: DESIGN §4
        text = message or f"BuildRun {name} failed ({reason})"
        details = _failure_details(status)
        if details:
            text = f"{text} (failureDetails: {details})"
        failure = Failure(failure_class, reason, text)
        return InstanceStatus(
            InstanceState.FAILED,
            reason,
            text,
            failure=failure,
            finished_at=_finished_at(status, condition),
        )
    reason = reason or "Unknown"
    text = f"BuildRun {name}: {reason}" + (f" ({message})" if message else "")
    if reason_class in (ReasonClass.RUNNING, ReasonClass.CANCELED) or canceling:
        return InstanceStatus(InstanceState.RUNNING, reason, text)
    return InstanceStatus(InstanceState.PENDING, reason, text)


class BuildWorkType:
    """``build``: Shipwright Builds and BuildRuns (implements ``WorkType``)."""

    @property
    def name(self) -> str:
        """``build``."""
        return "build"

    @property
    def kinds(self) -> Sequence[ResourceKind]:
        """Build and BuildRun."""
        return (BUILD, BUILD_RUN)

    def validate(self, templates: Sequence[Mapping[str, Any]]) -> None:
        """See ``validate_build_templates``."""
        validate_build_templates(templates)

    def instance_objects(
        self, owner: Owner, templates: Sequence[Mapping[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        """The Build of instance ``index`` (if templated), then its BuildRun, which names
        that Build (or keeps the build it embeds)."""
        build = next((t for t in templates if t.get("kind") == "Build"), None)
        run = next((t for t in templates if t.get("kind") == "BuildRun"), None)
        objects: list[dict[str, Any]] = []
        if build is not None:
            objects.append(_instance_object(build, owner, index, "Build"))
        build_run = _instance_object(run or {}, owner, index, "BuildRun")
        if build is not None:
            build_run["spec"]["build"] = {"name": objects[0]["metadata"]["name"]}
        objects.append(build_run)
        return objects

    def observe(self, objects: Sequence[Mapping[str, Any]]) -> InstanceStatus:
        """The instance's BuildRun read as a status; no BuildRun: pending (the reconcile
        decides whether a missing instance is not created yet or lost)."""
        build_run = next((o for o in objects if _kind_of(o) == "BuildRun"), None)
        if build_run is None:
            return InstanceStatus(
                InstanceState.PENDING, "BuildRunNotFound", "the BuildRun does not exist"
            )
        build = next((o for o in objects if _kind_of(o) == "Build"), None)
        return observe_build_run(build_run, build)

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        """Cancel the BuildRun (``spec.state: BuildRunCanceled``) unless it has finished;
        Shipwright then cancels its TaskRun and reports ``BuildRunCanceled``.  The objects
        stay (they hold the logs' whereabouts) and go with the Work."""
        steps: list[StopStep] = []
        for obj in objects:
            name = _mapping(obj.get("metadata")).get("name")
            if _kind_of(obj) != "BuildRun" or not isinstance(name, str):
                continue
            condition = _succeeded_condition(obj)
            if condition is not None and condition.get("status") in ("True", "False"):
                continue
            steps.append(StopStep(BUILD_RUN, name, CANCEL_PATCH))
        return steps
