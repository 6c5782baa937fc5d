"""Shipwright's real CRD schemas as JSON Schema validators.

The ``v1beta1`` ``openAPIV3Schema`` of the vendored CRDs (``crds/``, unchanged upstream
copies) is translated once into JSON Schema and compiled with ``jsonschema``; the compiled
validators are cached for the process.  The translation follows what the Kubernetes API
server does with a structural schema, with one deliberate difference:

* ``x-kubernetes-int-or-string``: an integer or a string;
* ``x-kubernetes-preserve-unknown-fields``: unknown fields are allowed there;
* ``nullable``: null is allowed by the schema; but an object field set to null is dropped
  before validation and so counts as absent (the API server prunes nulls of non-nullable
  fields, and the vendored CRDs mark none nullable);
* formats: ``int32``/``int64`` ranges, ``int-or-string``, ``date-time`` (RFC 3339) and
  ``duration`` in Go's syntax, which Shipwright decodes with ``time.ParseDuration``; other
  formats are not checked;
* an unknown field where the schema lists the properties is **refused** with its path,
  where the API server would drop it silently: at submit time a typo must not vanish
  (docs/decisions.md).

``check_object`` raises ``SpecError`` for the first error by path (``[1].spec.output.image``)
and says how many more there are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, Final

import jsonschema
import jsonschema.validators
import yaml
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.k8s_shapes import check_rfc3339
from workqueue_core.work.safe_yaml import child_path, describe_type

__all__ = [
    "CRD_FILES",
    "CRD_VERSION",
    "GO_DURATION",
    "check_object",
    "crd_schema",
    "to_json_schema",
    "validator_for",
]

CRD_VERSION: Final = "v1beta1"
CRD_FILES: Final = {
    "Build": "shipwright.io_builds.yaml",
    "BuildRun": "shipwright.io_buildruns.yaml",
}
"""The vendored CRD file of each kind, in ``workqueue_shipwright/crds/``."""

GO_DURATION: Final = re.compile(r"[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)")
"""Go's ``time.ParseDuration`` syntax (``90s``, ``1h30m``), which ``metav1.Duration`` decodes."""

_MAX_MESSAGE: Final = 300
"""Longest message kept from one error (a message may quote the offending value)."""
_INT_RANGES: Final = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# Keys of an OpenAPI v3 structural schema that JSON Schema reads the same way.
_KEPT: Final = frozenset(
    {
        "type",
        "enum",
        "required",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "format",
    }
)


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Translate one Kubernetes structural schema node (and its children) to JSON Schema."""
    out: dict[str, Any] = {key: value for key, value in node.items() if key in _KEPT}
    if "properties" in node:
        out["properties"] = {
            key: to_json_schema(value) for key, value in node["properties"].items()
        }
    if isinstance(node.get("items"), Mapping):
        out["items"] = to_json_schema(node["items"])
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = to_json_schema(additional)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(item) for item in node[key]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"])
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not preserve
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _load_crd(file_name: str) -> dict[str, Any]:
    text = resources.files("workqueue_shipwright").joinpath("crds", file_name).read_bytes()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd: dict[str, Any] = yaml.load(text, Loader=loader)
    return crd


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The vendored CRD's ``v1beta1`` ``openAPIV3Schema`` for ``kind`` (Build, BuildRun)."""
    crd = _load_crd(CRD_FILES[kind])
    version = next(v for v in crd["spec"]["versions"] if v["name"] == CRD_VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# --- formats and types ------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or GO_DURATION.fullmatch(value) is not None


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        check_rfc3339(value, "")
    except SpecError:
        return False
    return True


@_FORMATS.checks("int-or-string")
def _is_int_or_string(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _in_range(name: str) -> Any:
    low, high = _INT_RANGES[name]

    def check(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

    return check


for _name in _INT_RANGES:
    _FORMATS.checks(_name)(_in_range(_name))


def _is_strict_integer(_: object, value: object) -> bool:
    # JSON 1.0 does not decode into a Go int: an integer field takes integers only.
    return isinstance(value, int) and not isinstance(value, bool)


_KubernetesValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


@functools.cache
def validator_for(kind: str) -> Validator:
    """The compiled validator of ``kind``'s CRD schema (built once per process)."""
    schema = to_json_schema(crd_schema(kind))
    validator: Validator = _KubernetesValidator(schema, format_checker=_FORMATS)
    return validator


# --- checking an object ------------------------------------------------------------


def _without_nulls(value: Any) -> Any:
    """``value`` with object fields set to null removed (the API server prunes them)."""
    if isinstance(value, Mapping):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


_TYPE_NAMES: Final[dict[str, str]] = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _described(error: ValidationError) -> tuple[list[str | int], str]:
    """The error's path (below the checked object) and a one-line message."""
    path: list[str | int] = list(error.absolute_path)
    instance: Any = error.instance
    rule: Any = error.validator_value
    schema: Any = error.schema
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = next(key for key in rule if key not in instance)
        return [*path, missing], "required field is missing"
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        known = schema.get("properties", {})
        unknown = next(key for key in instance if key not in known)
        expected = ", ".join(sorted(known))
        return [*path, unknown], f"unknown field {unknown!r}; expected one of {expected}"
    if error.validator == "type":
        names = [str(_TYPE_NAMES.get(t, t)) for t in (rule if isinstance(rule, list) else [rule])]
        return path, f"expected {' or '.join(names)}, found {describe_type(instance)}"
    if error.validator == "anyOf" and all("type" in option for option in rule):
        names = [str(_TYPE_NAMES.get(option["type"], option["type"])) for option in rule]
        return path, f"expected {' or '.join(names)}, found {describe_type(instance)}"
    if error.validator == "format" and rule == "duration":
        return path, f"{_shown(instance)} is not a duration such as '90s', '15m' or '1h30m'"
    if error.validator == "format" and rule == "date-time":
        example = "'2025-11-02T10:00:00Z'"
        return path, f"{_shown(instance)} is not an RFC 3339 date-time such as {example}"
    if error.validator == "format":
        return path, f"{_shown(instance)} is not a valid {rule}"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in rule)
        return path, f"expected one of {allowed}, found {_shown(instance)}"
    if error.validator == "pattern":
        return path, f"{_shown(instance)} does not match {rule!r}"
    return path, error.message


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "…" + text[-3:]


def _sort_key(path: list[str | int]) -> tuple[tuple[int, str], ...]:
    return tuple((0, f"{p:012d}") if isinstance(p, int) else (1, p) for p in path)


def _path_text(prefix: str, path: list[str | int]) -> str:
    text = prefix
    for key in path:
        text = child_path(text, key)
    return text


def _errors(kind: str, value: Mapping[str, Any]) -> Iterator[tuple[list[str | int], str]]:
    for error in validator_for(kind).iter_errors(_without_nulls(value)):
        yield _described(error)


def check_object(kind: str, value: Mapping[str, Any], path: str) -> None:
    """Check one Build or BuildRun object against its CRD schema.

    Raises ``SpecError`` for the error first by path, placed under ``path``; the message
    counts the others.
    """
    found = {tuple(p): (p, message) for p, message in _errors(kind, value)}
    if not found:
        return
    ordered = sorted(found.values(), key=lambda item: _sort_key(item[0]))
    first_path, message = ordered[0]
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    if len(ordered) > 1:
        others = len(ordered) - 1
        message += f" (and {others} more error{'s' if others > 1 else ''} in this object)"
    raise SpecError(message, _path_text(path, first_path))
