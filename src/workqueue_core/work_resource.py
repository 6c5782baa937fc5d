"""The ``brokkr.io/v1alpha1`` ``Work`` custom resource: model, validation, Kubernetes JSON.

The agent creates a ``Work`` wrapping one or more template objects (a Shipwright Build,
a batch/v1 Job, ...); the controller reconciles it and writes its status.

``WorkResource.from_mapping`` validates the Kubernetes JSON shape strictly, like a
structural schema without ``x-kubernetes-preserve-unknown-fields``: an unknown field in
``spec``, ``status`` or a condition is an error.  Every violation is a ``SpecError`` whose
``path`` names the field (``spec.maxRetries``, ``spec.template.spec.output.image``).
Template contents are free-form apart from generic checks (apiVersion, kind, metadata)
and the checks of the work type's validator in a ``TemplateValidators`` registry.

Templates: ``spec.template`` is one object (the seed's form) or a list of objects
(Shipwright needs a Build and a BuildRun).  Both are normalised to ``WorkSpec.templates``,
a tuple of mappings; ``to_mapping`` writes one object when there is one template and a
list otherwise, so a one-element list comes back as a single object.
"""

from __future__ import annotations

import copy
import enum
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from uuid import UUID

import attrs

from workqueue_core.errors import SpecError
from workqueue_core.spec_codec import (
    DEFAULT_YAML_LIMITS,
    YamlLimits,
    child_path,
    describe_type,
    dump_yaml,
    load_json_compatible_mapping,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BUILD_STRATEGY_KINDS",
    "CONDITION_STATUSES",
    "CONDITION_TEMPLATE_APPLIED",
    "CONDITION_TEMPLATE_SUCCEEDED",
    "DEFAULT_CLAIM_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_VALIDATORS",
    "KIND",
    "MAX_CLAIM_TIMEOUT",
    "MAX_MAX_RETRIES",
    "PLURAL",
    "SHIPWRIGHT_API_VERSION",
    "SHIPWRIGHT_BUILD_RUN_SPEC_SCHEMA",
    "SHIPWRIGHT_BUILD_SPEC_SCHEMA",
    "TEMPLATE_VALIDATORS",
    "AnySchema",
    "ArraySchema",
    "BooleanSchema",
    "Condition",
    "IntegerSchema",
    "MapSchema",
    "ObjectSchema",
    "Schema",
    "StringSchema",
    "TemplateValidator",
    "TemplateValidators",
    "WorkMetadata",
    "WorkPhase",
    "WorkResource",
    "WorkSpec",
    "WorkResourceStatus",
    "check_schema",
    "check_template_objects",
    "validate_build_templates",
    "validate_job_templates",
    "validate_templates",
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

SHIPWRIGHT_API_VERSION: Final = "shipwright.io/v1beta1"
BUILD_STRATEGY_KINDS: Final = frozenset({"BuildStrategy", "ClusterBuildStrategy"})

_MAX_TEMPLATE_DEPTH: Final = 64
_MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
_MAX_CONDITION_MESSAGE: Final = 32_768

# --- name rules (Kubernetes apimachinery validation) ------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_CONDITION_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
_API_VERSION = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?"
)
_OBJECT_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|[+-]([0-9]{2}):([0-9]{2}))"
)
# Go's time.ParseDuration syntax, which metav1.Duration (Shipwright's timeouts) decodes.
_GO_DURATION = re.compile(r"[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)")


def _check_dns_label(value: str, path: str) -> None:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise SpecError(
            f"{value!r} is not a DNS-1123 label (at most 63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit)",
            path,
        )


def _check_dns_subdomain(value: str, path: str) -> None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise SpecError(
            f"{value!r} is not a DNS-1123 subdomain (at most 253 lowercase letters, digits,"
            " '-' and '.', starting and ending with a letter or digit)",
            path,
        )


