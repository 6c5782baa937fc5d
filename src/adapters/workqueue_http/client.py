"""The broker client: ``BrokerService``'s methods, over HTTP.

Each method has the name, signature and return type of the ``BrokerService``
method it mirrors, so code written against the service (an in-process executor's
work source, the CLI) runs against a remote broker unchanged. Problems come back
as the core's typed errors (``LeaseLost``, ``NotEligible``, ...); 401/403 without a
core error type raise ``AuthError``.

Connection failures are retried with exponential backoff: always when the request
cannot have reached the broker (connect errors), and for any transport error on
requests that are safe to repeat (reads, heartbeats, completions: completion is
idempotent per claim token, submits carrying an idempotency key). HTTP errors are
never retried. When the retries are spent, ``BrokerUnreachable`` (a
``StoreUnavailable``) is raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import anyio
import httpx
import msgspec

from workqueue_core.domain.errors import StoreUnavailable, WorkqueueError
from workqueue_core.domain.limits import MAX_BATCH
from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    IssuedAgent,
    LogQuery,
    Stats,
    SubmitRequest,
    SubmitResult,
    WorkItem,
    WorkQuery,
    quiet_outcomes,
)
from workqueue_http import wire
from workqueue_http.problems import Problem, error_for_problem

__all__ = ["AuthError", "BrokerClient", "BrokerError", "BrokerUnreachable"]

T = TypeVar("T")

API = "/api/v1"


class AuthError(Exception):
    """The broker refused the token (401) or its rights (403)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class BrokerError(Exception):
    """An error response the client cannot map to a core error (a broker bug or a proxy)."""

    def __init__(self, status: int, detail: str, problem_type: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem_type = problem_type


class BrokerUnreachable(StoreUnavailable):
    """The broker could not be reached, even after the retries."""

    code = "broker-unreachable"


_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


def _agent_path(agent_id: UUID) -> str:
    return f"{API}/agents/{agent_id}"


def _work_path(work_id: UUID) -> str:
    return f"{API}/work/{work_id}"


class BrokerClient:
    """An async client of the broker REST API; use it as ``async with BrokerClient(...)``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 35.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> BrokerClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close the connection pool (``async with`` does it for you)."""
        await self._http.aclose()

    # --- transport ---------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        repeatable: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        content = msgspec.json.encode(json) if json is not None else None
        send_headers = dict(headers or {})
        if content is not None:
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                return await self._http.request(
                    method, path, content=content, params=params, headers=send_headers
                )
            except httpx.TransportError as error:
                retry = isinstance(error, _CONNECT_ERRORS) or repeatable
                if not retry or attempt >= self.retries:
                    raise BrokerUnreachable(
                        f"broker at {self._http.base_url} unreachable: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                await anyio.sleep(min(self.max_backoff, self.backoff * 2**attempt))
                attempt += 1

    async def _call(
        self,
        method: str,
        path: str,
        response_type: type[T],
        *,
        repeatable: bool,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        response = await self._send(
            method, path, repeatable=repeatable, json=json, params=params, headers=headers
        )
        if response.is_success:
            return msgspec.json.decode(response.content, type=response_type)
        raise _error(response)

    # --- work --------------------------------------------------------------------

    async def submit(self, request: SubmitRequest, actor: str = "admin") -> SubmitResult:
        """Queue new work (``actor`` is decided by the broker from the token).

        The idempotency key travels in the body, so any key the broker accepts can be
        sent (an HTTP header could not carry non-ASCII text or edge whitespace).
        """
        out = await self._call(
            "POST",
            f"{API}/work",
            wire.SubmitOut,
            repeatable=request.idempotency_key is not None,
            json=wire.submit_body_out(request),
        )
        return SubmitResult(wire.view_in(out.work), out.created)

    async def submit_many(
        self, requests: Sequence[SubmitRequest]
    ) -> list[SubmitResult | WorkqueueError]:
        """Queue several items, ``MAX_BATCH`` per request; each entry stands alone.

        Results come in the given order, one per request: the ``SubmitResult``, or the
        error that kept that entry from being stored. A request is retried after a lost
        answer only when every entry in it has an idempotency key.

        When a request fails as a whole (broker unreachable, the store down before it
        stored anything), the list stops there, as the broker's own batch does: if
        nothing was stored yet, the error is raised; otherwise the entries of that
        request and of every later one (not sent) carry the error, and the earlier
        results are kept. A ``StoreUnavailable`` entry may still have been stored (an
        answer lost after the commit): give every item an idempotency key to submit
        the failed entries again safely.
        """
        results: list[SubmitResult | WorkqueueError] = []
        for first in range(0, len(requests), MAX_BATCH):
            chunk = requests[first : first + MAX_BATCH]
            try:
                out = await self._call(
                    "POST",
                    f"{API}/work/batch",
                    wire.SubmitManyOut,
                    repeatable=all(r.idempotency_key is not None for r in chunk),
                    json=wire.SubmitManyBody(items=[wire.submit_body_out(r) for r in chunk]),
                )
                if len(out.results) != len(chunk):
                    raise StoreUnavailable(
                        f"the broker answered {len(out.results)} results for {len(chunk)} items"
                    )
            except WorkqueueError as error:
                if not results:
                    raise
                results.extend(error for _ in range(first, len(requests)))
                break
            results.extend(_submit_outcome(entry) for entry in out.results)
        return results

    async def get(self, work_id: UUID) -> WorkItem | ExecutionRecord:
        out = await self._call("GET", _work_path(work_id), wire.WorkView, repeatable=True)
        return wire.view_in(out)

    async def list_work(self, query: WorkQuery) -> list[WorkItem]:
        params = _query_params(query)
        out = await self._call("GET", f"{API}/work", wire.WorkPage, repeatable=True, params=params)
        return [wire.item_in(i) for i in out.items]

    async def list_log(self, query: LogQuery) -> list[ExecutionRecord]:
        params = _query_params(query)
        out = await self._call(
            "GET", f"{API}/work-log", wire.LogPage, repeatable=True, params=params
        )
        return [wire.record_in(r) for r in out.records]

    async def pending(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        params: dict[str, Any] = {"limit": limit, "wait": wait}
        if work_types is not None:
            params["work_type"] = list(work_types)
        out = await self._call(
            "GET",
            f"{_agent_path(agent_id)}/work/pending",
            wire.WorkList,
            repeatable=True,
            params=params,
        )
        return [wire.item_in(i) for i in out.items]

    async def claim(self, work_id: UUID, agent_id: UUID) -> WorkItem:
        out = await self._call(
            "POST",
            f"{_work_path(work_id)}/claim",
            wire.WorkItemOut,
            repeatable=False,
            json=wire.ClaimBody(agent_id=agent_id),
        )
        return wire.item_in(out)

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        body = wire.ClaimNextBody(
            limit=limit,
            work_types=list(work_types) if work_types is not None else None,
            wait=wait,
        )
        out = await self._call(
            "POST",
            f"{_agent_path(agent_id)}/work/claim",
            wire.WorkList,
            repeatable=False,
            json=body,
        )
        return [wire.item_in(i) for i in out.items]

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, local_retries: int = 0
    ) -> WorkItem:
        body = wire.HeartbeatBody(
            attempt=token.attempt, agent_id=agent_id, local_retries=local_retries
        )
        out = await self._call(
            "POST",
            f"{_work_path(token.work_id)}/heartbeat",
            wire.WorkItemOut,
            repeatable=True,
            json=body,
        )
        return wire.item_in(out)

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        body = wire.CompleteBody(
            attempt=token.attempt, agent_id=agent_id, result=result, local_retries=local_retries
        )
        out = await self._call(
            "POST",
            f"{_work_path(token.work_id)}/complete",
            wire.ExecutionRecordOut,
            repeatable=True,
            json=body,
        )
        return wire.record_in(out)

    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]:
        """Complete several claims; one request per agent, results in the given order."""
        by_agent: dict[UUID, list[int]] = {}
        for index, completion in enumerate(completions):
            by_agent.setdefault(completion.agent_id, []).append(index)
        results: list[ExecutionRecord | WorkqueueError | None] = [None] * len(completions)
        for agent_id, indexes in by_agent.items():
            body = wire.CompleteManyBody(
                completions=[
                    wire.CompletionIn(
                        work_id=completions[i].token.work_id,
                        attempt=completions[i].token.attempt,
                        result=completions[i].result,
                        local_retries=completions[i].local_retries,
                    )
                    for i in indexes
                ]
            )
            out = await self._call(
                "POST",
                f"{_agent_path(agent_id)}/work/complete",
                wire.CompleteManyOut,
                repeatable=True,
                json=body,
            )
            for i, entry in zip(indexes, out.results, strict=True):
                results[i] = _entry_outcome(entry)
        return [r for r in results if r is not None]

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        """As ``complete_many``, answering ``None`` for each completed entry."""
        return quiet_outcomes(await self.complete_many(completions))

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        body = wire.FailBody(
            attempt=token.attempt,
            agent_id=agent_id,
            failure=wire.failure_out(failure),
            local_retries=local_retries,
        )
        out = await self._call(
            "POST",
            f"{_work_path(token.work_id)}/fail",
            wire.WorkView,
            repeatable=False,
            json=body,
        )
        return wire.view_in(out)

    async def release(self, token: ClaimToken, agent_id: UUID, reason: str = "") -> WorkItem:
        body = wire.ReleaseBody(attempt=token.attempt, agent_id=agent_id, reason=reason)
        out = await self._call(
            "POST",
            f"{_work_path(token.work_id)}/release",
            wire.WorkItemOut,
            repeatable=False,
            json=body,
        )
        return wire.item_in(out)

    async def cancel(
        self, work_id: UUID, actor: str = "admin", reason: str = ""
    ) -> ExecutionRecord:
        params = {"reason": reason} if reason else None
        out = await self._call(
            "DELETE", _work_path(work_id), wire.ExecutionRecordOut, repeatable=False, params=params
        )
        return wire.record_in(out)

    async def approve(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        out = await self._call(
            "POST", f"{_work_path(work_id)}/approve", wire.WorkItemOut, repeatable=False
        )
        return wire.item_in(out)

    async def requeue(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        out = await self._call(
            "POST", f"{_work_path(work_id)}/requeue", wire.WorkItemOut, repeatable=False
        )
        return wire.item_in(out)

    async def events(self, work_id: UUID) -> list[Event]:
        out = await self._call(
            "GET", f"{_work_path(work_id)}/events", wire.EventList, repeatable=True
        )
        return [wire.event_in(e) for e in out.events]

    async def stats(self) -> Stats:
        out = await self._call("GET", f"{API}/stats", wire.StatsOut, repeatable=True)
        return wire.stats_in(out)

    # --- agents ------------------------------------------------------------------

    async def register_agent(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> IssuedAgent:
        body = wire.RegisterBody(
            name=name, labels=dict(labels or {}), annotations=dict(annotations or {})
        )
        out = await self._call(
            "POST", f"{API}/agents", wire.IssuedAgentOut, repeatable=False, json=body
        )
        return IssuedAgent(wire.agent_in(out.agent), out.token)

    async def whoami(self) -> Agent:
        """The agent this client's (agent) token belongs to."""
        out = await self._call("GET", f"{API}/agents/me", wire.AgentOut, repeatable=True)
        return wire.agent_in(out)

    async def rotate_agent_token(self, agent_id: UUID) -> IssuedAgent:
        out = await self._call(
            "POST", f"{_agent_path(agent_id)}/token", wire.IssuedAgentOut, repeatable=False
        )
        return IssuedAgent(wire.agent_in(out.agent), out.token)

    async def revoke_agent(self, agent_id: UUID) -> Agent:
        out = await self._call(
            "POST", f"{_agent_path(agent_id)}/revoke", wire.AgentOut, repeatable=True
        )
        return wire.agent_in(out)

    async def get_agent(self, agent_id: UUID) -> Agent:
        out = await self._call("GET", _agent_path(agent_id), wire.AgentOut, repeatable=True)
        return wire.agent_in(out)

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        params = {"status": status.value} if status is not None else None
        out = await self._call(
            "GET", f"{API}/agents", wire.AgentList, repeatable=True, params=params
        )
        return [wire.agent_in(a) for a in out.agents]

    async def update_agent(
        self,
        agent_id: UUID,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        status: AgentStatus | None = None,
    ) -> Agent:
        body = wire.AgentPatchBody(
            labels=dict(labels) if labels is not None else None,
            annotations=dict(annotations) if annotations is not None else None,
            status=status.value if status is not None else None,
        )
        out = await self._call(
            "PATCH", _agent_path(agent_id), wire.AgentOut, repeatable=True, json=body
        )
        return wire.agent_in(out)

    async def drain_agent(self, agent_id: UUID) -> Agent:
        out = await self._call(
            "POST", f"{_agent_path(agent_id)}/drain", wire.AgentOut, repeatable=True
        )
        return wire.agent_in(out)

    async def agent_heartbeat(self, agent_id: UUID) -> Agent:
        out = await self._call(
            "POST", f"{_agent_path(agent_id)}/heartbeat", wire.AgentOut, repeatable=True
        )
        return wire.agent_in(out)

    # --- operations --------------------------------------------------------------

    async def ready(self) -> bool:
        """True when ``/readyz`` answers 200."""
        response = await self._send("GET", "/readyz", repeatable=True)
        return response.status_code == 200


def _query_params(query: WorkQuery | LogQuery) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": query.limit}
    if query.work_type is not None:
        params["work_type"] = query.work_type
    if query.status is not None:
        params["status"] = query.status.value
    if query.claimed_by is not None:
        params["claimed_by"] = str(query.claimed_by)
    if query.after is not None:
        params["after"] = wire.encode_cursor(query.after)
    return params


def _entry_outcome(entry: wire.CompletionResult) -> ExecutionRecord | WorkqueueError:
    if entry.record is not None:
        return wire.record_in(entry.record)
    return _entry_error(entry.error, "a record")


def _submit_outcome(entry: wire.SubmitEntryOut) -> SubmitResult | WorkqueueError:
    if entry.work is not None:
        return SubmitResult(wire.view_in(entry.work), bool(entry.created))
    return _entry_error(entry.error, "the work")


def _entry_error(problem: Problem | None, wanted: str) -> WorkqueueError:
    """The error a batch entry's problem stands for."""
    if problem is None:
        return WorkqueueError(f"the broker returned neither {wanted} nor an error")
    error = error_for_problem(problem)
    return error if error is not None else WorkqueueError(problem.detail)


def _error(response: httpx.Response) -> Exception:
    """The exception an error response stands for."""
    status = response.status_code
    problem: Problem | None = None
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except (msgspec.DecodeError, msgspec.ValidationError):
        problem = None
    if problem is not None:
        error = error_for_problem(problem)
        if error is not None:
            return error
        if status in (401, 403):
            return AuthError(status, problem.detail)
        return BrokerError(status, problem.detail, problem.type)
    text = response.text[:200] if response.content else response.reason_phrase
    if status in (401, 403):
        return AuthError(status, text)
    if status in (502, 503, 504):
        return StoreUnavailable(f"broker answered {status}: {text}")
    return BrokerError(status, text)
