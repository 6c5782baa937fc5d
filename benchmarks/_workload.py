"""The benchmark's work items and agents, built directly as core models."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from workqueue_broker.ids import uuid7
from workqueue_core.domain.models import Agent, Targeting, WorkItem
from workqueue_core.domain.selectors import LabelSelector

WORK_TYPE = "noop"
ZONES = tuple(f"z{i}" for i in range(10))


def now() -> datetime:
    """The wall clock, timezone-aware (the benchmark is an entrypoint: it may read it)."""
    return datetime.now(UTC)


def noop_item(targeting: Targeting | None = None) -> WorkItem:
    """A no-op item for every agent (or for ``targeting``), with a time-ordered id as the
    broker gives new work (``workqueue_broker.ids``)."""
    return WorkItem(
        id=uuid7(),
        work_type=WORK_TYPE,
        spec="{}",
        targeting=targeting or Targeting.everyone(),
        created_at=now(),
    )


def agent(name: str, labels: dict[str, str] | None = None) -> Agent:
    """A new ACTIVE agent."""
    return Agent(id=uuid4(), name=name, registered_at=now(), labels=labels or {})


def zone_selectors() -> list[Targeting]:
    """Ten selectors ``zone in (zK, zK+1)``: every agent matches two, every item targets ~20."""
    return [
        Targeting(selector=LabelSelector.coerce(f"zone in ({a},{b})"))
        for a, b in zip(ZONES, ZONES[1:] + ZONES[:1], strict=True)
    ]


def zone_agents(count: int) -> list[Agent]:
    """``count`` agents spread over the zones, with a second label to make matching real."""
    return [
        agent(f"bench-agent-{i}", {"zone": ZONES[i % len(ZONES)], "pool": f"p{i % 3}"})
        for i in range(count)
    ]
