"""Spec validation per work type at submit time.

Work types with a template validator (``build``, ``job``) run on Kubernetes: their
spec must be a ``brokkr.io/v1alpha1`` ``Work`` resource (YAML) whose
``spec.workType`` names the same type and whose templates pass the type's checks.
Every other work type's spec is opaque text, checked only for size.
"""

from __future__ import annotations

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.resource import DEFAULT_VALIDATORS, TemplateValidators, WorkResource


def validate_spec(
    work_type: str, spec: str, validators: TemplateValidators = DEFAULT_VALIDATORS
) -> None:
    """Raise ``SpecError`` (with the offending field's path) when ``spec`` is not valid."""
    if work_type not in validators.by_work_type:
        return
    resource = WorkResource.from_yaml(spec, validators=validators)
    if resource.spec.work_type != work_type:
        raise SpecError(
            f"the Work resource is of work type {resource.spec.work_type!r}, "
            f"but it was submitted as {work_type!r}",
            "spec.workType",
        )
