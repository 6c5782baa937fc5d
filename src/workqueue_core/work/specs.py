"""Spec validation per work type at submit time.

Work types in the ``WorkTypes`` registry (``build``, ``job`` in the broker) run on
Kubernetes: their spec must be a ``brokkr.io/v1alpha1`` ``Work`` resource (YAML) whose
``spec.workType`` names the same type and whose templates pass the generic checks and the
type's own ``validate``.  Every other work type's spec is opaque text, checked only for
size (by the service).
"""

from __future__ import annotations

from collections.abc import Callable

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.registry import NO_WORK_TYPES, WorkTypes
from workqueue_core.work.resource import WorkResource

__all__ = ["SpecValidator", "spec_validator", "validate_spec"]

SpecValidator = Callable[[str, str], None]
"""Checks a spec for a work type; raises ``SpecError``. Arguments: work type, spec text."""


def validate_spec(work_type: str, spec: str, work_types: WorkTypes = NO_WORK_TYPES) -> None:
    """Raise ``SpecError`` (with the offending field's path) when ``spec`` is not valid."""
    if work_type not in work_types:
        return
    resource = WorkResource.from_yaml(spec, work_types=work_types)
    if resource.spec.work_type != work_type:
        raise SpecError(
            f"the Work resource is of work type {resource.spec.work_type!r}, "
            f"but it was submitted as {work_type!r}",
            "spec.workType",
        )


def spec_validator(work_types: WorkTypes) -> SpecValidator:
    """``validate_spec`` over ``work_types``: what ``BrokerService(spec_validator=...)`` takes."""

    def validate(work_type: str, spec: str) -> None:
        validate_spec(work_type, spec, work_types)

    return validate
