"""The ``brokkr.io/v1alpha1`` ``Work`` custom resource: model, validation, Kubernetes JSON.

The agent creates a ``Work`` wrapping one or more template objects (a Shipwright Build,
a batch/v1 Job, ...); the controller reconciles it and writes its status.

``WorkResource.from_mapping`` validates the Kubernetes JSON shape strictly, like a
structural schema without ``x-kubernetes-preserve-unknown-fields``: an unknown field in
``spec``, ``status`` or a condition is an error.  Every violation is a ``SpecError`` whose
``path`` names the field (``spec.maxRetries``, ``spec.template.spec.output.image``).
Template contents are free-form apart from the generic checks in
``workqueue_core.work.templates`` (apiVersion, kind, metadata) and, when the work type is in
the ``WorkTypes`` registry passed in, the work type's own ``validate``.  Name and shape
rules come from ``workqueue_core.work.k8s_shapes``.

Templates: ``spec.template`` is one object (the seed's form) or a list of objects
(Shipwright needs a Build and a BuildRun).  Both are normalised to ``WorkSpec.templates``,
a tuple of mappings; ``to_mapping`` writes one object when there is one template and a
list otherwise, so a one-element list comes back as a single object.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from uuid import UUID

import attrs

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.k8s_shapes import (
    DNS_SUBDOMAIN,
    QUALIFIED_NAME_PART,
    Check,
    at_path,
    check_dns_label,
    check_dns_subdomain,
    check_label_value,
    check_qualified_name,
    check_rfc3339,
    expect_bool,
    expect_list,
    expect_mapping,
    expect_str,
    int_between,
    json_object,
    optional_int,
    optional_str,
    reject_unknown,
    required_field,
    str_dict,
    string_check,
)
from workqueue_core.work.registry import NO_WORK_TYPES, WorkTypes
from workqueue_core.work.safe_yaml import (
    DEFAULT_YAML_LIMITS,
    YamlLimits,
    child_path,
    describe_type,
    dump_yaml,
    load_json_compatible_mapping,
)
from workqueue_core.work.templates import (
    check_template_objects,
    check_work_type,
    template_metadata,
    template_paths,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "CONDITION_STATUSES",
    "CONDITION_TEMPLATE_APPLIED",
    "CONDITION_TEMPLATE_SUCCEEDED",
    "DEFAULT_CLAIM_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "KIND",
    "MAX_CLAIM_TIMEOUT",
    "MAX_MAX_RETRIES",
    "PLURAL",
    "Condition",
    "WorkMetadata",
    "WorkPhase",
    "WorkResource",
    "WorkResourceStatus",
    "WorkSpec",
    "work_resource_for",
]

API_GROUP: Final = "brokkr.io"
API_VERSION: Final = "brokkr.io/v1alpha1"
KIND: Final = "Work"
PLURAL: Final = "works"

CONDITION_TEMPLATE_APPLIED: Final = "TemplateApplied"
CONDITION_TEMPLATE_SUCCEEDED: Final = "TemplateSucceeded"
CONDITION_STATUSES: Final = ("True", "False", "Unknown")

DEFAULT_MAX_RETRIES: Final = 3
MAX_MAX_RETRIES: Final = 100
DEFAULT_CLAIM_TIMEOUT: Final = 3600
MAX_CLAIM_TIMEOUT: Final = 604_800

_MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
_MAX_CONDITION_MESSAGE: Final = 32_768

# --- attrs validators that report JSON field names --------------------------------


def _field_check(
    json_name: str, *checks: Check, optional: bool = False
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """An attrs validator running ``checks`` with ``json_name`` as the error path."""

    def validator(_: object, __: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        for check in checks:
            check(value, json_name)

    return validator


def _typed(check: Callable[[str, str], None]) -> Check:
    """``check``, run once the value is known to be a string."""

    def typed_check(value: Any, path: str) -> None:
        check(expect_str(value, path), path)

    return typed_check


def _check_labels(value: Any, path: str) -> None:
    for key, item in str_dict(value, path).items():
        check_qualified_name(key, child_path(path, key))
        check_label_value(item, child_path(path, key))


def _check_annotations(value: Any, path: str) -> None:
    annotations = str_dict(value, path)
    for key in annotations:
        check_qualified_name(key, child_path(path, key))
    size = sum(len(key) + len(item) for key, item in annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        raise SpecError(f"annotations total {size} characters, over {_MAX_ANNOTATIONS_BYTES}", path)


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else str_dict(value, "labels")


def _annotations(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else str_dict(value, "annotations")


def _result(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else str_dict(value, "result")


# --- status ----------------------------------------------------------------------


class WorkPhase(enum.Enum):
    """Where a Work is in its life; the last two are terminal."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        """True for Succeeded and Failed."""
        return self in (WorkPhase.SUCCEEDED, WorkPhase.FAILED)


_CONDITION_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")


def _check_condition_type(value: str, path: str) -> None:
    prefix, slash, name = value.rpartition("/")
    valid = len(value) <= 316 and bool(QUALIFIED_NAME_PART.fullmatch(name))
    if slash and (not prefix or not DNS_SUBDOMAIN.fullmatch(prefix)):
        valid = False
    if not valid:
        raise SpecError(f"{value!r} is not a valid condition type such as 'TemplateApplied'", path)


def _check_condition_status(value: Any, path: str) -> None:
    if value not in CONDITION_STATUSES or not isinstance(value, str):
        shown = repr(value) if isinstance(value, str) else describe_type(value)
        raise SpecError(
            f'expected one of the strings "True", "False", "Unknown" (quoted in YAML),'
            f" found {shown}",
            path,
        )


def _check_condition_reason(value: Any, path: str) -> None:
    reason = expect_str(value, path)
    if reason and (len(reason) > 1024 or not _CONDITION_REASON.fullmatch(reason)):
        raise SpecError(
            f"reason {reason!r} must be CamelCase: a letter, then letters, digits, '_', ',' or ':'",
            path,
        )


@attrs.frozen
class Condition:
    """One observation of the Work, keyed by ``type`` (at most one condition per type)."""

    type: str = attrs.field(validator=_field_check("type", _typed(_check_condition_type)))
    status: str = attrs.field(validator=_field_check("status", _check_condition_status))
    reason: str = attrs.field(default="", validator=_field_check("reason", _check_condition_reason))
    message: str = attrs.field(
        default="", validator=_field_check("message", string_check(_MAX_CONDITION_MESSAGE))
    )
    last_transition_time: str | None = attrs.field(
        default=None,
        validator=_field_check("lastTransitionTime", _typed(check_rfc3339), optional=True),
    )
    observed_generation: int | None = attrs.field(
        default=None, validator=_field_check("observedGeneration", int_between(0), optional=True)
    )

    @classmethod
    def from_mapping(cls, data: object) -> Condition:
        """Parse one Kubernetes condition object; error paths are relative to it."""
        mapping = expect_mapping(data, "")
        reject_unknown(
            mapping,
            ("type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"),
            "",
        )
        return cls(
            type=expect_str(required_field(mapping, "type", ""), "type"),
            status=_condition_status(required_field(mapping, "status", ""), "status"),
            reason=optional_str(mapping, "reason", "") or "",
            message=optional_str(mapping, "message", "") or "",
            last_transition_time=optional_str(mapping, "lastTransitionTime", ""),
            observed_generation=optional_int(mapping, "observedGeneration", ""),
        )

    def to_mapping(self) -> dict[str, object]:
        """The condition as Kubernetes JSON, empty and null fields left out."""
        result: dict[str, object] = {"type": self.type, "status": self.status}
        if self.observed_generation is not None:
            result["observedGeneration"] = self.observed_generation
        if self.last_transition_time is not None:
            result["lastTransitionTime"] = self.last_transition_time
        if self.reason:
            result["reason"] = self.reason
        if self.message:
            result["message"] = self.message
        return result


def _condition_status(value: object, path: str) -> str:
    _check_condition_status(value, path)
    return expect_str(value, path)


def _conditions(value: Sequence[Condition]) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for i, item in enumerate(expect_list(value, "conditions")):
        if not isinstance(item, Condition):
            raise SpecError(
                f"expected a Condition, found {describe_type(item)}", f"conditions[{i}]"
            )
        conditions.append(item)
    return tuple(conditions)


def _check_conditions(value: Any, path: str) -> None:
    seen: set[str] = set()
    for i, condition in enumerate(value):
        if condition.type in seen:
            raise SpecError(
                f"duplicate condition type {condition.type!r}",
                child_path(child_path(path, i), "type"),
            )
        seen.add(condition.type)


def _check_result(value: Any, path: str) -> None:
    for key in str_dict(value, path):
        if not key:
            raise SpecError("result keys must not be empty", path)


def _phase_of(value: WorkPhase | str) -> WorkPhase:
    return _phase(value, "phase")


def _phase(value: object, path: str) -> WorkPhase:
    if isinstance(value, WorkPhase):
        return value
    if isinstance(value, str):
        for phase in WorkPhase:
            if phase.value == value:
                return phase
    shown = repr(value) if isinstance(value, str) else describe_type(value)
    raise SpecError(f"expected one of {', '.join(p.value for p in WorkPhase)}, found {shown}", path)


_STATUS_FIELDS: Final = (
    "phase",
    "retries",
    "message",
    "startTime",
    "completionTime",
    "nextRetryTime",
    "conditions",
    "observedGeneration",
    "result",
)


@attrs.frozen(kw_only=True)
class WorkResourceStatus:
    """What the controller last observed and decided; written through the status subresource."""

    phase: WorkPhase = attrs.field(default=WorkPhase.PENDING, converter=_phase_of)
    retries: int = attrs.field(default=0, validator=_field_check("retries", int_between(0)))
    message: str = attrs.field(default="", validator=_field_check("message", string_check()))
    start_time: str | None = attrs.field(
        default=None, validator=_field_check("startTime", _typed(check_rfc3339), optional=True)
    )
    completion_time: str | None = attrs.field(
        default=None,
        validator=_field_check("completionTime", _typed(check_rfc3339), optional=True),
    )
    next_retry_time: str | None = attrs.field(
        default=None,
        validator=_field_check("nextRetryTime", _typed(check_rfc3339), optional=True),
    )
    conditions: tuple[Condition, ...] = attrs.field(
        default=(), converter=_conditions, validator=_field_check("conditions", _check_conditions)
    )
    observed_generation: int | None = attrs.field(
        default=None, validator=_field_check("observedGeneration", int_between(0), optional=True)
    )
    result: Mapping[str, str] = attrs.field(
        factory=dict, converter=_result, validator=_field_check("result", _check_result)
    )

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of this type, if any."""
        return next((c for c in self.conditions if c.type == condition_type), None)

    @classmethod
    def from_mapping(cls, data: object) -> WorkResourceStatus:
        """Parse a Work's ``status`` object; error paths are relative to it."""
        mapping = expect_mapping(data, "")
        reject_unknown(mapping, _STATUS_FIELDS, "")
        conditions: list[Condition] = []
        raw_conditions = mapping.get("conditions")
        if raw_conditions is not None:
            for i, raw in enumerate(expect_list(raw_conditions, "conditions")):
                with at_path(f"conditions[{i}]"):
                    conditions.append(Condition.from_mapping(raw))
        raw_phase = mapping.get("phase")
        raw_result = mapping.get("result")
        retries = optional_int(mapping, "retries", "")
        return cls(
            phase=WorkPhase.PENDING if raw_phase is None else _phase(raw_phase, "phase"),
            retries=0 if retries is None else retries,
            message=optional_str(mapping, "message", "") or "",
            start_time=optional_str(mapping, "startTime", ""),
            completion_time=optional_str(mapping, "completionTime", ""),
            next_retry_time=optional_str(mapping, "nextRetryTime", ""),
            conditions=conditions,
            observed_generation=optional_int(mapping, "observedGeneration", ""),
            result={} if raw_result is None else str_dict(raw_result, "result"),
        )

    def to_mapping(self) -> dict[str, object]:
        """The status as Kubernetes JSON, empty and null fields left out."""
        result: dict[str, object] = {"phase": self.phase.value, "retries": self.retries}
        if self.message:
            result["message"] = self.message
        optional: tuple[tuple[str, object], ...] = (
            ("startTime", self.start_time),
            ("completionTime", self.completion_time),
            ("nextRetryTime", self.next_retry_time),
            ("observedGeneration", self.observed_generation),
        )
        result.update((key, value) for key, value in optional if value is not None)
        if self.conditions:
            result["conditions"] = [condition.to_mapping() for condition in self.conditions]
        if self.result:
            result["result"] = dict(self.result)
        return result


