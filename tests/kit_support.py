"""Helpers for the tests that show the conformance kit catches broken stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from workqueue_core.ports import Store
from workqueue_core.reference.store import ReferenceStore
from workqueue_core.testing import ConformanceError, conformance_machine, conformance_settings
from workqueue_memory import MemoryStore


def factory_for(
    state_class: type[ReferenceStore], store_class: type[MemoryStore] = MemoryStore
) -> Callable[[], object]:
    """A store factory for the kit: ``store_class`` over a fresh ``state_class``."""

    @asynccontextmanager
    async def fresh() -> AsyncIterator[Store]:
        yield store_class(state=state_class(random_source=lambda: 0.0))

    return fresh


def run_until_caught(factory: Callable[[], object], symptom: str, examples: int = 1000) -> None:
    """Run the suite (generation only, derandomised) and require a ConformanceError.

    The run stops at the first catch, usually within a few dozen examples; the
    generous ``examples`` bound keeps a rarely reached bug from making this flaky.
    """
    machine = conformance_machine(factory)  # type: ignore[arg-type]
    with pytest.raises(ConformanceError, match=symptom):
        run_state_machine_as_test(
            machine,
            settings=conformance_settings(
                examples,
                50,
                phases=[Phase.generate],
                derandomize=True,
                database=None,
                print_blob=False,
            ),
        )
