"""How a worker runs (``WorkerOptions``) and what it has done (``WorkerStats``)."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.limits import MAX_BATCH
from workqueue_core.executor.reports import ReportPolicy

__all__ = ["WorkerOptions", "WorkerStats"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise InvalidInput(f"{attribute.name} must be positive, got {value!r}")


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise InvalidInput(f"{attribute.name} must be positive or None, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not value >= 0:
        raise InvalidInput(f"{attribute.name} must not be negative, got {value!r}")


def _count(limit: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise InvalidInput(f"{attribute.name} must be an integer in 1..{limit}, got {value!r}")

    return check


@attrs.frozen
class WorkerOptions:
    """How a worker runs. Durations are seconds.

    ``concurrency``: handlers running at once (claims held at once).
    ``batch``: most items one claim asks for (also bounded by free slots).
    ``claim_wait``: long-poll of each claim (0..30); a stop waits for it to return.
    ``heartbeat_interval``: cap on the heartbeat period; the period is at most a
    third of each item's lease in any case.
    ``default_timeout``: per-attempt bound for handlers registered without one.
    ``grace_period``: how long ``stop()`` lets running handlers finish.
    ``agent_heartbeat_interval``: how often the agent itself is touched.
    ``error_backoff``: longest pause between claims while the source is unavailable.
    """

    concurrency: int = attrs.field(default=10, validator=_count(10_000))
    batch: int = attrs.field(default=10, validator=_count(MAX_BATCH))
    claim_wait: float = attrs.field(default=2.0, validator=_non_negative)
    heartbeat_interval: float | None = attrs.field(default=None, validator=_positive_or_none)
    default_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    grace_period: float = attrs.field(default=30.0, validator=_non_negative)
    agent_heartbeat_interval: float = attrs.field(default=30.0, validator=_positive)
    error_backoff: float = attrs.field(default=5.0, validator=_positive)
    report: ReportPolicy = attrs.field(factory=ReportPolicy)

    def __attrs_post_init__(self) -> None:
        if self.claim_wait > 30:
            raise InvalidInput(f"claim_wait must be in 0..30 seconds, got {self.claim_wait}")


@attrs.define
class WorkerStats:
    """What a worker has done so far (counts of attempts by how they ended)."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    timeouts: int = 0
    lease_lost: int = 0
    released: int = 0
    report_errors: int = 0
