"""The ``build`` work type (``workqueue_shipwright``): Shipwright Builds and BuildRuns checked
against the vendored upstream CRDs and Shipwright's own rules; error paths as the Work names
them (``spec.template[1].spec.output.image``)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from work_examples import (
    BUILD_SPEC,
    JOB,
    SEED_BUILD,
    SEED_BUILD_RUN,
    SEED_WORK,
    SHIPWRIGHT,
    T,
    build_and_run,
    delete_at,
    mapping_of,
    needs_shipwright,
    sample,
    seed,
    set_at,
    wrap,
)

from workqueue_core.domain.errors import SpecError
from workqueue_core.ports.work_type import WorkType
from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.resource import WorkResource
from workqueue_core.work.safe_yaml import load_yaml
from workqueue_shipwright import BuildWorkType
from workqueue_shipwright.build import BUILD, BUILD_RUN
from workqueue_shipwright.schemas import (
    _FORMATS,
    CRD_FILES,
    _KubernetesValidator,
    check_object,
    to_json_schema,
    validator_for,
)

BUILD_TYPES = WorkTypes([BuildWorkType()])
VENDORED = (
    Path(__file__).resolve().parents[2] / "src" / "adapters" / "workqueue_shipwright" / "crds"
)


def parse(data: object) -> WorkResource:
    return WorkResource.from_mapping(data, BUILD_TYPES)


def test_build_work_type_implements_the_port() -> None:
    work_type: WorkType = BuildWorkType()
    assert work_type.name == "build"
    assert [k.kind for k in work_type.kinds] == ["Build", "BuildRun"]
    assert (BUILD.api_version, BUILD_RUN.plural) == ("shipwright.io/v1beta1", "buildruns")


def test_seed_build_and_build_run_validate() -> None:
    work = parse(build_and_run())
    assert [t["kind"] for t in work.spec.templates] == ["Build", "BuildRun"]
    assert parse(work.to_mapping()) == work
    assert parse(seed()) == WorkResource.from_yaml(SEED_WORK, work_types=BUILD_TYPES)


# --- the cases the hand-written schema refused, refused the same way ------------------------

BUILD_SEED_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "build of an old apiVersion",
        set_at((*T, "apiVersion"), "shipwright.io/v1alpha1"),
        "spec.template.apiVersion",
    ),
    ("build of another kind", set_at((*T, "kind"), "ClusterBuildStrategy"), "spec.template.kind"),
    ("build without spec", delete_at(*T, "spec"), "spec.template.spec"),
    (
        "build without output.image",
        delete_at(*BUILD_SPEC, "output", "image"),
        "spec.template.spec.output.image",
    ),
    (
        "build with an empty output.image",
        set_at((*BUILD_SPEC, "output", "image"), ""),
        "spec.template.spec.output.image",
    ),
    ("build without output", delete_at(*BUILD_SPEC, "output"), "spec.template.spec.output"),
    ("build without strategy", delete_at(*BUILD_SPEC, "strategy"), "spec.template.spec.strategy"),
    (
        "build strategy without name",
        delete_at(*BUILD_SPEC, "strategy", "name"),
        "spec.template.spec.strategy.name",
    ),
    (
        "build strategy kind invalid",
        set_at((*BUILD_SPEC, "strategy", "kind"), "Buildah"),
        "spec.template.spec.strategy.kind",
    ),
    (
        "build source without type",
        delete_at(*BUILD_SPEC, "source", "type"),
        "spec.template.spec.source.type",
    ),
    (
        "build source type invalid",
        set_at((*BUILD_SPEC, "source", "type"), "Svn"),
        "spec.template.spec.source.type",
    ),
    (
        "build Git source without git",
        delete_at(*BUILD_SPEC, "source", "git"),
        "spec.template.spec.source",
    ),
    (
        "build git without url",
        delete_at(*BUILD_SPEC, "source", "git", "url"),
        "spec.template.spec.source.git.url",
    ),
    (
        "build git depth text",
        set_at((*BUILD_SPEC, "source", "git", "depth"), "1"),
        "spec.template.spec.source.git.depth",
    ),
    ("build unknown field", set_at((*BUILD_SPEC, "ouput"), {}), "spec.template.spec.ouput"),
    (
        "build timeout not a duration",
        set_at((*BUILD_SPEC, "timeout"), "15 minutes"),
        "spec.template.spec.timeout",
    ),
    (
        "build retention limit 0",
        set_at((*BUILD_SPEC, "retention"), {"failedLimit": 0}),
        "spec.template.spec.retention.failedLimit",
    ),
    (
        "build paramValues not a list",
        set_at((*BUILD_SPEC, "paramValues"), {"a": "b"}),
        "spec.template.spec.paramValues",
    ),
    (
        "build param without name",
        set_at((*BUILD_SPEC, "paramValues"), [{"value": "x"}]),
        "spec.template.spec.paramValues[0].name",
    ),
    (
        "build param with two values",
        set_at(
            (*BUILD_SPEC, "paramValues"),
            [{"name": "a", "value": "x", "secretValue": {"name": "s", "key": "k"}}],
        ),
        "spec.template.spec.paramValues[0]",
    ),
    (
        "build output labels not strings",
        set_at((*BUILD_SPEC, "output", "labels"), {"a": 1}),
        "spec.template.spec.output.labels.a",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path"), [pytest.param(m, p, id=name) for name, m, p in BUILD_SEED_CASES]
)
def test_invalid_build_variants(mutate: Callable[[dict[str, Any]], None], path: str) -> None:
    data = seed()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        parse(data)
    assert caught.value.path == path, caught.value
    assert caught.value.detail


BUILD_LIST_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "build error keeps its index",
        delete_at(*T, 0, "spec", "output", "image"),
        "spec.template[0].spec.output.image",
    ),
    (
        "BuildRun refers to a missing Build",
        set_at((*T, 1, "spec", "build", "name"), "other"),
        "spec.template[1].spec.build.name",
    ),
    (
        "BuildRun with name and spec",
        set_at(
            (*T, 1, "spec", "build", "spec"), {"strategy": {"name": "s"}, "output": {"image": "i"}}
        ),
        "spec.template[1].spec.build",
    ),
    ("BuildRun with neither", set_at((*T, 1, "spec", "build"), {}), "spec.template[1].spec.build"),
    (
        "BuildRun without spec.build",
        delete_at(*T, 1, "spec", "build"),
        "spec.template[1].spec.build",
    ),
    (
        "BuildRun timeout invalid",
        set_at((*T, 1, "spec", "timeout"), "soon"),
        "spec.template[1].spec.timeout",
    ),
    (
        "BuildRun unknown field",
        set_at((*T, 1, "spec", "serviceAcount"), "x"),
        "spec.template[1].spec.serviceAcount",
    ),
    (
        "two Builds",
        set_at((*T, 1), load_yaml(SEED_BUILD.replace("my-app-build", "b2"))),
        "spec.template[1].kind",
    ),
    ("a Job in build work", set_at((*T, 1), copy.deepcopy(JOB)), "spec.template[1].apiVersion"),
    (
        "array param item with no value",
        set_at((*T, 0, "spec", "paramValues", 1, "values"), [{}]),
        "spec.template[0].spec.paramValues[1].values[0]",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path"), [pytest.param(m, p, id=name) for name, m, p in BUILD_LIST_CASES]
)
def test_invalid_build_and_run_variants(
    mutate: Callable[[dict[str, Any]], None], path: str
) -> None:
    data = build_and_run()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        parse(data)
    assert caught.value.path == path, caught.value


# --- the upstream samples ----------------------------------------------------------------

BUILD_SAMPLES = sorted(p.name for p in (SHIPWRIGHT / "samples/v1beta1/build").glob("*.yaml"))
RUN_SAMPLES = sorted(p.name for p in (SHIPWRIGHT / "samples/v1beta1/buildrun").glob("*.yaml"))


@needs_shipwright
def test_the_samples_are_there() -> None:
    assert len(BUILD_SAMPLES) >= 10
    assert len(RUN_SAMPLES) >= 9


@needs_shipwright
@pytest.mark.parametrize("name", BUILD_SAMPLES)
def test_shipwright_build_samples_validate(name: str) -> None:
    build = sample(f"build/{name}")
    work = parse(wrap(build))
    assert work.spec.templates == (build,)
    assert parse(work.to_mapping()) == work


@needs_shipwright
@pytest.mark.parametrize("name", RUN_SAMPLES)
def test_shipwright_build_run_samples_validate_with_their_build(name: str) -> None:
    run = sample(f"buildrun/{name}")
    builds = [sample(f"build/{b}") for b in BUILD_SAMPLES]
    build = next(b for b in builds if b["metadata"]["name"] == run["spec"]["build"]["name"])
    work = parse(wrap([build, run]))
    assert [t["kind"] for t in work.spec.templates] == ["Build", "BuildRun"]
    alone = wrap(run)
    with pytest.raises(SpecError, match="no Build of that name"):
        parse(alone)


@needs_shipwright
@pytest.mark.parametrize("name", BUILD_SAMPLES)
def test_shipwright_samples_embedded_in_a_build_run_validate(name: str) -> None:
    build = sample(f"build/{name}")
    run = {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "BuildRun",
        "metadata": {"generateName": "standalone-"},
        "spec": {"build": {"spec": build["spec"]}},
    }
    parse(wrap(run))
    with pytest.raises(SpecError, match="would be unused") as caught:
        parse(wrap([build, run]))
    assert caught.value.path == "spec.template[0].kind"


def test_embedded_build_spec_is_checked() -> None:
    run = mapping_of(SEED_BUILD_RUN)
    run["spec"]["build"] = {"spec": {"strategy": {"name": "buildah"}}}
    with pytest.raises(SpecError) as caught:
        parse(wrap(run))
    assert caught.value.path == "spec.template.spec.build.spec.output"


def test_validate_reports_list_paths() -> None:
    build = mapping_of(SEED_BUILD)
    BUILD_TYPES.validate("build", [build])
    del build["spec"]["strategy"]
    with pytest.raises(SpecError) as caught:
        BUILD_TYPES.validate("build", [build])
    assert caught.value.path == "[0].spec.strategy"


# --- a table of broken templates ------------------------------------------------------------

RUN = (*T, 1, "spec")


def embedding(build: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """The BuildRun alone, embedding ``build`` as its spec.build.spec."""

    def mutate(data: dict[str, Any]) -> None:
        run = data["spec"]["template"][1]
        run["spec"]["build"] = {"spec": build}
        data["spec"]["template"] = [run]

    return mutate


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "strategy name a number",
        set_at((*T, 0, "spec", "strategy", "name"), 5),
        "spec.template[0].spec.strategy.name",
        "expected a string, found an integer",
    ),
    (
        "unknown strategy kind",
        set_at((*T, 0, "spec", "strategy", "kind"), "NamespacedBuildStrategy"),
        "spec.template[0].spec.strategy.kind",
        "BuildStrategy, ClusterBuildStrategy",
    ),
    (
        "missing output image",
        delete_at(*T, 0, "spec", "output", "image"),
        "spec.template[0].spec.output.image",
        "required field is missing",
    ),
    (
        "output image null counts as missing",
        set_at((*T, 0, "spec", "output", "image"), None),
        "spec.template[0].spec.output.image",
        "required field is missing",
    ),
    (
        "both spec.build.name and spec.build.spec",
        set_at((*RUN, "build", "spec"), {"strategy": {"name": "s"}, "output": {"image": "i"}}),
        "spec.template[1].spec.build",
        "exactly one of name",
    ),
    (
        "unknown field deep in the Build",
        set_at((*T, 0, "spec", "source", "git", "branch"), "main"),
        "spec.template[0].spec.source.git.branch",
        "unknown field 'branch'",
    ),
    (
        "unknown top-level field",
        set_at((*T, 1, "specs"), {}),
        "spec.template[1].specs",
        "unknown field 'specs'",
    ),
    (
        "bad duration",
        set_at((*T, 0, "spec", "retention", "ttlAfterFailed"), "1 day"),
        "spec.template[0].spec.retention.ttlAfterFailed",
        "not a duration",
    ),
    (
        "a day is not a Go duration",
        set_at((*RUN, "timeout"), "1d"),
        "spec.template[1].spec.timeout",
        "not a duration",
    ),
    (
        "a local source's timeout (no format in the CRD) is a Go duration too",
        set_at((*RUN, "source"), {"type": "Local", "local": {"timeout": "soon"}}),
        "spec.template[1].spec.source.local.timeout",
        "not a duration",
    ),
    (
        "a BuildRun source other than Local",
        set_at((*RUN, "source"), {"type": "Git"}),
        "spec.template[1].spec.source.type",
        "only be Local",
    ),
    (
        "depth a float",
        set_at((*T, 0, "spec", "source", "git", "depth"), 1.0),
        "spec.template[0].spec.source.git.depth",
        "expected an integer",
    ),
    (
        "insecure a string",
        set_at((*T, 0, "spec", "output", "insecure"), "yes"),
        "spec.template[0].spec.output.insecure",
        "expected a boolean",
    ),
    (
        "retention limit over the maximum",
        set_at((*T, 0, "spec", "retention"), {"succeededLimit": 10_001}),
        "spec.template[0].spec.retention.succeededLimit",
        "maximum",
    ),
    (
        "int-or-string quantity of the wrong type",
        set_at(
            (*RUN, "stepResources"),
            [{"name": "build", "resources": {"limits": {"cpu": True}}}],
        ),
        "spec.template[1].spec.stepResources[0].resources.limits.cpu",
        "an integer or a string",
    ),
    (
        "int-or-string quantity of a bad pattern",
        set_at(
            (*RUN, "stepResources"),
            [{"name": "build", "resources": {"limits": {"cpu": "lots"}}}],
        ),
        "spec.template[1].spec.stepResources[0].resources.limits.cpu",
        "does not match",
    ),
    (
        "int32 out of range",
        set_at(
            (*RUN, "tolerations"), [{"key": "k", "operator": "Exists", "tolerationSeconds": 2**63}]
        ),
        "spec.template[1].spec.tolerations[0].tolerationSeconds",
        "int64",
    ),
    (
        "vulnerability severity not in the CRD's enum",
        set_at(
            (*T, 0, "spec", "output", "vulnerabilityScan"),
            {"enabled": True, "ignore": {"severity": "critical"}},
        ),
        "spec.template[0].spec.output.vulnerabilityScan.ignore.severity",
        "expected one of",
    ),
    (
        "secret value without a key",
        set_at(
            (*T, 0, "spec", "paramValues"), [{"name": "p", "secretValue": {"name": "s", "key": ""}}]
        ),
        "spec.template[0].spec.paramValues[0].secretValue.key",
        "must not be empty",
    ),
    (
        "OCI source with an unknown prune option",
        set_at(
            (*T, 0, "spec", "source"),
            {"type": "OCI", "ociArtifact": {"image": "quay.io/a/b", "prune": "Always"}},
        ),
        "spec.template[0].spec.source.ociArtifact.prune",
        "Never, AfterPull",
    ),
    (
        "OCI source with git details too",
        set_at(
            (*T, 0, "spec", "source"),
            {"type": "OCI", "ociArtifact": {"image": "i"}, "git": {"url": "https://x"}},
        ),
        "spec.template[0].spec.source.git",
        "does not apply",
    ),
    (
        "env entry without a name",
        set_at((*RUN, "env"), [{"name": "", "value": "x"}]),
        "spec.template[1].spec.env[0].name",
        "must not be empty",
    ),
    (
        "embedded build with an unknown strategy kind",
        embedding({"strategy": {"name": "s", "kind": "Kaniko"}, "output": {"image": "i"}}),
        "spec.template[0].spec.build.spec.strategy.kind",
        "BuildStrategy",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "words"), [pytest.param(m, p, w, id=name) for name, m, p, w in BROKEN]
)
def test_broken_templates_are_refused_with_their_path(
    mutate: Callable[[dict[str, Any]], None], path: str, words: str
) -> None:
    data = build_and_run()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        parse(data)
    assert caught.value.path == path, caught.value
    assert words in caught.value.detail, caught.value.detail


def test_several_errors_report_the_first_by_path_and_count_the_others() -> None:
    data = build_and_run()
    build_spec = data["spec"]["template"][0]["spec"]
    build_spec["timeout"] = 90
    build_spec["output"]["insecure"] = "no"
    del build_spec["strategy"]["name"]
    with pytest.raises(SpecError) as caught:
        parse(data)
    assert caught.value.path == "spec.template[0].spec.output.insecure"
    assert caught.value.detail.endswith("(and 2 more errors in this object)")


def test_check_object_places_paths_under_its_prefix() -> None:
    build = mapping_of(SEED_BUILD)
    check_object("Build", build, "x")
    build["spec"]["output"]["labels"] = {"team/name": 1}
    with pytest.raises(SpecError) as caught:
        check_object("Build", build, "x")
    assert caught.value.path == 'x.spec.output.labels["team/name"]'


def test_a_long_offending_value_is_not_repeated_whole() -> None:
    run = mapping_of(SEED_BUILD_RUN)
    run["spec"]["stepResources"] = [
        {"name": "build", "resources": {"limits": {"cpu": "x" * 100_000}}}
    ]
    with pytest.raises(SpecError) as caught:
        check_object("BuildRun", run, "")
    assert caught.value.path == "spec.stepResources[0].resources.limits.cpu"
    assert "does not match" in caught.value.detail
    assert len(caught.value.detail) <= 300


def test_a_job_is_not_build_work() -> None:
    with pytest.raises(SpecError) as caught:
        parse(wrap(copy.deepcopy(JOB)))
    assert caught.value.path == "spec.template.apiVersion"
    assert "shipwright.io/v1beta1" in caught.value.detail


# --- the schema translation -----------------------------------------------------------------


def test_structural_extensions_are_translated() -> None:
    node = {
        "type": "object",
        "description": "dropped",
        "properties": {
            "quantity": {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            },
            "port": {"x-kubernetes-int-or-string": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "open": {
                "type": "object",
                "properties": {},
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "maybe": {"type": "string", "nullable": True},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema = to_json_schema(node)
    assert "description" not in schema
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert properties["quantity"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert properties["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert properties["free"] == {"type": "object"}
    assert properties["open"] == {"type": "object", "properties": {}}
    assert properties["maybe"] == {"type": ["string", "null"]}
    assert properties["map"] == {"type": "object", "additionalProperties": {"type": "string"}}


def test_formats_are_checked_as_kubernetes_reads_them() -> None:
    properties = {
        "port": {"format": "int-or-string"},
        "count": {"type": "integer", "format": "int32"},
        "at": {"type": "string", "format": "date-time"},
        "wait": {"type": "string", "format": "duration"},
        "mail": {"type": "string", "format": "email"},
    }
    validator = _KubernetesValidator(
        to_json_schema({"type": "object", "properties": properties}), format_checker=_FORMATS
    )
    good = {"port": "http", "count": 2**31 - 1, "at": "2025-11-02T10:00:00Z", "wait": "1h30m"}
    assert list(validator.iter_errors({**good, "mail": "not checked"})) == []
    bad = {"port": True, "count": 2**31, "at": "2025-02-30T00:00:00Z", "wait": "1d"}
    assert sorted(e.path[0] for e in validator.iter_errors(bad)) == sorted(bad)


def test_validators_are_compiled_once() -> None:
    assert validator_for("Build") is validator_for("Build")
    assert validator_for("BuildRun") is not validator_for("Build")


# --- the vendored CRDs ------------------------------------------------------------------------


@needs_shipwright
@pytest.mark.parametrize("file_name", sorted(CRD_FILES.values()))
def test_vendored_crds_are_unchanged_upstream_copies(file_name: str) -> None:
    upstream = SHIPWRIGHT / "deploy" / "crds" / file_name
    assert (VENDORED / file_name).read_bytes() == upstream.read_bytes()


@needs_shipwright
def test_the_licence_and_source_travel_with_the_crds() -> None:
    assert (VENDORED / "LICENSE").read_bytes() == (SHIPWRIGHT / "LICENSE").read_bytes()
    source = (VENDORED / "SOURCE.md").read_text()
    assert "85aa6645467764349758604de3000de393eab7b6" in source


# --- any corruption is a SpecError ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


TEMPLATE_PATHS = [p for p in paths_of(build_and_run()) if p[:2] == T]


@given(st.sampled_from(TEMPLATE_PATHS), json_values)
@settings(max_examples=300, deadline=None)
def test_corrupted_build_and_run_parse_or_raise_spec_error(
    path: tuple[str | int, ...], value: object
) -> None:
    data = build_and_run()
    set_at(path, value)(data)
    with contextlib.suppress(SpecError):
        resource = parse(data)
        assert parse(resource.to_mapping()) == resource