def _check_qualified_name(value: str, path: str) -> None:
    """A label, annotation or finalizer key: ``[prefix/]name``."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise SpecError(f"key {value!r} has an invalid prefix: use a DNS subdomain", path)
    if len(name) > 63 or not _QUALIFIED_NAME_PART.fullmatch(name):
        raise SpecError(
            f"key {value!r} is not a qualified name (at most 63 letters, digits, '-', '_' and"
            " '.', starting and ending with a letter or digit, after an optional prefix/)",
            path,
        )


def _check_label_value(value: str, path: str) -> None:
    if value and (len(value) > 63 or not _QUALIFIED_NAME_PART.fullmatch(value)):
        raise SpecError(
            f"label value {value!r} is invalid (at most 63 letters, digits, '-', '_' and '.',"
            " starting and ending with a letter or digit, or empty)",
            path,
        )


def _check_rfc3339(value: str, path: str) -> None:
    match = _RFC3339.fullmatch(value)
    valid = match is not None
    if match is not None:
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        try:
            datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            valid = False
        if match.group(9) is not None and (int(match.group(9)) > 23 or int(match.group(10)) > 59):
            valid = False
    if not valid:
        raise SpecError(
            f"{value!r} is not an RFC 3339 date-time such as '2025-11-02T10:00:00Z'", path
        )


def _check_go_duration(value: str, path: str) -> None:
    if not _GO_DURATION.fullmatch(value):
        raise SpecError(f"{value!r} is not a duration such as '90s', '15m' or '1h30m'", path)


# --- shape helpers ----------------------------------------------------------------


@contextmanager
def _at(prefix: str) -> Iterator[None]:
    """Re-raise a SpecError from the block with its path placed under ``prefix``."""
    try:
        yield
    except SpecError as exc:
        raise SpecError(exc.detail, _join(prefix, exc.path)) from None


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    if not prefix or path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def _expect_mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping, found {describe_type(value)}", path)
    for key in value:
        if not isinstance(key, str):
            raise SpecError(f"mapping keys must be strings, found {describe_type(key)}", path)
    return value


def _expect_list(value: object, path: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise SpecError(f"expected a list, found {describe_type(value)}", path)
    return value


def _expect_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"expected a string, found {describe_type(value)}", path)
    return value


def _expect_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer, found {describe_type(value)}", path)
    return value


def _expect_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"expected a boolean, found {describe_type(value)}", path)
    return value


def _required(mapping: Mapping[str, object], key: str, path: str) -> object:
    value = mapping.get(key)
    if value is None:
        raise SpecError("required field is missing", child_path(path, key))
    return value


def _optional_str(mapping: Mapping[str, object], key: str, path: str) -> str | None:
    value = mapping.get(key)
    return None if value is None else _expect_str(value, child_path(path, key))


def _optional_int(mapping: Mapping[str, object], key: str, path: str) -> int | None:
    value = mapping.get(key)
    return None if value is None else _expect_int(value, child_path(path, key))


def _reject_unknown(mapping: Mapping[str, object], known: Collection[str], path: str) -> None:
    for key in mapping:
        if key not in known:
            raise SpecError(
                f"unknown field {key!r}; expected one of {', '.join(sorted(known))}",
                child_path(path, key),
            )


def _str_dict(value: object, path: str) -> dict[str, str]:
    mapping = _expect_mapping(value, path)
    return {key: _expect_str(item, child_path(path, key)) for key, item in mapping.items()}


def _json_copy(value: object, path: str, depth: int = 0) -> object:
    """A deep copy of ``value`` as dicts, lists and JSON scalars, or a SpecError."""
    if depth > _MAX_TEMPLATE_DEPTH:
        raise SpecError(f"nested deeper than {_MAX_TEMPLATE_DEPTH} levels", path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{value!r} is not a finite number", path)
        return value
    if isinstance(value, Mapping):
        return {
            key: _json_copy(item, child_path(path, key), depth + 1)
            for key, item in _expect_mapping(value, path).items()
        }
    if isinstance(value, list | tuple):
        return [_json_copy(item, child_path(path, i), depth + 1) for i, item in enumerate(value)]
    raise SpecError(f"expected a JSON value, found {describe_type(value)}", path)


def _json_object(value: object, path: str) -> dict[str, object]:
    """A deep JSON-compatible copy of a mapping."""
    return {
        key: _json_copy(item, child_path(path, key), 1)
        for key, item in _expect_mapping(value, path).items()
    }


# --- attrs validators that report JSON field names --------------------------------

_Check: TypeAlias = Callable[[Any, str], None]


def _field_check(
    json_name: str, *checks: _Check, optional: bool = False
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """An attrs validator running ``checks`` with ``json_name`` as the error path."""

    def validator(_: object, __: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        for check in checks:
            check(value, json_name)

    return validator


def _int_between(low: int, high: int | None = None) -> _Check:
    def check(value: Any, path: str) -> None:
        number = _expect_int(value, path)
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SpecError(f"must be an integer {bound}, found {number}", path)

    return check


def _string(max_length: int | None = None, *, non_empty: bool = False) -> _Check:
    def check(value: Any, path: str) -> None:
        text = _expect_str(value, path)
        if non_empty and not text:
            raise SpecError("must not be empty", path)
        if max_length is not None and len(text) > max_length:
            raise SpecError(f"must be at most {max_length} characters long", path)

    return check


def _typed(check: Callable[[str, str], None]) -> _Check:
    def typed_check(value: Any, path: str) -> None:
        check(_expect_str(value, path), path)

    return typed_check


def _check_work_type(value: str, path: str) -> None:
    if not 1 <= len(value) <= 50 or not _DNS_LABEL.fullmatch(value):
        raise SpecError(
            f"work type {value!r} must be 1-50 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit",
            path,
        )


def _check_labels(value: Any, path: str) -> None:
    for key, item in _str_dict(value, path).items():
        _check_qualified_name(key, child_path(path, key))
        _check_label_value(item, child_path(path, key))


def _check_annotations(value: Any, path: str) -> None:
    annotations = _str_dict(value, path)
    for key in annotations:
        _check_qualified_name(key, child_path(path, key))
    size = sum(len(key) + len(item) for key, item in annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        raise SpecError(f"annotations total {size} characters, over {_MAX_ANNOTATIONS_BYTES}", path)


def _labels(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else _str_dict(value, "labels")


def _annotations(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else _str_dict(value, "annotations")


def _result(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else _str_dict(value, "result")


# --- template checks ---------------------------------------------------------------

TemplateValidator: TypeAlias = Callable[[tuple[Mapping[str, object], ...]], None]
"""Checks a Work's templates; raises SpecError with paths starting ``[index]``."""


@contextmanager
def _template_paths(*, single: bool, prefix: str = "") -> Iterator[None]:
    """Rebase ``[i]...`` template paths under ``prefix``; ``[0]`` disappears for one object."""
    try:
        yield
    except SpecError as exc:
        path = exc.path
        if single and path.startswith("[0]"):
            path = path[3:]
            path = path[1:] if path.startswith(".") else path
        raise SpecError(exc.detail, _join(prefix, path)) from None


def _template_metadata(template: Mapping[str, object], path: str) -> Mapping[str, object]:
    return _expect_mapping(template.get("metadata"), child_path(path, "metadata"))


