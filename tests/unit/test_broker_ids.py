"""The broker's ids for new work: UUID version 7, ordered by the millisecond they were made."""

from __future__ import annotations

import uuid

import pytest

from workqueue_broker import ids


def test_ids_are_version_7_of_the_rfc_variant_and_distinct() -> None:
    made = [ids.uuid7() for _ in range(1000)]
    assert {u.version for u in made} == {7}
    assert {u.variant for u in made} == {uuid.RFC_4122}
    assert len(set(made)) == len(made)


def test_ids_made_in_a_later_millisecond_sort_after(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_764_700_000_000 * 1_000_000]  # 2025-12-02, in nanoseconds
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    made = []
    for _ in range(200):
        made.append(ids.uuid7())
        now[0] += 1_000_000  # one millisecond
    assert made == sorted(made)
    assert made[0].int >> 80 == 1_764_700_000_000  # the first 48 bits are the milliseconds
