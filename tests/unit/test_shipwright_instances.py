"""The ``build`` work type's instances: the Build and BuildRun of instance *n*
(``instance_objects``), reading a BuildRun (``observe``, every upstream reason classified)
and cancelling it (``stop``)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from work_examples import (
    SEED_BUILD,
    SEED_BUILD_RUN,
    SHIPWRIGHT,
    mapping_of,
    needs_shipwright,
    sample,
)

from workqueue_core.domain.models import FailureClass
from workqueue_core.ports.work_type import InstanceState, Owner
from workqueue_shipwright import BuildWorkType
from workqueue_shipwright.build import BUILD_RUN, CANCEL_PATCH, validate_build_templates
from workqueue_shipwright.reasons import BUILD_RUN_REASONS, TEKTON_REASONS, ReasonClass
from workqueue_shipwright.schemas import check_object

BUILD_TYPE = BuildWorkType()
OWNER = Owner(
    api_version="brokkr.io/v1alpha1",
    kind="Work",
    name="build-my-app",
    namespace="builds",
    uid="6f1c1f9e-0000-4000-8000-000000000001",
    labels={"workqueue.dev/agent-id": "a1"},
)
SOURCE = SHIPWRIGHT / "source" / "pkg"
CONDITIONS_GO = SOURCE / "reconciler" / "buildrun" / "resources" / "conditions.go"
BUILDRUN_GO = SOURCE / "reconciler" / "buildrun" / "buildrun.go"
BUILDRUN_TYPES_GO = SOURCE / "apis" / "build" / "v1beta1" / "buildrun_types.go"
BUILD_TYPES_GO = SOURCE / "apis" / "build" / "v1beta1" / "build_types.go"
GO_FILES = sorted(SOURCE.rglob("*.go")) if SOURCE.is_dir() else []


def seed_templates() -> list[dict[str, Any]]:
    return [mapping_of(SEED_BUILD), mapping_of(SEED_BUILD_RUN)]


def embedded_run() -> dict[str, Any]:
    build = mapping_of(SEED_BUILD)
    return {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "BuildRun",
        "metadata": {"generateName": "embedded-"},
        "spec": {"build": {"spec": build["spec"]}},
    }


# --- instance_objects ----------------------------------------------------------------------


def assert_instance_metadata(obj: dict[str, Any], index: int) -> None:
    metadata = obj["metadata"]
    assert metadata["name"] == f"build-my-app-{index}"
    assert metadata["namespace"] == "builds"
    assert "generateName" not in metadata
    assert metadata["labels"] == {
        "workqueue.dev/agent-id": "a1",
        "workqueue.dev/work": "build-my-app",
        "workqueue.dev/work-uid": OWNER.uid,
        "workqueue.dev/instance": str(index),
    }
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "brokkr.io/v1alpha1",
            "kind": "Work",
            "name": "build-my-app",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "status" not in obj


def assert_valid(objects: list[dict[str, Any]]) -> None:
    """Valid against the real CRD schemas and Shipwright's rules, references included."""
    for i, obj in enumerate(objects):
        check_object(obj["kind"], obj, f"[{i}]")
    validate_build_templates(objects)


def test_a_build_and_its_build_run_become_the_instance_build_and_build_run() -> None:
    templates = seed_templates()
    build, run = BUILD_TYPE.instance_objects(OWNER, templates, 2)
    assert (build["kind"], run["kind"]) == ("Build", "BuildRun")
    assert_instance_metadata(build, 2)
    assert_instance_metadata(run, 2)
    assert run["spec"]["build"] == {"name": "build-my-app-2"}
    assert run["spec"]["serviceAccount"] == "builder-sa"  # the template's fields are kept
    assert build["spec"] == mapping_of(SEED_BUILD)["spec"]
    assert templates == seed_templates()  # the templates are not changed
    assert_valid([build, run])