def _check_object_name(value: object, path: str, *, prefix: bool = False) -> None:
    name = _expect_str(value, path)
    if prefix:
        stripped = name.rstrip("-")
        if len(name) > 248 or not stripped or not _DNS_SUBDOMAIN.fullmatch(stripped):
            raise SpecError(
                f"{name!r} is not a valid name prefix (a DNS-1123 subdomain, may end with '-')",
                path,
            )
    else:
        _check_dns_subdomain(name, path)


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
        template = _expect_mapping(raw, path)
        api_version = _expect_str(_required(template, "apiVersion", path), f"{path}.apiVersion")
        if not _API_VERSION.fullmatch(api_version):
            raise SpecError(
                f"{api_version!r} is not an apiVersion such as 'v1' or 'batch/v1'",
                f"{path}.apiVersion",
            )
        kind = _expect_str(_required(template, "kind", path), f"{path}.kind")
        if len(kind) > 63 or not _OBJECT_KIND.fullmatch(kind):
            raise SpecError(f"{kind!r} is not a kind such as 'Job'", f"{path}.kind")
        group = api_version.rpartition("/")[0]
        if group == API_GROUP and kind == KIND:
            raise SpecError("a Work cannot wrap another Work", f"{path}.kind")
        metadata = _template_metadata(template, path)
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
            _check_dns_label(_expect_str(namespace, namespace_path), namespace_path)
        if isinstance(name, str):
            identity = (group, kind, name)
            if identity in seen:
                raise SpecError(
                    f"template [{seen[identity]}] is already a {kind} named {name!r}",
                    f"{path}.metadata.name",
                )
            seen[identity] = i


def _read_only_validators(
    value: Mapping[str, TemplateValidator],
) -> Mapping[str, TemplateValidator]:
    return MappingProxyType(dict(value))


@attrs.frozen
class TemplateValidators:
    """An immutable registry of template checks by work type.

    Work types without an entry get the generic checks only.  Extend with
    ``with_validator``, which returns a new registry.
    """

    by_work_type: Mapping[str, TemplateValidator] = attrs.field(
        factory=dict, converter=_read_only_validators
    )

    def with_validator(self, work_type: str, validator: TemplateValidator) -> TemplateValidators:
        """A registry with ``validator`` added (or replacing the old one) for ``work_type``."""
        _check_work_type(work_type, "workType")
        return TemplateValidators({**self.by_work_type, work_type: validator})

    def validate(self, work_type: str, templates: Sequence[Mapping[str, object]]) -> None:
        """Generic checks, then the work type's own; paths start with ``[index]``."""
        check_template_objects(templates)
        specific = self.by_work_type.get(work_type)
        if specific is not None:
            specific(tuple(templates))


# --- a small structural schema (for checking templates against real CRDs) ---------


@attrs.frozen
class StringSchema:
    """A string; ``enum`` restricts values, ``duration`` requires Go duration syntax."""

    enum: frozenset[str] | None = None
    duration: bool = False
    non_empty: bool = False


@attrs.frozen
class IntegerSchema:
    """An integer (never a boolean) within optional bounds."""

    minimum: int | None = None
    maximum: int | None = None


@attrs.frozen
class BooleanSchema:
    """A boolean."""


@attrs.frozen
class AnySchema:
    """Any JSON value."""


@attrs.frozen
class ArraySchema:
    """A list whose items all match ``items``."""

    items: Schema


@attrs.frozen
class MapSchema:
    """A mapping with free keys whose values all match ``values``."""

    values: Schema


@attrs.frozen
class ObjectSchema:
    """A mapping with known properties; ``closed`` makes unknown properties errors."""

    properties: Mapping[str, Schema]
    required: frozenset[str] = frozenset()
    closed: bool = True


Schema: TypeAlias = (
    StringSchema
    | IntegerSchema
    | BooleanSchema
    | AnySchema
    | ArraySchema
    | MapSchema
    | ObjectSchema
)


def check_schema(schema: Schema, value: object, path: str) -> None:
    """Raise a SpecError naming the first place where ``value`` does not match ``schema``."""
    if isinstance(schema, StringSchema):
        text = _expect_str(value, path)
        if schema.non_empty and not text:
            raise SpecError("must not be empty", path)
        if schema.enum is not None and text not in schema.enum:
            raise SpecError(
                f"expected one of {', '.join(sorted(schema.enum))}, found {text!r}", path
            )
        if schema.duration:
            _check_go_duration(text, path)
    elif isinstance(schema, IntegerSchema):
        _int_between(schema.minimum if schema.minimum is not None else -(2**63), schema.maximum)(
            value, path
        )
    elif isinstance(schema, BooleanSchema):
        _expect_bool(value, path)
    elif isinstance(schema, ArraySchema):
        for i, item in enumerate(_expect_list(value, path)):
            check_schema(schema.items, item, child_path(path, i))
    elif isinstance(schema, MapSchema):
        for key, item in _expect_mapping(value, path).items():
            check_schema(schema.values, item, child_path(path, key))
    elif isinstance(schema, ObjectSchema):
        mapping = _expect_mapping(value, path)
        for key in sorted(schema.required):
            _required(mapping, key, path)
        if schema.closed:
            _reject_unknown(mapping, schema.properties, path)
        for key, item in mapping.items():
            if key in schema.properties and item is not None:
                check_schema(schema.properties[key], item, child_path(path, key))


# --- Shipwright (work type "build") ------------------------------------------------
# Transcribed from the v1beta1 schemas of shipwright.io_builds.yaml and
# shipwright.io_buildruns.yaml (Shipwright v0.20.x); a test compares them with the CRDs.
# Stricter than the CRDs where Shipwright's own types are: strategy kind and source
# type enums, Go duration syntax, non-empty names, image and URL.

