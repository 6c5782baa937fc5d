"""Input validation of the broker's use cases: every bound a caller can cross, refused with
``InvalidInput`` (or a subclass) naming the field, before a store sees the input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from workqueue_core.domain.errors import InvalidInput, LabelError, SelectorError, SpecTooLarge
from workqueue_core.domain.limits import (
    MAX_AGENT_IDS,
    MAX_ANNOTATION_KEY_CHARS,
    MAX_ANNOTATION_VALUE_BYTES,
    MAX_ANNOTATIONS,
    MAX_BATCH,
    MAX_CALLBACK_URL_CHARS,
    MAX_CLAIM_TIMEOUT,
    MAX_LABELS,
    MAX_MESSAGE_BYTES,
    MAX_PRIORITY,
    MAX_REASON_CHARS,
    MAX_RESULT_BYTES,
    MAX_SPEC_BYTES,
    MAX_TEXT,
    MAX_WAIT,
    MAX_WORK_TYPES,
    work_type_problem,
)
from workqueue_core.domain.models import Completion, Failure, SubmitRequest, Targeting
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.domain.selectors import validate_labels


def utf8_size(name: str, value: str) -> int:
    """Bytes of ``value`` in UTF-8; InvalidInput for lone surrogates (not valid Unicode)."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} must be valid Unicode (it has a lone surrogate)") from None


