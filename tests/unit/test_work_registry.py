"""The ``WorkTypes`` registry and ``validate_spec``: generic checks for every template, a
registered work type's own checks on top, other work types' specs left opaque."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest
from work_examples import JOB, wrap

from workqueue_core.domain.errors import SpecError
from workqueue_core.ports.cluster import ResourceKind
from workqueue_core.ports.work_type import InstanceStatus, Owner, StopStep, WorkType
from workqueue_core.work.registry import NO_WORK_TYPES, WorkTypes
from workqueue_core.work.resource import WorkResource, work_resource_for
from workqueue_core.work.safe_yaml import dump_yaml
from workqueue_core.work.specs import spec_validator, validate_spec

CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}


@attrs.frozen
class NoConfigMaps:
    """A work type of the tests: it refuses ConfigMaps (and runs nothing)."""

    name: str = "backup"

    @property
    def kinds(self) -> Sequence[ResourceKind]:
        return (ResourceKind("", "v1", "configmaps", "ConfigMap"),)

    def validate(self, templates: Sequence[Mapping[str, Any]]) -> None:
        for i, template in enumerate(templates):
            if template["kind"] == "ConfigMap":
                raise SpecError("backups do not take ConfigMaps", f"[{i}].kind")

    def instance_objects(
        self, owner: Owner, templates: Sequence[Mapping[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        return []

    def observe(self, objects: Sequence[Mapping[str, Any]]) -> InstanceStatus:
        raise NotImplementedError

    def stop(self, objects: Sequence[Mapping[str, Any]]) -> list[StopStep]:
        return []


def test_a_test_work_type_satisfies_the_port() -> None:
    work_type: WorkType = NoConfigMaps()
    assert work_type.name == "backup"


def test_registry_is_extended_without_changing_the_original() -> None:
    backups = NO_WORK_TYPES.with_work_type(NoConfigMaps())
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(wrap(CONFIG_MAP, work_type="backup"), backups)
    assert caught.value.path == "spec.template.kind"
    assert WorkResource.from_mapping(wrap(CONFIG_MAP, work_type="backup")).spec.work_type == (
        "backup"
    )
    assert backups.names == {"backup"} and "backup" in backups and len(backups) == 1
    assert NO_WORK_TYPES.names == frozenset() and "backup" not in NO_WORK_TYPES
    assert list(backups) == [NoConfigMaps()]
    assert backups.get("backup") == NoConfigMaps() and backups.get("build") is None


def test_with_work_type_replaces_one_of_the_same_name() -> None:
    first = WorkTypes([NoConfigMaps(), NoConfigMaps(name="other")])
    replaced = first.with_work_type(NoConfigMaps())
    assert replaced.names == {"backup", "other"}
    assert replaced == first


def test_registry_is_read_only_and_checks_names() -> None:
    registry = WorkTypes([NoConfigMaps()])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        registry._by_name = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        registry._by_name["x"] = NoConfigMaps()  # type: ignore[index]
    with pytest.raises(SpecError):
        WorkTypes([NoConfigMaps(name="Not A Type")])
    with pytest.raises(ValueError, match="registered twice"):
        WorkTypes([NoConfigMaps(), NoConfigMaps()])


def test_an_empty_registry_checks_generically() -> None:
    work = WorkResource.from_mapping(wrap({**JOB, "spec": {}}, work_type="job"), NO_WORK_TYPES)
    assert work.spec.work_type == "job"
    with pytest.raises(SpecError) as caught:
        WorkResource.from_mapping(wrap({"kind": "ConfigMap"}, work_type="backup"))
    assert caught.value.path == "spec.template.apiVersion"
    with pytest.raises(SpecError) as caught:
        NO_WORK_TYPES.validate("backup", [])
    assert caught.value.path == ""


def test_work_resource_for_runs_the_work_types_checks() -> None:
    arguments: dict[str, Any] = {
        "name": "backup-1",
        "namespace": None,
        "max_retries": 0,
        "claim_timeout": 60,
        "work_id": "item-1",
        "attempt": 0,
    }
    assert work_resource_for("backup", CONFIG_MAP, **arguments).spec.work_type == "backup"
    with pytest.raises(SpecError) as caught:
        work_resource_for("backup", CONFIG_MAP, work_types=WorkTypes([NoConfigMaps()]), **arguments)
    assert caught.value.path == "spec.template.kind"


def test_validate_spec_checks_registered_work_types_only() -> None:
    registry = WorkTypes([NoConfigMaps()])
    validate_spec("other", "{{ not yaml", registry)
    validate_spec("backup", "{{ not yaml")  # not registered in the default registry
    with pytest.raises(SpecError):
        validate_spec("backup", "{{ not yaml", registry)
    with pytest.raises(SpecError) as caught:
        validate_spec("backup", dump_yaml(wrap(CONFIG_MAP, work_type="backup")), registry)
    assert caught.value.path == "spec.template.kind"
    secret = {**CONFIG_MAP, "kind": "Secret"}
    validate_spec("backup", dump_yaml(wrap(secret, work_type="backup")), registry)
    with pytest.raises(SpecError, match="submitted as 'backup'") as caught:
        validate_spec("backup", dump_yaml(wrap(secret, work_type="restore")), registry)
    assert caught.value.path == "spec.workType"


def test_spec_validator_binds_a_registry() -> None:
    check = spec_validator(WorkTypes([NoConfigMaps()]))
    check("other", "anything")
    with pytest.raises(SpecError) as caught:
        check("backup", dump_yaml(wrap(CONFIG_MAP, work_type="backup")))
    assert caught.value.path == "spec.template.kind"