def test_a_build_alone_gets_a_build_run_per_instance() -> None:
    build, run = BUILD_TYPE.instance_objects(OWNER, [mapping_of(SEED_BUILD)], 0)
    assert_instance_metadata(run, 0)
    assert run["apiVersion"] == "shipwright.io/v1beta1"
    assert run["spec"] == {"build": {"name": build["metadata"]["name"]}}
    assert_valid([build, run])


def test_a_build_run_with_an_embedded_build_keeps_it() -> None:
    [run] = BUILD_TYPE.instance_objects(OWNER, [embedded_run()], 1)
    assert_instance_metadata(run, 1)
    assert run["spec"]["build"]["spec"] == mapping_of(SEED_BUILD)["spec"]
    assert "name" not in run["spec"]["build"]
    assert_valid([run])


def test_instances_are_named_deterministically() -> None:
    first = BUILD_TYPE.instance_objects(OWNER, seed_templates(), 3)
    again = BUILD_TYPE.instance_objects(OWNER, seed_templates(), 3)
    other = BUILD_TYPE.instance_objects(OWNER, seed_templates(), 4)
    assert first == again
    assert {o["metadata"]["name"] for o in other} == {"build-my-app-4"}
    long_owner = Owner("brokkr.io/v1alpha1", "Work", "w" * 80, "builds", OWNER.uid)
    names = {o["metadata"]["name"] for o in BUILD_TYPE.instance_objects(long_owner, first, 0)}
    [name] = names
    assert len(name) <= 63  # a BuildRun's name must be a label value (BuildRunNameInvalid)


def test_template_labels_and_annotations_are_kept_and_the_instance_labels_win() -> None:
    templates = seed_templates()
    templates[0]["metadata"]["labels"] = {"team": "a", "workqueue.dev/instance": "9"}
    templates[1]["metadata"]["annotations"] = {"note": "x"}
    build, run = BUILD_TYPE.instance_objects(OWNER, templates, 0)
    assert build["metadata"]["labels"]["team"] == "a"
    assert build["metadata"]["labels"]["workqueue.dev/instance"] == "0"
    assert run["metadata"]["annotations"] == {"note": "x"}


def test_at_build_deletion_is_dropped_because_the_work_owns_both() -> None:
    templates = seed_templates()
    templates[0]["spec"]["retention"]["atBuildDeletion"] = True
    build, _ = BUILD_TYPE.instance_objects(OWNER, templates, 0)
    assert "atBuildDeletion" not in build["spec"]["retention"]
    assert build["spec"]["retention"]["ttlAfterFailed"] == "24h"
    embedded = embedded_run()
    embedded["spec"]["build"]["spec"]["retention"] = {"atBuildDeletion": False}
    [run] = BUILD_TYPE.instance_objects(OWNER, [embedded], 0)
    assert "retention" not in run["spec"]["build"]["spec"]


@needs_shipwright
@pytest.mark.parametrize(
    ("build_file", "run_file"),
    [
        (
            "build/build_buildah_shipwright_managed_push_cr.yaml",
            "buildrun/buildrun_buildah_cr.yaml",
        ),
        ("build/build_kaniko_cr.yaml", "buildrun/buildrun_kaniko_cr.yaml"),
        ("build/build_buildkit_cr.yaml", "buildrun/buildrun_buildkit_cr.yaml"),
        ("build/build_ko_cr.yaml", "buildrun/buildrun_ko_cr.yaml"),
    ],
)
def test_upstream_samples_make_valid_instances(build_file: str, run_file: str) -> None:
    build = sample(build_file)
    run = sample(run_file)
    run["spec"]["build"]["name"] = build["metadata"]["name"]
    objects = BUILD_TYPE.instance_objects(OWNER, [build, run], 0)
    assert_valid(objects)
    assert objects[1]["spec"]["build"]["name"] == objects[0]["metadata"]["name"]


# --- observe ---------------------------------------------------------------------------------


