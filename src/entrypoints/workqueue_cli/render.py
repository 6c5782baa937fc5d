"""Output of the CLI: aligned tables for people, JSON for scripts.

JSON is the domain objects as plain data (UUIDs and times as strings, durations
in seconds, enums by value); an agent's token hash is never shown.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO, cast
from uuid import UUID

import attrs

from workqueue_core.domain.models import (
    Agent,
    Event,
    ExecutionRecord,
    IssuedAgent,
    Stats,
    SubmitResult,
    Targeting,
    WorkItem,
)
from workqueue_core.domain.selectors import LabelSelector

_HIDDEN_FIELDS = frozenset({"token_hash"})


def iso_time(value: datetime) -> str:
    """ISO 8601 with ``Z`` for UTC, as the API writes times."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def jsonable(value: object) -> Any:
    """Plain JSON data for a domain object (recursively)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, LabelSelector):
        return value.to_string()
    if isinstance(value, Stats):
        return [
            {"work_type": work_type, "status": status.value, "count": count}
            for (work_type, status), count in sorted(
                value.counts.items(), key=lambda kv: (kv[0][0], kv[0][1].value)
            )
        ]
    if isinstance(value, ExecutionRecord):
        return {
            "id": str(value.id),
            "status": value.status.value,
            "finished_at": iso_time(value.finished_at),
            "finished_by": value.finished_by,
            "result": value.result,
            "item": jsonable(value.item),
        }
    if isinstance(value, IssuedAgent):
        return {"agent": jsonable(value.agent), "token": value.token}
    if attrs.has(type(value)):
        return {
            field.name: jsonable(getattr(value, field.name))
            for field in attrs.fields(cast(Any, type(value)))
            if field.name not in _HIDDEN_FIELDS
        }
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Sequence):
        return [jsonable(v) for v in value]
    return str(value)


def write_json(out: TextIO, value: object) -> None:
    """One JSON document, indented, newline-terminated."""
    json.dump(jsonable(value), out, indent=2, sort_keys=False)
    out.write("\n")


def when(value: datetime | None) -> str:
    """A compact UTC time for tables."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S%z").replace("+0000", "Z")


def show_labels(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` or ``-``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def show_targeting(targeting: Targeting) -> str:
    """Who may run the item, in one cell."""
    parts = [f"agent={agent_id}" for agent_id in sorted(targeting.agent_ids, key=str)]
    if targeting.selector is not None:
        parts.append(f"selector={targeting.selector.to_string() or '{} (every agent)'}")
    return " ".join(parts)


def table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def work_rows(out: TextIO, items: Sequence[WorkItem | ExecutionRecord]) -> None:
    """A table of queue items and/or log records; a line saying so when there are none."""
    if not items:
        out.write("nothing matched\n")
        return
    rows = []
    for entry in items:
        item = entry.item if isinstance(entry, ExecutionRecord) else entry
        finished = when(entry.finished_at) if isinstance(entry, ExecutionRecord) else "-"
        rows.append(
            [
                item.id,
                item.work_type,
                item.status.value,
                f"{item.executions}/{item.max_executions}",
                item.priority,
                item.claimed_by or "-",
                when(item.created_at),
                finished,
            ]
        )
    table(
        out,
        ["ID", "TYPE", "STATUS", "RUNS", "PRIO", "CLAIMED_BY", "CREATED", "FINISHED"],
        rows,
    )


def work_detail(out: TextIO, entry: WorkItem | ExecutionRecord) -> None:
    """One item (or log record), field by field, then its spec."""
    item = entry.item if isinstance(entry, ExecutionRecord) else entry
    fields: list[tuple[str, object]] = [
        ("id", item.id),
        ("type", item.work_type),
        ("status", item.status.value),
        ("targeting", show_targeting(item.targeting)),
        ("priority", item.priority),
        ("runs", f"{item.executions} of at most {item.max_executions}"),
        ("attempt", item.attempt),
        ("claimed by", item.claimed_by or "-"),
        ("lease expires", when(item.lease_expires_at)),
        ("not before", when(item.not_before)),
        ("created", when(item.created_at)),
        ("labels", show_labels(item.labels)),
        ("correlation id", item.correlation_id or "-"),
        ("idempotency key", item.idempotency_key or "-"),
    ]
    if item.last_error is not None:
        error = item.last_error
        text = f"{error.failure_class.value} {error.reason}"
        fields.append(("last error", f"{text}: {error.message}" if error.message else text))
    if isinstance(entry, ExecutionRecord):
        fields += [
            ("finished", when(entry.finished_at)),
            ("finished by", entry.finished_by),
            ("result", entry.result if entry.result is not None else "-"),
        ]
    width = max(len(name) for name, _ in fields) + 1
    for name, value in fields:
        out.write(f"{(name + ':').ljust(width)} {value}\n")
    out.write("spec:\n")
    for line in item.spec.splitlines() or [""]:
        out.write(f"  {line}\n")


def submitted(out: TextIO, result: SubmitResult) -> None:
    """The new item's id and state (or the existing one's, on idempotency-key reuse)."""
    entry = result.item
    note = "" if result.created else " (already submitted with this idempotency key)"
    out.write(f"{entry.id} {entry.status.value}{note}\n")


def event_rows(out: TextIO, events: Sequence[Event]) -> None:
    """The timeline, oldest first."""
    table(
        out,
        ["AT", "TRANSITION", "ACTOR", "ATTEMPT", "RUNS", "DETAIL"],
        [
            [
                when(e.at),
                f"{e.from_status.value if e.from_status else '-'} -> {e.to_status.value}",
                e.actor,
                e.attempt,
                e.executions,
                e.detail or "-",
            ]
            for e in events
        ],
    )


def agent_rows(out: TextIO, agents: Sequence[Agent]) -> None:
    """A table of agents."""
    table(
        out,
        ["ID", "NAME", "STATUS", "LABELS", "LAST_SEEN"],
        [
            [a.id, a.name, a.status.value, show_labels(a.labels), when(a.last_seen_at)]
            for a in agents
        ],
    )


def agent_detail(out: TextIO, agent: Agent) -> None:
    """One agent, field by field (never its token hash)."""
    fields: list[tuple[str, object]] = [
        ("id", agent.id),
        ("name", agent.name),
        ("status", agent.status.value),
        ("labels", show_labels(agent.labels)),
        ("annotations", show_labels(agent.annotations)),
        ("registered", when(agent.registered_at)),
        ("last seen", when(agent.last_seen_at)),
    ]
    width = max(len(name) for name, _ in fields) + 1
    for name, value in fields:
        out.write(f"{(name + ':').ljust(width)} {value}\n")


def stats_rows(out: TextIO, stats: Stats) -> None:
    """Counts by work type and status."""
    rows = list(jsonable(stats))
    table(
        out,
        ["TYPE", "STATUS", "COUNT"],
        [[r["work_type"], r["status"], r["count"]] for r in rows],
    )
    out.write(f"total: {stats.total()}\n")
