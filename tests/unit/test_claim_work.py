"""The Work an agent creates for a claimed item: name, labels, annotations, maxRetries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from work_examples import job_work

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.models import (
    ClaimToken,
    ExecutionRecord,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.claim_work import (
    AGENT_ID_LABEL,
    CLAIM_TOKEN_ANNOTATION,
    CORRELATION_ID_ANNOTATION,
    WORK_ID_LABEL,
    agent_selector,
    claim_held,
    claim_token_of,
    claim_work,
    format_claim_token,
    local_retry_budget,
    work_name,
)
from workqueue_core.work.k8s_shapes import check_dns_subdomain
from workqueue_core.work.reconcile_labels import instance_name
from workqueue_core.work.reconcile_policy import RETRY_POLICY_ANNOTATION, retry_policy_for
from workqueue_core.work.resource import MAX_MAX_RETRIES, WorkResource

AGENT = UUID("11111111-2222-4333-8444-555555555555")
WORK_ID = UUID("01a23d74-fefb-7abd-8e67-20b4658eea90")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def claimed(
    *,
    work_id: UUID = WORK_ID,
    attempt: int = 1,
    max_retries: int = 3,
    executions: int = 1,
    spec: dict[str, Any] | None = None,
    correlation_id: str | None = "corr-7",
) -> WorkItem:
    return WorkItem(
        id=work_id,
        work_type="job",
        spec=yaml.safe_dump(spec or job_work()),
        targeting=Targeting.agents(AGENT),
        created_at=T0,
        retry_policy=RetryPolicy(max_retries=max_retries, base_delay=timedelta(seconds=7)),
        correlation_id=correlation_id,
        status=WorkStatus.CLAIMED,
        attempt=attempt,
        executions=executions,
        claimed_by=AGENT,
        claimed_at=T0,
        lease_expires_at=T0 + timedelta(hours=1),
    )


def test_the_work_carries_the_claim() -> None:
    item = claimed()
    work = claim_work(item, AGENT, "builds")
    metadata = work.metadata
    assert metadata.name == f"wq-{item.id}-1"
    assert metadata.namespace == "builds"
    assert metadata.labels[WORK_ID_LABEL] == str(item.id)
    assert metadata.labels[AGENT_ID_LABEL] == str(AGENT)
    assert metadata.annotations[CLAIM_TOKEN_ANNOTATION] == f"{item.id}/1"
    assert metadata.annotations[CORRELATION_ID_ANNOTATION] == "corr-7"
    policy = retry_policy_for(metadata.annotations, RetryPolicy())
    assert policy.base_delay == timedelta(seconds=7)  # the item's backoff, not the default
    assert (work.spec.work_id, work.spec.attempt) == (str(item.id), 1)
    assert work.spec.max_retries == 3  # the whole remaining budget
    submitted = WorkResource.from_mapping(job_work())
    assert work.spec.templates == submitted.spec.templates
    assert work.spec.work_type == "job"
    # what the API server receives parses back to the same Work
    assert WorkResource.from_mapping(work.to_mapping()) == work


def test_the_submitted_labels_and_annotations_stay_and_ours_win() -> None:
    spec = job_work()
    spec["metadata"]["labels"] = {"team": "ops", WORK_ID_LABEL: "forged"}
    spec["metadata"]["annotations"] = {
        "note": "kept",
        CLAIM_TOKEN_ANNOTATION: "forged",
        CORRELATION_ID_ANNOTATION: "forged",
        RETRY_POLICY_ANNOTATION: json.dumps({"baseDelaySeconds": 1}),
    }
    item = claimed(spec=spec, correlation_id=None)
    work = claim_work(item, AGENT, "default")
    assert work.metadata.labels["team"] == "ops"
    assert work.metadata.labels[WORK_ID_LABEL] == str(item.id)
    assert work.metadata.annotations["note"] == "kept"
    assert work.metadata.annotations[CLAIM_TOKEN_ANNOTATION] == f"{item.id}/1"
    assert CORRELATION_ID_ANNOTATION not in work.metadata.annotations
    policy = retry_policy_for(work.metadata.annotations, RetryPolicy())
    assert policy.base_delay == timedelta(seconds=7)


def test_a_spec_that_is_no_work_is_refused() -> None:
    item = attrs.evolve(claimed(), spec="echo hello")
    with pytest.raises(SpecError):
        claim_work(item, AGENT, "default")


@settings(max_examples=300, deadline=None)
@given(
    st.uuids(),
    st.integers(1, 10**6),
    st.integers(0, 200),
    st.integers(0, 200),
    st.one_of(st.none(), st.integers(0, 300)),
)
def test_max_retries_is_the_limit_or_the_remaining_budget(
    work_id: UUID, attempt: int, max_retries: int, used: int, limit: int | None
) -> None:
    executions = min(used, max_retries) + 1  # this claim is charged
    item = claimed(work_id=work_id, attempt=attempt, max_retries=max_retries, executions=executions)
    remaining = max_retries + 1 - executions
    budget = local_retry_budget(limit, item)
    expected = remaining if limit is None else min(limit, remaining)
    assert budget == min(expected, MAX_MAX_RETRIES)
    if limit == 0:
        assert budget == 0
    if max_retries <= MAX_MAX_RETRIES:
        work = claim_work(item, AGENT, "default", local_retry_limit=limit)
        assert work.spec.max_retries == budget
        # the Work's runs never exceed what the broker's budget allows
        assert executions + work.spec.max_retries <= max_retries + 1


@settings(max_examples=300, deadline=None)
@given(st.uuids(), st.integers(0, 10**12), st.uuids(), st.integers(0, 10**12))
def test_names_are_deterministic_valid_and_distinct(a: UUID, n: int, b: UUID, m: int) -> None:
    name = work_name(a, n)
    assert name == work_name(a, n)
    check_dns_subdomain(name, "metadata.name")
    # a Job of the Work keeps the whole name (no hash): readable with kubectl
    assert instance_name(name, 0).startswith(name)
    if (a, n) != (b, m):
        assert work_name(b, m) != name


@settings(max_examples=300, deadline=None)
@given(st.uuids(), st.integers(0, 10**12))
def test_the_claim_token_round_trips(work_id: UUID, attempt: int) -> None:
    token = ClaimToken(work_id, attempt)
    annotations = {CLAIM_TOKEN_ANNOTATION: format_claim_token(token)}
    assert claim_token_of(annotations) == token


@pytest.mark.parametrize(
    "text", ["", "x", "not-a-uuid/1", f"{AGENT}", f"{AGENT}/", f"{AGENT}/-1", f"{AGENT}/1x"]
)
def test_a_malformed_claim_token_is_none(text: str) -> None:
    assert claim_token_of({CLAIM_TOKEN_ANNOTATION: text}) is None
    assert claim_token_of({}) is None


def test_a_claim_is_held_only_while_claimed_by_the_agent_at_that_attempt() -> None:
    item = claimed(attempt=2)
    token = item.token
    assert claim_held(item, token, AGENT)
    assert not claim_held(item, ClaimToken(item.id, 1), AGENT)  # re-claimed since
    assert not claim_held(item, token, UUID(int=5))
    assert not claim_held(attrs.evolve(item, status=WorkStatus.PENDING), token, AGENT)
    record = ExecutionRecord(
        attrs.evolve(item, status=WorkStatus.CANCELED), finished_at=T0, finished_by="admin"
    )
    assert not claim_held(record, token, AGENT)
    assert not claim_held(None, token, AGENT)


def test_the_agent_selector_selects_the_label() -> None:
    assert agent_selector(AGENT) == f"{AGENT_ID_LABEL}={AGENT}"
