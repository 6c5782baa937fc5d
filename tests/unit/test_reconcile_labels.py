"""Instance names, labels and grouping (``workqueue_core.work.reconcile_labels``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_core.ports.work_type import Owner
from workqueue_core.work.k8s_shapes import DNS_LABEL, DNS_SUBDOMAIN, QUALIFIED_NAME_PART
from workqueue_core.work.reconcile_labels import (
    INSTANCE_LABEL,
    WORK_LABEL,
    WORK_UID_LABEL,
    controller_uid,
    group_instances,
    instance_index,
    instance_labels,
    instance_name,
    shorten,
)

UID = "uid-1"


def obj(index: str | None, uid: str | None = UID, controller: bool = True) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"x-{index}"}
    if index is not None:
        metadata["labels"] = {INSTANCE_LABEL: index}
    if uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u-9"},
            {
                "apiVersion": "brokkr.io/v1alpha1",
                "kind": "Work",
                "name": "w",
                "uid": uid,
                "controller": controller,
            },
        ]
    return {"kind": "Job", "metadata": metadata}


def test_a_short_name_is_the_work_name_and_the_index() -> None:
    assert instance_name("wq-hello-1", 0) == "wq-hello-1-0"
    assert instance_name("wq-hello-1", 12) == "wq-hello-1-12"


def test_a_name_that_exactly_fits_is_kept() -> None:
    name = "a" * 61
    assert instance_name(name, 0) == name + "-0"
    assert len(instance_name(name, 10)) == 63
    assert instance_name(name, 10) != name + "-10"


def test_dots_become_dashes_with_a_hash_so_names_do_not_collide() -> None:
    dotted, dashed = instance_name("a.b", 0), instance_name("a-b", 0)
    assert DNS_LABEL.fullmatch(dotted)
    assert dashed == "a-b-0"
    assert dotted != dashed


def test_a_negative_index_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        instance_name("w", -1)


@settings(max_examples=300)
@given(
    name=st.from_regex(DNS_SUBDOMAIN, fullmatch=True).filter(lambda n: len(n) <= 253),
    index=st.integers(0, 1000),
)
def test_every_work_name_gives_a_dns_label_of_at_most_63(name: str, index: int) -> None:
    result = instance_name(name, index)
    assert len(result) <= 63
    assert DNS_LABEL.fullmatch(result)
    assert result.endswith(f"-{index}")
    label = shorten(name)
    assert len(label) <= 63 and QUALIFIED_NAME_PART.fullmatch(label)


def test_long_names_sharing_a_prefix_differ() -> None:
    a, b = "w" * 100 + "a", "w" * 100 + "b"
    assert instance_name(a, 0) != instance_name(b, 0)
    assert shorten(a) != shorten(b)
    assert len(shorten(a)) == 63


def test_instance_labels_add_the_work_and_the_index_to_the_work_labels() -> None:
    owner = Owner("brokkr.io/v1alpha1", "Work", "w", "ns", UID, {"team": "web"})
    assert instance_labels(owner, 3) == {
        "team": "web",
        WORK_LABEL: "w",
        WORK_UID_LABEL: UID,
        INSTANCE_LABEL: "3",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("17", 17),
        ("017", None),
        ("-1", None),
        ("x", None),
        ("", None),
        ("١", None),
        (None, None),
    ],
)
def test_the_instance_label_is_read_strictly(value: str | None, expected: int | None) -> None:
    assert instance_index(obj(value)) == expected


def test_grouping_keeps_objects_the_work_controls_by_index() -> None:
    objects = [
        obj("0"),
        obj("1"),
        obj("1", uid="another-work"),
        obj("2", controller=False),
        obj("3", uid=None),
        obj(None),
        obj("1"),
    ]
    grouped = group_instances(UID, objects)
    assert grouped == {0: [objects[0]], 1: [objects[1], objects[6]]}
    assert controller_uid(objects[2]) == "another-work"
    assert controller_uid(objects[3]) is None
    assert controller_uid({"metadata": "odd"}) is None
