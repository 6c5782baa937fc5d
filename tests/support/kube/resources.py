"""The fake API server's resource registry: what it serves and how it validates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from .schema import BuiltinSchema, Cause, CrdSchema, load_crd

__all__ = [
    "DEFAULT_RESOURCES",
    "EVENTS",
    "JOBS",
    "LEASES",
    "NAMESPACES",
    "PODS",
    "WORK_CRD",
    "Resource",
    "Validator",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
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
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

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
        singular=spec["names"].get("singular") or spec["names"]["kind"].lower(),
        short_names=tuple(spec["names"].get("shortNames") or ()),
        categories=tuple(spec["names"].get("categories") or ()),
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
    singular="job",
    categories=("all",),
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", singular="lease")
PODS = Resource(
    "",
    "v1",
    "pods",
    "Pod",
    status_subresource=True,
    singular="pod",
    short_names=("po",),
    categories=("all",),
)
EVENTS = Resource("", "v1", "events", "Event", singular="event", short_names=("ev",))
NAMESPACES = Resource(
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    status_subresource=True,
    singular="namespace",
    short_names=("ns",),
)
"""Cluster-scoped Namespaces; not served by default (``FakeKube.register(NAMESPACES)``):
kopf waits for them in discovery and lists them to find the namespaces it serves."""
DEFAULT_RESOURCES = (JOBS, LEASES, PODS, EVENTS)
"""Built-in kinds served by default (``Work`` is added from the CRD file)."""


# --- API discovery -----------------------------------------------------------------------
# The documents the real server answers on /api, /apis and /api(s)/<group>/<version>
# (k8s.io/apimachinery/pkg/apis/meta/v1 APIVersions, APIGroupList, APIGroup,
# APIResourceList), listing only the verbs this fake serves.

SERVED_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
"""The verbs the fake answers for every resource (no ``deletecollection``)."""
SUBRESOURCE_VERBS = ("get", "patch", "update")


def api_versions() -> dict[str, Any]:
    """``GET /api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def _group_versions(resources: Iterable[Resource]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for resource in resources:
        if resource.group:
            versions = found.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
    return found


def api_group(group: str, versions: Iterable[str]) -> dict[str, Any]:
    """``GET /apis/<group>``: one group, its first served version preferred."""
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list(resources: Iterable[Resource]) -> dict[str, Any]:
    """``GET /apis``: every named group served (the core group is on ``/api``)."""
    groups = [
        {k: v for k, v in api_group(g, vs).items() if k not in ("kind", "apiVersion")}
        for g, vs in sorted(_group_versions(resources).items())
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(
    group: str, version: str, resources: Iterable[Resource]
) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``/apis/<group>/<version>``: its resources and subresources,
    or None when nothing is served there."""
    served = [r for r in resources if r.group == group and r.version == version]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for r in sorted(served, key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular or r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(SERVED_VERBS),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        if r.status_subresource:
            entries.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
    document: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        document["apiVersion"] = "v1"
    document["groupVersion"] = f"{group}/{version}" if group else version
    document["resources"] = entries
    return document