_STR = StringSchema()
_NAME = StringSchema(non_empty=True)
_BOOL = BooleanSchema()
_DURATION = StringSchema(duration=True)
_STR_MAP = MapSchema(_STR)
_STR_LIST = ArraySchema(_STR)
_OPEN_OBJECT = ObjectSchema({}, closed=False)

_OBJECT_KEY_REF = ObjectSchema(
    {"format": _STR, "key": _NAME, "name": _NAME}, required=frozenset({"key", "name"})
)
_SINGLE_VALUE = ObjectSchema(
    {"configMapValue": _OBJECT_KEY_REF, "secretValue": _OBJECT_KEY_REF, "value": _STR}
)
_PARAM_VALUES = ArraySchema(
    ObjectSchema(
        {
            "configMapValue": _OBJECT_KEY_REF,
            "name": _NAME,
            "secretValue": _OBJECT_KEY_REF,
            "value": _STR,
            "values": ArraySchema(_SINGLE_VALUE),
        },
        required=frozenset({"name"}),
    )
)
_IMAGE_OUTPUT = ObjectSchema(
    {
        "annotations": _STR_MAP,
        "image": _NAME,
        "insecure": _BOOL,
        "labels": _STR_MAP,
        "platforms": ArraySchema(
            ObjectSchema({"arch": _STR, "os": _STR}, required=frozenset({"arch", "os"}))
        ),
        "pushSecret": _STR,
        "timestamp": _STR,
        "vulnerabilityScan": ObjectSchema(
            {
                "enabled": _BOOL,
                "failOnFinding": _BOOL,
                "ignore": ObjectSchema(
                    {
                        "id": _STR_LIST,
                        "severity": StringSchema(enum=frozenset({"low", "medium", "high"})),
                        "unfixed": _BOOL,
                    }
                ),
            }
        ),
    },
    required=frozenset({"image"}),
)
_SOURCE_TYPES: Final = {"Git": "git", "OCI": "ociArtifact", "Local": "local"}
_LOCAL_SOURCE = ObjectSchema({"name": _STR, "timeout": _DURATION})
_SOURCE = ObjectSchema(
    {
        "contextDir": _STR,
        "git": ObjectSchema(
            {"cloneSecret": _STR, "depth": IntegerSchema(), "revision": _STR, "url": _NAME},
            required=frozenset({"url"}),
        ),
        "local": _LOCAL_SOURCE,
        "ociArtifact": ObjectSchema(
            {
                "image": _NAME,
                "prune": StringSchema(enum=frozenset({"Never", "AfterPull"})),
                "pullSecret": _STR,
            },
            required=frozenset({"image"}),
        ),
        "type": StringSchema(enum=frozenset(_SOURCE_TYPES)),
    },
    required=frozenset({"type"}),
)
# A BuildRun's own source only streams a local directory in.
_BUILD_RUN_SOURCE = ObjectSchema(
    {"local": _LOCAL_SOURCE, "type": StringSchema(enum=frozenset({"Local"}))},
    required=frozenset({"type"}),
)
_STEP_RESOURCES = ArraySchema(
    ObjectSchema(
        {"name": _NAME, "resources": _OPEN_OBJECT}, required=frozenset({"name", "resources"})
    )
)
_ENV = ArraySchema(
    ObjectSchema(
        {"name": _NAME, "value": _STR, "valueFrom": _OPEN_OBJECT}, required=frozenset({"name"})
    )
)
_TOLERATIONS = ArraySchema(
    ObjectSchema(
        {
            "effect": _STR,
            "key": _STR,
            "operator": _STR,
            "tolerationSeconds": IntegerSchema(),
            "value": _STR,
        }
    )
)
_VOLUMES = ArraySchema(ObjectSchema({"name": _NAME}, required=frozenset({"name"}), closed=False))
_TRIGGER = ObjectSchema(
    {
        "triggerSecret": _STR,
        "when": ArraySchema(
            ObjectSchema(
                {
                    "github": ObjectSchema({"branches": _STR_LIST, "events": _STR_LIST}),
                    "image": ObjectSchema({"names": _STR_LIST}),
                    "name": _STR,
                    "objectRef": ObjectSchema(
                        {"name": _STR, "selector": _STR_MAP, "status": _STR_LIST}
                    ),
                    "type": _STR,
                },
                required=frozenset({"name", "type"}),
            )
        ),
    }
)

SHIPWRIGHT_BUILD_SPEC_SCHEMA: Final = ObjectSchema(
    {
        "env": _ENV,
        "nodeSelector": _STR_MAP,
        "output": _IMAGE_OUTPUT,
        "paramValues": _PARAM_VALUES,
        "retention": ObjectSchema(
            {
                "atBuildDeletion": _BOOL,
                "failedLimit": IntegerSchema(1, 10_000),
                "succeededLimit": IntegerSchema(1, 10_000),
                "ttlAfterFailed": _DURATION,
                "ttlAfterSucceeded": _DURATION,
            }
        ),
        "runtimeClassName": _STR,
        "schedulerName": _STR,
        "source": _SOURCE,
        "strategy": ObjectSchema(
            {
                "kind": StringSchema(enum=BUILD_STRATEGY_KINDS),
                "name": _NAME,
                "stepResources": _STEP_RESOURCES,
            },
            required=frozenset({"name"}),
        ),
        "timeout": _DURATION,
        "tolerations": _TOLERATIONS,
        "trigger": _TRIGGER,
        "volumes": _VOLUMES,
    },
    required=frozenset({"output", "strategy"}),
)
"""``spec`` of a Shipwright v1beta1 ``Build``."""

