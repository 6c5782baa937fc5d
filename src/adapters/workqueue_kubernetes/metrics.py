"""What the Work controller reports about itself, as plain counters a process can export.

The adapter does not depend on a metrics library: ``ControllerStats`` counts, and the
controller entrypoint exports the counts (Prometheus) together with the queue depth and
the Works by phase, read from the controller when scraped.
"""

from __future__ import annotations

from collections import Counter

import attrs

__all__ = ["ControllerStats"]


@attrs.define
class ControllerStats:
    """Counts since the controller started."""

    reconciles: int = 0
    """Reconciles run (one per key taken from the queue)."""
    errors: int = 0
    """Reconciles that raised, by any cause (retried with backoff)."""
    conflicts: int = 0
    """Writes refused with 409 Conflict (a stale read; the key is reconciled again)."""
    created: int = 0
    """Instance objects created."""
    status_writes: int = 0
    """Status writes that were stored."""
    status_writes_held: int = 0
    """Progress statuses held back (``ControllerOptions.status_delay``); each is written
    later unless a newer status replaced it first."""
    stops: int = 0
    """Stop steps (deletes or patches of instance objects) performed."""
    outcomes: Counter[str] = attrs.field(factory=Counter)
    """Works that reached a terminal phase, by phase."""
