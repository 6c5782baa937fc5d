"""Template checks: what a Work may wrap, per work type.

A Work's ``spec.template`` holds one or more Kubernetes objects.  Every template gets
``check_template_objects`` (apiVersion, kind, a name, no duplicates, not a Work); a
``TemplateValidators`` registry adds checks by work type.  ``DEFAULT_VALIDATORS`` holds
the built-in ones:

* ``build``: Shipwright v1beta1 ``Build`` and ``BuildRun`` objects, checked against
  ``SHIPWRIGHT_BUILD_SPEC_SCHEMA`` and ``SHIPWRIGHT_BUILD_RUN_SPEC_SCHEMA`` plus
  Shipwright's cross-field rules (``validate_build_templates``);
* ``job``: one ``batch/v1`` ``Job`` (``validate_job_templates``).

Checks raise ``SpecError`` with paths starting ``[index]``; ``template_paths`` rebases
them under ``spec.template``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Final, TypeAlias

import attrs

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.limits import work_type_problem
from workqueue_core.work.k8s_shapes import (
    DNS_SUBDOMAIN,
    ArraySchema,
    BooleanSchema,
    IntegerSchema,
    MapSchema,
    ObjectSchema,
    StringSchema,
    check_dns_label,
    check_dns_subdomain,
    check_schema,
    expect_list,
    expect_mapping,
    expect_str,
    join_path,
    required_field,
    string_check,
)
from workqueue_core.work.safe_yaml import child_path

__all__ = [
    "BUILD_STRATEGY_KINDS",
    "DEFAULT_VALIDATORS",
    "SHIPWRIGHT_API_VERSION",
    "SHIPWRIGHT_BUILD_RUN_SPEC_SCHEMA",
    "SHIPWRIGHT_BUILD_SPEC_SCHEMA",
    "TEMPLATE_VALIDATORS",
    "TemplateValidator",
    "TemplateValidators",
    "check_template_objects",
    "check_work_type",
    "template_metadata",
    "template_paths",
    "validate_build_templates",
    "validate_job_templates",
    "validate_templates",
]

SHIPWRIGHT_API_VERSION: Final = "shipwright.io/v1beta1"
BUILD_STRATEGY_KINDS: Final = frozenset({"BuildStrategy", "ClusterBuildStrategy"})

# The Work's own group and kind (work_resource.API_GROUP and KIND; that module imports
# this one, so they are repeated here): a template may not be a Work.
_WORK_API_GROUP: Final = "brokkr.io"
_WORK_KIND: Final = "Work"

_API_VERSION = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?"
)
_OBJECT_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")


# --- checks every template gets -----------------------------------------------------

TemplateValidator: TypeAlias = Callable[[tuple[Mapping[str, object], ...]], None]
"""Checks a Work's templates; raises SpecError with paths starting ``[index]``."""


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


# --- the registry of work-type checks ---------------------------------------------


def check_work_type(value: str, path: str) -> None:
    """A work type (a registry key, ``spec.workType``): see ``limits.work_type_problem``."""
    problem = work_type_problem(value)
    if problem is not None:
        raise SpecError(problem, path)


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
        check_work_type(work_type, "workType")
        return TemplateValidators({**self.by_work_type, work_type: validator})

    def validate(self, work_type: str, templates: Sequence[Mapping[str, object]]) -> None:
        """Generic checks, then the work type's own; paths start with ``[index]``."""
        check_template_objects(templates)
        specific = self.by_work_type.get(work_type)
        if specific is not None:
            specific(tuple(templates))


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
    build = expect_mapping(spec["build"], f"{path}.build")
    if (build.get("name") is None) == (build.get("spec") is None):
        raise SpecError(
            "needs exactly one of name (a Build) or spec (an embedded build)", f"{path}.build"
        )
    embedded = build.get("spec")
    if embedded is not None:
        _check_build_spec(expect_mapping(embedded, f"{path}.build.spec"), f"{path}.build.spec")


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
        spec = expect_mapping(required_field(template, "spec", path), f"{path}.spec")
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
    build_ref = expect_mapping(expect_mapping(run["spec"], "")["build"], "")
    if build_ref.get("spec") is not None:
        if builds:
            raise SpecError(
                "the BuildRun embeds its build in spec.build.spec, so this Build would be unused",
                f"[{builds[0][0]}].kind",
            )
        return
    referenced = build_ref.get("name")
    build_names = [template_metadata(build, "").get("name") for _, build in builds]
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
    spec = expect_mapping(required_field(job, "spec", "[0]"), "[0].spec")
    pod_template = expect_mapping(required_field(spec, "template", "[0].spec"), "[0].spec.template")
    pod_path = "[0].spec.template.spec"
    pod = expect_mapping(required_field(pod_template, "spec", "[0].spec.template"), pod_path)
    restart_policy = required_field(pod, "restartPolicy", pod_path)
    if restart_policy not in ("Never", "OnFailure"):
        raise SpecError(
            f"a Job's pods need restartPolicy Never or OnFailure, found {restart_policy!r}",
            f"{pod_path}.restartPolicy",
        )
    containers = expect_list(required_field(pod, "containers", pod_path), f"{pod_path}.containers")
    if not containers:
        raise SpecError("needs at least one container", f"{pod_path}.containers")
    names: set[str] = set()
    for i, raw in enumerate(containers):
        path = f"{pod_path}.containers[{i}]"
        container = expect_mapping(raw, path)
        name = expect_str(required_field(container, "name", path), f"{path}.name")
        check_dns_label(name, f"{path}.name")
        if name in names:
            raise SpecError(f"duplicate container name {name!r}", f"{path}.name")
        names.add(name)
        string_check(non_empty=True)(required_field(container, "image", path), f"{path}.image")


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
    with template_paths(single=False, prefix="spec.template"):
        validators.validate(work_type, templates)
