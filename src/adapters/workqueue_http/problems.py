"""RFC 9457 problem details: core errors to problems (server) and back (client).

A problem's ``type`` is ``https://workqueue.dev/problems/<code>``, where ``<code>`` is
the core error's stable ``code`` (``errors.py``) or one of the HTTP-level codes
below. Clients dispatch on ``type``, never on ``title`` or ``detail``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from workqueue_core.domain.errors import (
    AgentExists,
    BudgetSpent,
    InvalidInput,
    InvalidTransition,
    LabelError,
    LeaseLost,
    NotClaimable,
    NotClaimOwner,
    NotEligible,
    NotFound,
    SchemaMismatch,
    SelectorError,
    SpecError,
    SpecTooLarge,
    StateConflict,
    StoreUnavailable,
    UnknownAgent,
    UnknownWork,
    WorkCancelled,
    WorkqueueError,
)

PROBLEM_BASE = "https://workqueue.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# HTTP-level problem codes (not core errors).
BAD_REQUEST = "bad-request"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
ROUTE_NOT_FOUND = "route-not-found"
METHOD_NOT_ALLOWED = "method-not-allowed"
BODY_TOO_LARGE = "body-too-large"
NOT_READY = "not-ready"
INTERNAL_ERROR = "internal-error"
HTTP_ERROR = "http-error"

HTTP_CODES = {
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: ROUTE_NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: BODY_TOO_LARGE,
}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An ``application/problem+json`` body; extension members appear when they apply."""

    type: str
    title: str
    status: int
    detail: str
    work_id: UUID | None = None
    agent_id: UUID | None = None
    attempt: int | None = None
    reason: str | None = None
    state: str | None = None
    event: str | None = None
    limit: int | None = None
    position: int | None = None
    path: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_type(code: str) -> str:
    """The stable ``type`` URI of a problem code."""
    return PROBLEM_BASE + code


def problem_code(type_uri: str) -> str:
    """The code of a ``type`` URI (the URI itself when it is not one of ours)."""
    return type_uri.removeprefix(PROBLEM_BASE)


def _title(code: str) -> str:
    return code.replace("-", " ").capitalize()


def status_for(error: WorkqueueError, *, as_agent: bool = False) -> int:
    """The HTTP status of a core error.

    An agent token trying to claim work it is not eligible for, or to report on a
    claim another agent holds, acts outside its rights: 403 (409 for an admin).
    """
    if as_agent and isinstance(error, NotEligible | NotClaimOwner):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, SpecTooLarge):
        return 413
    if isinstance(error, InvalidInput):
        return 422
    if isinstance(error, StateConflict):
        return 409
    if isinstance(error, StoreUnavailable | SchemaMismatch):
        return 503
    return 500


def problem_for_error(error: WorkqueueError, *, as_agent: bool = False) -> Problem:
    """The problem a core error is served as, with its identifying fields."""
    problem = Problem(
        type=problem_type(error.code),
        title=_title(error.code),
        status=status_for(error, as_agent=as_agent),
        detail=str(error),
    )
    work_id = getattr(error, "work_id", None)
    agent_id = getattr(error, "agent_id", None)
    problem.work_id = work_id if isinstance(work_id, UUID) else None
    problem.agent_id = agent_id if isinstance(agent_id, UUID) else None
    if isinstance(error, LeaseLost):
        problem.attempt = error.attempt
        problem.reason = error.reason
    elif isinstance(error, NotClaimable | NotEligible):
        problem.reason = error.reason
    elif isinstance(error, InvalidTransition):
        problem.state = error.status
        problem.event = error.event
    elif isinstance(error, BudgetSpent):
        problem.limit = error.limit
    elif isinstance(error, SelectorError):
        problem.position = error.position
        problem.reason = error.detail
    elif isinstance(error, LabelError):
        problem.reason = error.detail
    elif isinstance(error, SpecError):
        problem.path = error.path
        problem.reason = error.detail
    return problem


def http_problem(status: int, detail: str, code: str | None = None) -> Problem:
    """A problem for an HTTP-level failure (auth, routing, body size, validation)."""
    code = code or HTTP_CODES.get(status, HTTP_ERROR)
    return Problem(type=problem_type(code), title=_title(code), status=status, detail=detail)


# --- the client side: problems back to typed errors --------------------------------


def _work_id(p: Problem) -> UUID:
    if p.work_id is None:
        raise KeyError("work_id")
    return p.work_id


def _agent_id(p: Problem) -> UUID:
    if p.agent_id is None:
        raise KeyError("agent_id")
    return p.agent_id


def _lease_lost(p: Problem) -> WorkqueueError:
    return LeaseLost(_work_id(p), p.attempt or 0, p.reason or "the claim is no longer held")


_FACTORIES: dict[str, Callable[[Problem], WorkqueueError]] = {
    UnknownWork.code: lambda p: UnknownWork(_work_id(p)),
    UnknownAgent.code: lambda p: UnknownAgent(_agent_id(p)),
    InvalidTransition.code: lambda p: InvalidTransition(
        _work_id(p), p.state or "?", p.event or "?"
    ),
    NotClaimable.code: lambda p: NotClaimable(_work_id(p), p.reason or ""),
    NotEligible.code: lambda p: NotEligible(_work_id(p), _agent_id(p), p.reason or ""),
    LeaseLost.code: _lease_lost,
    WorkCancelled.code: lambda p: WorkCancelled(_work_id(p), p.attempt or 0),
    NotClaimOwner.code: lambda p: NotClaimOwner(_work_id(p), _agent_id(p)),
    BudgetSpent.code: lambda p: BudgetSpent(_work_id(p), p.limit or 0),
    SelectorError.code: lambda p: SelectorError(p.reason or p.detail, p.position),
    LabelError.code: lambda p: LabelError(p.reason or p.detail),
    SpecError.code: lambda p: SpecError(p.reason or p.detail, p.path or ""),
    SpecTooLarge.code: lambda p: SpecTooLarge(p.reason or p.detail, p.path or ""),
}

_CLASSES: dict[str, type[WorkqueueError]] = {
    cls.code: cls
    for cls in (
        WorkqueueError,
        NotFound,
        UnknownWork,
        UnknownAgent,
        StateConflict,
        InvalidTransition,
        NotClaimable,
        NotEligible,
        LeaseLost,
        WorkCancelled,
        NotClaimOwner,
        BudgetSpent,
        AgentExists,
        InvalidInput,
        SelectorError,
        LabelError,
        SpecError,
        SpecTooLarge,
        StoreUnavailable,
        SchemaMismatch,
    )
}


def error_for_problem(problem: Problem) -> WorkqueueError | None:
    """The core error a problem stands for, or None when its type is not a core error's."""
    code = problem_code(problem.type)
    cls = _CLASSES.get(code)
    if cls is None:
        return None
    factory = _FACTORIES.get(code)
    if factory is None:
        return cls(problem.detail)
    try:
        return factory(problem)
    except (KeyError, TypeError, ValueError):
        # Identifying fields missing: the right class, with the message only.
        error = cls.__new__(cls)
        Exception.__init__(error, problem.detail)
        return error