def build_run(
    status: str | None = None,
    reason: str = "",
    message: str = "",
    *,
    when: str = "2030-01-01T10:05:00Z",
    state: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "BuildRun",
        "metadata": {"name": "w-0", "namespace": "builds"},
        "spec": {"build": {"name": "w-0"}},
        "status": dict(extra or {}),
    }
    if state is not None:
        obj["spec"]["state"] = state
    if status is not None:
        obj["status"]["conditions"] = [
            {
                "type": "Succeeded",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": when,
            }
        ]
    return obj


SUCCESS_STATUS = {
    "startTime": "2030-01-01T10:00:00Z",
    "completionTime": "2030-01-01T10:05:00Z",
    "output": {"digest": "sha256:" + "a" * 64, "size": 123456},
    "source": {"git": {"commitSha": "f" * 40, "commitAuthor": "A", "branchName": "main"}},
    "buildSpec": {"output": {"image": "registry.example.com/app:latest"}},
}


def test_a_missing_build_run_is_pending() -> None:
    build = {"kind": "Build", "metadata": {"name": "w-0"}, "spec": {"strategy": {}}}
    for objects in ([], [build]):
        status = BUILD_TYPE.observe(objects)
        assert (status.state, status.reason) == (InstanceState.PENDING, "BuildRunNotFound")


def test_a_build_run_without_a_condition_is_pending() -> None:
    status = BUILD_TYPE.observe([build_run()])
    assert (status.state, status.reason) == (InstanceState.PENDING, "BuildRunPending")


def test_a_succeeded_build_run_gives_its_results_and_time() -> None:
    obj = build_run("True", "Succeeded", "All Steps have completed executing", extra=SUCCESS_STATUS)
    status = BUILD_TYPE.observe([obj])
    assert status.state is InstanceState.SUCCEEDED
    assert status.reason == "Succeeded"
    assert status.results == {
        "buildRun": "w-0",
        "image": "registry.example.com/app:latest",
        "digest": "sha256:" + "a" * 64,
        "size": "123456",
        "commit": "f" * 40,
        "branch": "main",
    }
    assert status.finished_at == datetime(2030, 1, 1, 10, 5, tzinfo=UTC)


def test_the_build_run_output_image_wins_and_an_oci_source_gives_its_digest() -> None:
    extra = {"source": {"ociArtifact": {"digest": "sha256:" + "b" * 64}}, "output": {}}
    obj = build_run("True", "Succeeded", extra=extra)
    obj["spec"]["output"] = {"image": "registry.example.com/other:1"}
    results = BUILD_TYPE.observe([obj]).results
    assert results == {
        "buildRun": "w-0",
        "image": "registry.example.com/other:1",
        "sourceDigest": "sha256:" + "b" * 64,
    }


def test_finished_at_falls_back_to_the_completion_time() -> None:
    obj = build_run("False", "Failed", when="not a time", extra=SUCCESS_STATUS)
    assert BUILD_TYPE.observe([obj]).finished_at == datetime(2030, 1, 1, 10, 5, tzinfo=UTC)
    obj = build_run("False", "Failed", when="2030-01-01T10:00:00")  # no offset, no fallback
    assert BUILD_TYPE.observe([obj]).finished_at is None


def test_a_failure_carries_the_failure_details() -> None:
    details = {
        "failureDetails": {
            "reason": "GitRemotePrivate",
            "message": "The remote repository is private",
            "location": {"pod": "w-0-abc-pod", "container": "step-source-default"},
        }
    }
    obj = build_run("False", "Failed", "buildrun step step-source-default failed", extra=details)
    status = BUILD_TYPE.observe([obj])
    assert status.failure is not None
    assert status.failure.message == (
        "buildrun step step-source-default failed (failureDetails: GitRemotePrivate: The"
        " remote repository is private; at w-0-abc-pod/step-source-default)"
    )


