"""Shipwright's rules that no CRD schema expresses, on one Build or BuildRun spec.

Ported from Shipwright's Go types and validation (``pkg/apis/build/v1beta1``,
``pkg/validate``): the strategy kind is ``BuildStrategy`` or ``ClusterBuildStrategy``; a
source's sub-object is the one its ``type`` names; a parameter has one of ``value``,
``configMapValue``, ``secretValue`` or a list of them, and a referenced ConfigMap or Secret
needs a name and a key; a BuildRun names its Build or embeds one, not both; names, images
and URLs are not empty; durations the schema leaves as plain strings use Go's syntax.

Each check runs after the schema check of the same object, so types are known to be right.
Errors are ``SpecError`` at ``path`` (``[1].spec``) plus the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.safe_yaml import child_path
from workqueue_shipwright.schemas import GO_DURATION

__all__ = [
    "BUILD_STRATEGY_KINDS",
    "SOURCE_TYPES",
    "check_build_run_spec",
    "check_build_spec",
]

BUILD_STRATEGY_KINDS: Final = frozenset({"BuildStrategy", "ClusterBuildStrategy"})
SOURCE_TYPES: Final = {"Git": "git", "OCI": "ociArtifact", "Local": "local"}
"""A source ``type`` and the field holding its details."""
_PRUNE_OPTIONS: Final = ("Never", "AfterPull")
_SINGLE_VALUES: Final = ("value", "configMapValue", "secretValue")


def _at(path: str, *keys: str | int) -> str:
    for key in keys:
        path = child_path(path, key)
    return path


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _not_empty(mapping: Mapping[str, Any], key: str, path: str) -> None:
    if mapping.get(key) == "":
        raise SpecError("must not be empty", _at(path, key))


def _duration(mapping: Mapping[str, Any], key: str, path: str) -> None:
    value = mapping.get(key)
    if isinstance(value, str) and not GO_DURATION.fullmatch(value):
        raise SpecError(
            f"{value!r} is not a duration such as '90s', '15m' or '1h30m'", _at(path, key)
        )


def _check_source(spec: Mapping[str, Any], path: str) -> None:
    source = spec.get("source")
    if not isinstance(source, Mapping):
        return
    source_path = _at(path, "source")
    source_type = source.get("type")
    if source_type not in SOURCE_TYPES:
        raise SpecError(
            f"expected one of {', '.join(SOURCE_TYPES)}, found {source_type!r}",
            _at(source_path, "type"),
        )
    expected = SOURCE_TYPES[source_type]
    if source.get(expected) is None and expected != "local":
        raise SpecError(f"source type {source_type} needs {expected}", source_path)
    for other in SOURCE_TYPES.values():
        if other != expected and source.get(other) is not None:
            raise SpecError(
                f"source type is {source_type}, so {other} does not apply", _at(source_path, other)
            )
    _not_empty(_mapping(source.get("git")), "url", _at(source_path, "git"))
    oci = _mapping(source.get("ociArtifact"))
    _not_empty(oci, "image", _at(source_path, "ociArtifact"))
    prune = oci.get("prune")
    if prune is not None and prune not in _PRUNE_OPTIONS:
        raise SpecError(
            f"expected one of {', '.join(_PRUNE_OPTIONS)}, found {prune!r}",
            _at(source_path, "ociArtifact", "prune"),
        )
    _duration(_mapping(source.get("local")), "timeout", _at(source_path, "local"))


def _check_key_reference(value: Mapping[str, Any], key: str, path: str) -> None:
    reference = value.get(key)
    if isinstance(reference, Mapping):
        for field in ("name", "key"):
            _not_empty(reference, field, _at(path, key))


def _check_param_values(spec: Mapping[str, Any], path: str) -> None:
    for i, param in enumerate(_items(spec.get("paramValues"))):
        param_path = _at(path, "paramValues", i)
        if not isinstance(param, Mapping):
            continue
        _not_empty(param, "name", param_path)
        given = [key for key in _SINGLE_VALUES if param.get(key) is not None]
        if len(given) > 1:
            raise SpecError(f"has {' and '.join(given)}: give only one", param_path)
        values = param.get("values")
        if given and values is not None:
            raise SpecError(f"has {given[0]} and values: give only one", param_path)
        for key in ("configMapValue", "secretValue"):
            _check_key_reference(param, key, param_path)
        for j, item in enumerate(_items(values)):
            item_path = _at(param_path, "values", j)
            if isinstance(item, Mapping):
                if sum(item.get(k) is not None for k in _SINGLE_VALUES) != 1:
                    raise SpecError(
                        "each item needs exactly one of value, configMapValue, secretValue",
                        item_path,
                    )
                for key in ("configMapValue", "secretValue"):
                    _check_key_reference(item, key, item_path)


def _check_shared(spec: Mapping[str, Any], path: str) -> None:
    """What a Build spec and a BuildRun spec have in common."""
    _not_empty(_mapping(spec.get("output")), "image", _at(path, "output"))
    _check_param_values(spec, path)
    for i, env in enumerate(_items(spec.get("env"))):
        _not_empty(_mapping(env), "name", _at(path, "env", i))
    for i, volume in enumerate(_items(spec.get("volumes"))):
        _not_empty(_mapping(volume), "name", _at(path, "volumes", i))


def check_build_spec(spec: Mapping[str, Any], path: str) -> None:
    """A Build's ``spec`` (or a BuildRun's embedded ``spec.build.spec``)."""
    strategy = _mapping(spec.get("strategy"))
    strategy_path = _at(path, "strategy")
    _not_empty(strategy, "name", strategy_path)
    kind = strategy.get("kind")
    if kind is not None and kind not in BUILD_STRATEGY_KINDS:
        raise SpecError(
            f"expected one of {', '.join(sorted(BUILD_STRATEGY_KINDS))}, found {kind!r}",
            _at(strategy_path, "kind"),
        )
    for i, step in enumerate(_items(strategy.get("stepResources"))):
        _not_empty(_mapping(step), "name", _at(strategy_path, "stepResources", i))
    _check_source(spec, path)
    _check_shared(spec, path)


def check_build_run_spec(spec: Mapping[str, Any], path: str) -> None:
    """A BuildRun's ``spec``: exactly one of ``build.name`` and ``build.spec``; a source of
    type Local only (a BuildRun only streams a local directory in)."""
    build = _mapping(spec.get("build"))
    build_path = _at(path, "build")
    if (build.get("name") is None) == (build.get("spec") is None):
        raise SpecError(
            "needs exactly one of name (a Build) or spec (an embedded build)", build_path
        )
    _not_empty(build, "name", build_path)
    embedded = build.get("spec")
    if isinstance(embedded, Mapping):
        check_build_spec(embedded, _at(build_path, "spec"))
    source = spec.get("source")
    if isinstance(source, Mapping):
        if source.get("type") != "Local":
            raise SpecError(
                f"a BuildRun's source can only be Local, found {source.get('type')!r}",
                _at(path, "source", "type"),
            )
        _duration(_mapping(source.get("local")), "timeout", _at(path, "source", "local"))
    for i, step in enumerate(_items(spec.get("stepResources"))):
        _not_empty(_mapping(step), "name", _at(path, "stepResources", i))
    _check_shared(spec, path)
