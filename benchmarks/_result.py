"""The outcome of one drain: how many items, how long, and whether all were done."""

from __future__ import annotations

import attrs

from benchmarks._stats import rate


@attrs.frozen
class DrainResult:
    """A drain of ``submitted`` items, ``completed`` of which were found done afterwards."""

    system: str
    submitted: int
    completed: int
    seconds: float
    enqueue_seconds: float
    settings: str = ""
    error: str | None = None

    @property
    def jobs_per_second(self) -> float:
        """Drain throughput."""
        return rate(self.completed, self.seconds)

    @property
    def enqueue_per_second(self) -> float:
        """Submit throughput (informational; not part of the drain time)."""
        return rate(self.submitted, self.enqueue_seconds)

    @property
    def complete(self) -> bool:
        """True when every submitted item was completed exactly as counted in the tables."""
        return self.error is None and self.completed == self.submitted


def failed(system: str, submitted: int, error: BaseException | str) -> DrainResult:
    """A drain that could not run."""
    return DrainResult(system, submitted, 0, 0.0, 0.0, error=str(error) or repr(error))
