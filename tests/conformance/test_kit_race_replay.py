"""The kit's choices do not depend on how a race came out.

A real store under load settles the kit's races (concurrent claims, sweeps racing a
holder) one way on a run and another way when Hypothesis replays the same choices.
The kit adopts whatever outcome the store produced, but which rules it enables
(and so what it draws) must not depend on it: else Hypothesis sees another
enabled-rule set for the same prefix and raises ``FlakyStrategyDefinition``
instead of passing or shrinking a bug.

``SwitchedStore`` is the in-memory store (correct, every operation atomic) whose
racing operations first yield to the event loop or not, by a switch set from
outside Hypothesis: replaying one choice sequence with the switch flipped makes
its races come out the other way, deterministically.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.lowlevel
from hypothesis.stateful import get_state_machine_test, invariant

from workqueue_core.domain.models import WorkQuery
from workqueue_core.ports import Store
from workqueue_core.testing import conformance_machine, conformance_settings
from workqueue_memory import MemoryStore

BUFFERS = 40
"""Choice sequences replayed both ways; before the fix, 4 of these enabled other rules."""

_switch = [0]
"""0 or 1: which side of each race goes first."""

Step = tuple[frozenset[str], tuple[tuple[int, int, str], ...]]
"""After a step: the rules enabled, and each item's (id, holder, status) in the reference."""

_trace: list[Step] = []


class SwitchedStore(MemoryStore):
    """The in-memory store; ``_switch`` decides which racer goes first."""

    _calls = 0

    async def _yield_if(self, later: bool) -> None:
        for _ in range(2 if later else 0):
            await anyio.lowlevel.checkpoint()

    async def _claimer(self) -> None:
        self._calls += 1
        await self._yield_if((self._calls + _switch[0]) % 2 == 1)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        await self._claimer()
        return await super().claim(*args, **kwargs)

    async def claim_next(self, *args: Any, **kwargs: Any) -> Any:
        await self._claimer()
        return await super().claim_next(*args, **kwargs)

    async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        await self._yield_if(_switch[0] == 0)
        return await super().heartbeat(*args, **kwargs)

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        await self._yield_if(_switch[0] == 0)
        return await super().complete(*args, **kwargs)

    async def fail(self, *args: Any, **kwargs: Any) -> Any:
        await self._yield_if(_switch[0] == 0)
        return await super().fail(*args, **kwargs)

    async def sweep(self, *args: Any, **kwargs: Any) -> Any:
        await self._yield_if(_switch[0] == 1)
        return await super().sweep(*args, **kwargs)


@asynccontextmanager
async def fresh_switched_store() -> AsyncIterator[Store]:
    yield SwitchedStore(random_source=lambda: 0.0)


class TracingMachine(conformance_machine(fresh_switched_store)):  # type: ignore[misc]
    """The kit, recording after every step what it enables and what the races left."""

    @invariant()
    def record(self) -> None:
        enabled = frozenset(
            rule.function.__name__
            for rule in type(self).setup_state().rules
            if all(precondition(self) for precondition in rule.preconditions)
        )
        items = tuple(
            (i.id.int, i.claimed_by.int if i.claimed_by else 0, i.status.value)
            for i in self.model.query(WorkQuery(limit=10_000))
        )
        _trace.append((enabled, items))


def _replay(test: Any, buffer: bytes, switch: int) -> list[Step]:
    _switch[0] = switch
    _trace.clear()
    test.hypothesis.fuzz_one_input(buffer)
    return list(_trace)


def test_replaying_an_example_whose_races_go_the_other_way_enables_the_same_rules() -> None:
    """Each choice sequence, run with every race one way and then the other."""
    test = get_state_machine_test(
        TracingMachine, settings=conformance_settings(1, 50, database=None)
    )
    races_differed = 0
    for seed in range(BUFFERS):
        buffer = random.Random(seed).randbytes(30_000)
        one_way, other_way = _replay(test, buffer, 0), _replay(test, buffer, 1)
        races_differed += [s[1] for s in one_way] != [s[1] for s in other_way]
        assert [s[0] for s in one_way] == [s[0] for s in other_way], f"buffer of seed {seed}"
    # Else the switch changed nothing and the comparison above proves nothing.
    assert races_differed > 0
