"""The ``Work`` an agent creates for a claimed item (DESIGN §9), and how it maps back.

A claimed item of a Kubernetes work type carries a ``Work`` resource as its spec (checked
at submit).  The agent creates, per claim, a Work built from it:

* name ``wq-<work id>-<attempt>``: one per claim, deterministic, so a repeated create
  answers AlreadyExists and the agent adopts the Work it made before;
* labels: the submitted Work's, plus ``workqueue.dev/work-id`` and
  ``workqueue.dev/agent-id`` (an agent lists its own Works by the latter on restart);
* annotations: the submitted Work's, plus ``workqueue.dev/claim-token``
  (``<work id>/<attempt>``), ``workqueue.dev/correlation-id`` (when the item has one)
  and ``workqueue.dev/retry-policy`` (the item's backoff: it replaces any submitted);
* ``spec.maxRetries`` = ``local_retry_budget(limit, item)``: min(the agent's local-retry
  limit, the item's remaining budget at claim time), no more than the CRD allows;
  ``spec.workId`` and ``spec.attempt`` name the claim.  The submitted ``maxRetries`` is
  not used: the item's ``retry_policy`` is the one budget.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from uuid import UUID

from workqueue_core.domain.models import ClaimToken, ExecutionRecord, WorkItem, WorkStatus
from workqueue_core.work.reconcile_policy import RETRY_POLICY_ANNOTATION, format_retry_policy
from workqueue_core.work.registry import NO_WORK_TYPES, WorkTypes
from workqueue_core.work.resource import MAX_MAX_RETRIES, WorkResource, work_resource_for

__all__ = [
    "AGENT_ID_LABEL",
    "CLAIM_TOKEN_ANNOTATION",
    "CORRELATION_ID_ANNOTATION",
    "WORK_ID_LABEL",
    "agent_selector",
    "claim_held",
    "claim_token_of",
    "claim_work",
    "format_claim_token",
    "local_retry_budget",
    "work_name",
]

WORK_ID_LABEL: Final = "workqueue.dev/work-id"
AGENT_ID_LABEL: Final = "workqueue.dev/agent-id"
CLAIM_TOKEN_ANNOTATION: Final = "workqueue.dev/claim-token"
CORRELATION_ID_ANNOTATION: Final = "workqueue.dev/correlation-id"


def work_name(work_id: UUID, attempt: int) -> str:
    """The name of the Work of claim ``attempt`` of item ``work_id`` (42-50 characters)."""
    return f"wq-{work_id}-{attempt}"


def format_claim_token(token: ClaimToken) -> str:
    """The claim-token annotation's value: ``<work id>/<attempt>``."""
    return f"{token.work_id}/{token.attempt}"


def claim_token_of(annotations: Mapping[str, str]) -> ClaimToken | None:
    """The claim token a Work's annotations carry, or None when missing or malformed."""
    text = annotations.get(CLAIM_TOKEN_ANNOTATION)
    if text is None:
        return None
    work_id, sep, attempt = text.partition("/")
    if not sep or not attempt.isascii() or not attempt.isdigit():
        return None
    try:
        return ClaimToken(UUID(work_id), int(attempt))
    except ValueError:
        return None


def agent_selector(agent_id: UUID) -> str:
    """The label selector of an agent's Works."""
    return f"{AGENT_ID_LABEL}={agent_id}"


def local_retry_budget(limit: int | None, item: WorkItem) -> int:
    """``spec.maxRetries`` of a claim's Work: min(``limit``, the runs the item's budget
    has left after this one), at most ``MAX_MAX_RETRIES``.

    ``limit`` None means the whole remaining budget; 0 sends every retry back to the
    broker.  The claim itself is already charged (``item.executions`` counts it).
    """
    remaining = item.remaining_executions
    allowed = remaining if limit is None else min(max(limit, 0), remaining)
    return min(allowed, MAX_MAX_RETRIES)


def claim_work(
    item: WorkItem,
    agent_id: UUID,
    namespace: str,
    *,
    local_retry_limit: int | None = None,
    work_types: WorkTypes = NO_WORK_TYPES,
) -> WorkResource:
    """The Work to create in ``namespace`` for the claimed ``item`` (see the module).

    Raises ``SpecError`` when the item's spec is not a valid Work (it was checked at
    submit, so only a broker with other work types registered lets one through).
    """
    submitted = WorkResource.from_yaml(item.spec, work_types=work_types)
    labels = dict(submitted.metadata.labels)
    labels[WORK_ID_LABEL] = str(item.id)
    labels[AGENT_ID_LABEL] = str(agent_id)
    annotations = dict(submitted.metadata.annotations)
    annotations[CLAIM_TOKEN_ANNOTATION] = format_claim_token(item.token)
    annotations[RETRY_POLICY_ANNOTATION] = format_retry_policy(item.retry_policy)
    if item.correlation_id is not None:
        annotations[CORRELATION_ID_ANNOTATION] = item.correlation_id
    else:
        annotations.pop(CORRELATION_ID_ANNOTATION, None)
    return work_resource_for(
        submitted.spec.work_type,
        submitted.spec.templates,
        name=work_name(item.id, item.attempt),
        namespace=namespace,
        max_retries=local_retry_budget(local_retry_limit, item),
        claim_timeout=submitted.spec.claim_timeout,
        work_id=item.id,
        attempt=item.attempt,
        labels=labels,
        annotations=annotations,
        work_types=work_types,
    )


def claim_held(value: WorkItem | ExecutionRecord | None, token: ClaimToken, agent_id: UUID) -> bool:
    """Whether the broker's ``value`` for a Work's item says ``agent_id`` still holds the
    claim ``token`` (CLAIMED by it, same attempt); a Work whose claim is not held is
    deleted by its agent."""
    return (
        isinstance(value, WorkItem)
        and value.status is WorkStatus.CLAIMED
        and value.claimed_by == agent_id
        and value.token == token
    )
