"""``BatchSubmitStore``: a store that can store many new items in one transaction.

Optional: the service uses it for batch submits when a store has it and submits one
item at a time otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from workqueue_core.domain.models import SubmitResult, WorkItem


@runtime_checkable
class BatchSubmitStore(Protocol):
    """Stores several new items at once, all or nothing."""

    async def submit_many(
        self, items: Sequence[WorkItem], actor: str, now: datetime
    ) -> list[SubmitResult]:
        """``submit`` of each item in order, in one transaction.

        Each answer is the one ``submit`` gives (an idempotency key already taken,
        also by an earlier item of the batch, answers with the item that holds it).
        Any refusal (``InvalidInput`` for an id that exists) or store failure stores
        nothing.
        """
        ...
