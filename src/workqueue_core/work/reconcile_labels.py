"""How a Work's instance objects are named and labelled, and how the controller finds them.

Every object of instance *n* of a Work carries, besides the Work's own labels:

* ``workqueue.dev/work``: the Work's name (shortened with a hash when over 63 characters,
  like ``instance_name``), for people and ``kubectl get jobs -l``;
* ``workqueue.dev/work-uid``: the Work's ``metadata.uid``, exact and unique: the
  controller's informers select on this key's existence (``workqueue.dev/work-uid``);
* ``workqueue.dev/instance``: *n* in decimal.

Its controller ``ownerReference`` (``controller: true``) names the Work's uid; that, not a
label, decides which Work an object belongs to (``group_instances``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from workqueue_core.ports.work_type import Owner

__all__ = [
    "INSTANCE_LABEL",
    "MAX_NAME_LENGTH",
    "WORK_LABEL",
    "WORK_UID_LABEL",
    "controller_uid",
    "group_instances",
    "instance_index",
    "instance_labels",
    "instance_metadata",
    "instance_name",
    "shorten",
]

WORK_LABEL: Final = "workqueue.dev/work"
WORK_UID_LABEL: Final = "workqueue.dev/work-uid"
INSTANCE_LABEL: Final = "workqueue.dev/instance"

MAX_NAME_LENGTH: Final = 63
"""Instance object names are DNS-1123 labels: a Job's name becomes its pods' label value."""

_HASH_LENGTH: Final = 8


def shorten(text: str, limit: int = MAX_NAME_LENGTH) -> str:
    """``text`` if it fits in ``limit`` characters, else a prefix, '-' and 8 hex digits of
    its SHA-256: different long texts stay different, and the result ends alphanumeric."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]
    prefix = text[: limit - _HASH_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def instance_name(work_name: str, index: int, limit: int = MAX_NAME_LENGTH) -> str:
    """The name of instance ``index`` of a Work: ``<work name>-<index>``, at most ``limit``
    characters and a DNS-1123 label (dots become dashes; a long Work name is cut and
    followed by a hash of the whole name, so two long names sharing a prefix differ)."""
    if index < 0:
        raise ValueError(f"an instance index is >= 0, got {index}")
    suffix = f"-{index}"
    base = work_name.replace(".", "-")
    room = limit - len(suffix)
    if len(base) > room or base != work_name:
        digest = hashlib.sha256(work_name.encode()).hexdigest()[:_HASH_LENGTH]
        base = f"{base[: room - _HASH_LENGTH - 1].rstrip('-')}-{digest}"
    return f"{base}{suffix}"


def instance_labels(owner: Owner, index: int) -> dict[str, str]:
    """The labels of every object of instance ``index``: the Work's, then the three above."""
    return {
        **owner.labels,
        WORK_LABEL: shorten(owner.name),
        WORK_UID_LABEL: owner.uid,
        INSTANCE_LABEL: str(index),
    }


def instance_metadata(
    owner: Owner, index: int, template_metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``metadata`` of an object of instance ``index``: its name, the Work's namespace,
    the template's labels then ``instance_labels``, the template's annotations, and a
    controller ``ownerReference`` to the Work (so deleting the Work deletes it)."""
    labels = template_metadata.get("labels")
    metadata: dict[str, Any] = {
        "name": instance_name(owner.name, index),
        "namespace": owner.namespace,
        "labels": {
            **(labels if isinstance(labels, Mapping) else {}),
            **instance_labels(owner, index),
        },
        "ownerReferences": [
            {
                "apiVersion": owner.api_version,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    annotations = template_metadata.get("annotations")
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def instance_index(obj: Mapping[str, Any]) -> int | None:
    """The instance index an object's ``workqueue.dev/instance`` label records, if valid."""
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    value = labels.get(INSTANCE_LABEL) if isinstance(labels, Mapping) else None
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    if len(value) > 1 and value.startswith("0"):
        return None
    return int(value)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid in the object's controller ``ownerReference``, if it has one."""
    metadata = obj.get("metadata")
    references = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(references, list):
        return None
    for reference in references:
        if isinstance(reference, Mapping) and reference.get("controller") is True:
            uid = reference.get("uid")
            return uid if isinstance(uid, str) else None
    return None


def group_instances(
    work_uid: str, objects: Iterable[Mapping[str, Any]]
) -> dict[int, list[Mapping[str, Any]]]:
    """The objects controlled by the Work ``work_uid``, by instance index (what ``reconcile``
    takes); objects of other owners or without a valid index label are left out."""
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for obj in objects:
        index = instance_index(obj)
        if index is not None and controller_uid(obj) == work_uid:
            grouped.setdefault(index, []).append(obj)
    return grouped
