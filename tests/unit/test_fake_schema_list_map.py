"""The fake API server's CRD schema: a list-map whose key is no scalar is an error, not a crash.

Found by ``test_work_crd_agreement`` (a Work condition with ``type: []``): the duplicate
check hashed the key and raised TypeError inside the fake.
"""

from __future__ import annotations

from pathlib import Path

from support.kube.schema import CrdSchema, load_crd

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "work.yaml"
SCHEMA = CrdSchema.from_crd(load_crd(CRD), "v1alpha1")


def work_with_conditions(conditions: list[object]) -> dict[str, object]:
    return {
        "apiVersion": "brokkr.io/v1alpha1",
        "kind": "Work",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "workType": "job",
            "template": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}},
        },
        "status": {"phase": "Running", "conditions": conditions},
    }


def test_a_non_scalar_list_map_key_is_refused_by_its_type() -> None:
    causes = SCHEMA.errors(work_with_conditions([{"type": []}, {"type": []}]))
    assert any(c.field.startswith("status.conditions[0].type") for c in causes), causes


def test_duplicate_scalar_keys_are_still_refused() -> None:
    condition = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    causes = SCHEMA.errors(work_with_conditions([condition, dict(condition)]))
    assert any(c.reason == "FieldValueDuplicate" for c in causes), causes
