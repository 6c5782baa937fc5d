"""The testing kit: fake clocks, Hypothesis strategies and the store conformance suite.

This package (and only this one) imports Hypothesis: install ``workqueue[testing]``.
"""

from workqueue_core.testing.clock import EPOCH, FakeClock, SequentialIds, SequentialTokens
from workqueue_core.testing.conformance import (
    ConformanceError,
    ConformanceMachine,
    StoreFactory,
    conformance_machine,
    conformance_settings,
    conformance_test_case,
)
from workqueue_core.testing.scenarios import DrainReport, assert_clean_drain, drain_concurrently

__all__ = [
    "EPOCH",
    "ConformanceError",
    "ConformanceMachine",
    "DrainReport",
    "FakeClock",
    "SequentialIds",
    "SequentialTokens",
    "StoreFactory",
    "assert_clean_drain",
    "conformance_machine",
    "conformance_settings",
    "conformance_test_case",
    "drain_concurrently",
]
