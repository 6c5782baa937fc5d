"""The Work custom resource: parsing, validation paths, round trips, generic template checks.

What a work type adds (``build``, ``job``) is tested with its adapter:
``test_shipwright_build.py``, ``test_broker_work_types.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from work_examples import (
    BUILD_SPEC,
    JOB,
    SEED_BUILD,
    SEED_BUILD_RUN,
    SEED_WORK,
    T,
    build_and_run,
    delete_at,
    mapping_of,
    seed,
    set_at,
    wrap,
)

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.resource import (
    API_VERSION,
    CONDITION_TEMPLATE_APPLIED,
    CONDITION_TEMPLATE_SUCCEEDED,
    KIND,
    PLURAL,
    Condition,
    WorkMetadata,
    WorkPhase,
    WorkResource,
    WorkResourceStatus,
    WorkSpec,
    work_resource_for,
)
from workqueue_core.work.safe_yaml import load_yaml

# --- the seed's example ---------------------------------------------------------------


def test_seed_example_parses() -> None:
    work = WorkResource.from_yaml(SEED_WORK)
    assert work.metadata.name == "build-my-app-abc123"
    assert work.metadata.namespace == "brokkr-agent"
    assert work.spec.work_type == "build"
    assert (work.spec.max_retries, work.spec.claim_timeout) == (3, 3600)
    assert len(work.spec.templates) == 1
    assert work.spec.templates[0]["kind"] == "Build"
    assert work.status.phase is WorkPhase.RUNNING
    assert work.status.retries == 1
    assert work.status.start_time == "2025-11-02T10:00:00Z"
    assert [c.type for c in work.status.conditions] == [
        CONDITION_TEMPLATE_APPLIED,
        CONDITION_TEMPLATE_SUCCEEDED,
    ]
    succeeded = work.status.condition(CONDITION_TEMPLATE_SUCCEEDED)
    assert succeeded == Condition(
        type="TemplateSucceeded",
        status="True",
        reason="BuildCompleted",
        message="BuildRun succeeded",
        last_transition_time="2025-11-02T10:05:23Z",
    )
    assert work.status.condition("Ready") is None


def test_seed_example_round_trips_exactly() -> None:
    work = WorkResource.from_yaml(SEED_WORK)
    assert work.to_mapping() == load_yaml(SEED_WORK)
    assert WorkResource.from_mapping(work.to_mapping()) == work
    assert WorkResource.from_yaml(work.to_yaml()) == work


def test_seed_build_and_build_run_validate() -> None:
    work = WorkResource.from_mapping(build_and_run())
    assert [t["kind"] for t in work.spec.templates] == ["Build", "BuildRun"]
    assert WorkResource.from_mapping(work.to_mapping()) == work
    template = work.to_mapping()["spec"]
    assert isinstance(template, dict)
    assert isinstance(template["template"], list)


def test_a_one_element_list_comes_back_as_one_object() -> None:
    data = seed()
    data["spec"]["template"] = [data["spec"]["template"]]
    work = WorkResource.from_mapping(data)
    assert work == WorkResource.from_yaml(SEED_WORK)
    assert work.to_mapping()["spec"] == seed()["spec"]


def test_defaults() -> None:
    data = seed()
    del data["spec"]["maxRetries"], data["spec"]["claimTimeout"], data["status"]
    work = WorkResource.from_mapping(data)
    assert (work.spec.max_retries, work.spec.claim_timeout) == (3, 3600)
    assert work.status == WorkResourceStatus()
    assert work.status.phase is WorkPhase.PENDING
    assert "status" not in work.to_mapping()


def test_null_optional_fields_count_as_absent() -> None:
    data = seed()
    data["status"] = None
    data["spec"]["maxRetries"] = None
    data["metadata"]["labels"] = None
    work = WorkResource.from_mapping(data)
    assert work.spec.max_retries == 3
    assert work.status == WorkResourceStatus()


def test_server_fields_are_kept_or_ignored() -> None:
    data = seed()
    data["metadata"].update(
        uid="0b6c5e2f-5d0a-4e55-9d5b-0c9a3f0f2b11",
        resourceVersion="12345",
        generation=2,
        creationTimestamp="2025-11-02T09:59:59Z",
        finalizers=["brokkr.io/cleanup"],
        ownerReferences=[
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "name": "ns",
                "uid": "u-1",
                "controller": True,
            }
        ],
        managedFields=[{"manager": "kubectl", "operation": "Apply"}],
        selfLink="/apis/brokkr.io/v1alpha1/namespaces/brokkr-agent/works/x",
    )
    data["status"]["observedGeneration"] = 2
    work = WorkResource.from_mapping(data)
    assert work.metadata.generation == 2
    assert work.metadata.resource_version == "12345"
    assert work.metadata.finalizers == ("brokkr.io/cleanup",)
    assert work.status.observed_generation == 2
    stored = work.to_mapping()["metadata"]
    assert isinstance(stored, dict)
    assert "managedFields" not in stored
    assert "selfLink" not in stored
    assert WorkResource.from_mapping(work.to_mapping()) == work


def test_full_status_round_trips() -> None:
    data = seed()
    data["status"].update(
        phase="Failed",
        nextRetryTime="2025-11-02T10:06:00.123456Z",
        result={"imageDigest": "sha256:abc123", "gitCommit": "deadbeef"},
        observedGeneration=1,
    )
    data["status"]["conditions"][1].update(status="False", observedGeneration=1)
    work = WorkResource.from_mapping(data)
    assert work.status.phase.is_terminal
    assert work.status.result["imageDigest"] == "sha256:abc123"
    assert work.to_mapping() == data
    assert WorkResource.from_mapping(work.to_mapping()) == work


def test_to_mapping_returns_fresh_copies() -> None:
    work = WorkResource.from_yaml(SEED_WORK)
    stored = work.to_mapping()
    stored["spec"]["template"]["spec"]["output"]["image"] = "changed"  # type: ignore[index]
    assert work.to_mapping() == load_yaml(SEED_WORK)


def test_templates_are_copied_on_the_way_in() -> None:
    data = seed()
    work = WorkResource.from_mapping(data)
    data["spec"]["template"]["spec"]["output"]["image"] = "changed"
    output = work.spec.templates[0]["spec"]
    assert isinstance(output, dict)
    assert output["output"]["image"] == "registry.example.com/my-app:latest"


def test_constants() -> None:
    assert (API_VERSION, KIND, PLURAL) == ("brokkr.io/v1alpha1", "Work", "works")
    assert [p.value for p in WorkPhase] == ["Pending", "Running", "Succeeded", "Failed"]
    assert [p.is_terminal for p in WorkPhase] == [False, False, True, True]


# --- every violation names its field ---------------------------------------------------

SEED_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing kind", delete_at("kind"), "kind"),
    ("wrong kind", set_at(("kind",), "Job"), "kind"),
    ("wrong apiVersion", set_at(("apiVersion",), "brokkr.io/v1"), "apiVersion"),
    ("unknown top-level field", set_at(("extra",), 1), "extra"),
    ("metadata missing", delete_at("metadata"), "metadata"),
    ("metadata name invalid", set_at(("metadata", "name"), "My_Work"), "metadata.name"),
    ("namespace invalid", set_at(("metadata", "namespace"), "a.b"), "metadata.namespace"),
    (
        "label value invalid",
        set_at(("metadata", "labels"), {"brokkr.io/agent": "not valid!"}),
        'metadata.labels["brokkr.io/agent"]',
    ),
    ("unknown metadata field", set_at(("metadata", "lables"), {}), "metadata.lables"),
    ("spec not a mapping", set_at(("spec",), "build"), "spec"),
    ("workType missing", delete_at("spec", "workType"), "spec.workType"),
    ("workType invalid", set_at(("spec", "workType"), "Build!"), "spec.workType"),
    ("maxRetries -1", set_at(("spec", "maxRetries"), -1), "spec.maxRetries"),
    ("maxRetries true", set_at(("spec", "maxRetries"), True), "spec.maxRetries"),
    ("maxRetries 101", set_at(("spec", "maxRetries"), 101), "spec.maxRetries"),
    ("maxRetries 2.0", set_at(("spec", "maxRetries"), 2.0), "spec.maxRetries"),
    ("claimTimeout 0", set_at(("spec", "claimTimeout"), 0), "spec.claimTimeout"),
    ("claimTimeout text", set_at(("spec", "claimTimeout"), "3600"), "spec.claimTimeout"),
    ("claimTimeout over a week", set_at(("spec", "claimTimeout"), 604_801), "spec.claimTimeout"),
    ("attempt -1", set_at(("spec", "attempt"), -1), "spec.attempt"),
    ("workId with a space", set_at(("spec", "workId"), "a b"), "spec.workId"),
    ("unknown spec field", set_at(("spec", "priority"), 5), "spec.priority"),
    ("template missing", delete_at(*T), "spec.template"),
    ("template not a mapping", set_at(T, "kind: Build"), "spec.template"),
    ("template empty list", set_at(T, []), "spec.template"),
    ("template item not a mapping", set_at(T, ["x"]), "spec.template[0]"),
    ("template without kind", delete_at(*T, "kind"), "spec.template.kind"),
    (
        "template apiVersion malformed",
        set_at((*T, "apiVersion"), "Shipwright"),
        "spec.template.apiVersion",
    ),
    ("template without a name", delete_at(*T, "metadata", "name"), "spec.template.metadata"),
    (
        "template name invalid",
        set_at((*T, "metadata", "name"), "My Build"),
        "spec.template.metadata.name",
    ),
    (
        "template in another namespace",
        set_at((*T, "metadata", "namespace"), "other"),
        "spec.template.metadata.namespace",
    ),
    (
        "a Work wrapping a Work",
        set_at(T, {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"}}),
        "spec.template.kind",
    ),
    ("template float not finite", set_at((*BUILD_SPEC, "x"), float("inf")), "spec.template.spec.x"),
    ("status not a mapping", set_at(("status",), "Running"), "status"),
    ("status.phase bogus", set_at(("status", "phase"), "Done"), "status.phase"),
    ("status.retries -1", set_at(("status", "retries"), -1), "status.retries"),
    (
        "status.startTime not RFC 3339",
        set_at(("status", "startTime"), "yesterday"),
        "status.startTime",
    ),
    (
        "status.completionTime invalid date",
        set_at(("status", "completionTime"), "2025-02-30T00:00:00Z"),
        "status.completionTime",
    ),
    ("unknown status field", set_at(("status", "foo"), 1), "status.foo"),
    ("conditions not a list", set_at(("status", "conditions"), {}), "status.conditions"),
    (
        "condition status Maybe",
        set_at(("status", "conditions", 0, "status"), "Maybe"),
        "status.conditions[0].status",
    ),
    (
        "condition status a boolean",
        set_at(("status", "conditions", 1, "status"), True),
        "status.conditions[1].status",
    ),
    (
        "condition without type",
        delete_at("status", "conditions", 0, "type"),
        "status.conditions[0].type",
    ),
    (
        "condition reason invalid",
        set_at(("status", "conditions", 1, "reason"), "build completed"),
        "status.conditions[1].reason",
    ),
    (
        "condition time invalid",
        set_at(("status", "conditions", 0, "lastTransitionTime"), "2025-11-02"),
        "status.conditions[0].lastTransitionTime",
    ),
    (
        "condition unknown field",
        set_at(("status", "conditions", 0, "severity"), "Info"),
        "status.conditions[0].severity",
    ),
    (
        "duplicate condition type",
        set_at(("status", "conditions", 1, "type"), "TemplateApplied"),
        "status.conditions[1].type",
    ),
    ("result value not a string", set_at(("status", "result"), {"size": 10}), "status.result.size"),
]


@pytest.mark.parametrize(
    ("mutate", "path"), [pytest.param(m, p, id=name) for name, m, p in SEED_CASES]
)
def test_invalid_seed_variants(mutate: Callable[[dict[str, Any]], None], path: str) -> None:
    data = seed()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(data)
    assert caught.value.path == path, caught.value
    assert caught.value.detail


LIST_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "duplicate template names",
        set_at((*T, 1), load_yaml(SEED_BUILD)),
        "spec.template[1].metadata.name",
    ),
    (
        "generateName invalid",
        set_at((*T, 1, "metadata", "generateName"), "My-"),
        "spec.template[1].metadata.generateName",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path"), [pytest.param(m, p, id=name) for name, m, p in LIST_CASES]
)
def test_invalid_build_and_run_variants(
    mutate: Callable[[dict[str, Any]], None], path: str
) -> None:
    data = build_and_run()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(data)
    assert caught.value.path == path, caught.value


@pytest.mark.parametrize("data", [None, "Work", ["Work"], 3, {1: "x"}])
def test_not_a_resource_mapping(data: object) -> None:
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(data)
    assert caught.value.path == ""


def test_condition_status_message_explains_quoting() -> None:
    data = seed()
    data["status"]["conditions"][0]["status"] = True
    with pytest.raises(SpecError, match=r'"True", "False", "Unknown" \(quoted in YAML\)'):
        WorkResource.from_mapping(data)


def test_from_yaml_rejects_hostile_text() -> None:
    bomb = SEED_WORK + "x: &a [" + ", ".join(["y"] * 50) + "]\n"
    bomb += "".join(
        f"x{i}: &a{i} [*a{'' if i == 0 else i - 1}, *a{'' if i == 0 else i - 1}]\n"
        for i in range(20)
    )
    with pytest.raises(SpecError, match="expands"):
        WorkResource.from_yaml(bomb)
    with pytest.raises(SpecError, match="top level"):
        WorkResource.from_yaml("- a\n")


def test_other_work_types_get_generic_checks_only() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    work = WorkResource.from_mapping(wrap(config_map, work_type="backup"))
    assert work.spec.templates[0]["kind"] == "ConfigMap"
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(wrap({"kind": "ConfigMap"}, work_type="backup"))
    assert caught.value.path == "spec.template.apiVersion"


# --- building a Work --------------------------------------------------------------------


def test_work_resource_for() -> None:
    work_id = UUID("6f1c1a60-3c4a-4a4e-9a55-2d7f0c1b9e10")
    work = work_resource_for(
        "build",
        [mapping_of(SEED_BUILD), mapping_of(SEED_BUILD_RUN)],
        name="build-6f1c1a60-1",
        namespace="brokkr-agent",
        max_retries=2,
        claim_timeout=900,
        work_id=work_id,
        attempt=1,
        labels={"brokkr.io/work-type": "build"},
    )
    assert work.spec.work_id == str(work_id)
    stored = work.to_mapping()
    assert "status" not in stored
    assert stored["spec"] == {
        "workType": "build",
        "maxRetries": 2,
        "claimTimeout": 900,
        "workId": str(work_id),
        "attempt": 1,
        "template": [load_yaml(SEED_BUILD), load_yaml(SEED_BUILD_RUN)],
    }
    assert WorkResource.from_mapping(stored) == work


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": "Bad Name"}, "metadata.name"),
        ({"labels": {"a": "b c"}}, "metadata.labels.a"),
        ({"max_retries": True}, "spec.maxRetries"),
        ({"claim_timeout": 0}, "spec.claimTimeout"),
        ({"attempt": -1}, "spec.attempt"),
        ({"templates": []}, "spec.template"),
        (
            {"namespace": "ops", "templates": {**JOB, "metadata": {"name": "j", "namespace": "x"}}},
            "spec.template.metadata.namespace",
        ),
    ],
)
def test_work_resource_for_names_bad_fields(change: dict[str, Any], path: str) -> None:
    arguments: dict[str, Any] = {
        "templates": JOB,
        "name": "job-1",
        "namespace": None,
        "max_retries": 0,
        "claim_timeout": 60,
        "work_id": "item-1",
        "attempt": 3,
    }
    arguments.update(change)
    with pytest.raises(SpecError) as caught:
        work_resource_for("job", **arguments)
    assert caught.value.path == path, caught.value


def test_direct_construction_validates() -> None:
    with pytest.raises(SpecError) as caught:
        WorkSpec(work_type="job", templates=JOB, max_retries=-1)
    assert caught.value.path == "maxRetries"
    with pytest.raises(SpecError) as caught:
        WorkResourceStatus(phase="Done")
    assert caught.value.path == "phase"
    assert WorkResourceStatus(phase="Running").phase is WorkPhase.RUNNING
    with pytest.raises(SpecError) as caught:
        WorkResourceStatus(conditions=[Condition("A", "True"), Condition("A", "False")])
    assert caught.value.path == "conditions[1].type"
    with pytest.raises(SpecError) as caught:
        Condition("TemplateApplied", "yes")
    assert caught.value.path == "status"
    with pytest.raises(SpecError) as caught:
        WorkMetadata(name="ok", finalizers="brokkr.io/x")
    assert caught.value.path == "finalizers"


# --- properties ---------------------------------------------------------------------------

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
times = st.builds(
    "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format,
    st.integers(1970, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
conditions = st.lists(
    st.builds(
        Condition,
        type=st.sampled_from([CONDITION_TEMPLATE_APPLIED, CONDITION_TEMPLATE_SUCCEEDED, "Ready"]),
        status=st.sampled_from(["True", "False", "Unknown"]),
        reason=st.sampled_from(["", "BuildCompleted", "Backoff"]),
        message=st.text(max_size=20),
        last_transition_time=st.none() | times,
        observed_generation=st.none() | st.integers(0, 10),
    ),
    max_size=3,
    unique_by=lambda condition: condition.type,
)
statuses = st.builds(
    WorkResourceStatus,
    phase=st.sampled_from(WorkPhase),
    retries=st.integers(0, 100),
    message=st.text(max_size=30),
    start_time=st.none() | times,
    completion_time=st.none() | times,
    next_retry_time=st.none() | times,
    conditions=conditions,
    observed_generation=st.none() | st.integers(0, 10),
    result=st.dictionaries(st.sampled_from(["imageDigest", "size"]), st.text(max_size=10)),
)
jobs = st.builds(
    lambda name, image, args: {
        **JOB,
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": name, "image": image, "args": args}],
                }
            }
        },
    },
    dns_labels,
    st.text(min_size=1, max_size=30),
    st.lists(st.text(max_size=10), max_size=3),
)
resources = st.builds(
    WorkResource,
    metadata=st.builds(
        WorkMetadata,
        name=dns_labels,
        namespace=st.none() | dns_labels,
        labels=st.dictionaries(dns_labels, dns_labels | st.just(""), max_size=2),
        generation=st.none() | st.integers(1, 5),
    ),
    spec=st.builds(
        WorkSpec,
        work_type=st.just("job"),
        templates=jobs,
        max_retries=st.integers(0, 100),
        claim_timeout=st.integers(1, 604_800),
        work_id=st.none() | st.uuids().map(str),
        attempt=st.none() | st.integers(0, 50),
    ),
    status=statuses,
)


@given(resources)
@settings(max_examples=150)
def test_round_trip(resource: WorkResource) -> None:
    assert WorkResource.from_mapping(resource.to_mapping()) == resource
    assert WorkResource.from_yaml(resource.to_yaml()) == resource


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_any_value_parses_or_raises_spec_error(value: object) -> None:
    with contextlib.suppress(SpecError):
        WorkResource.from_mapping(value)


def paths_of(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


SEED_PATHS = paths_of(load_yaml(SEED_WORK)) + paths_of(build_and_run())


@given(st.sampled_from(SEED_PATHS), json_values, st.booleans())
@settings(max_examples=400)
def test_corrupted_seed_parses_or_raises_spec_error(
    path: tuple[str | int, ...], value: object, use_pair: bool
) -> None:
    data = build_and_run() if use_pair else seed()
    try:
        set_at(path, value)(data)
    except (KeyError, IndexError, TypeError):
        return  # the path belongs to the other document
    try:
        resource = WorkResource.from_mapping(data)
    except SpecError:
        return
    assert WorkResource.from_mapping(resource.to_mapping()) == resource