def no_nul(name: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    utf8_size(name, value)


def bounded_text(name: str, value: str | None, limit: int = MAX_TEXT) -> None:
    if value is not None and not 0 < len(value) <= limit:
        raise InvalidInput(f"{name} must be 1-{limit} characters")


def bounded_bytes(name: str, value: str | None, limit: int) -> None:
    """``value`` is a string (possibly empty) of at most ``limit`` UTF-8 bytes, without NUL."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
    no_nul(name, value)
    size = utf8_size(name, value)
    if size > limit:
        raise InvalidInput(f"{name} is {size} bytes; the limit is {limit}")


def check_labels(labels: Mapping[str, str]) -> None:
    """Labels (data, not a selector): at most ``MAX_LABELS`` valid Kubernetes labels."""
    if not isinstance(labels, Mapping):
        raise LabelError(f"labels must be a mapping, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise LabelError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    try:
        validate_labels(labels)
    except SelectorError as error:
        raise LabelError(error.detail) from None


def check_annotations(annotations: Mapping[str, str]) -> None:
    """Free-form agent annotations, bounded in number and size."""
    if not isinstance(annotations, Mapping):
        raise InvalidInput(f"annotations must be a mapping, got {type(annotations).__name__}")
    if len(annotations) > MAX_ANNOTATIONS:
        raise InvalidInput(f"at most {MAX_ANNOTATIONS} annotations, got {len(annotations)}")
    for key, value in annotations.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_ANNOTATION_KEY_CHARS:
            raise InvalidInput(
                f"annotation keys must be 1-{MAX_ANNOTATION_KEY_CHARS} characters, got {key!r:.80}"
            )
        no_nul("annotation key", key)
        bounded_bytes(f"annotation {key!r:.80}", value, MAX_ANNOTATION_VALUE_BYTES)


def check_failure(failure: Failure) -> None:
    if not isinstance(failure, Failure):
        raise InvalidInput(f"failure must be a Failure, got {type(failure).__name__}")
    if len(failure.reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"failure reason must be at most {MAX_REASON_CHARS} characters")
    no_nul("failure reason", failure.reason)
    bounded_bytes("failure message", failure.message, MAX_MESSAGE_BYTES)


def check_local_retries(local_retries: int) -> None:
    if isinstance(local_retries, bool) or not isinstance(local_retries, int) or local_retries < 0:
        raise InvalidInput(f"local_retries must be an integer >= 0, got {local_retries!r}")


def check_completions(completions: Sequence[Completion]) -> None:
    if len(completions) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} completions at once")
    for completion in completions:
        if completion.result is not None:
            bounded_bytes("result", completion.result, MAX_RESULT_BYTES)
        if type(completion.local_retries) is not int or completion.local_retries < 0:
            check_local_retries(completion.local_retries)


def check_work_types(work_types: Sequence[str] | None) -> list[str] | None:
    """A list of work type names; a bare string is refused (it would be split into letters).

    An empty list matches no work type (nothing is pending or claimed), unlike None (all).
    """
    if work_types is None:
        return None
    if isinstance(work_types, str | bytes) or not isinstance(work_types, Sequence):
        raise InvalidInput(
            f"work_types must be a list of work type names, got {type(work_types).__name__}"
        )
    if len(work_types) > MAX_WORK_TYPES:
        raise InvalidInput(f"at most {MAX_WORK_TYPES} work types")
    for work_type in work_types:
        if not isinstance(work_type, str):
            raise InvalidInput(f"work types must be strings, got {type(work_type).__name__}")
    return list(work_types)


def check_callback_url(url: str) -> None:
    """An absolute http(s) URL with a host, in printable ASCII, without a fragment.

    Anything else (other schemes, relative URLs, spaces or control characters that
    could split a request line, a bad port) is refused with ``InvalidInput``.
    """
    if not isinstance(url, str):
        raise InvalidInput(f"callback_url must be a string, got {type(url).__name__}")
    if not url.isascii() or any(not c.isprintable() or c.isspace() for c in url):
        raise InvalidInput(
            "callback_url must be printable ASCII without spaces (percent-encode the rest)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as error:
        raise InvalidInput(f"callback_url is not a valid URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("callback_url must be an http(s) URL")
    if not parts.hostname:
        raise InvalidInput("callback_url must name a host")
    if parts.fragment or url.endswith("#"):
        raise InvalidInput("callback_url must not have a fragment")


def check_batch(limit: int) -> None:
    if not 1 <= limit <= MAX_BATCH:
        raise InvalidInput(f"limit must be in 1..{MAX_BATCH}, got {limit}")


def validate_submit(request: SubmitRequest) -> None:
    """Reject a request no store should see; raises ``InvalidInput`` naming the field."""
    for name, value, kind in (
        ("work_type", request.work_type, str),
        ("spec", request.spec, str),
        ("targeting", request.targeting, Targeting),
        ("retry_policy", request.retry_policy, RetryPolicy),
        ("claim_timeout", request.claim_timeout, timedelta),
    ):
        if not isinstance(value, kind):
            raise InvalidInput(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    if isinstance(request.priority, bool) or not isinstance(request.priority, int):
        raise InvalidInput("priority must be an integer")
    if request.not_before is not None and not isinstance(request.not_before, datetime):
        raise InvalidInput("not_before must be a datetime")
    for name, text in (
        ("spec", request.spec),
        ("idempotency_key", request.idempotency_key),
        ("correlation_id", request.correlation_id),
    ):
        if text is not None:
            no_nul(name, text)
    problem = work_type_problem(request.work_type)
    if problem is not None:
        raise InvalidInput(f"work_type: {problem}")
    size = len(request.spec.encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        raise SpecTooLarge(f"the spec is {size} bytes; the limit is {MAX_SPEC_BYTES}")
    if not -MAX_PRIORITY <= request.priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    if not timedelta(seconds=1) <= request.claim_timeout <= MAX_CLAIM_TIMEOUT:
        raise InvalidInput("claim_timeout must be between 1 second and 7 days")
    if request.not_before is not None and request.not_before.tzinfo is None:
        raise InvalidInput("not_before must be timezone-aware")
    bounded_text("idempotency_key", request.idempotency_key)
    bounded_text("correlation_id", request.correlation_id)
    bounded_text("callback_url", request.callback_url, MAX_CALLBACK_URL_CHARS)
    if request.callback_url is not None:
        check_callback_url(request.callback_url)
    check_labels(request.labels)
    if len(request.targeting.agent_ids) > MAX_AGENT_IDS:
        raise InvalidInput(
            f"targeting lists {len(request.targeting.agent_ids)} agent ids; "
            f"the limit is {MAX_AGENT_IDS} (target many agents by a label selector)"
        )


def check_wait(wait: float) -> None:
    """A long-poll wait of 0 to ``MAX_WAIT`` seconds (NaN refused)."""
    if not 0 <= wait <= MAX_WAIT:
        raise InvalidInput(f"wait must be in 0..{MAX_WAIT:g} seconds")
