"""The ``build`` work type: a Shipwright v1beta1 Build and/or BuildRun.

Accepted template shapes: a Build alone (the controller starts BuildRuns for it); a Build
and a BuildRun whose ``spec.build.name`` is the Build's name; a BuildRun alone that embeds
its build in ``spec.build.spec``.  Each object is checked against its real CRD schema
(``schemas``), then Shipwright's own rules (``rules``), then the shape of the whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from workqueue_core.domain.errors import SpecError
from workqueue_core.ports.cluster import ResourceKind
from workqueue_core.ports.work_type import InstanceStatus, Owner, StopStep
from workqueue_core.work.k8s_shapes import expect_mapping, required_field
from workqueue_core.work.templates import template_metadata
from workqueue_shipwright.rules import check_build_run_spec, check_build_spec
from workqueue_shipwright.schemas import check_object

__all__ = ["BUILD", "BUILD_RUN", "SHIPWRIGHT_API_VERSION", "BuildWorkType"]

SHIPWRIGHT_API_VERSION: Final = "shipwright.io/v1beta1"
BUILD: Final = ResourceKind("shipwright.io", "v1beta1", "builds", "Build")
BUILD_RUN: Final = ResourceKind("shipwright.io", "v1beta1", "buildruns", "BuildRun")

_NEXT_ISSUE: Final = "comes with the Shipwright builds issue"


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
        """Not yet: the objects of an instance come with the Shipwright builds issue."""
        raise NotImplementedError(f"BuildWorkType.instance_objects {_NEXT_ISSUE}")

    def observe(self, objects: Sequence[Mapping[str, Any]]) -> InstanceStatus:
        """Not yet: reading a BuildRun's status comes with the Shipwright builds issue."""
        raise NotImplementedError(f"BuildWorkType.observe {_NEXT_ISSUE}")

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        """Not yet: cancelling a BuildRun comes with the Shipwright builds issue."""
        raise NotImplementedError(f"BuildWorkType.stop {_NEXT_ISSUE}")
