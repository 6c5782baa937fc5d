"""The fake API server's resource registry: what it serves and how it validates."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from .schema import BuiltinSchema, Cause, CrdSchema, load_crd

__all__ = [
    "CRDS",
    "DEFAULT_RESOURCES",
    "EVENTS",
    "JOBS",
    "LEASES",
    "NAMESPACES",
    "PODS",
    "WORK_CRD",
    "Resource",
    "Validator",
    "resource_from_crd",
    "works_resource",
]

WORK_CRD = Path(__file__).resolve().parents[3] / "deploy" / "crds" / "work.yaml"
"""``deploy/crds/work.yaml``: the fake serves ``Work`` from this file's schema."""


class Validator(Protocol):
    """Prunes unknown fields (returns their paths) and lists schema violations."""

    def prune(self, obj: dict[str, Any]) -> list[str]: ...

    def errors(self, obj: Mapping[str, Any]) -> list[Cause]: ...


@attrs.frozen
class Resource:
    """One served resource: group (``""`` for core), version, plural, kind, scope.

    ``status_subresource`` enables ``/status`` and its rules; ``unconditional_update``
    allows PUT without ``metadata.resourceVersion`` (built-in kinds; custom resources
    require it, as the real server does).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    validator: Validator | None = None
    unconditional_update: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


def resource_from_crd(crd: Mapping[str, Any], version: str | None = None) -> Resource:
    """A custom resource served from a CRD manifest, validated by its schema."""
    spec = crd["spec"]
    chosen = version or next(v["name"] for v in spec["versions"] if v.get("storage"))
    entry = next(v for v in spec["versions"] if v["name"] == chosen)
    return Resource(
        group=spec["group"],
        version=chosen,
        plural=spec["names"]["plural"],
        kind=spec["names"]["kind"],
        namespaced=spec["scope"] == "Namespaced",
        status_subresource="status" in (entry.get("subresources") or {}),
        validator=CrdSchema.from_crd(crd, chosen),
        unconditional_update=False,
    )


def works_resource(path: Path = WORK_CRD) -> Resource:
    """``Work`` (brokkr.io/v1alpha1) from ``deploy/crds/work.yaml``."""
    return resource_from_crd(load_crd(path), "v1alpha1")


JOBS = Resource(
    "batch",
    "v1",
    "jobs",
    "Job",
    status_subresource=True,
    validator=BuiltinSchema("Job", "batch/v1"),
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
PODS = Resource("", "v1", "pods", "Pod", status_subresource=True)
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource(
    "", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True
)
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    status_subresource=True,
)
DEFAULT_RESOURCES = (JOBS, LEASES, PODS, EVENTS, NAMESPACES, CRDS)
"""Built-in kinds served by default (``Work`` is added from the CRD file).

Namespaces and CRDs are served (unvalidated) because operator frameworks such as kopf
discover and list them; the server starts with the ``default`` namespace and a
CustomResourceDefinition object for each CRD it serves from a file.
"""
