"""Errors as the CLI reports them: one line and an exit status."""

from __future__ import annotations

from workqueue_broker.config import ConfigError
from workqueue_cli.commands import UsageError
from workqueue_core.domain.errors import InvalidInput, StoreUnavailable, WorkqueueError

USAGE = 2
FAILED = 1


def _connection_error(error: BaseException) -> str | None:
    """Why the broker could not be reached, when ``error`` is a transport failure."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with the broker extra
        httpx = None  # type: ignore[assignment]
    if httpx is not None and isinstance(error, httpx.TimeoutException):
        return "timed out"
    if httpx is not None and isinstance(error, httpx.TransportError):
        cause = error.__cause__ or error.__context__
        text = str(cause or error) or type(error).__name__
        if "refused" in text.lower() or "Connect" in type(error).__name__:
            return f"connection refused or failed ({text})"
        return text
    if isinstance(error, ConnectionError | TimeoutError):
        return str(error) or type(error).__name__
    return None


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _client_error(error: BaseException, url: str) -> str | None:
    """The line for the HTTP client's own errors (unreachable, refused token, odd answer)."""
    try:
        from workqueue_http.client import AuthError, BrokerError, BrokerUnreachable
    except ImportError:  # pragma: no cover - the client comes with the broker extra
        return None
    if isinstance(error, BrokerUnreachable):
        cause = error.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        return f"cannot reach the broker at {url} ({reason})"
    if isinstance(error, AuthError):
        if error.status == 401:
            return (
                f"the broker refused the token (401: {error.detail}); "
                "check --token, WORKQUEUE_TOKEN or --token-file"
            )
        return f"not allowed with this token (403: {error.detail})"
    if isinstance(error, BrokerError):
        return f"the broker answered {error.status}: {error.detail}"
    return None


def explain(error: BaseException, url: str) -> tuple[str, int]:
    """One line for ``error`` (no traceback) and the exit status."""
    error = _first(error)
    if isinstance(error, UsageError | ConfigError):
        return str(error), USAGE
    line = _client_error(error, url)
    if line is not None:
        return line, FAILED
    reason = _connection_error(error)
    if reason is not None:
        return f"cannot reach the broker at {url}: {reason}", FAILED
    if isinstance(error, InvalidInput):
        return str(error), USAGE
    if isinstance(error, StoreUnavailable):
        return f"the broker's store is unavailable: {error}", FAILED
    if isinstance(error, WorkqueueError):
        return f"{error} [{error.code}]", FAILED
    if isinstance(error, OSError):
        return f"{error.strerror or error}", FAILED
    return f"{type(error).__name__}: {error}", FAILED
