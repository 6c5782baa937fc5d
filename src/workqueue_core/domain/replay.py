"""Rebuild an item's state from its event timeline alone (invariant 9)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import attrs

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import Event, ExecutionRecord, WorkItem, WorkStatus


class ReplayError(WorkqueueError):
    """The timeline is broken: it does not start at submit or a step does not follow."""

    code = "replay-error"


@attrs.frozen
class ReplayedState:
    """What the timeline says the item's state is."""

    status: WorkStatus
    attempt: int
    executions: int
    claimed_by: UUID | None
    steps: int


def replay(events: Sequence[Event]) -> ReplayedState:
    """Fold a timeline into the state it leads to, checking that each step follows the last."""
    if not events:
        raise ReplayError("an item's timeline cannot be empty")
    first = events[0]
    if first.from_status is not None:
        raise ReplayError(f"the timeline starts at {first.from_status}, not at submit")
    state = ReplayedState(first.to_status, first.attempt, first.executions, first.claimed_by, 1)
    last_seq = first.seq
    for event in events[1:]:
        if event.work_id != first.work_id:
            raise ReplayError(f"event {event.seq} belongs to {event.work_id}, not {first.work_id}")
        if event.from_status is not state.status:
            raise ReplayError(
                f"event {event.seq} leaves {event.from_status} but the item was {state.status}"
            )
        if event.seq <= last_seq:
            raise ReplayError(f"event {event.seq} is out of order after {last_seq}")
        if event.attempt < state.attempt:
            raise ReplayError(f"event {event.seq} lowers the attempt to {event.attempt}")
        last_seq = event.seq
        state = ReplayedState(
            event.to_status, event.attempt, event.executions, event.claimed_by, state.steps + 1
        )
    return state


def agrees(state: ReplayedState, current: WorkItem | ExecutionRecord) -> bool:
    """True when the replayed state is the item's stored state."""
    item = current.item if isinstance(current, ExecutionRecord) else current
    return (
        state.status is item.status
        and state.attempt == item.attempt
        and state.executions == item.executions
        and (state.claimed_by == item.claimed_by or item.status is not WorkStatus.CLAIMED)
    )
