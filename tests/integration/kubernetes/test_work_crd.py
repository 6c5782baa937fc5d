"""deploy/crds/work.yaml: a valid, structural CRD whose schema agrees with the Work parser."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from support.kube import KUBERNETES_VERSION, WORK_CRD, CrdSchema, load_crd
from workqueue_core.domain.errors import SpecError
from workqueue_core.work.resource import WorkResource

SAMPLES = sorted((WORK_CRD.parents[1] / "samples").glob("work-*.yaml"))
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable")


def crd() -> dict[str, Any]:
    return load_crd(WORK_CRD)


def schema() -> dict[str, Any]:
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == "v1alpha1")
    return dict(version["schema"]["openAPIV3Schema"])


def nodes(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), Mapping):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def structural_violations(root: Mapping[str, Any]) -> list[str]:
    """The rules of a structural schema (apiextensions.k8s.io/v1) this CRD could break."""
    problems = []
    for path, node in nodes(root):
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        if not node.get("type") and not untyped_ok:
            problems.append(f"{path or '<root>'}: no type")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        for junctor in JUNCTORS:
            for sub in node.get(junctor, ()) if junctor != "not" else [node.get("not", {})]:
                for key in FORBIDDEN_IN_JUNCTORS:
                    if key in (sub or {}):
                        problems.append(f"{path}.{junctor}: {key} inside a junctor")
    metadata = (root.get("properties") or {}).get("metadata") or {}
    if set(metadata.get("properties") or {}) - {"name", "generateName"}:
        problems.append("metadata: only name and generateName may be restricted")
    return problems


def test_the_crd_is_a_valid_apiextensions_v1_object() -> None:
    document = crd()
    assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert document["metadata"]["name"] == "works.brokkr.io"
    spec = document["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        "brokkr.io",
        "Namespaced",
        "Work",
    )
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Work Type": ".spec.workType",
        "Retries": ".status.retries",
        "Age": ".metadata.creationTimestamp",
    }


def test_the_schema_is_structural() -> None:
    assert structural_violations(schema()) == []


def test_the_structural_check_catches_violations() -> None:
    broken = copy.deepcopy(schema())
    broken["properties"]["spec"]["properties"]["workType"].pop("type")
    broken["properties"]["status"]["additionalProperties"] = False
    broken["properties"]["spec"]["anyOf"] = [{"type": "object"}]
    assert len(structural_violations(broken)) == 3


def test_unknown_fields_are_preserved_only_in_templates() -> None:
    preserved = [
        path for path, node in nodes(schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserved == [".spec.template"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_samples_validate_against_the_schema_and_parse(sample: Path) -> None:
    document = yaml.safe_load(sample.read_text())
    jsonschema.Draft202012Validator(schema()).validate(document)
    crd_schema = CrdSchema.from_crd(crd(), "v1alpha1")
    pruned = copy.deepcopy(document)
    assert crd_schema.prune(pruned) == []
    assert crd_schema.errors(pruned) == []
    parsed = WorkResource.from_mapping(document)
    assert parsed.metadata.name == document["metadata"]["name"]


def test_there_are_samples_of_both_template_forms() -> None:
    forms = {type(yaml.safe_load(p.read_text())["spec"]["template"]) for p in SAMPLES}
    assert forms == {dict, list}


def _sample() -> dict[str, Any]:
    return dict(yaml.safe_load(SAMPLES[-1].read_text()))  # work-succeeded.yaml, with status


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set("spec.maxRetries", 101), "spec.maxRetries"),
        (_set("spec.maxRetries", -1), "spec.maxRetries"),
        (_set("spec.claimTimeout", 0), "spec.claimTimeout"),
        (_set("spec.claimTimeout", 604_801), "spec.claimTimeout"),
        (_set("spec.workType", "Job"), "spec.workType"),
        (_set("spec.workType", "job_"), "spec.workType"),
        (_set("spec.workType", "x" * 51), "spec.workType"),
        (_set("spec.workId", "has space"), "spec.workId"),
        (_set("spec.attempt", -1), "spec.attempt"),
        (_set("spec.template", []), "spec.template"),
        (_set("spec.template", "a string"), "spec.template"),
        (_set("spec.template", {"apiVersion": "batch/v1"}), "spec.template"),
        (_set("status.phase", "Sleeping"), "status.phase"),
        (_set("status.retries", -1), "status.retries"),
        (_set("status.startTime", "yesterday"), "status.startTime"),
        (_set("status.completionTime", "2026-02-30T10:00:00Z"), "status.completionTime"),
        (_set("status.conditions.0.status", "Maybe"), "status.conditions[0].status"),
        (_set("status.conditions.0.reason", "not camel"), "status.conditions[0].reason"),
        (_set("status.conditions.1.type", "TemplateApplied"), "status.conditions[1]"),
        (_set("status.result", {"digest": 5}), "status.result.digest"),
        (_set("metadata.name", "Upper"), "metadata.name"),
    ],
)
def test_what_the_parser_rejects_the_schema_rejects(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    document = _sample()
    change(document)
    with pytest.raises(SpecError):
        WorkResource.from_mapping(document)
    causes = CrdSchema.from_crd(crd(), "v1alpha1").errors(document)
    assert field in [cause.field for cause in causes]


def test_unknown_spec_fields_are_pruned_by_the_server() -> None:
    document = _sample()
    document["spec"]["colour"] = "blue"
    document["status"]["conditions"][0]["extra"] = 1
    with pytest.raises(SpecError):
        WorkResource.from_mapping(document)
    assert CrdSchema.from_crd(crd(), "v1alpha1").prune(document) == [
        "spec.colour",
        "status.conditions[0].extra",
    ]


def test_template_list_items_are_checked_by_the_parser_only() -> None:
    """A known narrowing (see the CRD's header): the API server's CEL rule is constant-cost."""
    document = _sample()
    document["spec"]["template"] = [{"apiVersion": "batch/v1"}]
    assert CrdSchema.from_crd(crd(), "v1alpha1").errors(document) == []
    with pytest.raises(SpecError):
        WorkResource.from_mapping(document)


def test_work_type_names_follow_the_broker_rule() -> None:
    document = _sample()
    document["spec"]["workType"] = "db.migrate_v2"
    assert CrdSchema.from_crd(crd(), "v1alpha1").errors(document) == []
    assert WorkResource.from_mapping(document).spec.work_type == "db.migrate_v2"
