"""The ``job`` work type: template checks, instance Jobs, Job conditions read, stop."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import FailureClass
from workqueue_core.ports.work_type import InstanceState, InstanceStatus, Owner, StopStep
from workqueue_core.work.k8s_shapes import DNS_LABEL
from workqueue_core.work.reconcile_labels import (
    INSTANCE_LABEL,
    WORK_LABEL,
    WORK_UID_LABEL,
    group_instances,
)
from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.resource import WorkResource
from workqueue_kubernetes.job import (
    CONDITION_STATES,
    FAILED_REASONS,
    JOB,
    KUBERNETES_VERSION,
    SUCCEEDED_REASONS,
    JobWorkType,
    job_schema_validator,
)

TYPES_GO = Path(__file__).resolve().parents[2] / ".." / "shared" / "upstream" / "kubernetes"
TYPES_GO = TYPES_GO / "batch" / "v1" / "types.go"
JOB_TYPE = JobWorkType()
OWNER = Owner(
    api_version="brokkr.io/v1alpha1",
    kind="Work",
    name="wq-hello-1",
    namespace="builds",
    uid="0b6b3c1e-5d7a-4d43-9a51-2f0c7a1e9e01",
    labels={"workqueue.dev/work-id": "w-1", "team": "web"},
)


def job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello", "labels": {"app": "hello"}, "annotations": {"a": "b"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                },
            },
            **spec,
        },
    }


def pod(template: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = template["spec"]["template"]["spec"]
    return spec


def refusal(template: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        JOB_TYPE.validate([template])
    return caught.value


# --- validate ------------------------------------------------------------------------


def test_a_valid_job_passes_with_backoff_limit_absent_or_zero() -> None:
    JOB_TYPE.validate([job()])
    JOB_TYPE.validate([job(backoffLimit=0, activeDeadlineSeconds=600, ttlSecondsAfterFinished=60)])


def test_the_schema_version_is_a_pinned_minor_kubernetes_validate_ships() -> None:
    assert re.fullmatch(r"1\.[0-9]+", KUBERNETES_VERSION)
    assert KUBERNETES_VERSION in {
        kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()
    }


def test_the_compiled_schema_agrees_with_kubernetes_validate() -> None:
    variants = [job(), job(backoffLimit="3"), job(parallelism=True), job(backofLimit=0)]
    broken = job()
    pod(broken)["containers"][0].update(imge="x", ports=[{"containerPort": "80"}])
    variants.append(broken)
    for template in variants:
        errors = list(job_schema_validator().iter_errors(template))
        if not errors:
            kubernetes_validate.validate(copy.deepcopy(template), KUBERNETES_VERSION, strict=True)
            continue
        with pytest.raises(kubernetes_validate.ValidationError) as caught:
            kubernetes_validate.validate(copy.deepcopy(template), KUBERNETES_VERSION, strict=True)
        assert list(caught.value.absolute_path) in [list(e.absolute_path) for e in errors]
    assert sum(1 for t in variants if list(job_schema_validator().iter_errors(t))) == 4


def test_a_non_zero_backoff_limit_is_refused_saying_retries_follow_max_retries() -> None:
    error = refusal(job(backoffLimit=3))
    assert error.path == "[0].spec.backoffLimit"
    assert "retries are governed by the Work's maxRetries" in error.detail
    error = refusal(job(backoffLimitPerIndex=2, completionMode="Indexed", completions=2))
    assert error.path == "[0].spec.backoffLimitPerIndex"
    assert "maxRetries" in error.detail


@pytest.mark.parametrize(
    ("change", "path", "detail"),
    [
        (
            lambda j: j["spec"].update(backoffLimit="3"),
            "[0].spec.backoffLimit",
            "expected an integer, found a string",
        ),
        (
            lambda j: j["spec"].update(parallelism=2.0),
            "[0].spec.parallelism",
            "expected an integer, found a number",
        ),
        (
            lambda j: j["spec"].update(parallelism=True),
            "[0].spec.parallelism",
            "expected an integer, found a boolean",
        ),
        (
            lambda j: pod(j)["containers"][0].update(imagePullPolicy=3),
            "[0].spec.template.spec.containers[0].imagePullPolicy",
            "expected a string, found an integer",
        ),
        (
            lambda j: pod(j)["containers"][0].update(imge="busybox"),
            "[0].spec.template.spec.containers[0].imge",
            "unknown field 'imge'",
        ),
        (
            lambda j: j["spec"].update(backofLimit=0),
            "[0].spec.backofLimit",
            "unknown field 'backofLimit'",
        ),
        (
            lambda j: j["metadata"].update(lables={}),
            "[0].metadata.lables",
            "unknown field 'lables'",
        ),
        (
            lambda j: pod(j)["containers"][0].pop("name"),
            "[0].spec.template.spec.containers[0].name",
            "required field is missing",
        ),
        (
            lambda j: pod(j)["containers"][0].pop("image"),
            "[0].spec.template.spec.containers[0].image",
            "required field is missing",
        ),
        (
            lambda j: pod(j)["containers"][0].update(name="Main"),
            "[0].spec.template.spec.containers[0].name",
            "is not a DNS-1123 label",
        ),
        (
            lambda j: pod(j).update(initContainers=[{"name": "main", "image": "x"}]),
            "[0].spec.template.spec.containers[0].name",
            "duplicate container name 'main'",
        ),
        (
            lambda j: pod(j)["containers"][0].update(image=""),
            "[0].spec.template.spec.containers[0].image",
            "must not be empty",
        ),
        (
            lambda j: pod(j).update(initContainers=[{"name": "init"}]),
            "[0].spec.template.spec.initContainers[0].image",
            "required field is missing",
        ),
        (
            lambda j: pod(j).update(containers=[]),
            "[0].spec.template.spec.containers",
            "needs at least one container",
        ),
        (
            lambda j: pod(j).update(restartPolicy="Always"),
            "[0].spec.template.spec.restartPolicy",
            "restartPolicy Never or OnFailure, found 'Always'",
        ),
        (
            lambda j: pod(j).pop("restartPolicy"),
            "[0].spec.template.spec.restartPolicy",
            "found nothing",
        ),
        (
            lambda j: j["spec"].update(suspend=True),
            "[0].spec.suspend",
            "would never run",
        ),
        (
            lambda j: j["spec"].pop("template"),
            "[0].spec.template",
            "required field is missing",
        ),
        (
            lambda j: j.update(apiVersion="batch/v2"),
            "[0].apiVersion",
            "expected 'batch/v1'",
        ),
        (lambda j: j.update(kind="CronJob"), "[0].kind", "expected 'Job'"),
    ],
)
def test_invalid_jobs_are_refused_naming_the_field(change: Any, path: str, detail: str) -> None:
    template = job()
    change(template)
    error = refusal(template)
    assert error.path == path
    assert detail in error.detail


def test_exactly_one_job_is_required() -> None:
    with pytest.raises(SpecError, match="exactly one batch/v1 Job, found 2 objects"):
        JOB_TYPE.validate([job(), job()])


def test_validate_leaves_the_template_unchanged() -> None:
    template = job()
    before = copy.deepcopy(template)
    JOB_TYPE.validate([template])
    assert template == before


def test_errors_in_a_work_are_rebased_under_spec_template() -> None:
    template = job()
    pod(template)["containers"][0].pop("image")
    work = {
        "apiVersion": "brokkr.io/v1alpha1",
        "kind": "Work",
        "metadata": {"name": "w", "namespace": "builds"},
        "spec": {"workType": "job", "template": template},
    }
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(work, WorkTypes([JOB_TYPE]))
    assert caught.value.path == "spec.template.spec.template.spec.containers[0].image"


# --- instance_objects ------------------------------------------------------------------


def test_the_instance_job_is_named_owned_labelled_and_has_no_retries_of_its_own() -> None:
    (instance,) = JOB_TYPE.instance_objects(OWNER, [job()], 2)
    metadata = instance["metadata"]
    assert metadata["name"] == "wq-hello-1-2"
    assert metadata["namespace"] == "builds"
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "brokkr.io/v1alpha1",
            "kind": "Work",
            "name": "wq-hello-1",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert metadata["labels"] == {
        "app": "hello",
        "workqueue.dev/work-id": "w-1",
        "team": "web",
        WORK_LABEL: "wq-hello-1",
        WORK_UID_LABEL: OWNER.uid,
        INSTANCE_LABEL: "2",
    }
    assert metadata["annotations"] == {"a": "b"}
    assert instance["spec"]["backoffLimit"] == 0
    pod_labels = instance["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {
        "app": "hello",
        WORK_LABEL: "wq-hello-1",
        WORK_UID_LABEL: OWNER.uid,
        INSTANCE_LABEL: "2",
    }
    assert group_instances(OWNER.uid, [instance]) == {2: [instance]}


def test_instance_jobs_pass_the_kubernetes_schema_and_the_type_rules() -> None:
    for template in (job(), job(backoffLimit=0, completions=3, parallelism=2)):
        for index in (0, 1, 17):
            (instance,) = JOB_TYPE.instance_objects(OWNER, [template], index)
            kubernetes_validate.validate(instance, KUBERNETES_VERSION, strict=True)
            JOB_TYPE.validate([instance])


def test_instances_are_deterministic_and_distinct_per_index() -> None:
    template = job()
    first = JOB_TYPE.instance_objects(OWNER, [template], 0)
    assert first == JOB_TYPE.instance_objects(OWNER, [template], 0)
    assert template == job(), "the template is not modified"
    names = {
        JOB_TYPE.instance_objects(OWNER, [template], n)[0]["metadata"]["name"] for n in range(5)
    }
    assert len(names) == 5


def test_a_long_work_name_is_cut_with_a_hash_into_a_dns_label() -> None:
    long_a = "wq-" + "a" * 200 + ".x"
    long_b = "wq-" + "a" * 200 + ".y"
    names = set()
    for work_name in (long_a, long_b):
        owner = Owner("brokkr.io/v1alpha1", "Work", work_name, "builds", "uid-1")
        for index in (0, 100):
            (instance,) = JOB_TYPE.instance_objects(owner, [job()], index)
            name = instance["metadata"]["name"]
            assert len(name) <= 63
            assert DNS_LABEL.fullmatch(name)
            assert name.endswith(f"-{index}")
            names.add(name)
            kubernetes_validate.validate(instance, KUBERNETES_VERSION, strict=True)
            label = instance["metadata"]["labels"][WORK_LABEL]
            assert len(label) <= 63
    assert len(names) == 4


def test_a_status_and_server_fields_in_the_template_are_not_copied() -> None:
    template = job()
    template["metadata"].update(uid="x", resourceVersion="7", generateName="hello-")
    template["status"] = {"active": 1}
    (instance,) = JOB_TYPE.instance_objects(OWNER, [template], 0)
    assert "status" not in instance
    assert set(instance["metadata"]) == {
        "name",
        "namespace",
        "labels",
        "annotations",
        "ownerReferences",
    }


# --- observe ---------------------------------------------------------------------------


def types_go_constants(type_name: str) -> set[str]:
    """The string constants of ``type_name`` (or, for reasons, named ``JobReason...``)."""
    text = TYPES_GO.read_text()
    if type_name == "JobReason":
        pattern = r'^\s*JobReason\w+\s+string\s*=\s*"([^"]+)"'
    else:
        pattern = rf'^\s*\w+\s+{type_name}\s*=\s*"([^"]+)"'
    return set(re.findall(pattern, text, re.MULTILINE))


def status_with(*conditions: tuple[str, str], **counts: int) -> dict[str, Any]:
    return {
        **counts,
        "conditions": [
            {"type": kind, "status": "True", "reason": reason, "message": f"{kind} {reason}"}
            for kind, reason in conditions
        ],
    }


# Every Job condition type and reason of types.go, with the outcome it must give.
CASES: list[tuple[str, dict[str, Any], InstanceState, FailureClass | None]] = [
    ("Complete", status_with(("Complete", "CompletionsReached")), InstanceState.SUCCEEDED, None),
    (
        "SuccessCriteriaMet",
        status_with(("SuccessCriteriaMet", "SuccessPolicy")),
        InstanceState.SUCCEEDED,
        None,
    ),
    (
        "CompletionsReached",
        status_with(("SuccessCriteriaMet", "CompletionsReached")),
        InstanceState.SUCCEEDED,
        None,
    ),
    (
        "SuccessPolicy",
        status_with(("Complete", "SuccessPolicy"), ("SuccessCriteriaMet", "SuccessPolicy")),
        InstanceState.SUCCEEDED,
        None,
    ),
    (
        "Failed",
        status_with(("Failed", "BackoffLimitExceeded")),
        InstanceState.FAILED,
        FailureClass.RETRYABLE,
    ),
    (
        "BackoffLimitExceeded",
        status_with(("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")),
        InstanceState.FAILED,
        FailureClass.RETRYABLE,
    ),
    (
        "DeadlineExceeded",
        status_with(("Failed", "DeadlineExceeded")),
        InstanceState.FAILED,
        FailureClass.RETRYABLE,
    ),
    (
        "PodFailurePolicy",
        status_with(("FailureTarget", "PodFailurePolicy"), ("Failed", "PodFailurePolicy")),
        InstanceState.FAILED,
        FailureClass.PERMANENT,
    ),
    (
        "MaxFailedIndexesExceeded",
        status_with(("Failed", "MaxFailedIndexesExceeded")),
        InstanceState.FAILED,
        FailureClass.RETRYABLE,
    ),
    (
        "FailedIndexes",
        status_with(("Failed", "FailedIndexes")),
        InstanceState.FAILED,
        FailureClass.RETRYABLE,
    ),
    (
        "FailureTarget",
        status_with(("FailureTarget", "PodFailurePolicy"), active=1, terminating=1),
        InstanceState.RUNNING,
        None,
    ),
    ("Suspended", status_with(("Suspended", "JobSuspended")), InstanceState.PENDING, None),
]


def test_the_table_covers_every_condition_type_and_reason_of_types_go() -> None:
    condition_types = types_go_constants("JobConditionType")
    reasons = types_go_constants("JobReason")
    assert condition_types == {
        "Suspended",
        "Complete",
        "Failed",
        "FailureTarget",
        "SuccessCriteriaMet",
    }, "types.go parsed"
    assert len(reasons) >= 7, "types.go parsed"
    tested = {name for name, _, _, _ in CASES}
    assert condition_types | reasons <= tested
    assert set(CONDITION_STATES) == condition_types
    assert set(FAILED_REASONS) | set(SUCCEEDED_REASONS) == reasons


@pytest.mark.parametrize(
    ("name", "status", "state", "failure_class"), CASES, ids=[c[0] for c in CASES]
)
def test_each_job_condition_and_reason_reads_as_its_outcome(
    name: str, status: dict[str, Any], state: InstanceState, failure_class: FailureClass | None
) -> None:
    observed = {**JOB_TYPE.instance_objects(OWNER, [job()], 0)[0], "status": status}
    result = JOB_TYPE.observe([observed])
    assert result.state is state
    if failure_class is None:
        assert result.failure is None
    else:
        assert result.failure is not None
        assert result.failure.failure_class is failure_class
        assert result.failure.reason == (name if name != "Failed" else "BackoffLimitExceeded")
        assert result.message == result.failure.message != ""
    if state is InstanceState.SUCCEEDED:
        assert result.results == {"job": "wq-hello-1-0"}


def test_an_unknown_or_missing_failure_reason_is_retryable() -> None:
    for reason in ("SomethingNewIn140", ""):
        status = {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}
        result = JOB_TYPE.observe([{**job(), "status": status}])
        assert result.failure is not None
        assert result.failure.failure_class is FailureClass.RETRYABLE
        assert result.failure.reason == (reason or "Failed")


def test_conditions_that_are_not_true_are_ignored() -> None:
    status = {
        "conditions": [
            {"type": "Failed", "status": "False", "reason": "PodFailurePolicy"},
            {"type": "Suspended", "status": "Unknown"},
        ]
    }
    assert JOB_TYPE.observe([{**job(), "status": status}]).state is InstanceState.PENDING


def test_a_job_is_pending_until_a_pod_has_run() -> None:
    fresh = JOB_TYPE.instance_objects(OWNER, [job()], 0)[0]
    pending = JOB_TYPE.observe([fresh])
    assert (pending.state, pending.reason) == (InstanceState.PENDING, "JobPending")
    pulling = JOB_TYPE.observe([{**fresh, "status": {"active": 1, "ready": 0}}])
    assert pulling == pending, "a pod stuck on its image pull is no progress"
    for counts in ({"active": 1, "ready": 1}, {"failed": 1}, {"succeeded": 1}):
        running = JOB_TYPE.observe([{**fresh, "status": counts}])
        assert (running.state, running.reason) == (InstanceState.RUNNING, "JobRunning")


def test_no_job_reads_as_not_found() -> None:
    missing = JOB_TYPE.observe([])
    assert (missing.state, missing.reason) == (InstanceState.PENDING, "JobNotFound")


# --- finish time -----------------------------------------------------------------------

T = datetime(2030, 1, 1, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def timed(kind: str, reason: str, minutes: int | None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True", "reason": reason}
    if minutes is not None:
        condition["lastTransitionTime"] = at(minutes)
    return condition


def observed_with(*conditions: dict[str, Any], **status: Any) -> InstanceStatus:
    fresh = JOB_TYPE.instance_objects(OWNER, [job()], 0)[0]
    return JOB_TYPE.observe([{**fresh, "status": {**status, "conditions": list(conditions)}}])


def test_a_failed_job_finished_when_failed_became_true_not_at_failure_target() -> None:
    # The real controller: FailureTarget when it decides, Failed once the pods are gone.
    for reason in FAILED_REASONS:
        result = observed_with(
            timed("FailureTarget", reason, 1), timed("Failed", reason, 3), failed=1
        )
        assert result.state is InstanceState.FAILED
        assert result.finished_at == T + timedelta(minutes=3)
    # The condition order in the list does not matter.
    result = observed_with(
        timed("Failed", "BackoffLimitExceeded", 3),
        timed("FailureTarget", "BackoffLimitExceeded", 1),
    )
    assert result.finished_at == T + timedelta(minutes=3)


def test_a_failed_job_without_a_failed_time_has_none_not_failure_targets() -> None:
    result = observed_with(
        timed("FailureTarget", "PodFailurePolicy", 1), timed("Failed", "PodFailurePolicy", None)
    )
    assert result.state is InstanceState.FAILED
    assert result.finished_at is None


def test_a_succeeded_job_finished_when_complete_became_true() -> None:
    result = observed_with(
        timed("SuccessCriteriaMet", "CompletionsReached", 2),
        timed("Complete", "CompletionsReached", 4),
        completionTime=at(5),
        succeeded=1,
    )
    assert (result.state, result.finished_at) == (InstanceState.SUCCEEDED, T + timedelta(minutes=4))
    # Success is read from SuccessCriteriaMet before Complete is there: its time then.
    early = observed_with(timed("SuccessCriteriaMet", "SuccessPolicy", 2), succeeded=1)
    assert (early.state, early.finished_at) == (InstanceState.SUCCEEDED, T + timedelta(minutes=2))


def test_a_success_without_a_condition_time_falls_back_to_the_completion_time() -> None:
    result = observed_with(timed("Complete", "CompletionsReached", None), completionTime=at(5))
    assert result.finished_at == T + timedelta(minutes=5)
    assert observed_with(timed("Complete", "CompletionsReached", None)).finished_at is None
    # completionTime is written on success only: a failure never reads it.
    failed = observed_with(timed("Failed", "DeadlineExceeded", None), completionTime=at(5))
    assert failed.finished_at is None


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2030-01-01", "2030-01-01T00:00:00", 1893456000, None, ["x"]]
)
def test_a_transition_time_that_is_not_an_aware_time_gives_none(value: object) -> None:
    condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    condition["lastTransitionTime"] = value  # type: ignore[assignment]
    result = observed_with(condition)
    assert result.state is InstanceState.FAILED
    assert result.finished_at is None


def test_a_transition_time_with_an_offset_or_fraction_is_read_exactly() -> None:
    condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    condition["lastTransitionTime"] = "2030-01-01T02:00:00.250000+02:00"
    result = observed_with(condition)
    assert result.finished_at == T + timedelta(milliseconds=250)
    assert result.finished_at is not None and result.finished_at.utcoffset() == timedelta(hours=2)


def test_a_job_that_has_not_finished_has_no_finish_time() -> None:
    for conditions in (
        [timed("FailureTarget", "PodFailurePolicy", 1)],
        [timed("Suspended", "JobSuspended", 1)],
        [timed("Failed", "BackoffLimitExceeded", 1) | {"status": "False"}],
        [],
    ):
        result = observed_with(*conditions, active=1, ready=1)
        assert result.state in (InstanceState.RUNNING, InstanceState.PENDING)
        assert result.finished_at is None
    assert JOB_TYPE.observe([]).finished_at is None


def test_only_a_finished_instance_has_a_finish_time_and_it_is_aware() -> None:
    with pytest.raises(ValueError, match="finished instance"):
        InstanceStatus(InstanceState.RUNNING, finished_at=T)
    with pytest.raises(ValueError, match="timezone-aware"):
        InstanceStatus(InstanceState.SUCCEEDED, finished_at=datetime(2030, 1, 1))
    east = T.astimezone(timezone(timedelta(hours=3)))
    assert InstanceStatus(InstanceState.SUCCEEDED, finished_at=east).finished_at == T


# --- stop ------------------------------------------------------------------------------


def test_stop_deletes_the_job_in_the_background() -> None:
    instance = JOB_TYPE.instance_objects(OWNER, [job()], 1)[0]
    assert JOB_TYPE.stop([instance]) == [StopStep(JOB, "wq-hello-1-1", None, "Background")]
    listed = {key: value for key, value in instance.items() if key not in ("kind", "apiVersion")}
    assert JOB_TYPE.stop([listed]) == [StopStep(JOB, "wq-hello-1-1", None, "Background")]
    assert JOB_TYPE.stop([]) == []


def test_the_work_type_names_itself_and_its_kind() -> None:
    assert JOB_TYPE.name == "job"
    assert list(JOB_TYPE.kinds) == [JOB]
    assert (JOB.api_version, JOB.plural, JOB.namespaced) == ("batch/v1", "jobs", True)
