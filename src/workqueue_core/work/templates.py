"""Generic template checks: what any Work may wrap, whatever its work type.

A Work's ``spec.template`` holds one or more Kubernetes objects.  Every template gets
``check_template_objects`` (apiVersion, kind, a name, no duplicates, not a Work); what a
work type adds (``build``: Shipwright objects, ``job``: a batch/v1 Job) is its
``WorkType.validate``, in its adapter, registered in a ``registry.WorkTypes``.

Checks raise ``SpecError`` with paths starting ``[index]``; ``template_paths`` rebases
them under ``spec.template``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.limits import work_type_problem
from workqueue_core.work.k8s_shapes import (
    DNS_SUBDOMAIN,
    check_dns_label,
    check_dns_subdomain,
    expect_mapping,
    expect_str,
    join_path,
    required_field,
)
from workqueue_core.work.safe_yaml import child_path

__all__ = [
    "check_template_objects",
    "check_work_type",
    "template_metadata",
    "template_paths",
]

# The Work's own group and kind (work_resource.API_GROUP and KIND; that module imports
# this one, so they are repeated here): a template may not be a Work.
_WORK_API_GROUP: Final = "brokkr.io"
_WORK_KIND: Final = "Work"

_API_VERSION = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?"
)
_OBJECT_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")


# --- checks every template gets -----------------------------------------------------


@contextmanager
def template_paths(*, single: bool, prefix: str = "") -> Iterator[None]:
    """Rebase ``[i]...`` template paths under ``prefix``; ``[0]`` disappears for one object."""
    try:
        yield
    except SpecError as exc:
        path = exc.path
        if single and path.startswith("[0]"):
            path = path[3:]
            path = path[1:] if path.startswith(".") else path
        raise SpecError(exc.detail, join_path(prefix, path)) from None


def template_metadata(template: Mapping[str, object], path: str) -> Mapping[str, object]:
    """A template's ``metadata`` mapping (an error at ``path.metadata`` if not a mapping)."""
    return expect_mapping(template.get("metadata"), child_path(path, "metadata"))


def _check_object_name(value: object, path: str, *, prefix: bool = False) -> None:
    name = expect_str(value, path)
    if prefix:
        stripped = name.rstrip("-")
        if len(name) > 248 or not stripped or not DNS_SUBDOMAIN.fullmatch(stripped):
            raise SpecError(
                f"{name!r} is not a valid name prefix (a DNS-1123 subdomain, may end with '-')",
                path,
            )
    else:
        check_dns_subdomain(name, path)


def check_template_objects(templates: Sequence[Mapping[str, object]]) -> None:
    """The checks every template gets: a Kubernetes object with apiVersion, kind and a name.

    Paths start with ``[index]``.  Two templates may not share group, kind and name, and
    a template may not be a Work itself.
    """
    if not templates:
        raise SpecError("must hold at least one template object", "")
    seen: dict[tuple[str, str, str], int] = {}
    for i, raw in enumerate(templates):
        path = f"[{i}]"
        template = expect_mapping(raw, path)
        api_version = expect_str(required_field(template, "apiVersion", path), f"{path}.apiVersion")
        if not _API_VERSION.fullmatch(api_version):
            raise SpecError(
                f"{api_version!r} is not an apiVersion such as 'v1' or 'batch/v1'",
                f"{path}.apiVersion",
            )
        kind = expect_str(required_field(template, "kind", path), f"{path}.kind")
        if len(kind) > 63 or not _OBJECT_KIND.fullmatch(kind):
            raise SpecError(f"{kind!r} is not a kind such as 'Job'", f"{path}.kind")
        group = api_version.rpartition("/")[0]
        if group == _WORK_API_GROUP and kind == _WORK_KIND:
            raise SpecError("a Work cannot wrap another Work", f"{path}.kind")
        metadata = template_metadata(template, path)
        name = metadata.get("name")
        generate_name = metadata.get("generateName")
        if name is None and generate_name is None:
            raise SpecError("needs a name or a generateName", f"{path}.metadata")
        if name is not None:
            _check_object_name(name, f"{path}.metadata.name")
        if generate_name is not None:
            _check_object_name(generate_name, f"{path}.metadata.generateName", prefix=True)
        namespace = metadata.get("namespace")
        if namespace is not None:
            namespace_path = f"{path}.metadata.namespace"
            check_dns_label(expect_str(namespace, namespace_path), namespace_path)
        if isinstance(name, str):
            identity = (group, kind, name)
            if identity in seen:
                raise SpecError(
                    f"template [{seen[identity]}] is already a {kind} named {name!r}",
                    f"{path}.metadata.name",
                )
            seen[identity] = i


# --- work type names ---------------------------------------------------------------


def check_work_type(value: str, path: str) -> None:
    """A work type (a registry key, ``spec.workType``): see ``limits.work_type_problem``."""
    problem = work_type_problem(value)
    if problem is not None:
        raise SpecError(problem, path)