# --- metadata --------------------------------------------------------------------

_METADATA_FIELDS: Final = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
)
# ObjectMeta fields the API server manages for its own bookkeeping: accepted, not kept.
_IGNORED_METADATA_FIELDS: Final = (
    "generateName",
    "selfLink",
    "deletionGracePeriodSeconds",
    "managedFields",
)
_OWNER_REFERENCE_FIELDS: Final = (
    "apiVersion",
    "kind",
    "name",
    "uid",
    "controller",
    "blockOwnerDeletion",
)


def _json_objects(value: object, path: str) -> tuple[Mapping[str, object], ...]:
    items = expect_list(value, path)
    return tuple(json_object(item, child_path(path, i)) for i, item in enumerate(items))


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = expect_list(value, path)
    return tuple(expect_str(item, child_path(path, i)) for i, item in enumerate(items))


def _owner_references(value: Sequence[Mapping[str, object]]) -> tuple[Mapping[str, object], ...]:
    return _json_objects(value, "ownerReferences")


def _finalizers(value: Sequence[str]) -> tuple[str, ...]:
    return _strings(value, "finalizers")


def _check_owner_references(value: Any, path: str) -> None:
    for i, item in enumerate(value):
        item_path = child_path(path, i)
        reference = expect_mapping(item, item_path)
        reject_unknown(reference, _OWNER_REFERENCE_FIELDS, item_path)
        for key in ("apiVersion", "kind", "name", "uid"):
            string_check(non_empty=True)(
                required_field(reference, key, item_path), child_path(item_path, key)
            )
        for key in ("controller", "blockOwnerDeletion"):
            if reference.get(key) is not None:
                expect_bool(reference[key], child_path(item_path, key))


