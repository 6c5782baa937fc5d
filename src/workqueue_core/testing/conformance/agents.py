"""Rules on agents: register, relabel, status, annotations, token rotation, touch."""

from __future__ import annotations

import functools

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from workqueue_core.domain.models import Agent, AgentStatus
from workqueue_core.testing import strategies as wst
from workqueue_core.testing.conformance.base import MAX_AGENTS, UNKNOWN, MachineBase


class AgentRules(MachineBase):
    """Agents registered, changed and touched; taken ids and names refused."""

    @precondition(lambda self: len(self.agent_ids) < MAX_AGENTS)
    @rule(data=st.data())
    def register_agent(self, data: st.DataObject) -> None:
        agent_id = self._new_id()
        agent = data.draw(wst.agents(agent_id, f"agent-{agent_id.int}", self.now))
        self._both(
            "register_agent",
            functools.partial(self.store.register_agent, agent),
            functools.partial(self.model.register_agent, agent),
        )
        self.agent_ids.append(agent_id)

    @rule(data=st.data(), labels=wst.label_sets())
    def relabel_agent(self, data: st.DataObject, labels: dict[str, str]) -> None:
        agent_id = self._agent(data)
        self._both(
            "update_agent(labels)",
            functools.partial(self.store.update_agent, agent_id, labels=labels),
            functools.partial(self.model.update_agent, agent_id, labels=labels),
        )

    @rule(data=st.data(), status=st.sampled_from([AgentStatus.ACTIVE, *AgentStatus]))
    def set_agent_status(self, data: st.DataObject, status: AgentStatus) -> None:
        agent_id = self._agent(data)
        self._both(
            "update_agent(status)",
            functools.partial(self.store.update_agent, agent_id, status=status),
            functools.partial(self.model.update_agent, agent_id, status=status),
        )

    @rule(data=st.data(), action=st.sampled_from(["annotate", "rotate", "touch", "duplicate"]))
    def agent_admin(self, data: st.DataObject, action: str) -> None:
        """Re-annotate, rotate a token hash, touch, or register a taken id or name."""
        agent_id = self._agent(data)
        if action == "annotate":
            annotations = data.draw(wst.agent_annotations(), label="annotations")
            self._both(
                "update_agent(annotations)",
                functools.partial(self.store.update_agent, agent_id, annotations=annotations),
                functools.partial(self.model.update_agent, agent_id, annotations=annotations),
            )
        elif action == "rotate":
            self._rotations += 1
            token_hash = wst.token_hash_for(agent_id, self._rotations)
            self._both(
                "update_agent(token_hash)",
                functools.partial(self.store.update_agent, agent_id, token_hash=token_hash),
                functools.partial(self.model.update_agent, agent_id, token_hash=token_hash),
            )
        elif action == "touch":
            if data.draw(st.integers(0, 5), label="unknown agent") == 0:
                agent_id = UNKNOWN
            self._both(
                "touch_agent",
                functools.partial(self.store.touch_agent, agent_id, self.now),
                functools.partial(self.model.touch_agent, agent_id, self.now),
            )
        else:
            existing = self.model.get_agent(agent_id)
            assert existing is not None
            if data.draw(st.booleans(), label="same id"):
                agent = Agent(id=agent_id, name=f"{existing.name}-again", registered_at=self.now)
            else:
                agent = Agent(id=self._new_id(), name=existing.name, registered_at=self.now)
            self._both(
                "register_agent(taken id or name)",
                functools.partial(self.store.register_agent, agent),
                functools.partial(self.model.register_agent, agent),
            )
