"""The route handlers of ``/api/v1``: decode, check rights, call the service, encode.

Handlers hold no business rules: the service validates and the store decides.
Every handler documents the problems it can answer with, so the served OpenAPI
document lists each status a client (or schemathesis) can see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, cast
from uuid import UUID

import attrs
import structlog
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import BodyKwarg, HeaderParameter, PathParameter, QueryParameter

from workqueue_core.domain.errors import InvalidInput, WorkqueueError
from workqueue_core.domain.limits import MAX_BATCH, MAX_WAIT, MAX_WORK_TYPES
from workqueue_core.domain.models import (
    AgentStatus,
    ClaimToken,
    Completion,
    ExecutionRecord,
    LogQuery,
    SubmitRequest,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.service.broker import BrokerService
from workqueue_core.service.validation import check_wait
from workqueue_http import wire
from workqueue_http.auth import (
    Authenticator,
    Caller,
    acting_agent,
    require_admin,
    require_self,
)
from workqueue_http.metrics import BrokerMetrics
from workqueue_http.problems import PROBLEM_MEDIA_TYPE, Problem, problem_for_error

log = structlog.get_logger("workqueue.http")

API_PREFIX = "/api/v1"

ReadyCheck = Callable[[], Awaitable[None]]


@attrs.frozen
class ApiContext:
    """What the handlers need, kept in the application state under ``"api"``."""

    service: BrokerService
    auth: Authenticator
    metrics: BrokerMetrics
    ready_check: ReadyCheck


def api_context(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiContext:
    return cast(ApiContext, connection.app.state["api"])


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller | None:
    """The caller the auth guard resolved for this request, if it got that far."""
    caller = connection.scope.get("state", {}).get("caller")
    return caller if isinstance(caller, Caller) else None


def _caller(request: Request[Any, Any, Any]) -> Caller:
    caller = caller_of(request)
    if caller is None:  # pragma: no cover - the guard runs first
        raise PermissionDeniedException(detail="not authenticated")
    return caller


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every ``/api/v1`` route: resolve the bearer token (401 when invalid)."""
    ctx = api_context(connection)
    caller = await ctx.auth.caller(connection.headers.get("authorization"))
    connection.scope.setdefault("state", {})["caller"] = caller


# --- documented problems -----------------------------------------------------------

_DESCRIPTIONS = {
    400: "The request is malformed (not JSON, wrong types, missing fields, nested too deeply).",
    401: "No valid bearer token.",
    403: "The token may not do this (an agent acting outside its own rights).",
    404: "Unknown work item or agent.",
    409: "State conflict: not claimable, lease lost, cancelled, budget spent, name taken.",
    413: "The body is over the size limit.",
    422: "Invalid input: bad spec or YAML, invalid selector, out-of-range number.",
    503: "The store is unavailable.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Problem responses for ``statuses`` plus those every API route can answer."""
    every = {400, 401, 403, 413, 422, 503}
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[status],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in sorted(every | set(statuses))
    }


Cursor = Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page.")]
WorkId = Annotated[UUID, PathParameter(description="The work item's id.")]
AgentId = Annotated[UUID, PathParameter(description="The agent's id.")]
Limit = Annotated[int, QueryParameter(description="Most rows returned (1-1000).")]
Wait = Annotated[float, QueryParameter(description=f"Seconds to wait for work (0-{MAX_WAIT:g}).")]
Text = Annotated[str | None, QueryParameter()]
IdempotencyKeyHeader = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", required=False, max_length=255)
]
OptionalId = Annotated[UUID | None, QueryParameter()]
WorkStatusFilter = Annotated[wire.WorkStatusName | None, QueryParameter()]
AgentStatusFilter = Annotated[wire.AgentStatusName | None, QueryParameter()]
_JSON = BodyKwarg()


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"limit must be in 1..1000, got {limit}")
    return limit


MAX_INT32 = 2_147_483_647


def _token(work_id: UUID, attempt: int, local_retries: int) -> ClaimToken:
    """A claim token from the wire, its numbers within what every store can hold."""
    if not 0 <= attempt <= MAX_INT32:
        raise InvalidInput(f"attempt must be in 0..{MAX_INT32}, got {attempt}")
    if not 0 <= local_retries <= MAX_INT32:
        raise InvalidInput(f"local_retries must be in 0..{MAX_INT32}, got {local_retries}")
    return ClaimToken(work_id, attempt)