def _check_finalizers(value: Any, path: str) -> None:
    for i, item in enumerate(value):
        check_qualified_name(expect_str(item, child_path(path, i)), child_path(path, i))


@attrs.frozen(kw_only=True)
class WorkMetadata:
    """The parts of Kubernetes ObjectMeta a Work carries.

    ``managedFields``, ``selfLink``, ``generateName`` and ``deletionGracePeriodSeconds``
    are accepted by ``from_mapping`` and dropped: they are the API server's bookkeeping.
    """

    name: str = attrs.field(validator=_field_check("name", _typed(check_dns_subdomain)))
    namespace: str | None = attrs.field(
        default=None, validator=_field_check("namespace", _typed(check_dns_label), optional=True)
    )
    labels: Mapping[str, str] = attrs.field(
        factory=dict, converter=_labels, validator=_field_check("labels", _check_labels)
    )
    annotations: Mapping[str, str] = attrs.field(
        factory=dict,
        converter=_annotations,
        validator=_field_check("annotations", _check_annotations),
    )
    generation: int | None = attrs.field(
        default=None, validator=_field_check("generation", int_between(0), optional=True)
    )
    resource_version: str | None = attrs.field(
        default=None,
        validator=_field_check("resourceVersion", string_check(non_empty=True), optional=True),
    )
    uid: str | None = attrs.field(
        default=None, validator=_field_check("uid", string_check(non_empty=True), optional=True)
    )
    creation_timestamp: str | None = attrs.field(
        default=None,
        validator=_field_check("creationTimestamp", _typed(check_rfc3339), optional=True),
    )
    deletion_timestamp: str | None = attrs.field(
        default=None,
        validator=_field_check("deletionTimestamp", _typed(check_rfc3339), optional=True),
    )
    finalizers: tuple[str, ...] = attrs.field(
        default=(), converter=_finalizers, validator=_field_check("finalizers", _check_finalizers)
    )
    owner_references: tuple[Mapping[str, object], ...] = attrs.field(
        default=(),
        converter=_owner_references,
        validator=_field_check("ownerReferences", _check_owner_references),
    )

    @classmethod
    def from_mapping(cls, data: object) -> WorkMetadata:
        """Parse a Work's ``metadata`` object; error paths are relative to it."""
        mapping = expect_mapping(data, "")
        reject_unknown(mapping, _METADATA_FIELDS + _IGNORED_METADATA_FIELDS, "")
        raw_labels = mapping.get("labels")
        raw_annotations = mapping.get("annotations")
        raw_finalizers = mapping.get("finalizers")
        raw_owners = mapping.get("ownerReferences")
        return cls(
            name=expect_str(required_field(mapping, "name", ""), "name"),
            namespace=optional_str(mapping, "namespace", ""),
            labels=None if raw_labels is None else str_dict(raw_labels, "labels"),
            annotations=None
            if raw_annotations is None
            else str_dict(raw_annotations, "annotations"),
            generation=optional_int(mapping, "generation", ""),
            resource_version=optional_str(mapping, "resourceVersion", ""),
            uid=optional_str(mapping, "uid", ""),
            creation_timestamp=optional_str(mapping, "creationTimestamp", ""),
            deletion_timestamp=optional_str(mapping, "deletionTimestamp", ""),
            finalizers=() if raw_finalizers is None else _strings(raw_finalizers, "finalizers"),
            owner_references=()
            if raw_owners is None
            else _json_objects(raw_owners, "ownerReferences"),
        )

    def to_mapping(self) -> dict[str, object]:
        """The metadata as Kubernetes JSON, empty and null fields left out."""
        result: dict[str, object] = {"name": self.name}
        optional: tuple[tuple[str, object], ...] = (
            ("namespace", self.namespace),
            ("uid", self.uid),
            ("resourceVersion", self.resource_version),
            ("generation", self.generation),
            ("creationTimestamp", self.creation_timestamp),
            ("deletionTimestamp", self.deletion_timestamp),
        )
        result.update((key, value) for key, value in optional if value is not None)
        if self.labels:
            result["labels"] = dict(self.labels)
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        if self.owner_references:
            result["ownerReferences"] = [copy.deepcopy(dict(r)) for r in self.owner_references]
        if self.finalizers:
            result["finalizers"] = list(self.finalizers)
        return result


