"""Server-side validation: a CRD's ``openAPIV3Schema`` and the built-in kinds' schemas.

``CrdSchema`` does what the API server does with a structural schema, in its order:

1. prune unknown fields (every node without ``x-kubernetes-preserve-unknown-fields``);
   the pruned paths are returned so the server can reject them under
   ``?fieldValidation=Strict``;
2. validate with ``jsonschema`` (the OpenAPI v3 keywords a CRD may use);
3. ``x-kubernetes-list-type: map`` key uniqueness;
4. ``x-kubernetes-validations``: jsonschema cannot run CEL, so each rule must be known to
   ``CEL_RULES`` (rule text -> a Python predicate doing the same); an unknown rule is an
   error when the schema is loaded, never silently skipped.

``BuiltinSchema`` validates a built-in kind (batch/v1 Job, ...) against the OpenAPI schema
that ``kubernetes-validate`` ships for ``KUBERNETES_VERSION``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import attrs
import jsonschema
import jsonschema_rs
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

__all__ = [
    "CEL_RULES",
    "KUBERNETES_VERSION",
    "BuiltinSchema",
    "Cause",
    "CrdSchema",
    "load_crd",
]

KUBERNETES_VERSION: Final = "1.34"
"""The Kubernetes minor whose built-in schemas (kubernetes-validate) the fake enforces."""


@attrs.frozen
class Cause:
    """One invalid field, as in a ``Status``'s ``details.causes``."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def _template_rule(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value)
    return isinstance(value, dict) and "apiVersion" in value and "kind" in value


CEL_RULES: Final[Mapping[str, Callable[[Any], bool]]] = {
    # deploy/crds/work.yaml, spec.template
    "type(self) == list ? size(self) > 0 : type(self) == map && has(self.apiVersion)"
    " && has(self.kind)": _template_rule,
}
"""CEL rules the fake can evaluate, by their text with whitespace runs collapsed."""


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    """RFC 3339, as the API server checks ``format: date-time`` (and a real date)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return not isinstance(value, str)
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _normalise_rule(rule: str) -> str:
    return " ".join(rule.split())


def _path(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_crd(path: Path) -> dict[str, Any]:
    """A CRD manifest from a YAML file."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path} is not a CustomResourceDefinition")
    return data