async def _holder(ctx: ApiContext, caller: Caller, agent_id: UUID | None) -> UUID:
    """The agent a claim-token request acts as; an admin must name a known agent (404)."""
    acting = acting_agent(caller, agent_id)
    if caller.is_admin:
        await ctx.service.get_agent(acting)  # UnknownAgent: 404 unknown-agent
    return acting


def _check_wait(wait: float) -> float:
    check_wait(wait)
    return wait


def _work_types(work_types: Sequence[str] | None) -> list[str] | None:
    if work_types is None:
        return None
    if len(work_types) > MAX_WORK_TYPES:
        raise InvalidInput(f"at most {MAX_WORK_TYPES} work types")
    for work_type in work_types:
        wire.check_text("work_type", work_type)
    return list(work_types)


def _status(value: str | None) -> WorkStatus | None:
    return WorkStatus(value) if value is not None else None


# --- work --------------------------------------------------------------------------


@post(
    "/work",
    status_code=201,
    summary="Submit work",
    description=(
        "Queue a work item (HELD when `requires_approval`). With an `Idempotency-Key` "
        "header (or `idempotency_key` in the body) already used, the original item is "
        "returned with status 200 and nothing is created."
    ),
    responses={
        200: ResponseSpec(
            data_container=wire.SubmitOut,
            description="The idempotency key was used before: the original work.",
            generate_examples=False,
        ),
        **problems(),
    },
)
async def submit_work(
    request: Request[Any, Any, Any],
    data: Annotated[wire.SubmitBody, _JSON],
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response[wire.SubmitOut]:
    ctx = api_context(request)
    caller = _caller(request)
    require_admin(caller)
    submit = wire.submit_request_in(data, idempotency_key)
    result = await ctx.service.submit(submit, actor=caller.actor)
    body = wire.SubmitOut(created=result.created, work=wire.view_out(result.item))
    return Response(body, status_code=201 if result.created else 200)


@post(
    "/work/batch",
    status_code=200,
    summary="Submit several work items at once",
    description=(
        f"Up to {MAX_BATCH} items, each as `POST /work`'s body. Each entry is submitted on "
        "its own, in order: its result is the stored work (with `created` false when its "
        "idempotency key was used before) or the problem it met, and one entry's problem "
        "does not stop the others. When the store fails, the batch stops there: with "
        "nothing stored yet the answer is that 503 problem; otherwise the failed entry and "
        "the ones after it carry it. A batch retried after a lost answer submits its "
        "entries again unless they carry idempotency keys (per item: the "
        "`Idempotency-Key` header is refused here)."
    ),
    responses=problems(),
)
async def submit_many(
    request: Request[Any, Any, Any],
    data: Annotated[wire.SubmitManyBody, _JSON],
    idempotency_key: IdempotencyKeyHeader = None,
) -> wire.SubmitManyOut:
    ctx = api_context(request)
    caller = _caller(request)
    require_admin(caller)
    if idempotency_key is not None:
        raise InvalidInput("a batch takes idempotency keys per item, not an Idempotency-Key")
    if not 1 <= len(data.items) <= MAX_BATCH:
        raise InvalidInput(f"a batch holds 1..{MAX_BATCH} items, got {len(data.items)}")
    requests: list[SubmitRequest | WorkqueueError] = []
    for entry in data.items:
        try:
            requests.append(wire.submit_request_in(entry))
        except WorkqueueError as error:
            requests.append(error)
    answers = iter(
        await ctx.service.submit_many(
            [r for r in requests if isinstance(r, SubmitRequest)], actor=caller.actor
        )
    )
    results: list[wire.SubmitEntryOut] = []
    logged = False
    for request_or_error in requests:
        outcome = next(answers) if isinstance(request_or_error, SubmitRequest) else request_or_error
        if isinstance(outcome, WorkqueueError):
            problem = problem_for_error(outcome, as_agent=False)
            if problem.status >= 500 and not logged:
                logged = True
                log.warning(
                    "store error", error=str(outcome), code=outcome.code, path=request.url.path
                )
            results.append(wire.SubmitEntryOut(created=None, work=None, error=problem))
            continue
        work = wire.view_out(outcome.item)
        results.append(wire.SubmitEntryOut(created=outcome.created, work=work, error=None))
    return wire.SubmitManyOut(results=results)


@get("/work", summary="List queued work", responses=problems())
async def list_work(
    request: Request[Any, Any, Any],
    work_type: Text = None,
    status: WorkStatusFilter = None,
    claimed_by: OptionalId = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> wire.WorkPage:
    ctx = api_context(request)
    require_admin(_caller(request))
    wire.check_text("work_type", work_type)
    query = WorkQuery(
        work_type=work_type,
        status=_status(status),
        claimed_by=claimed_by,
        limit=_check_limit(limit),
        after=wire.decode_cursor(after) if after is not None else None,
    )
    items = await ctx.service.list_work(query)
    return wire.WorkPage(
        items=[wire.item_out(item) for item in items],
        next_cursor=wire.next_cursor(((i.created_at, i.id) for i in items), query.limit),
    )


@get("/work-log", summary="List the execution log", responses=problems())
async def list_log(
    request: Request[Any, Any, Any],
    work_type: Text = None,
    status: WorkStatusFilter = None,
    claimed_by: OptionalId = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> wire.LogPage:
    ctx = api_context(request)
    require_admin(_caller(request))
    wire.check_text("work_type", work_type)
    query = LogQuery(
        work_type=work_type,
        status=_status(status),
        claimed_by=claimed_by,
        limit=_check_limit(limit),
        after=wire.decode_cursor(after) if after is not None else None,
    )
    records = await ctx.service.list_log(query)
    return wire.LogPage(
        records=[wire.record_out(r) for r in records],
        next_cursor=wire.next_cursor(((r.finished_at, r.id) for r in records), query.limit),
    )


def _held_by(caller: Caller, value: object) -> None:
    """An agent reads only an item it holds now, or the log record of a run it ended."""
    if caller.agent is None:
        return
    item = value.item if isinstance(value, ExecutionRecord) else value
    if getattr(item, "claimed_by", None) != caller.agent.id:
        raise PermissionDeniedException(
            detail="an agent may read only work it holds, or the record of a run it ended"
        )


@get(
    "/work/{work_id:uuid}",
    summary="Get a work item (from the queue, or its record from the log)",
    responses=problems(404),
)
async def get_work(request: Request[Any, Any, Any], work_id: WorkId) -> wire.WorkView:
    ctx = api_context(request)
    caller = _caller(request)
    value = await ctx.service.get(work_id)
    _held_by(caller, value)
    return wire.view_out(value)


@delete(
    "/work/{work_id:uuid}",
    status_code=200,
    summary="Cancel a work item",
    responses=problems(404, 409),
)
async def cancel_work(
    request: Request[Any, Any, Any],
    work_id: WorkId,
    reason: Annotated[str, QueryParameter(max_length=1024)] = "",
) -> wire.ExecutionRecordOut:
    ctx = api_context(request)
    caller = _caller(request)
    require_admin(caller)
    wire.check_text("reason", reason)
    record = await ctx.service.cancel(work_id, actor=caller.actor, reason=reason)
    return wire.record_out(record)


@get(
    "/work/{work_id:uuid}/events",
    summary="The event timeline of a work item",
    responses=problems(404),
)
async def work_events(request: Request[Any, Any, Any], work_id: WorkId) -> wire.EventList:
    ctx = api_context(request)
    caller = _caller(request)
    if caller.agent is not None:
        _held_by(caller, await ctx.service.get(work_id))
    events = await ctx.service.events(work_id)
    return wire.EventList(events=[wire.event_out(e) for e in events])


@post(
    "/work/{work_id:uuid}/approve",
    status_code=200,
    summary="Release a HELD work item",
    responses=problems(404, 409),
)
async def approve_work(request: Request[Any, Any, Any], work_id: WorkId) -> wire.WorkItemOut:
    ctx = api_context(request)
    caller = _caller(request)
    require_admin(caller)
    return wire.item_out(await ctx.service.approve(work_id, actor=caller.actor))


@post(
    "/work/{work_id:uuid}/requeue",
    status_code=200,
    summary="Return a FAILED work item to the queue with a fresh budget",
    responses=problems(404, 409),
)
async def requeue_work(request: Request[Any, Any, Any], work_id: WorkId) -> wire.WorkItemOut:
    ctx = api_context(request)
    caller = _caller(request)
    require_admin(caller)
    return wire.item_out(await ctx.service.requeue(work_id, actor=caller.actor))


# --- claims ------------------------------------------------------------------------


@post(
    "/work/{work_id:uuid}/claim",
    status_code=200,
    summary="Claim one work item by id",
    description="An agent token claims for itself; an admin names the agent in `agent_id`.",
    responses=problems(404, 409),
)
async def claim_work(
    request: Request[Any, Any, Any],
    work_id: WorkId,
    data: Annotated[wire.ClaimBody | None, _JSON] = None,
) -> wire.WorkItemOut:
    ctx = api_context(request)
    agent_id = acting_agent(_caller(request), data.agent_id if data is not None else None)
    item = await ctx.service.claim(work_id, agent_id)
    ctx.metrics.observe_claims([item])
    return wire.item_out(item)


@post(
    "/work/{work_id:uuid}/heartbeat",
    status_code=200,
    summary="Extend the lease of a claim",
    responses=problems(404, 409),
)
async def heartbeat_work(
    request: Request[Any, Any, Any], work_id: WorkId, data: Annotated[wire.HeartbeatBody, _JSON]
) -> wire.WorkItemOut:
    ctx = api_context(request)
    agent_id = await _holder(ctx, _caller(request), data.agent_id)
    token = _token(work_id, data.attempt, data.local_retries)
    return wire.item_out(await ctx.service.heartbeat(token, agent_id, data.local_retries))


@post(
    "/work/{work_id:uuid}/complete",
    status_code=200,
    summary="Record the success of a claim (idempotent per claim token)",
    responses=problems(404, 409),
)
async def complete_work(
    request: Request[Any, Any, Any], work_id: WorkId, data: Annotated[wire.CompleteBody, _JSON]
) -> wire.ExecutionRecordOut:
    ctx = api_context(request)
    agent_id = await _holder(ctx, _caller(request), data.agent_id)
    wire.check_text("result", data.result)
    token = _token(work_id, data.attempt, data.local_retries)
    record = await ctx.service.complete(token, agent_id, data.result, data.local_retries)
    ctx.metrics.observe_completions([record])
    return wire.record_out(record)


@post(
    "/work/{work_id:uuid}/fail",
    status_code=200,
    summary="Record the failure of a claim; the broker decides retry or dead letter",
    responses=problems(404, 409),
)
async def fail_work(
    request: Request[Any, Any, Any], work_id: WorkId, data: Annotated[wire.FailBody, _JSON]
) -> wire.WorkView:
    ctx = api_context(request)
    agent_id = await _holder(ctx, _caller(request), data.agent_id)
    failure = wire.failure_in(data.failure)
    token = _token(work_id, data.attempt, data.local_retries)
    outcome = await ctx.service.fail(token, agent_id, failure, data.local_retries)
    ctx.metrics.observe_failure(outcome)
    return wire.view_out(outcome)


@post(
    "/work/{work_id:uuid}/release",
    status_code=200,
    summary="Hand a claim back unfinished: PENDING at once, the run not charged to the budget",
    description=(
        "For an agent shutting down gracefully. The claim token (`attempt`) stays stale; "
        "the next claim gets a fresh one."
    ),
    responses=problems(404, 409),
)
async def release_work(
    request: Request[Any, Any, Any], work_id: WorkId, data: Annotated[wire.ReleaseBody, _JSON]
) -> wire.WorkItemOut:
    ctx = api_context(request)
    agent_id = await _holder(ctx, _caller(request), data.agent_id)
    wire.check_text("reason", data.reason)
    token = _token(work_id, data.attempt, 0)
    return wire.item_out(await ctx.service.release(token, agent_id, data.reason))


@get(
    "/agents/{agent_id:uuid}/work/pending",
    summary="What the agent could claim now",
    description=f"With `wait` > 0 (at most {MAX_WAIT:g} s), waits for work when there is none yet.",
    responses=problems(404),
)
async def pending_work(
    request: Request[Any, Any, Any],
    agent_id: AgentId,
    work_type: Annotated[
        list[str] | None, QueryParameter(description="Only these work types (repeatable).")
    ] = None,
    limit: Limit = 100,
    wait: Wait = 0.0,
) -> wire.WorkList:
    ctx = api_context(request)
    require_self(_caller(request), agent_id)
    work_types = _work_types(work_type)
    _check_limit(limit)
    await ctx.service.get_agent(agent_id)
    items = await ctx.service.pending(agent_id, work_types, limit, _check_wait(wait))
    return wire.WorkList(items=[wire.item_out(i) for i in items])


@post(
    "/agents/{agent_id:uuid}/work/claim",
    status_code=200,
    summary="Claim the next eligible work items",
    description=(
        "Claims up to `limit` items atomically, in claim order. With `wait` > 0 (at most "
        f"{MAX_WAIT:g} s) the request waits for work and returns as soon as some is claimed."
    ),
    responses=problems(404),
)
async def claim_next(
    request: Request[Any, Any, Any],
    agent_id: AgentId,
    data: Annotated[wire.ClaimNextBody | None, _JSON] = None,
) -> wire.WorkList:
    ctx = api_context(request)
    require_self(_caller(request), agent_id)
    body = data or wire.ClaimNextBody()
    work_types = _work_types(body.work_types)
    items = await ctx.service.claim_next(
        agent_id, work_types, _check_limit(body.limit), _check_wait(body.wait)
    )
    ctx.metrics.observe_claims(items)
    return wire.WorkList(items=[wire.item_out(i) for i in items])


@post(
    "/agents/{agent_id:uuid}/work/complete",
    status_code=200,
    summary="Complete several claims of one agent at once",
    description="Each entry succeeds or fails on its own; failures are problems in `error`.",
    responses=problems(404),
)
async def complete_many(
    request: Request[Any, Any, Any],
    agent_id: AgentId,
    data: Annotated[wire.CompleteManyBody, _JSON],
) -> wire.CompleteManyOut:
    ctx = api_context(request)
    caller = _caller(request)
    require_self(caller, agent_id)
    if caller.is_admin:
        await ctx.service.get_agent(agent_id)  # UnknownAgent: 404 unknown-agent
    for entry in data.completions:
        wire.check_text("result", entry.result)
    completions = [
        Completion(
            _token(c.work_id, c.attempt, c.local_retries), agent_id, c.result, c.local_retries
        )
        for c in data.completions
    ]
    outcomes = await ctx.service.complete_many(completions)
    results: list[wire.CompletionResult] = []
    for completion, outcome in zip(completions, outcomes, strict=True):
        if isinstance(outcome, WorkqueueError):
            error = problem_for_error(outcome, as_agent=not caller.is_admin)
            results.append(
                wire.CompletionResult(work_id=completion.token.work_id, record=None, error=error)
            )
        else:
            ctx.metrics.observe_completions([outcome])
            results.append(
                wire.CompletionResult(
                    work_id=completion.token.work_id, record=wire.record_out(outcome), error=None
                )
            )
    return wire.CompleteManyOut(results=results)


# --- agents ------------------------------------------------------------------------


@post(
    "/agents",
    status_code=201,
    summary="Register an agent",
    description="The response holds the agent's bearer token: it is shown only this once.",
    responses=problems(409),
)
async def register_agent(
    request: Request[Any, Any, Any], data: Annotated[wire.RegisterBody, _JSON]
) -> wire.IssuedAgentOut:
    ctx = api_context(request)
    require_admin(_caller(request))
    wire.check_text("name", data.name)
    wire.check_mapping("labels", data.labels)
    wire.check_mapping("annotations", data.annotations)
    issued = await ctx.service.register_agent(data.name, data.labels, data.annotations)
    return wire.IssuedAgentOut(agent=wire.agent_out(issued.agent), token=issued.token)


@get("/agents", summary="List agents", responses=problems())
async def list_agents(
    request: Request[Any, Any, Any], status: AgentStatusFilter = None
) -> wire.AgentList:
    ctx = api_context(request)
    require_admin(_caller(request))
    agents = await ctx.service.list_agents(AgentStatus(status) if status is not None else None)
    return wire.AgentList(agents=[wire.agent_out(a) for a in agents])


@get(
    "/agents/me",
    summary="The agent an agent token belongs to",
    description="For an agent finding its own id from its token; an admin token gets 403.",
    responses=problems(),
)
async def agent_self(request: Request[Any, Any, Any]) -> wire.AgentOut:
    caller = _caller(request)
    if caller.agent is None:
        raise PermissionDeniedException(detail="an admin token is no agent")
    return wire.agent_out(caller.agent)


@post(
    "/agents/{agent_id:uuid}/token",
    status_code=200,
    summary="Rotate an agent's token",
    description="The response holds the new token, shown only this once; the old one gets 401 "
    "from now on.",
    responses=problems(404),
)
async def rotate_agent_token(
    request: Request[Any, Any, Any], agent_id: AgentId
) -> wire.IssuedAgentOut:
    ctx = api_context(request)
    require_admin(_caller(request))
    issued = await ctx.service.rotate_agent_token(agent_id)
    return wire.IssuedAgentOut(agent=wire.agent_out(issued.agent), token=issued.token)


@post(
    "/agents/{agent_id:uuid}/revoke",
    status_code=200,
    summary="Revoke an agent: INACTIVE, its token gets 401 from now on",
    description="Its claims stay until they end or their leases expire; a token rotation "
    "and `status: ACTIVE` bring the agent back.",
    responses=problems(404),
)
async def revoke_agent(request: Request[Any, Any, Any], agent_id: AgentId) -> wire.AgentOut:
    ctx = api_context(request)
    require_admin(_caller(request))
    return wire.agent_out(await ctx.service.revoke_agent(agent_id))


@get("/agents/{agent_id:uuid}", summary="Get an agent", responses=problems(404))
async def get_agent(request: Request[Any, Any, Any], agent_id: AgentId) -> wire.AgentOut:
    ctx = api_context(request)
    require_self(_caller(request), agent_id)
    return wire.agent_out(await ctx.service.get_agent(agent_id))


@patch(
    "/agents/{agent_id:uuid}",
    summary="Relabel an agent or change its status",
    description="Eligibility follows the new labels at once.",
    responses=problems(404),
)
async def update_agent(
    request: Request[Any, Any, Any], agent_id: AgentId, data: Annotated[wire.AgentPatchBody, _JSON]
) -> wire.AgentOut:
    ctx = api_context(request)
    require_admin(_caller(request))
    if data.labels is not None:
        wire.check_mapping("labels", data.labels)
    if data.annotations is not None:
        wire.check_mapping("annotations", data.annotations)
    agent = await ctx.service.update_agent(
        agent_id,
        labels=data.labels,
        annotations=data.annotations,
        status=AgentStatus(data.status) if data.status is not None else None,
    )
    return wire.agent_out(agent)


@post(
    "/agents/{agent_id:uuid}/heartbeat",
    status_code=200,
    summary="Record that the agent is alive",
    responses=problems(404),
)
async def agent_heartbeat(request: Request[Any, Any, Any], agent_id: AgentId) -> wire.AgentOut:
    ctx = api_context(request)
    require_self(_caller(request), agent_id)
    return wire.agent_out(await ctx.service.agent_heartbeat(agent_id))


@post(
    "/agents/{agent_id:uuid}/drain",
    status_code=200,
    summary="Drain an agent: it finishes its claims and claims nothing new",
    responses=problems(404),
)
async def drain_agent(request: Request[Any, Any, Any], agent_id: AgentId) -> wire.AgentOut:
    ctx = api_context(request)
    require_self(_caller(request), agent_id)
    return wire.agent_out(await ctx.service.drain_agent(agent_id))


@get("/stats", summary="Counts by work type and status", responses=problems())
async def stats(request: Request[Any, Any, Any]) -> wire.StatsOut:
    ctx = api_context(request)
    require_admin(_caller(request))
    return wire.stats_out(await ctx.service.stats())


def api_router() -> Router:
    """Every ``/api/v1`` route, behind the bearer-token guard."""
    return Router(
        path=API_PREFIX,
        guards=[authenticate],
        security=[{"bearerAuth": []}],
        route_handlers=[
            submit_work,
            submit_many,
            list_work,
            list_log,
            get_work,
            cancel_work,
            work_events,
            approve_work,
            requeue_work,
            claim_work,
            heartbeat_work,
            complete_work,
            fail_work,
            release_work,
            pending_work,
            claim_next,
            complete_many,
            register_agent,
            list_agents,
            agent_self,
            get_agent,
            rotate_agent_token,
            revoke_agent,
            update_agent,
            agent_heartbeat,
            drain_agent,
            stats,
        ],
    )