# --- spec ------------------------------------------------------------------------

_SPEC_FIELDS: Final = ("workType", "maxRetries", "claimTimeout", "template", "workId", "attempt")


def _templates(
    value: Mapping[str, object] | Sequence[Mapping[str, object]],
) -> tuple[Mapping[str, object], ...]:
    """Normalise one template object or a list of them to a tuple of owned copies."""
    if isinstance(value, Mapping):
        return (json_object(value, "template"),)
    if isinstance(value, list | tuple):
        return tuple(json_object(item, f"template[{i}]") for i, item in enumerate(value))
    raise SpecError(
        f"expected a template object or a list of them, found {describe_type(value)}", "template"
    )


def _check_templates_field(value: Any, path: str) -> None:
    with at_path(path), template_paths(single=len(value) == 1):
        check_template_objects(value)


def _check_work_id(value: Any, path: str) -> None:
    text = expect_str(value, path)
    if not 1 <= len(text) <= 253 or not text.isprintable() or any(c.isspace() for c in text):
        raise SpecError("must be 1-253 printable characters without spaces", path)


@attrs.frozen(kw_only=True)
class WorkSpec:
    """What to run: the work type, its retry budget and lease, and the template objects.

    ``templates`` accepts one mapping (the seed's ``template: {...}``) or a list of them and
    always holds a tuple of owned JSON-compatible copies; treat them as read-only.
    ``work_id`` and ``attempt`` map the Work back to the broker's claim.
    """

    work_type: str = attrs.field(validator=_field_check("workType", _typed(check_work_type)))
    templates: tuple[Mapping[str, object], ...] = attrs.field(
        converter=_templates, validator=_field_check("template", _check_templates_field)
    )
    max_retries: int = attrs.field(
        default=DEFAULT_MAX_RETRIES,
        validator=_field_check("maxRetries", int_between(0, MAX_MAX_RETRIES)),
    )
    claim_timeout: int = attrs.field(
        default=DEFAULT_CLAIM_TIMEOUT,
        validator=_field_check("claimTimeout", int_between(1, MAX_CLAIM_TIMEOUT)),
    )
    work_id: str | None = attrs.field(
        default=None, validator=_field_check("workId", _check_work_id, optional=True)
    )
    attempt: int | None = attrs.field(
        default=None, validator=_field_check("attempt", int_between(0), optional=True)
    )

    @classmethod
    def from_mapping(cls, data: object) -> WorkSpec:
        """Parse a Work's ``spec`` object (generic template checks only; paths relative)."""
        mapping = expect_mapping(data, "")
        reject_unknown(mapping, _SPEC_FIELDS, "")
        raw_template = required_field(mapping, "template", "")
        if isinstance(raw_template, list):
            if not raw_template:
                raise SpecError("must hold at least one template object", "template")
            templates = [
                expect_mapping(item, f"template[{i}]") for i, item in enumerate(raw_template)
            ]
            normalised = _templates(templates)
        else:
            normalised = _templates(expect_mapping(raw_template, "template"))
        with template_paths(single=not isinstance(raw_template, list), prefix="template"):
            check_template_objects(normalised)
        max_retries = optional_int(mapping, "maxRetries", "")
        claim_timeout = optional_int(mapping, "claimTimeout", "")
        return cls(
            work_type=expect_str(required_field(mapping, "workType", ""), "workType"),
            templates=normalised,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            claim_timeout=DEFAULT_CLAIM_TIMEOUT if claim_timeout is None else claim_timeout,
            work_id=optional_str(mapping, "workId", ""),
            attempt=optional_int(mapping, "attempt", ""),
        )

    def to_mapping(self) -> dict[str, object]:
        """The spec as Kubernetes JSON: one template object, or a list of several."""
        templates = [copy.deepcopy(dict(t)) for t in self.templates]
        result: dict[str, object] = {
            "workType": self.work_type,
            "maxRetries": self.max_retries,
            "claimTimeout": self.claim_timeout,
        }
        if self.work_id is not None:
            result["workId"] = self.work_id
        if self.attempt is not None:
            result["attempt"] = self.attempt
        result["template"] = templates[0] if len(templates) == 1 else templates
        return result


