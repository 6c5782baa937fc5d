"""Materialised targets: the ``work_targets`` rows that say which agent may claim what.

A PENDING item has one row per agent its targeting matches (keyed in claim order:
``-priority``, ``created_at``, id), so an agent's claim reads only its own rows and
its cost does not grow with work targeted at other agents. Rows are rewritten when
an item changes (``retarget_item``) and when an agent registers or is relabelled
(``retarget_agent``); an item that is not PENDING has none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from workqueue_core.domain.models import Agent, AgentStatus, WorkItem, WorkStatus
from workqueue_sqlite import codec, sql


class Targets:
    """The target rows, read and written inside one transaction."""

    def __init__(self, conn: sqlite3.Connection, targetings: codec.TargetingCache) -> None:
        self.conn = conn
        self.targetings = targetings
        self._agent_labels: list[tuple[UUID, dict[str, str]]] | None = None

    def claimable(
        self, agent: Agent, now: datetime, work_types: Sequence[str] | None, limit: int
    ) -> list[WorkItem]:
        """The first ``limit`` items ``agent`` may claim at ``now``, in claim order.

        The agent's own ``work_targets`` rows are read in claim order (the table's
        key) and checked against the queue for status, budget, ``not_before`` and
        work type: the cost does not grow with work targeted at other agents.
        """
        targetings = self.targetings
        return [
            codec.load_item(row, targetings)
            for row in self.claimable_rows(agent, now, work_types, limit)
        ]

    def claimable_rows(
        self, agent: Agent, now: datetime, work_types: Sequence[str] | None, limit: int
    ) -> list[codec.Row]:
        """The queue rows (``ITEM_SELECT``) of ``claimable``, undecoded."""
        if agent.status is not AgentStatus.ACTIVE:
            return []
        text = sql.CLAIMABLE
        params: list[Any] = [str(agent.id), codec.to_us(now)]
        if work_types is not None:
            types = sorted(set(work_types))
            if not types:
                return []
            text += f" AND q.work_type IN ({', '.join('?' for _ in types)})"
            params.extend(types)
        text += sql.CLAIM_ORDER
        params.append(limit)
        return self.conn.execute(text, params).fetchall()

    def agent_labels(self) -> list[tuple[UUID, dict[str, str]]]:
        """Every agent's id and labels, loaded once per transaction."""
        if self._agent_labels is None:
            rows = self.conn.execute(sql.AGENT_LABELS).fetchall()
            self._agent_labels = [(UUID(a), codec.load_map(labels)) for a, labels in rows]
        return self._agent_labels

    def forget(self, work_ids: Sequence[str]) -> None:
        """Drop the rows of these items (no longer PENDING)."""
        self.conn.executemany(sql.DELETE_TARGETS_OF_ITEM, [(work_id,) for work_id in work_ids])

    def retarget_item(self, item: WorkItem) -> None:
        """Rows for ``item``: one per matching agent while it is PENDING, none otherwise."""
        work_id = str(item.id)
        self.conn.execute(sql.DELETE_TARGETS_OF_ITEM, (work_id,))
        if item.status is not WorkStatus.PENDING:
            return
        created = codec.to_us(item.created_at)
        self.conn.executemany(
            sql.INSERT_TARGET,
            [
                (str(agent_id), -item.priority, created, work_id)
                for agent_id, labels in self.agent_labels()
                if item.targeting.matches(agent_id, labels)
            ],
        )

    def retarget_agent(self, agent: Agent) -> None:
        """Rows for ``agent``: one per PENDING item whose targeting matches it now."""
        agent_id = str(agent.id)
        self.conn.execute(sql.DELETE_TARGETS_OF_AGENT, (agent_id,))
        rows = self.conn.execute(sql.PENDING_TARGETING).fetchall()
        self.conn.executemany(
            sql.INSERT_TARGET,
            [
                (agent_id, -priority, created, work_id)
                for work_id, targeting, priority, created in rows
                if self.targetings.get(targeting).matches(agent.id, agent.labels)
            ],
        )
        self._agent_labels = None