SHIPWRIGHT_BUILD_RUN_SPEC_SCHEMA: Final = ObjectSchema(
    {
        "build": ObjectSchema({"name": _NAME, "spec": SHIPWRIGHT_BUILD_SPEC_SCHEMA}),
        "env": _ENV,
        "nodeSelector": _STR_MAP,
        "output": _IMAGE_OUTPUT,
        "paramValues": _PARAM_VALUES,
        "retention": ObjectSchema({"ttlAfterFailed": _DURATION, "ttlAfterSucceeded": _DURATION}),
        "runtimeClassName": _STR,
        "schedulerName": _STR,
        "serviceAccount": _STR,
        "source": _BUILD_RUN_SOURCE,
        "state": _STR,
        "stepResources": _STEP_RESOURCES,
        "timeout": _DURATION,
        "tolerations": _TOLERATIONS,
        "volumes": _VOLUMES,
    },
    required=frozenset({"build"}),
)
"""``spec`` of a Shipwright v1beta1 ``BuildRun``."""


def _check_source(spec: Mapping[str, object], path: str) -> None:
    """Shipwright's rule: the source's sub-object is the one its ``type`` names."""
    source = spec.get("source")
    if not isinstance(source, Mapping):
        return
    expected = _SOURCE_TYPES[str(source["type"])]
    if source.get(expected) is None and expected != "local":
        raise SpecError(f"source type {source['type']} needs {expected}", f"{path}.source")
    for other in _SOURCE_TYPES.values():
        if other != expected and source.get(other) is not None:
            raise SpecError(
                f"source type is {source['type']}, so {other} does not apply",
                f"{path}.source.{other}",
            )


def _check_param_values(spec: Mapping[str, object], path: str) -> None:
    """Shipwright's rules: one of value, configMapValue, secretValue; or a list of them."""
    singles = ("value", "configMapValue", "secretValue")
    params = spec.get("paramValues")
    if not isinstance(params, list):
        return
    for i, param in enumerate(params):
        param_path = f"{path}.paramValues[{i}]"
        if not isinstance(param, Mapping):
            continue  # reported by the schema check
        given = [key for key in singles if param.get(key) is not None]
        if len(given) > 1:
            raise SpecError(f"has {' and '.join(given)}: give only one", param_path)
        values = param.get("values")
        if given and values is not None:
            raise SpecError(f"has {given[0]} and values: give only one", param_path)
        for j, item in enumerate(values if isinstance(values, list) else ()):
            if isinstance(item, Mapping) and sum(item.get(k) is not None for k in singles) != 1:
                raise SpecError(
                    "each item needs exactly one of value, configMapValue, secretValue",
                    f"{param_path}.values[{j}]",
                )


def _check_build_spec(spec: Mapping[str, object], path: str) -> None:
    check_schema(SHIPWRIGHT_BUILD_SPEC_SCHEMA, spec, path)
    _check_source(spec, path)
    _check_param_values(spec, path)


def _check_build_run_spec(spec: Mapping[str, object], path: str) -> None:
    check_schema(SHIPWRIGHT_BUILD_RUN_SPEC_SCHEMA, spec, path)
    _check_source(spec, path)
    _check_param_values(spec, path)
    build = _expect_mapping(spec["build"], f"{path}.build")
    if (build.get("name") is None) == (build.get("spec") is None):
        raise SpecError(
            "needs exactly one of name (a Build) or spec (an embedded build)", f"{path}.build"
        )
    embedded = build.get("spec")
    if embedded is not None:
        _check_build_spec(_expect_mapping(embedded, f"{path}.build.spec"), f"{path}.build.spec")


def validate_build_templates(templates: tuple[Mapping[str, object], ...]) -> None:
    """Work type ``build``: a Shipwright v1beta1 Build, a Build and a BuildRun, or a BuildRun.

    Accepted shapes: a Build alone (the controller starts BuildRuns for it); a Build and a
    BuildRun whose ``spec.build.name`` is the Build's name; a BuildRun alone that embeds
    its build in ``spec.build.spec``.
    """
    builds: list[tuple[int, Mapping[str, object]]] = []
    runs: list[tuple[int, Mapping[str, object]]] = []
    for i, template in enumerate(templates):
        path = f"[{i}]"
        if template.get("apiVersion") != SHIPWRIGHT_API_VERSION:
            raise SpecError(
                f"build work takes {SHIPWRIGHT_API_VERSION} objects, found"
                f" {template.get('apiVersion')!r}",
                f"{path}.apiVersion",
            )
        kind = template.get("kind")
        spec = _expect_mapping(_required(template, "spec", path), f"{path}.spec")
        if kind == "Build":
            _check_build_spec(spec, f"{path}.spec")
            builds.append((i, template))
        elif kind == "BuildRun":
            _check_build_run_spec(spec, f"{path}.spec")
            runs.append((i, template))
        else:
            raise SpecError(
                f"build work takes a Build and a BuildRun, found {kind!r}", f"{path}.kind"
            )
    if len(builds) > 1:
        raise SpecError("build work takes one Build", f"[{builds[1][0]}].kind")
    if len(runs) > 1:
        raise SpecError("build work takes one BuildRun", f"[{runs[1][0]}].kind")
    if not runs:
        return
    run_index, run = runs[0]
    build_ref = _expect_mapping(_expect_mapping(run["spec"], "")["build"], "")
    if build_ref.get("spec") is not None:
        if builds:
            raise SpecError(
                "the BuildRun embeds its build in spec.build.spec, so this Build would be unused",
                f"[{builds[0][0]}].kind",
            )
        return
    referenced = build_ref.get("name")
    build_names = [_template_metadata(build, "").get("name") for _, build in builds]
    if referenced not in build_names:
        raise SpecError(
            f"refers to Build {referenced!r}, but the templates hold no Build of that name"
            " (give the Build a fixed metadata.name, or embed the build in spec.build.spec)",
            f"[{run_index}].spec.build.name",
        )


