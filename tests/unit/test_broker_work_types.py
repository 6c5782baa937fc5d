"""The broker's work types (``workqueue_broker.work_types``): ``build`` and ``job`` both
registered, so a Work of either is checked by its adapter at submit.

The ``job`` cases are the ones the core's hand-written Job checks refused before the
``job`` work type moved to ``workqueue_kubernetes``: refused the same way, at the same path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from work_examples import JOB, T, build_and_run, delete_at, job_work, set_at

from workqueue_broker.work_types import broker_spec_validator, broker_work_types
from workqueue_core.domain.errors import SpecError
from workqueue_core.work.resource import WorkResource, work_resource_for
from workqueue_core.work.safe_yaml import dump_yaml

WORK_TYPES = broker_work_types()


def test_the_broker_knows_build_and_job() -> None:
    assert WORK_TYPES.names == {"build", "job"}


def test_job_template_validates_and_round_trips() -> None:
    work = WorkResource.from_mapping(job_work(), WORK_TYPES)
    assert work.spec.work_type == "job"
    assert work.spec.templates == (JOB,)
    assert WorkResource.from_mapping(work.to_mapping(), WORK_TYPES) == work
    assert WorkResource.from_yaml(work.to_yaml(), work_types=WORK_TYPES) == work


POD = (*T, "spec", "template", "spec")
JOB_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "job without containers",
        delete_at(*POD, "containers"),
        "spec.template.spec.template.spec.containers",
    ),
    (
        "job with no containers",
        set_at((*POD, "containers"), []),
        "spec.template.spec.template.spec.containers",
    ),
    (
        "container without image",
        delete_at(*POD, "containers", 0, "image"),
        "spec.template.spec.template.spec.containers[0].image",
    ),
    (
        "container image not a string",
        set_at((*POD, "containers", 0, "image"), 3),
        "spec.template.spec.template.spec.containers[0].image",
    ),
    (
        "container without name",
        delete_at(*POD, "containers", 0, "name"),
        "spec.template.spec.template.spec.containers[0].name",
    ),
    (
        "container name invalid",
        set_at((*POD, "containers", 0, "name"), "Backup"),
        "spec.template.spec.template.spec.containers[0].name",
    ),
    (
        "container not a mapping",
        set_at((*POD, "containers"), ["backup"]),
        "spec.template.spec.template.spec.containers[0]",
    ),
    (
        "restartPolicy Always",
        set_at((*POD, "restartPolicy"), "Always"),
        "spec.template.spec.template.spec.restartPolicy",
    ),
    ("no pod template", delete_at(*T, "spec", "template"), "spec.template.spec.template"),
    (
        "job of another apiVersion",
        set_at((*T, "apiVersion"), "batch/v1beta1"),
        "spec.template.apiVersion",
    ),
    ("job of another kind", set_at((*T, "kind"), "CronJob"), "spec.template.kind"),
    (
        "two jobs",
        set_at(T, [copy.deepcopy(JOB), {**copy.deepcopy(JOB), "metadata": {"name": "x"}}]),
        "spec.template",
    ),
]


NOT_YET: dict[str, pytest.MarkDecorator] = {}


@pytest.mark.parametrize(
    ("mutate", "path"),
    [pytest.param(m, p, id=name, marks=NOT_YET.get(name, ())) for name, m, p in JOB_CASES],
)
def test_invalid_job_variants(mutate: Callable[[dict[str, Any]], None], path: str) -> None:
    data = job_work()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(data, WORK_TYPES)
    assert caught.value.path == path, caught.value


def test_work_resource_for_a_job_of_another_kind_names_the_kind() -> None:
    with pytest.raises(SpecError) as caught:
        work_resource_for(
            "job",
            {**JOB, "kind": "CronJob"},
            name="job-1",
            namespace=None,
            max_retries=0,
            claim_timeout=60,
            work_id="item-1",
            attempt=3,
            work_types=WORK_TYPES,
        )
    assert caught.value.path == "spec.template.kind", caught.value


def test_the_broker_validator_checks_both_work_types() -> None:
    check = broker_spec_validator()
    check("build", dump_yaml(build_and_run()))
    check("job", dump_yaml(job_work()))
    check("backup", "opaque text")
    with pytest.raises(SpecError) as caught:
        check("job", dump_yaml(build_and_run()))
    assert caught.value.path == "spec.workType"
    broken = job_work()
    del broken["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(SpecError) as caught:
        check("job", dump_yaml(broken))
    assert caught.value.path == "spec.template.spec.template.spec.containers[0].image"
    assert copy.deepcopy(broken) == broken