@pytest.mark.parametrize(
    ("build_reason", "expected"),
    [
        ("RemoteRepositoryUnreachable", FailureClass.RETRYABLE),
        ("BuildStrategyNotFound", FailureClass.PERMANENT),
        ("NoSuchReason", FailureClass.PERMANENT),
    ],
)
def test_a_registration_failure_is_classified_by_the_build_reason(
    build_reason: str, expected: FailureClass
) -> None:
    """buildrun.go: a Build whose ``status.registered`` is not True fails its BuildRun with
    ``BuildRegistrationFailed``, whatever the Build's reason; the instance's Build says it."""
    message = (
        f"the Build is not registered correctly, build: w-0, registered status: False,"
        f" reason: {build_reason}"
    )
    build = {
        "apiVersion": "shipwright.io/v1beta1",
        "kind": "Build",
        "metadata": {"name": "w-0", "namespace": "builds"},
        "spec": {"strategy": {"name": "buildah"}},
        "status": {"registered": "False", "reason": build_reason, "message": "unreachable"},
    }
    status = BUILD_TYPE.observe([build, build_run("False", "BuildRegistrationFailed", message)])
    assert status.failure is not None
    assert (status.failure.failure_class, status.reason) == (expected, "BuildRegistrationFailed")
    alone = BUILD_TYPE.observe([build_run("False", "BuildRegistrationFailed", message)])
    assert alone.failure is not None and alone.failure.failure_class is FailureClass.PERMANENT


def test_an_unknown_reason_is_retryable_when_false_and_pending_when_unknown() -> None:
    failed = BUILD_TYPE.observe([build_run("False", "TaskRunImagePullFailed", "pull failed")])
    assert failed.failure is not None
    assert failed.failure.failure_class is FailureClass.RETRYABLE
    assert failed.failure.reason == "TaskRunImagePullFailed"
    waiting = BUILD_TYPE.observe([build_run("Unknown", "ExceededNodeResources")])
    assert waiting.state is InstanceState.PENDING
    assert BUILD_TYPE.observe([build_run("False")]).reason == "Failed"


def test_a_cancel_requested_or_in_progress_runs_and_a_finished_one_fails_permanently() -> None:
    assert BUILD_TYPE.observe([build_run("Unknown", "BuildRunCanceled")]).state is (
        InstanceState.RUNNING
    )
    requested = BUILD_TYPE.observe([build_run("Unknown", "Started", state="BuildRunCanceled")])
    assert requested.state is InstanceState.RUNNING
    done = BUILD_TYPE.observe([build_run("False", "BuildRunCanceled", state="BuildRunCanceled")])
    assert done.failure is not None
    assert (done.failure.failure_class, done.reason) == (
        FailureClass.PERMANENT,
        "BuildRunCanceled",
    )


def test_a_list_item_without_kind_is_told_apart_by_its_spec() -> None:
    obj = build_run("True", "Succeeded")
    del obj["kind"]
    build = {"metadata": {"name": "w-0"}, "spec": {"strategy": {"name": "buildah"}}}
    assert BUILD_TYPE.observe([build, obj]).state is InstanceState.SUCCEEDED
    assert [s.kind for s in BUILD_TYPE.stop([build, build_run("Unknown", "Running")])] == [
        BUILD_RUN
    ]


EXPECTED_STATE = {
    ReasonClass.SUCCEEDED: InstanceState.SUCCEEDED,
    ReasonClass.RUNNING: InstanceState.RUNNING,
    ReasonClass.PENDING: InstanceState.PENDING,
    ReasonClass.CANCELED: InstanceState.FAILED,
    ReasonClass.PERMANENT: InstanceState.FAILED,
    ReasonClass.RETRYABLE: InstanceState.FAILED,
}
CONDITION_STATUS = {
    ReasonClass.SUCCEEDED: "True",
    ReasonClass.RUNNING: "Unknown",
    ReasonClass.PENDING: "Unknown",
}


