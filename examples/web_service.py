"""A tiny web service that enqueues work: POST an image, get a work id, poll for the result.

Run:

    python examples/web_service.py            # http://127.0.0.1:8000
    python examples/worker.py                 # in another terminal: executes the work

    curl -s -X POST localhost:8000/thumbnails -H 'content-type: application/json' \\
         -d '{"image": "cat.png"}'
    curl -s localhost:8000/thumbnails/<id>

Both processes use the store ``WORKQUEUE_DATABASE_URL`` names (default
``sqlite:///workqueue-example.db``; see ``examples/worker_setup.py``). ``PORT`` sets
the port.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import uvicorn
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from msgspec import Struct
from worker_setup import THUMBNAIL, open_broker, thumbnail_spec

from workqueue_core.domain.errors import InvalidInput, UnknownWork
from workqueue_core.domain.models import ExecutionRecord, SubmitRequest, Targeting
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.service.broker import BrokerService


class ThumbnailRequest(Struct):
    image: str
    seconds: float = 0.1
    idempotency_key: str | None = None


@asynccontextmanager
async def broker_lifespan(app: Litestar) -> AsyncIterator[None]:
    async with open_broker() as broker:
        app.state.broker = broker
        yield


def _broker(state: State) -> BrokerService:
    broker: BrokerService = state.broker
    return broker


@post("/thumbnails", status_code=202)
async def enqueue(data: ThumbnailRequest, state: State) -> dict[str, Any]:
    """Queue a thumbnail; any worker with the ``thumbnail`` handler may run it."""
    if not data.image or len(data.image) > 1000:
        raise ValidationException("image must be 1-1000 characters")
    if not 0 <= data.seconds <= 600:
        raise ValidationException("seconds must be in 0..600")
    try:
        submitted = await _broker(state).submit(
            SubmitRequest(
                work_type=THUMBNAIL,
                spec=thumbnail_spec(data.image, data.seconds),
                targeting=Targeting.labels("role=thumbnails"),
                retry_policy=RetryPolicy(max_retries=3, base_delay=timedelta(seconds=5)),
                claim_timeout=timedelta(seconds=120),
                idempotency_key=data.idempotency_key,
            ),
            actor="web-service",
        )
    except InvalidInput as error:
        raise ValidationException(str(error)) from None
    return {"id": str(submitted.item.id), "created": submitted.created}


@get("/thumbnails/{work_id:uuid}")
async def status(work_id: UUID, state: State) -> dict[str, Any]:
    """Where the work is: queued (with its attempt) or finished (with its result)."""
    try:
        found = await _broker(state).get(work_id)
    except UnknownWork:
        raise NotFoundException(f"no thumbnail work {work_id}") from None
    if isinstance(found, ExecutionRecord):
        last = found.item.last_error
        return {
            "id": str(work_id),
            "status": found.status.value,
            "result": found.result,
            "attempts": found.item.executions,
            "error": None if last is None else f"{last.reason}: {last.message}",
        }
    error = found.last_error
    return {
        "id": str(work_id),
        "status": found.status.value,
        "attempts": found.executions,
        "error": None if error is None else f"{error.reason}: {error.message}",
    }


app = Litestar(route_handlers=[enqueue, status], lifespan=[broker_lifespan])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
