"""The store conformance suite: one stateful Hypothesis machine, run against any ``Store``.

The machine drives the store under test and the reference semantics
(``ReferenceStore``) side by side with the same operations and the same ``now``. After
each step it checks that both agree, and checks invariants 1–9 of DESIGN §2 on the
store under test directly, from what it returns through its public port.

Use it with a factory that yields a fresh, empty store::

    from workqueue_core.testing import conformance_test_case

    @asynccontextmanager
    async def fresh_store():
        store = MyStore(...)
        yield store
        await store.close()

    TestMyStore = conformance_test_case(fresh_store)

Generated retry policies have no jitter, so both sides compute the same
``not_before``; jitter bounds are property-tested on ``RetryPolicy`` itself.

Beyond the transitions, the machine compares lookups (``get``/``get_record`` of
every id), filtered and paginated queries, ``pending_for`` with type filters,
stats, agent listings and token lookups, pruning (records, events and keys gone),
and races: concurrent claims, and two sweeps racing each other and a claim
holder's heartbeat, complete or fail. One rule replays a fixed scenario: a holder's
lease is swept, the same agent claims the item again, and reports with its first
claim's token (refused: only the attempt tells the two tokens apart). Times carry
microseconds and payloads come from all of Unicode (NUL excluded), up to a few KiB.
When the store has a ``notifier`` (the ``Notifier`` port), every step on which the
reference wakes claimers must wake a waiter armed before it.
"""

from workqueue_core.testing.conformance.base import ConformanceError, StoreFactory
from workqueue_core.testing.conformance.machine import (
    QUICK,
    ConformanceMachine,
    conformance_machine,
    conformance_settings,
    conformance_test_case,
)

__all__ = [
    "QUICK",
    "ConformanceError",
    "ConformanceMachine",
    "StoreFactory",
    "conformance_machine",
    "conformance_settings",
    "conformance_test_case",
]