def _check_rules_known(schema: Mapping[str, Any], where: str) -> None:
    for rule in schema.get("x-kubernetes-validations", ()):
        if _normalise_rule(rule["rule"]) not in CEL_RULES:
            raise ValueError(f"{where}: CEL rule not known to the fake: {rule['rule']!r}")
    for key, child in (schema.get("properties") or {}).items():
        _check_rules_known(child, f"{where}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            _check_rules_known(schema[key], f"{where}.{key}")


@attrs.frozen
class CrdSchema:
    """The structural ``openAPIV3Schema`` of one CRD version."""

    schema: Mapping[str, Any]
    _validator: jsonschema.Validator = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Compiled once: a validator (and its schema resources) per object written cost
        # more than the validation itself.
        validator = jsonschema.Draft202012Validator(dict(self.schema), format_checker=_FORMATS)
        object.__setattr__(self, "_validator", validator)

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any], version: str) -> CrdSchema:
        for item in crd["spec"]["versions"]:
            if item["name"] == version:
                schema = item["schema"]["openAPIV3Schema"]
                _check_rules_known(schema, crd["metadata"]["name"])
                return cls(schema)
        raise ValueError(f"{crd['metadata']['name']} has no version {version!r}")

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop fields the schema does not declare; returns their paths.

        Like the API server, a ``null`` in a field that is not ``nullable`` is dropped too
        (silently: it is not an unknown field).

        ``apiVersion``, ``kind`` and ``metadata`` are the server's and never pruned here.
        """
        pruned: list[str] = []
        for key, child in (self.schema.get("properties") or {}).items():
            if key not in ("apiVersion", "kind", "metadata") and key in obj:
                if obj[key] is None and not child.get("nullable"):
                    del obj[key]
                    continue
                self._prune(child, obj[key], [key], pruned)
        for key in list(obj):
            if key not in ("apiVersion", "kind", "metadata") and key not in (
                self.schema.get("properties") or {}
            ):
                del obj[key]
                pruned.append(key)
        return pruned

    def _prune(
        self, schema: Mapping[str, Any], value: Any, at: list[str | int], pruned: list[str]
    ) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict):
            properties = schema.get("properties")
            additional = schema.get("additionalProperties")
            for key in list(value):
                if properties is not None and key in properties:
                    if value[key] is None and not properties[key].get("nullable"):
                        del value[key]  # the API server drops nulls of non-nullable fields
                        continue
                    self._prune(properties[key], value[key], [*at, key], pruned)
                elif isinstance(additional, Mapping):
                    self._prune(additional, value[key], [*at, key], pruned)
                elif additional is not True:
                    del value[key]
                    pruned.append(_path([*at, key]))
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                self._prune(schema["items"], item, [*at, i], pruned)

    def errors(self, obj: Mapping[str, Any]) -> list[Cause]:
        """Every schema violation of a pruned object, as Status causes."""
        causes = [
            Cause(_path(list(error.absolute_path)) or "<root>", error.message)
            for error in self._validator.iter_errors(obj)
        ]
        self._extensions(self.schema, obj, [], causes)
        return causes

    def _extensions(
        self, schema: Mapping[str, Any], value: Any, at: list[str | int], causes: list[Cause]
    ) -> None:
        for rule in schema.get("x-kubernetes-validations", ()):
            if not CEL_RULES[_normalise_rule(rule["rule"])](value):
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                causes.append(Cause(_path(at), message))
        if isinstance(value, dict):
            for key, child in (schema.get("properties") or {}).items():
                if key in value and key != "metadata":
                    self._extensions(child, value[key], [*at, key], causes)
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            if schema.get("x-kubernetes-list-type") == "map":
                keys = schema.get("x-kubernetes-list-map-keys", ())
                seen: set[tuple[Any, ...]] = set()
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        identity = tuple(item.get(k) for k in keys)
                        if not all(isinstance(v, str | int | float | None) for v in identity):
                            continue  # a non-scalar key already fails its type check
                        if identity in seen:
                            causes.append(
                                Cause(
                                    _path([*at, i]),
                                    f"Duplicate value: {identity}",
                                    "FieldValueDuplicate",
                                )
                            )
                        seen.add(identity)
            for i, item in enumerate(value):
                self._extensions(schema["items"], item, [*at, i], causes)


@functools.cache
def _builtin_schemas(
    kind: str, api_version: str, version: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """kubernetes-validate's schema of a built-in kind, and the definitions it refers to."""
    group_version = api_version.split("/")
    short = (
        f"{group_version[0].split('.')[0]}-{group_version[1]}"
        if len(group_version) == 2
        else group_version[0]
    )
    directory = f"kubernetes-json-schema/v{version}.0-local"
    schema = kv_utils.schema_contents(f"{directory}/{kind.lower()}-{short}.json", version)
    definitions = kv_utils.schema_contents(f"{directory}/_definitions.json", version)
    return schema, definitions


@functools.cache
def _builtin_validator(kind: str, api_version: str, version: str) -> jsonschema.Validator:
    schema, definitions = _builtin_schemas(kind, api_version, version)
    registry: referencing.Registry[Any] = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _builtin_checker(kind: str, api_version: str, version: str) -> Callable[[Any], bool]:
    """``is_valid`` of the same schema compiled by jsonschema-rs (300 × faster): the
    fake answers valid writes with it and asks ``jsonschema`` for the causes of the
    others. Neither checks formats (the schemas are draft 2020-12)."""
    schema, definitions = _builtin_schemas(kind, api_version, version)
    registry = jsonschema_rs.Registry([(str(definitions["$id"]), dict(definitions))])
    compiled = jsonschema_rs.Draft202012Validator(
        dict(schema), registry=registry, validate_formats=False
    )
    return compiled.is_valid


@attrs.frozen
class BuiltinSchema:
    """A built-in kind's schema from kubernetes-validate (``KUBERNETES_VERSION``)."""

    kind: str
    api_version: str
    version: str = KUBERNETES_VERSION

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Built-in kinds are not pruned by the fake (unknown fields are kept)."""
        return []

    def errors(self, obj: Mapping[str, Any]) -> list[Cause]:
        if _builtin_checker(self.kind, self.api_version, self.version)(obj):
            return []
        validator = _builtin_validator(self.kind, self.api_version, self.version)
        return [
            Cause(_path(list(error.absolute_path)) or "<root>", error.message)
            for error in validator.iter_errors(obj)
        ]