# --- the resource ----------------------------------------------------------------

_RESOURCE_FIELDS: Final = ("apiVersion", "kind", "metadata", "spec", "status")


@attrs.frozen
class WorkResource:
    """A ``brokkr.io/v1alpha1`` ``Work``: metadata, spec and status."""

    metadata: WorkMetadata
    spec: WorkSpec
    status: WorkResourceStatus = attrs.field(factory=WorkResourceStatus)

    @classmethod
    def from_mapping(cls, data: object, work_types: WorkTypes = NO_WORK_TYPES) -> WorkResource:
        """Validate and parse the Kubernetes JSON of a Work."""
        mapping = expect_mapping(data, "")
        reject_unknown(mapping, _RESOURCE_FIELDS, "")
        api_version = expect_str(required_field(mapping, "apiVersion", ""), "apiVersion")
        if api_version != API_VERSION:
            raise SpecError(f"expected {API_VERSION!r}, found {api_version!r}", "apiVersion")
        kind = expect_str(required_field(mapping, "kind", ""), "kind")
        if kind != KIND:
            raise SpecError(f"expected {KIND!r}, found {kind!r}", "kind")
        raw_metadata = required_field(mapping, "metadata", "")
        with at_path("metadata"):
            metadata = WorkMetadata.from_mapping(raw_metadata)
        raw_spec = expect_mapping(required_field(mapping, "spec", ""), "spec")
        with at_path("spec"):
            spec = WorkSpec.from_mapping(raw_spec)
        raw_status = mapping.get("status")
        status = WorkResourceStatus()
        if raw_status is not None:
            with at_path("status"):
                status = WorkResourceStatus.from_mapping(raw_status)
        resource = cls(metadata, spec, status)
        resource.validate(work_types, single_template=not isinstance(raw_spec["template"], list))
        return resource

    @classmethod
    def from_yaml(
        cls,
        text: str | bytes,
        limits: YamlLimits = DEFAULT_YAML_LIMITS,
        work_types: WorkTypes = NO_WORK_TYPES,
    ) -> WorkResource:
        """Load a Work from YAML text with the safe codec, then validate it."""
        return cls.from_mapping(load_json_compatible_mapping(text, limits), work_types)

    def validate(
        self,
        work_types: WorkTypes = NO_WORK_TYPES,
        *,
        single_template: bool | None = None,
    ) -> None:
        """Run the generic template checks, the work type's own (when it is in
        ``work_types``) and the template namespace rule.

        A template may name its namespace only if it is the Work's own: the controller
        creates templates next to their Work (owner references cannot cross namespaces).
        ``single_template`` says whether ``spec.template`` was written as one object, so
        error paths leave out ``[0]``; by default it is, exactly when there is one template
        (the form ``to_mapping`` writes).
        """
        single = len(self.spec.templates) == 1 if single_template is None else single_template
        with at_path("spec"), template_paths(single=single, prefix="template"):
            work_types.validate(self.spec.work_type, self.spec.templates)
            for i, template in enumerate(self.spec.templates):
                namespace = template_metadata(template, f"[{i}]").get("namespace")
                if self.metadata.namespace is not None and namespace not in (
                    None,
                    self.metadata.namespace,
                ):
                    raise SpecError(
                        f"template namespace {namespace!r} differs from the Work's namespace"
                        f" {self.metadata.namespace!r}; leave it out",
                        f"[{i}].metadata.namespace",
                    )

    def to_mapping(self) -> dict[str, object]:
        """The JSON the Kubernetes API stores for this Work (the default status left out)."""
        result: dict[str, object] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": self.metadata.to_mapping(),
            "spec": self.spec.to_mapping(),
        }
        if self.status != WorkResourceStatus():
            result["status"] = self.status.to_mapping()
        return result

    def to_yaml(self) -> str:
        """``to_mapping`` as block-style YAML."""
        return dump_yaml(self.to_mapping())


def work_resource_for(
    work_type: str,
    templates: Mapping[str, object] | Sequence[Mapping[str, object]],
    *,
    name: str,
    namespace: str | None,
    max_retries: int,
    claim_timeout: int,
    work_id: str | UUID | None,
    attempt: int | None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    work_types: WorkTypes = NO_WORK_TYPES,
) -> WorkResource:
    """Build and validate a new Work (status left at its default) for a claimed work item.

    Errors name the field as the Kubernetes JSON would (``metadata.name``,
    ``spec.template.spec.output.image``).
    """
    with at_path("metadata"):
        metadata = WorkMetadata(
            name=name, namespace=namespace, labels=labels, annotations=annotations
        )
    with at_path("spec"):
        spec = WorkSpec(
            work_type=work_type,
            templates=templates,
            max_retries=max_retries,
            claim_timeout=claim_timeout,
            work_id=None if work_id is None else str(work_id),
            attempt=attempt,
        )
    resource = WorkResource(metadata, spec)
    resource.validate(work_types)
    return resource
