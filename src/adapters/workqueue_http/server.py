"""The broker's ASGI application: ``create_app`` wires the API, errors, health and metrics.

Every error leaves as ``application/problem+json`` (``problems.py``): core errors by
their code, HTTP-level failures (auth, routing, validation, body size, nesting depth)
by theirs. Anything else is a bug: it is logged with its traceback and answered with a
500 problem that reveals nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast
from uuid import UUID

import msgspec
import structlog
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Server, Tag
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.service.broker import BrokerService
from workqueue_http import wire
from workqueue_http.auth import Authenticator
from workqueue_http.metrics import BrokerMetrics
from workqueue_http.nesting import BodyTooDeep, DepthCheckedRequest
from workqueue_http.problems import (
    INTERNAL_ERROR,
    NOT_READY,
    PROBLEM_MEDIA_TYPE,
    Problem,
    http_problem,
    problem_for_error,
)
from workqueue_http.routes import ApiContext, ReadyCheck, api_context, api_router, caller_of

__all__ = ["OPENAPI_PATH", "create_app"]

OPENAPI_PATH = "/schema/openapi.json"

log = structlog.get_logger("workqueue.http")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    """A problem as an ``application/problem+json`` response."""
    return Response(
        msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


# --- exception handlers ------------------------------------------------------------


def _on_core_error(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    assert isinstance(error, WorkqueueError)
    caller = caller_of(request)
    problem = problem_for_error(error, as_agent=caller is not None and not caller.is_admin)
    if problem.status >= 500:
        log.warning("store error", error=str(error), code=error.code, path=request.url.path)
    return problem_response(problem)


def _validation_errors(extra: object) -> list[dict[str, Any]] | None:
    if not isinstance(extra, list):
        return None
    return [
        {str(k): str(v) for k, v in entry.items()} for entry in extra if isinstance(entry, dict)
    ] or None


def _on_http_error(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    assert isinstance(error, HTTPException)
    status = error.status_code
    if status >= 500:
        return _on_unexpected(request, error)
    problem = http_problem(status, str(error.detail))
    if isinstance(error, ValidationException):
        problem.errors = _validation_errors(error.extra)
    if isinstance(error, BodyTooDeep):
        problem.limit = error.limit
    headers = {k: v for k, v in (error.headers or {}).items() if k.lower() == "allow"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="workqueue"'
    return problem_response(problem, headers or None)


def _on_recursion(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """Input nested deeper than the decoder's recursion limit: the client's fault.

    A backstop: ``DepthCheckedRequest`` refuses JSON bodies deeper than
    ``MAX_JSON_DEPTH`` before they are decoded.
    """
    return problem_response(http_problem(400, "the request body is nested too deeply"))


def _on_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    log.error(
        "unhandled error",
        method=request.method,
        path=request.url.path,
        exc_info=(type(error), error, error.__traceback__),
    )
    return problem_response(
        http_problem(500, "an internal error occurred; it has been logged", INTERNAL_ERROR)
    )


# --- request logging and latency ---------------------------------------------------


def observe_requests(metrics: BrokerMetrics) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware: one structured log line and one latency sample per request.

    Logged: method, route template, status, duration, and who called (``admin`` or
    ``agent:<id>``). Never headers or bodies, so never tokens.
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_observed(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_observed)
            finally:
                elapsed = time.perf_counter() - started
                route = str(scope.get("path_template") or "unmatched")
                method = str(scope.get("method", "?"))
                metrics.observe_request(method, route, status, elapsed)
                state = scope.get("state") or {}
                caller = state.get("caller")
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    caller=getattr(caller, "actor", None),
                )

        return observed

    return middleware


# --- health, readiness, metrics ----------------------------------------------------


@get("/healthz", summary="Liveness: the process serves requests", tags=["operations"])
async def healthz() -> wire.HealthOut:
    return wire.HealthOut(status="ok")


@get(
    "/readyz",
    summary="Readiness: the store is reachable and migrated",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            data_container=Problem,
            description="Not ready: the store is unreachable or not migrated.",
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
    },
)
async def readyz(request: Request[Any, Any, Any]) -> Response[wire.HealthOut]:
    try:
        await api_context(request).ready_check()
    except Exception as error:  # any failure means "not ready", never a 500
        log.warning("not ready", error=str(error), error_type=type(error).__name__)
        detail = str(error) if isinstance(error, WorkqueueError) else type(error).__name__
        problem = problem_response(http_problem(503, f"not ready: {detail}", NOT_READY))
        return cast(Response[wire.HealthOut], problem)  # documented as the 503 response
    return Response(wire.HealthOut(status="ready"))


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx = api_context(request)
    try:
        ctx.metrics.set_stats(await ctx.service.stats())
    except WorkqueueError as error:
        log.warning("metrics: stats unavailable", error=str(error))
        ctx.metrics.queue_depth.clear()
        ctx.metrics.log_records.clear()
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# --- the application ---------------------------------------------------------------


def _store_ready(service: BrokerService) -> ReadyCheck:
    async def check() -> None:
        await service.store.get_agent(UUID(int=0))

    return check


def create_app(
    service: BrokerService,
    *,
    admin_tokens: Sequence[str],
    max_body_bytes: int = 1_048_576,
    ready_check: Callable[[], Awaitable[None]] | None = None,
    metrics_registry: CollectorRegistry | None = None,
    metrics: BrokerMetrics | None = None,
) -> Litestar:
    """The broker's ASGI app over ``service``.

    ``admin_tokens`` are given in clear and kept only hashed. ``ready_check`` backs
    ``/readyz`` (default: one cheap store lookup). Metrics go to ``metrics`` (or a
    new ``BrokerMetrics`` in ``metrics_registry``); the app keeps them in
    ``app.state.metrics`` so the maintenance loop can ``observe_sweep`` into them.
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    metrics = metrics if metrics is not None else BrokerMetrics(metrics_registry)
    context = ApiContext(
        service=service,
        auth=Authenticator(service, admin_tokens),
        metrics=metrics,
        ready_check=ready_check or _store_ready(service),
    )
    openapi = OpenAPIConfig(
        title="workqueue broker",
        version="1",
        description=(
            "Submit, route, claim and complete transient work. Errors are RFC 9457 problems "
            "(`application/problem+json`) whose `type` is "
            "`https://workqueue.dev/problems/<code>`."
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        servers=[Server(url="/")],
        components=Components(
            security_schemes={
                "bearerAuth": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An admin token, or the agent token `POST /agents` returned.",
                )
            }
        ),
        tags=[Tag(name="operations", description="Health, readiness and metrics.")],
    )
    return Litestar(
        route_handlers=[api_router(), healthz, readyz, metrics_endpoint],
        exception_handlers={
            WorkqueueError: _on_core_error,
            HTTPException: _on_http_error,
            RecursionError: _on_recursion,
            Exception: _on_unexpected,
        },
        middleware=[observe_requests(metrics)],
        openapi_config=openapi,
        request_max_body_size=max_body_bytes,
        request_class=DepthCheckedRequest,
        state=State({"api": context, "metrics": metrics}),
        logging_config=None,
        debug=False,
    )
