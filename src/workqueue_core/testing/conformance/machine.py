"""The whole suite: the rule mixins on one machine, and how to run it against a store."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from workqueue_core.testing.conformance.admin import AdminRules
from workqueue_core.testing.conformance.agents import AgentRules
from workqueue_core.testing.conformance.base import StoreFactory
from workqueue_core.testing.conformance.callbacks import CallbackRules
from workqueue_core.testing.conformance.claims import ClaimRules
from workqueue_core.testing.conformance.holders import HolderRules
from workqueue_core.testing.conformance.invariants import Invariants
from workqueue_core.testing.conformance.maintenance import MaintenanceRules
from workqueue_core.testing.conformance.observations import ObservationRules


class ConformanceMachine(
    AgentRules,
    AdminRules,
    ClaimRules,
    HolderRules,
    MaintenanceRules,
    CallbackRules,
    ObservationRules,
    Invariants,
):
    """Drives a store and the reference side by side; see ``workqueue_core.testing.conformance``.

    Hypothesis collects the rules of every mixin by name, so the grouping does not
    change what a run draws or does.
    """

    @initialize(data=st.data())
    def first_agents(self, data: st.DataObject) -> None:
        self.register_agent(data)
        self.register_agent(data)
        for _ in range(data.draw(st.integers(1, 4), label="first items")):
            self.submit(data)


def conformance_settings(
    max_examples: int = 200, step_count: int = 50, **overrides: Any
) -> settings:
    """The suite's Hypothesis settings (CI profile: 200 examples of 50 steps)."""
    options: dict[str, Any] = {
        "max_examples": max_examples,
        "stateful_step_count": step_count,
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
    }
    options.update(overrides)
    return settings(**options)


def conformance_machine(
    store_factory: StoreFactory, name: str = "StoreConformance"
) -> type[ConformanceMachine]:
    """A machine class that runs the suite against stores made by ``store_factory``."""
    return type(name, (ConformanceMachine,), {"store_factory": staticmethod(store_factory)})


def conformance_test_case(
    store_factory: StoreFactory,
    max_examples: int = 200,
    step_count: int = 50,
    **overrides: Any,
) -> Any:
    """A unittest/pytest TestCase class that runs the suite; assign it to a ``Test*`` name."""
    machine = conformance_machine(store_factory)
    case = machine.TestCase
    case.settings = conformance_settings(max_examples, step_count, **overrides)
    return case


QUICK = Phase.generate
"""For checks that only need to know *that* a store fails: skip shrinking."""