@pytest.mark.parametrize("reason", sorted(BUILD_RUN_REASONS))
def test_every_reason_reads_as_its_class(reason: str) -> None:
    reason_class = BUILD_RUN_REASONS[reason].reason_class
    value = CONDITION_STATUS.get(reason_class, "False")
    status = BUILD_TYPE.observe([build_run(value, reason, "why")])
    assert status.state is EXPECTED_STATE[reason_class]
    assert status.reason == reason
    if status.failure is not None:
        expected = (
            FailureClass.RETRYABLE
            if reason_class is ReasonClass.RETRYABLE
            else FailureClass.PERMANENT
        )
        assert status.failure.failure_class is expected
        assert status.failure.reason == reason
    assert BUILD_RUN_REASONS[reason].rationale


def test_every_reason_class_is_used() -> None:
    assert {r.reason_class for r in BUILD_RUN_REASONS.values()} == set(ReasonClass)


# --- the table against the upstream Go source ----------------------------------------------


def go_constants(path_text: str, pattern: str) -> dict[str, str]:
    return dict(re.findall(pattern, path_text, flags=re.MULTILINE))


def upstream_reasons() -> dict[str, str]:
    """Every reason the upstream files can put on a BuildRun's Succeeded condition, with
    where it was found."""
    conditions = CONDITIONS_GO.read_text()
    found: dict[str, str] = {}
    block = conditions[
        conditions.index("const (") : conditions.index(")", conditions.index("const ("))
    ]
    for _, value in re.findall(r'^\s*(\w+)\s+string\s*=\s*"([^"]+)"', block, re.MULTILINE):
        found[value] = "conditions.go constant"
    for value in re.findall(r'[Rr]eason\s*(?::|=)\s*"([^"]+)"', conditions):
        found[value] = "conditions.go literal"
    for value in re.findall(r'case\s+"([^"]+)"', conditions):
        found[value] = "conditions.go PipelineRun reason passed through"
    run_types = BUILDRUN_TYPES_GO.read_text()
    for _, value in re.findall(r'^\s*(BuildRunState\w+)\s*=\s*"([^"]+)"', run_types, re.MULTILINE):
        found[value] = "buildrun_types.go BuildRunState"
    build_types = BUILD_TYPES_GO.read_text()
    for _, value in re.findall(
        r'^\s*(\w+)\s+BuildReason\s*=\s*"([^"]+)"', build_types, re.MULTILINE
    ):
        found[value] = "build_types.go BuildReason"
    for name in set(re.findall(r"pipelineapi\.(TaskRunReason\w+)", conditions)):
        assert name in TEKTON_REASONS, f"Tekton reason {name} named in conditions.go"
        tekton = TEKTON_REASONS[name]
        if tekton is not None:
            found[tekton] = f"Tekton {name}"
    return found


def reason_arguments() -> set[str]:
    """The identifiers passed as the reason of ``UpdateConditionWithFalseStatus`` anywhere."""
    names: set[str] = set()
    for path in GO_FILES:
        for call in re.findall(
            r"(?<!func )UpdateConditionWithFalseStatus\((.*)\)", path.read_text()
        ):
            last = call.rsplit(",", 1)[-1].strip()
            names.add(re.sub(r"^string\((.*)\)$", r"\1", last))
    return names


@needs_shipwright
def test_the_table_covers_every_reason_of_the_upstream_source() -> None:
    found = upstream_reasons()
    assert len(found) >= 60, "the Go files were parsed"
    missing = sorted(f"{r} ({where})" for r, where in found.items() if r not in BUILD_RUN_REASONS)
    assert missing == [], f"unclassified BuildRun reasons: {missing}"
    extra = sorted(set(BUILD_RUN_REASONS) - set(found))
    assert extra == [], f"classified reasons the upstream source does not have: {extra}"


@needs_shipwright
def test_every_reason_argument_of_the_upstream_source_resolves_to_a_classified_reason() -> None:
    constants: dict[str, str] = {}
    for path in (CONDITIONS_GO, BUILDRUN_TYPES_GO, BUILD_TYPES_GO):
        constants.update(go_constants(path.read_text(), r'^\s*(\w+)(?:\s+\w+)?\s*=\s*"([^"]+)"'))
    arguments = reason_arguments()
    assert len(arguments) >= 5, "the calls were found"
    for argument in sorted(arguments):
        if argument in ("reason", "resources.ConditionFailed"):
            continue  # a variable: a validate function's reason, all in build_types.go
        name = argument.rsplit(".", 1)[-1]
        assert name in constants, f"reason argument {argument} resolves to a constant"
        assert constants[name] in BUILD_RUN_REASONS, f"{argument} = {constants[name]}"


