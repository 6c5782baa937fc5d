"""``WorkTypes``: the immutable registry of the work types a process knows.

The composition roots (broker, agent, controller) build one from the adapters' work types
(``build`` from ``workqueue_shipwright``, ``job`` from ``workqueue_kubernetes``).  The core
only looks work types up: a work type in the registry runs on Kubernetes, so its spec is a
``Work`` resource whose templates pass the generic checks and then the type's own
``validate``; any other work type's spec is opaque text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from workqueue_core.ports.work_type import WorkType
from workqueue_core.work.templates import check_template_objects, check_work_type

__all__ = ["NO_WORK_TYPES", "WorkTypes"]


def _by_name(work_types: Iterable[WorkType]) -> Mapping[str, WorkType]:
    by_name: dict[str, WorkType] = {}
    for work_type in work_types:
        check_work_type(work_type.name, "workType")
        if work_type.name in by_name:
            raise ValueError(f"work type {work_type.name!r} is registered twice")
        by_name[work_type.name] = work_type
    return MappingProxyType(by_name)


@attrs.frozen
class WorkTypes:
    """Work types by name; ``with_work_type`` returns a new registry.

    ``WorkTypes([build, job])``; two work types of one name are refused.
    """

    _by_name: Mapping[str, WorkType] = attrs.field(
        default=(), converter=_by_name, alias="work_types"
    )

    @property
    def names(self) -> frozenset[str]:
        """The registered work types' names."""
        return frozenset(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[WorkType]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> WorkType | None:
        """The work type of this name, or None."""
        return self._by_name.get(name)

    def with_work_type(self, work_type: WorkType) -> WorkTypes:
        """A registry with ``work_type`` added, replacing one of the same name."""
        others = [w for w in self._by_name.values() if w.name != work_type.name]
        return WorkTypes([*others, work_type])

    def validate(self, work_type: str, templates: Sequence[Mapping[str, Any]]) -> None:
        """Generic checks, then the work type's own (if registered); paths start ``[index]``."""
        check_template_objects(templates)
        registered = self._by_name.get(work_type)
        if registered is not None:
            registered.validate(tuple(templates))


NO_WORK_TYPES = WorkTypes()
"""The empty registry: every template gets the generic checks only."""