# --- Kubernetes Job (work type "job") ----------------------------------------------


def validate_job_templates(templates: tuple[Mapping[str, object], ...]) -> None:
    """Work type ``job``: exactly one batch/v1 Job whose pod has named containers with images."""
    if len(templates) != 1:
        raise SpecError(
            f"job work takes exactly one batch/v1 Job, found {len(templates)} objects", ""
        )
    job = templates[0]
    if job.get("apiVersion") != "batch/v1":
        raise SpecError(f"expected 'batch/v1', found {job.get('apiVersion')!r}", "[0].apiVersion")
    if job.get("kind") != "Job":
        raise SpecError(f"expected 'Job', found {job.get('kind')!r}", "[0].kind")
    spec = _expect_mapping(_required(job, "spec", "[0]"), "[0].spec")
    pod_template = _expect_mapping(_required(spec, "template", "[0].spec"), "[0].spec.template")
    pod_path = "[0].spec.template.spec"
    pod = _expect_mapping(_required(pod_template, "spec", "[0].spec.template"), pod_path)
    restart_policy = _required(pod, "restartPolicy", pod_path)
    if restart_policy not in ("Never", "OnFailure"):
        raise SpecError(
            f"a Job's pods need restartPolicy Never or OnFailure, found {restart_policy!r}",
            f"{pod_path}.restartPolicy",
        )
    containers = _expect_list(_required(pod, "containers", pod_path), f"{pod_path}.containers")
    if not containers:
        raise SpecError("needs at least one container", f"{pod_path}.containers")
    names: set[str] = set()
    for i, raw in enumerate(containers):
        path = f"{pod_path}.containers[{i}]"
        container = _expect_mapping(raw, path)
        name = _expect_str(_required(container, "name", path), f"{path}.name")
        _check_dns_label(name, f"{path}.name")
        if name in names:
            raise SpecError(f"duplicate container name {name!r}", f"{path}.name")
        names.add(name)
        _string(non_empty=True)(_required(container, "image", path), f"{path}.image")


DEFAULT_VALIDATORS: Final = TemplateValidators(
    {"build": validate_build_templates, "job": validate_job_templates}
)
"""The built-in registry: ``build`` (Shipwright) and ``job`` (batch/v1 Job)."""

TEMPLATE_VALIDATORS: Final[Mapping[str, TemplateValidator]] = DEFAULT_VALIDATORS.by_work_type
"""Read-only view of the built-in validators by work type."""


def validate_templates(
    work_type: str,
    templates: Sequence[Mapping[str, object]],
    validators: TemplateValidators = DEFAULT_VALIDATORS,
) -> None:
    """Check templates for a work type; error paths are ``spec.template[index]...``."""
    with _template_paths(single=False, prefix="spec.template"):
        validators.validate(work_type, templates)


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


