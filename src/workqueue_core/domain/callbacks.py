"""Completion callbacks: POST a finished item's log record to its ``callback_url``.

An item ends in the log in many ways (a worker's report, a cancel, the sweep, an
admin), so delivery is not the worker's job: every store keeps a delivery state
per log record that has a ``callback_url``, and the broker's maintenance calls
``deliver_due`` on an interval. Each delivery attempt is recorded as an event on
the item's timeline (actor ``callback``, from and to its terminal status), so
the attempts are visible where every other step of the item is.

Delivery is at least once: a broker that dies between the POST and the record
posts again after the lease; receivers deduplicate on the work id (and its
``attempt``, which a requeue raises). This module holds the pure state rules the
stores share and the decision of each attempt; the delivery loop is in
``workqueue_core.service.callbacks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs

from workqueue_core.domain.errors import (
    InvalidInput,
    InvalidTransition,
    UnknownWork,
    WorkqueueError,
)
from workqueue_core.domain.models import Event, ExecutionRecord, WorkItem
from workqueue_core.domain.retry import Jitter, RetryPolicy

CALLBACK_ACTOR = "callback"
"""The actor of delivery-attempt events."""

MAX_OUTCOME_CHARS = 200
"""How much of a failure's description goes into an event's detail."""

# --- state rules shared by the stores --------------------------------------------


def check_callback(
    work_id: UUID,
    queued: WorkItem | None,
    record: ExecutionRecord | None,
    pending: bool,
    finished_at: datetime | None = None,
) -> ExecutionRecord:
    """The record whose delivery attempt may be recorded, or raise why none may.

    UnknownWork when the item is nowhere; InvalidTransition when it is queued (not
    finished), its delivery is not pending (no URL, done or abandoned), or, with
    ``finished_at``, the record is not the one that was taken (the item was
    requeued and ended again while its earlier record was being posted).
    """
    if record is None:
        if queued is None:
            raise UnknownWork(work_id)
        raise InvalidTransition(work_id, queued.status.value, "record a callback attempt")
    if not pending:
        raise InvalidTransition(
            work_id, record.status.value, "record a callback attempt (no delivery is pending)"
        )
    if finished_at is not None and record.finished_at != finished_at:
        raise InvalidTransition(
            work_id,
            record.status.value,
            "record a callback attempt (the record was replaced since it was taken)",
        )
    return record


def check_retry_at(retry_at: datetime | None) -> None:
    """A retry time must be timezone-aware, like every other time in the domain."""
    if retry_at is not None and (retry_at.tzinfo is None or retry_at.utcoffset() is None):
        raise InvalidInput("retry_at must be a timezone-aware datetime")


def check_lease(lease: timedelta | None) -> None:
    """A delivery lease, when given, is positive."""
    if lease is not None and lease <= timedelta(0):
        raise InvalidInput(f"lease must be positive, got {lease}")


def callback_event(record: ExecutionRecord, now: datetime, detail: str) -> Event:
    """The event of one delivery attempt: the terminal status to itself, by ``callback``."""
    item = record.item
    return Event(
        work_id=item.id,
        from_status=item.status,
        to_status=item.status,
        actor=CALLBACK_ACTOR,
        at=now,
        attempt=item.attempt,
        executions=item.executions,
        claimed_by=item.claimed_by,
        correlation_id=item.correlation_id,
        detail=detail,
    )


def next_attempt(delivered: bool, retry_at: datetime | None) -> datetime | None:
    """When the next attempt is due after this one; None when the delivery is over."""
    return None if delivered else retry_at


def first_attempt(record: ExecutionRecord) -> datetime | None:
    """When a record entering the log is first due: at once if it has a URL, else never."""
    return record.finished_at if record.item.callback_url is not None else None


def leased_until(now: datetime, lease: timedelta) -> datetime:
    """``now + lease``, saturating at the latest representable time."""
    try:
        return now + lease
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


def delivery_attempts(events: Sequence[Event]) -> int:
    """Attempts made to deliver the item's current record: the trailing callback events.

    Attempts before a requeue belong to an earlier record and are not counted.
    """
    count = 0
    for event in reversed(events):
        if event.actor != CALLBACK_ACTOR or event.from_status is not event.to_status:
            break
        count += 1
    return count


# --- delivery ------------------------------------------------------------------------


class CallbackTransportError(WorkqueueError):
    """The POST got no HTTP answer: connection refused, DNS, TLS, timeout, bad URL."""

    code = "callback-transport"


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise InvalidInput(f"{attribute.name} must be positive, got {value}")


def _count(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidInput(f"{attribute.name} must be an integer in 1..1000, got {value!r}")


@attrs.frozen
class CallbackPolicy:
    """How callbacks are delivered: attempts, backoff, timeout, parallelism, lease.

    The n-th failed attempt is retried after ``backoff.delay(n)`` (10 s, 20 s, 40 s …
    capped at 1 h; the backoff takes no jitter); after ``max_attempts`` attempts the
    delivery is abandoned. ``concurrency`` records are taken and posted at a time;
    the ``lease`` keeps them from being taken by another broker meanwhile, and must
    outlast one POST.
    """

    max_attempts: int = attrs.field(default=8, validator=_count)
    backoff: RetryPolicy = attrs.field(
        factory=lambda: RetryPolicy(
            base_delay=timedelta(seconds=10), multiplier=2.0, max_delay=timedelta(hours=1)
        ),
        validator=attrs.validators.instance_of(RetryPolicy),
    )
    timeout: float = attrs.field(default=10.0, validator=_positive)
    concurrency: int = attrs.field(default=8, validator=_count)
    lease: timedelta = attrs.field(default=timedelta(minutes=5))

    def __attrs_post_init__(self) -> None:
        if self.lease <= timedelta(seconds=self.timeout):
            raise InvalidInput("lease must be longer than the timeout of one POST")
        if self.backoff.jitter is not Jitter.NONE:
            raise InvalidInput("the callback backoff takes no jitter")

    def retry_at(self, attempts: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None: abandon."""
        if attempts >= self.max_attempts:
            return None
        return leased_until(now, self.backoff.delay(attempts))


def callback_headers(record: ExecutionRecord, attempt: int) -> dict[str, str]:
    """The headers of a callback POST."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "workqueue-callback",
        "X-Workqueue-Work-Id": str(record.id),
        "X-Workqueue-Status": record.status.value,
        "X-Workqueue-Finished-At": record.finished_at.isoformat(),
        "X-Workqueue-Delivery-Attempt": str(attempt),
    }


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_OUTCOME_CHARS else text[: MAX_OUTCOME_CHARS - 1] + "…"


@attrs.frozen
class Outcome:
    """What one delivery attempt came to, as recorded."""

    work_id: UUID
    attempt: int
    delivered: bool
    retry_at: datetime | None
    detail: str


def outcome_of(
    record: ExecutionRecord,
    attempt: int,
    status: int | None,
    error: str,
    policy: CallbackPolicy,
    now: datetime,
) -> Outcome:
    """Decide an attempt: 2xx delivered; otherwise retried after backoff, or abandoned."""
    if status is not None and 200 <= status < 300:
        return Outcome(
            record.id, attempt, True, None, f"callback delivered: HTTP {status} (attempt {attempt})"
        )
    what = f"HTTP {status}" if status is not None else _short(error) or "no answer"
    retry_at = policy.retry_at(attempt, now)
    if retry_at is None:
        detail = f"callback abandoned after {attempt} attempts: {what}"
    else:
        detail = f"callback failed: {what} (attempt {attempt}); retry at {retry_at.isoformat()}"
    return Outcome(record.id, attempt, False, retry_at, detail)
