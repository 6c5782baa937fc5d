"""What a handler sees and returns: the job, the handler registry and the failure exceptions.

A handler is ``async def handler(job: Job) -> str | None``: its return value is the
result recorded in the execution log; raising ``PermanentError`` or
``RetryableError`` names the failure class; any other exception goes through the
worker's classify hook (default: retryable, reason = the exception's type name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from uuid import UUID

import attrs

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.limits import (
    MAX_MESSAGE_BYTES,
    MAX_REASON_CHARS,
    MAX_RESULT_BYTES,
    work_type_problem,
)
from workqueue_core.domain.models import Failure, WorkItem

__all__ = [
    "INVALID_RESULT",
    "Classifier",
    "Handler",
    "HandlerEntry",
    "Handlers",
    "Job",
    "Outcome",
    "PermanentError",
    "RetryableError",
    "Success",
    "checked_result",
    "clean_failure",
    "default_classify",
]


class Job:
    """One claimed attempt of a work item, as its handler sees it.

    ``report_local_retries(n)`` tells the broker that the handler retried the work
    ``n`` times itself; heartbeats and the final report charge them to the item's
    single retry budget.
    """

    __slots__ = ("_local_retries", "item")

    def __init__(self, item: WorkItem) -> None:
        self.item = item
        self._local_retries = 0

    @property
    def id(self) -> UUID:
        """The work item's id."""
        return self.item.id

    @property
    def work_type(self) -> str:
        """The work item's type."""
        return self.item.work_type

    @property
    def spec(self) -> str:
        """The work item's spec text."""
        return self.item.spec

    @property
    def labels(self) -> dict[str, str]:
        """The work item's labels (free metadata)."""
        return dict(self.item.labels)

    @property
    def attempt(self) -> int:
        """The claim number of this attempt (1 for the first claim)."""
        return self.item.attempt

    @property
    def correlation_id(self) -> str | None:
        """The correlation id the submitter gave (or the item's id)."""
        return self.item.correlation_id

    @property
    def local_retries(self) -> int:
        """Local retries reported so far in this attempt."""
        return self._local_retries

    def report_local_retries(self, count: int) -> None:
        """Report that the handler has retried the work ``count`` times within this attempt."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"local retries must be a non-negative integer, got {count!r}")
        self._local_retries = max(self._local_retries, count)

    def __repr__(self) -> str:
        return f"Job({self.work_type} {self.id} attempt {self.attempt})"


Handler = Callable[[Job], Awaitable[str | None]]
"""``async def handler(job: Job) -> str | None``."""

Classifier = Callable[[BaseException], Failure]
"""Maps an exception a handler raised (other than the two below) to a failure."""


def _printable(text: str) -> str:
    """``text`` without NUL characters or lone surrogates (which no store can keep)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def clean_failure(failure: Failure) -> Failure:
    """The failure cut to what the broker accepts.

    The reason keeps at most ``MAX_REASON_CHARS`` characters (``"Error"`` when
    empty), the message at most ``MAX_MESSAGE_BYTES`` UTF-8 bytes; NUL characters
    and lone surrogates are dropped.
    """
    reason = _printable(failure.reason)[:MAX_REASON_CHARS] or "Error"
    message = _printable(failure.message)
    data = message.encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        message = data[: MAX_MESSAGE_BYTES - 3].decode("utf-8", "ignore") + "…"
    if (reason, message) == (failure.reason, failure.message):
        return failure
    return Failure(failure.failure_class, reason, message)


class _HandlerError(Exception):
    """A failure a handler raises on purpose, with its reason and message."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message

    @property
    def failure(self) -> Failure:
        """The failure the worker reports."""
        raise NotImplementedError  # pragma: no cover


class PermanentError(_HandlerError):
    """Raise from a handler for a failure no retry can fix: the item ends FAILED at once."""

    @property
    def failure(self) -> Failure:
        """A PERMANENT failure with this reason and message."""
        return clean_failure(Failure.permanent(self.reason, self.message))


class RetryableError(_HandlerError):
    """Raise from a handler for a transient failure: retried with backoff while budget lasts."""

    @property
    def failure(self) -> Failure:
        """A RETRYABLE failure with this reason and message."""
        return clean_failure(Failure.retryable(self.reason, self.message))


def default_classify(error: BaseException) -> Failure:
    """Unknown exceptions are retryable, named by their type (DESIGN §4)."""
    return clean_failure(Failure.retryable(type(error).__name__, str(error)))


@attrs.frozen
class Success:
    """A handler returned: ``result`` becomes the log record's result."""

    result: str | None = None


Outcome = Success | Failure
"""How one attempt ended, as the worker reports it."""

INVALID_RESULT = "InvalidResult"
"""Reason of the permanent failure of a result the broker cannot keep."""


_NO_RESULT = Success(None)


def checked_result(result: object) -> Outcome:
    """A handler's return value as the outcome to report (a bad result fails permanently)."""
    if result is None or result == "":
        return _NO_RESULT
    if not isinstance(result, str):
        message = f"a handler must return str or None, not {type(result).__name__}"
        return Failure.permanent(INVALID_RESULT, message)
    if "\x00" in result:
        return Failure.permanent(INVALID_RESULT, "the result contains NUL characters")
    try:
        size = len(result.encode("utf-8"))
    except UnicodeEncodeError:
        return Failure.permanent(INVALID_RESULT, "the result is not valid Unicode text")
    if size > MAX_RESULT_BYTES:
        return Failure.permanent(
            INVALID_RESULT, f"the result is {size} bytes; the limit is {MAX_RESULT_BYTES}"
        )
    return Success(result)


def _check_timeout(_: object, __: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not value > 0:
        raise InvalidInput(f"a handler timeout must be positive seconds, got {value}")


@attrs.frozen
class HandlerEntry:
    """A registered handler and its per-attempt timeout (None: the worker's default)."""

    fn: Handler
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)


class Handlers:
    """Handlers by work type; one registry may be shared by several workers."""

    def __init__(self) -> None:
        self._entries: dict[str, HandlerEntry] = {}

    def register(self, work_type: str, fn: Handler, *, timeout: float | None = None) -> None:
        """Run ``fn`` for items of ``work_type``; ``timeout`` bounds each attempt (seconds)."""
        problem = work_type_problem(work_type)
        if problem is not None:
            raise InvalidInput(problem)
        if work_type in self._entries:
            raise InvalidInput(f"a handler for {work_type!r} is already registered")
        if not callable(fn):
            raise InvalidInput(f"the handler for {work_type!r} is not callable")
        self._entries[work_type] = HandlerEntry(fn, timeout)

    def handler(
        self, work_type: str, *, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``register``: ``@handlers.handler("resize")``."""

        def decorate(fn: Handler) -> Handler:
            self.register(work_type, fn, timeout=timeout)
            return fn

        return decorate

    def get(self, work_type: str) -> HandlerEntry | None:
        """The entry for ``work_type``, or None."""
        return self._entries.get(work_type)

    @property
    def work_types(self) -> list[str]:
        """The registered work types, sorted."""
        return sorted(self._entries)

    def as_mapping(self) -> Mapping[str, HandlerEntry]:
        """A read-only view of the registry."""
        return dict(self._entries)

    def __contains__(self, work_type: object) -> bool:
        return work_type in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.work_types)

    def __len__(self) -> int:
        return len(self._entries)