def _check_condition_type(value: str, path: str) -> None:
    prefix, slash, name = value.rpartition("/")
    valid = len(value) <= 316 and bool(_QUALIFIED_NAME_PART.fullmatch(name))
    if slash and (not prefix or not _DNS_SUBDOMAIN.fullmatch(prefix)):
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
    reason = _expect_str(value, path)
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
        default="", validator=_field_check("message", _string(_MAX_CONDITION_MESSAGE))
    )
    last_transition_time: str | None = attrs.field(
        default=None,
        validator=_field_check("lastTransitionTime", _typed(_check_rfc3339), optional=True),
    )
    observed_generation: int | None = attrs.field(
        default=None, validator=_field_check("observedGeneration", _int_between(0), optional=True)
    )

    @classmethod
    def from_mapping(cls, data: object) -> Condition:
        """Parse one Kubernetes condition object; error paths are relative to it."""
        mapping = _expect_mapping(data, "")
        _reject_unknown(
            mapping,
            ("type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"),
            "",
        )
        return cls(
            type=_expect_str(_required(mapping, "type", ""), "type"),
            status=_condition_status(_required(mapping, "status", ""), "status"),
            reason=_optional_str(mapping, "reason", "") or "",
            message=_optional_str(mapping, "message", "") or "",
            last_transition_time=_optional_str(mapping, "lastTransitionTime", ""),
            observed_generation=_optional_int(mapping, "observedGeneration", ""),
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
    return _expect_str(value, path)


def _conditions(value: Sequence[Condition]) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for i, item in enumerate(_expect_list(value, "conditions")):
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
    for key in _str_dict(value, path):
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
    retries: int = attrs.field(default=0, validator=_field_check("retries", _int_between(0)))
    message: str = attrs.field(default="", validator=_field_check("message", _string()))
    start_time: str | None = attrs.field(
        default=None, validator=_field_check("startTime", _typed(_check_rfc3339), optional=True)
    )
    completion_time: str | None = attrs.field(
        default=None,
        validator=_field_check("completionTime", _typed(_check_rfc3339), optional=True),
    )
    next_retry_time: str | None = attrs.field(
        default=None,
        validator=_field_check("nextRetryTime", _typed(_check_rfc3339), optional=True),
    )
    conditions: tuple[Condition, ...] = attrs.field(
        default=(), converter=_conditions, validator=_field_check("conditions", _check_conditions)
    )
    observed_generation: int | None = attrs.field(
        default=None, validator=_field_check("observedGeneration", _int_between(0), optional=True)
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
        mapping = _expect_mapping(data, "")
        _reject_unknown(mapping, _STATUS_FIELDS, "")
        conditions: list[Condition] = []
        raw_conditions = mapping.get("conditions")
        if raw_conditions is not None:
            for i, raw in enumerate(_expect_list(raw_conditions, "conditions")):
                with _at(f"conditions[{i}]"):
                    conditions.append(Condition.from_mapping(raw))
        raw_phase = mapping.get("phase")
        raw_result = mapping.get("result")
        retries = _optional_int(mapping, "retries", "")
        return cls(
            phase=WorkPhase.PENDING if raw_phase is None else _phase(raw_phase, "phase"),
            retries=0 if retries is None else retries,
            message=_optional_str(mapping, "message", "") or "",
            start_time=_optional_str(mapping, "startTime", ""),
            completion_time=_optional_str(mapping, "completionTime", ""),
            next_retry_time=_optional_str(mapping, "nextRetryTime", ""),
            conditions=conditions,
            observed_generation=_optional_int(mapping, "observedGeneration", ""),
            result={} if raw_result is None else _str_dict(raw_result, "result"),
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
    items = _expect_list(value, path)
    return tuple(_json_object(item, child_path(path, i)) for i, item in enumerate(items))


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = _expect_list(value, path)
    return tuple(_expect_str(item, child_path(path, i)) for i, item in enumerate(items))


def _owner_references(value: Sequence[Mapping[str, object]]) -> tuple[Mapping[str, object], ...]:
    return _json_objects(value, "ownerReferences")


def _finalizers(value: Sequence[str]) -> tuple[str, ...]:
    return _strings(value, "finalizers")


def _check_owner_references(value: Any, path: str) -> None:
    for i, item in enumerate(value):
        item_path = child_path(path, i)
        reference = _expect_mapping(item, item_path)
        _reject_unknown(reference, _OWNER_REFERENCE_FIELDS, item_path)
        for key in ("apiVersion", "kind", "name", "uid"):
            _string(non_empty=True)(
                _required(reference, key, item_path), child_path(item_path, key)
            )
        for key in ("controller", "blockOwnerDeletion"):
            if reference.get(key) is not None:
                _expect_bool(reference[key], child_path(item_path, key))


def _check_finalizers(value: Any, path: str) -> None:
    for i, item in enumerate(value):
        _check_qualified_name(_expect_str(item, child_path(path, i)), child_path(path, i))


@attrs.frozen(kw_only=True)
class WorkMetadata:
    """The parts of Kubernetes ObjectMeta a Work carries.

    ``managedFields``, ``selfLink``, ``generateName`` and ``deletionGracePeriodSeconds``
    are accepted by ``from_mapping`` and dropped: they are the API server's bookkeeping.
    """

    name: str = attrs.field(validator=_field_check("name", _typed(_check_dns_subdomain)))
    namespace: str | None = attrs.field(
        default=None, validator=_field_check("namespace", _typed(_check_dns_label), optional=True)
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
        default=None, validator=_field_check("generation", _int_between(0), optional=True)
    )
    resource_version: str | None = attrs.field(
        default=None,
        validator=_field_check("resourceVersion", _string(non_empty=True), optional=True),
    )
    uid: str | None = attrs.field(
        default=None, validator=_field_check("uid", _string(non_empty=True), optional=True)
    )
    creation_timestamp: str | None = attrs.field(
        default=None,
        validator=_field_check("creationTimestamp", _typed(_check_rfc3339), optional=True),
    )
    deletion_timestamp: str | None = attrs.field(
        default=None,
        validator=_field_check("deletionTimestamp", _typed(_check_rfc3339), optional=True),
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
        mapping = _expect_mapping(data, "")
        _reject_unknown(mapping, _METADATA_FIELDS + _IGNORED_METADATA_FIELDS, "")
        raw_labels = mapping.get("labels")
        raw_annotations = mapping.get("annotations")
        raw_finalizers = mapping.get("finalizers")
        raw_owners = mapping.get("ownerReferences")
        return cls(
            name=_expect_str(_required(mapping, "name", ""), "name"),
            namespace=_optional_str(mapping, "namespace", ""),
            labels=None if raw_labels is None else _str_dict(raw_labels, "labels"),
            annotations=None
            if raw_annotations is None
            else _str_dict(raw_annotations, "annotations"),
            generation=_optional_int(mapping, "generation", ""),
            resource_version=_optional_str(mapping, "resourceVersion", ""),
            uid=_optional_str(mapping, "uid", ""),
            creation_timestamp=_optional_str(mapping, "creationTimestamp", ""),
            deletion_timestamp=_optional_str(mapping, "deletionTimestamp", ""),
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
        return (_json_object(value, "template"),)
    if isinstance(value, list | tuple):
        return tuple(_json_object(item, f"template[{i}]") for i, item in enumerate(value))
    raise SpecError(
        f"expected a template object or a list of them, found {describe_type(value)}", "template"
    )


def _check_templates_field(value: Any, path: str) -> None:
    with _at(path), _template_paths(single=len(value) == 1):
        check_template_objects(value)


def _check_work_id(value: Any, path: str) -> None:
    text = _expect_str(value, path)
    if not 1 <= len(text) <= 253 or not text.isprintable() or any(c.isspace() for c in text):
        raise SpecError("must be 1-253 printable characters without spaces", path)


@attrs.frozen(kw_only=True)
class WorkSpec:
    """What to run: the work type, its retry budget and lease, and the template objects.

    ``templates`` accepts one mapping (the seed's ``template: {...}``) or a list of them and
    always holds a tuple of owned JSON-compatible copies; treat them as read-only.
    ``work_id`` and ``attempt`` map the Work back to the broker's claim.
    """

    work_type: str = attrs.field(validator=_field_check("workType", _typed(_check_work_type)))
    templates: tuple[Mapping[str, object], ...] = attrs.field(
        converter=_templates, validator=_field_check("template", _check_templates_field)
    )
    max_retries: int = attrs.field(
        default=DEFAULT_MAX_RETRIES,
        validator=_field_check("maxRetries", _int_between(0, MAX_MAX_RETRIES)),
    )
    claim_timeout: int = attrs.field(
        default=DEFAULT_CLAIM_TIMEOUT,
        validator=_field_check("claimTimeout", _int_between(1, MAX_CLAIM_TIMEOUT)),
    )
    work_id: str | None = attrs.field(
        default=None, validator=_field_check("workId", _check_work_id, optional=True)
    )
    attempt: int | None = attrs.field(
        default=None, validator=_field_check("attempt", _int_between(0), optional=True)
    )

    @classmethod
    def from_mapping(cls, data: object) -> WorkSpec:
        """Parse a Work's ``spec`` object (generic template checks only; paths relative)."""
        mapping = _expect_mapping(data, "")
        _reject_unknown(mapping, _SPEC_FIELDS, "")
        raw_template = _required(mapping, "template", "")
        if isinstance(raw_template, list):
            if not raw_template:
                raise SpecError("must hold at least one template object", "template")
            templates = [
                _expect_mapping(item, f"template[{i}]") for i, item in enumerate(raw_template)
            ]
            normalised = _templates(templates)
        else:
            normalised = _templates(_expect_mapping(raw_template, "template"))
        with _template_paths(single=not isinstance(raw_template, list), prefix="template"):
            check_template_objects(normalised)
        max_retries = _optional_int(mapping, "maxRetries", "")
        claim_timeout = _optional_int(mapping, "claimTimeout", "")
        return cls(
            work_type=_expect_str(_required(mapping, "workType", ""), "workType"),
            templates=normalised,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            claim_timeout=DEFAULT_CLAIM_TIMEOUT if claim_timeout is None else claim_timeout,
            work_id=_optional_str(mapping, "workId", ""),
            attempt=_optional_int(mapping, "attempt", ""),
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
    def from_mapping(
        cls, data: object, validators: TemplateValidators = DEFAULT_VALIDATORS
    ) -> WorkResource:
        """Validate and parse the Kubernetes JSON of a Work."""
        mapping = _expect_mapping(data, "")
        _reject_unknown(mapping, _RESOURCE_FIELDS, "")
        api_version = _expect_str(_required(mapping, "apiVersion", ""), "apiVersion")
        if api_version != API_VERSION:
            raise SpecError(f"expected {API_VERSION!r}, found {api_version!r}", "apiVersion")
        kind = _expect_str(_required(mapping, "kind", ""), "kind")
        if kind != KIND:
            raise SpecError(f"expected {KIND!r}, found {kind!r}", "kind")
        raw_metadata = _required(mapping, "metadata", "")
        with _at("metadata"):
            metadata = WorkMetadata.from_mapping(raw_metadata)
        raw_spec = _expect_mapping(_required(mapping, "spec", ""), "spec")
        with _at("spec"):
            spec = WorkSpec.from_mapping(raw_spec)
        raw_status = mapping.get("status")
        status = WorkResourceStatus()
        if raw_status is not None:
            with _at("status"):
                status = WorkResourceStatus.from_mapping(raw_status)
        resource = cls(metadata, spec, status)
        resource.validate(validators, single_template=not isinstance(raw_spec["template"], list))
        return resource

    @classmethod
    def from_yaml(
        cls,
        text: str | bytes,
        limits: YamlLimits = DEFAULT_YAML_LIMITS,
        validators: TemplateValidators = DEFAULT_VALIDATORS,
    ) -> WorkResource:
        """Load a Work from YAML text with the safe codec, then validate it."""
        return cls.from_mapping(load_json_compatible_mapping(text, limits), validators)

    def validate(
        self,
        validators: TemplateValidators = DEFAULT_VALIDATORS,
        *,
        single_template: bool | None = None,
    ) -> None:
        """Run the work type's template checks and the template namespace rule.

        A template may name its namespace only if it is the Work's own: the controller
        creates templates next to their Work (owner references cannot cross namespaces).
        ``single_template`` says whether ``spec.template`` was written as one object, so
        error paths leave out ``[0]``; by default it is, exactly when there is one template
        (the form ``to_mapping`` writes).
        """
        single = len(self.spec.templates) == 1 if single_template is None else single_template
        with _at("spec"), _template_paths(single=single, prefix="template"):
            validators.validate(self.spec.work_type, self.spec.templates)
            for i, template in enumerate(self.spec.templates):
                namespace = _template_metadata(template, f"[{i}]").get("namespace")
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
    validators: TemplateValidators = DEFAULT_VALIDATORS,
) -> WorkResource:
    """Build and validate a new Work (status left at its default) for a claimed work item.

    Errors name the field as the Kubernetes JSON would (``metadata.name``,
    ``spec.template.spec.output.image``).
    """
    with _at("metadata"):
        metadata = WorkMetadata(
            name=name, namespace=namespace, labels=labels, annotations=annotations
        )
    with _at("spec"):
        spec = WorkSpec(
            work_type=work_type,
            templates=templates,
            max_retries=max_retries,
            claim_timeout=claim_timeout,
            work_id=None if work_id is None else str(work_id),
            attempt=attempt,
        )
    resource = WorkResource(metadata, spec)
    resource.validate(validators)
    return resource