# --- stop ------------------------------------------------------------------------------------


def test_stop_cancels_a_running_build_run_and_leaves_the_build() -> None:
    build = {"kind": "Build", "metadata": {"name": "w-0"}, "spec": {"strategy": {}}}
    [step] = BUILD_TYPE.stop([build, build_run("Unknown", "Running")])
    assert (step.kind, step.name, step.patch) == (BUILD_RUN, "w-0", CANCEL_PATCH)
    assert CANCEL_PATCH == {"spec": {"state": "BuildRunCanceled"}}
    assert BUILD_TYPE.stop([build, build_run()]) != []  # not picked up yet: cancel too


@pytest.mark.parametrize("value", ["True", "False"])
def test_stop_leaves_a_finished_build_run_alone(value: str) -> None:
    assert BUILD_TYPE.stop([build_run(value, "Succeeded" if value == "True" else "Failed")]) == []


def test_the_cancel_patch_is_valid_against_the_build_run_schema() -> None:
    obj = build_run("Unknown", "Running")
    patched = copy.deepcopy(obj)
    patched["spec"]["state"] = CANCEL_PATCH["spec"]["state"]
    check_object("BuildRun", patched, "")


def test_the_docs_table_lists_every_reason_with_its_class() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "work-controller.md").read_text()
    section = docs[docs.index("## The `build` work type") : docs.index("## Known limits")]
    labels = {
        ReasonClass.SUCCEEDED: "Succeeded",
        ReasonClass.RUNNING: "Running",
        ReasonClass.PENDING: "Pending",
        ReasonClass.CANCELED: "canceled",
        ReasonClass.RETRYABLE: "Failed, retryable",
        ReasonClass.PERMANENT: "Failed, **permanent**",
    }
    for reason, reasoned in BUILD_RUN_REASONS.items():
        row = f"| `{reason}` | {labels[reasoned.reason_class]}"
        assert row in section, (
            f"docs/work-controller.md lists {reason} as {labels[reasoned.reason_class]}"
        )


# --- any BuildRun reads as a status -----------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
CONDITION = st.fixed_dictionaries(
    {"type": st.sampled_from(["Succeeded", "Other"])},
    optional={
        "status": st.sampled_from(["True", "False", "Unknown", "", 1]) | JSON,
        "reason": st.sampled_from(sorted(BUILD_RUN_REASONS)) | st.text(max_size=12) | JSON,
        "message": st.text(max_size=20) | JSON,
        "lastTransitionTime": st.sampled_from(["2030-01-01T00:00:00Z", "bad"]) | JSON,
    },
)
STATUS = st.fixed_dictionaries(
    {},
    optional={
        "conditions": st.lists(CONDITION, max_size=3) | JSON,
        "output": st.fixed_dictionaries({}, optional={"digest": JSON, "size": JSON}) | JSON,
        "source": JSON,
        "failureDetails": JSON,
        "completionTime": JSON,
        "buildSpec": JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(status=STATUS, spec=JSON, metadata=JSON, kind=st.sampled_from(["BuildRun", None]))
def test_any_build_run_reads_as_a_consistent_status(
    status: dict[str, Any], spec: Any, metadata: Any, kind: str | None
) -> None:
    obj: dict[str, Any] = {"metadata": metadata, "spec": spec, "status": status}
    if kind is not None:
        obj["kind"] = kind
    read = BUILD_TYPE.observe([obj])  # never raises; InstanceStatus checks its invariants
    assert all(isinstance(v, str) and k for k, v in read.results.items())
    assert (read.failure is not None) == (read.state is InstanceState.FAILED)
    BUILD_TYPE.stop([obj])
