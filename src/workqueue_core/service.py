"""The broker service: the use cases over a ``Store``, a clock and id/token sources.

Entrypoints (HTTP, CLI, in-process workers) call this layer; it validates input,
stamps time and ids, and leaves atomicity to the store.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID

import anyio
import attrs

from workqueue_core.errors import (
    InvalidInput,
    LabelError,
    SelectorError,
    SpecTooLarge,
    UnknownAgent,
    UnknownWork,
    WorkqueueError,
)
from workqueue_core.models import (
    Agent,
    AgentStatus,
    ClaimToken,
    Completion,
    Event,
    ExecutionRecord,
    Failure,
    LogQuery,
    Stats,
    SubmitResult,
    Targeting,
    WorkItem,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.ports import Clock, IdSource, Notifier, Store, TokenSource
from workqueue_core.retry import RetryPolicy
from workqueue_core.selectors import validate_labels
from workqueue_core.specs import validate_spec
from workqueue_core.tokens import TOKEN_PREFIX, hash_token

SpecValidator = Callable[[str, str], None]
"""Checks a spec for a work type; raises ``SpecError``. Arguments: work type, spec text.
The default, ``specs.validate_spec``, checks Work resources of Kubernetes work types."""

WORK_TYPE_RE = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
MAX_SPEC_BYTES = 1_048_576
MAX_PRIORITY = 32_767
MAX_CLAIM_TIMEOUT = timedelta(days=7)
MAX_BATCH = 1000
MAX_TEXT = 255
MAX_LABELS = 64
MAX_REASON_CHARS = 256
MAX_MESSAGE_BYTES = 4096
MAX_RESULT_BYTES = 65_536
MAX_ANNOTATIONS = 64
MAX_ANNOTATION_KEY_CHARS = 253
MAX_ANNOTATION_VALUE_BYTES = 4096
MAX_CALLBACK_URL_CHARS = 2048


def _utf8_size(name: str, value: str) -> int:
    """Bytes of ``value`` in UTF-8; InvalidInput for lone surrogates (not valid Unicode)."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} must be valid Unicode (it has a lone surrogate)") from None


def _no_nul(name: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    _utf8_size(name, value)


def _bounded_text(name: str, value: str | None, limit: int = MAX_TEXT) -> None:
    if value is not None and not 0 < len(value) <= limit:
        raise InvalidInput(f"{name} must be 1-{limit} characters")


def _bounded_bytes(name: str, value: str | None, limit: int) -> None:
    """``value`` is a string (possibly empty) of at most ``limit`` UTF-8 bytes, without NUL."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
    _no_nul(name, value)
    size = _utf8_size(name, value)
    if size > limit:
        raise InvalidInput(f"{name} is {size} bytes; the limit is {limit}")


def _check_labels(labels: Mapping[str, str]) -> None:
    """Labels (data, not a selector): at most ``MAX_LABELS`` valid Kubernetes labels."""
    if not isinstance(labels, Mapping):
        raise LabelError(f"labels must be a mapping, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise LabelError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    try:
        validate_labels(labels)
    except SelectorError as error:
        raise LabelError(error.detail) from None


def _check_annotations(annotations: Mapping[str, str]) -> None:
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
        _no_nul("annotation key", key)
        _bounded_bytes(f"annotation {key!r:.80}", value, MAX_ANNOTATION_VALUE_BYTES)


def _check_failure(failure: Failure) -> None:
    if not isinstance(failure, Failure):
        raise InvalidInput(f"failure must be a Failure, got {type(failure).__name__}")
    if len(failure.reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"failure reason must be at most {MAX_REASON_CHARS} characters")
    _no_nul("failure reason", failure.reason)
    _bounded_bytes("failure message", failure.message, MAX_MESSAGE_BYTES)


def _check_local_retries(local_retries: int) -> None:
    if isinstance(local_retries, bool) or not isinstance(local_retries, int) or local_retries < 0:
        raise InvalidInput(f"local_retries must be an integer >= 0, got {local_retries!r}")


def _check_completions(completions: Sequence[Completion]) -> None:
    if len(completions) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} completions at once")
    for completion in completions:
        _bounded_bytes("result", completion.result, MAX_RESULT_BYTES)
        _check_local_retries(completion.local_retries)


def _check_work_types(work_types: Sequence[str] | None) -> list[str] | None:
    """A list of work type names; a bare string is refused (it would be split into letters).

    An empty list matches no work type (nothing is pending or claimed), unlike None (all).
    """
    if work_types is None:
        return None
    if isinstance(work_types, str | bytes) or not isinstance(work_types, Sequence):
        raise InvalidInput(
            f"work_types must be a list of work type names, got {type(work_types).__name__}"
        )
    if len(work_types) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} work types")
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


def _check_batch(limit: int) -> None:
    if not 1 <= limit <= MAX_BATCH:
        raise InvalidInput(f"limit must be in 1..{MAX_BATCH}, got {limit}")


@attrs.frozen
class SubmitRequest:
    """What a submitter gives; the service adds id, time and queue state."""

    work_type: str
    spec: str
    targeting: Targeting
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    claim_timeout: timedelta = timedelta(seconds=3600)
    priority: int = 0
    not_before: datetime | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    callback_url: str | None = None
    requires_approval: bool = False


@attrs.frozen
class IssuedAgent:
    """A newly registered agent and its token, shown this once and stored only hashed."""

    agent: Agent
    token: str = attrs.field(repr=False)


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
            _no_nul(name, text)
    if not 0 < len(request.work_type) <= 50 or not WORK_TYPE_RE.match(request.work_type):
        raise InvalidInput(
            "work_type must be 1-50 characters of a-z, 0-9, '-', '_' or '.', "
            f"starting and ending alphanumeric; got {request.work_type!r}"
        )
    size = len(request.spec.encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        raise SpecTooLarge(f"the spec is {size} bytes; the limit is {MAX_SPEC_BYTES}")
    if not -MAX_PRIORITY <= request.priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    if not timedelta(seconds=1) <= request.claim_timeout <= MAX_CLAIM_TIMEOUT:
        raise InvalidInput("claim_timeout must be between 1 second and 7 days")
    if request.not_before is not None and request.not_before.tzinfo is None:
        raise InvalidInput("not_before must be timezone-aware")
    _bounded_text("idempotency_key", request.idempotency_key)
    _bounded_text("correlation_id", request.correlation_id)
    _bounded_text("callback_url", request.callback_url, MAX_CALLBACK_URL_CHARS)
    if request.callback_url is not None:
        check_callback_url(request.callback_url)
    _check_labels(request.labels)


class BrokerService:
    """Every broker use case, over one store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: IdSource,
        tokens: TokenSource,
        *,
        notifier: Notifier | None = None,
        spec_validator: SpecValidator | None = validate_spec,
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self._ids = ids
        self._tokens = tokens
        self._notifier = notifier
        self.poll_interval = poll_interval
        self._stopping = False
        self._validate_spec = spec_validator

    # --- work ------------------------------------------------------------------

    async def submit(self, request: SubmitRequest, actor: str = "admin") -> SubmitResult:
        """Queue new work (HELD when approval is required); idempotent on its key."""
        validate_submit(request)
        if self._validate_spec is not None:
            self._validate_spec(request.work_type, request.spec)
        work_id = self._ids()
        now = self.clock.now()
        item = WorkItem(
            id=work_id,
            work_type=request.work_type,
            spec=request.spec,
            targeting=request.targeting,
            created_at=now,
            retry_policy=request.retry_policy,
            claim_timeout=request.claim_timeout,
            priority=request.priority,
            not_before=request.not_before,
            idempotency_key=request.idempotency_key,
            correlation_id=request.correlation_id or str(work_id),
            labels=dict(request.labels),
            callback_url=request.callback_url,
            status=WorkStatus.HELD if request.requires_approval else WorkStatus.PENDING,
        )
        return await self.store.submit(item, actor, now)

    async def get(self, work_id: UUID) -> WorkItem | ExecutionRecord:
        """The item from the queue, or its record from the log.

        Two reads: an item requeued from the log between them is looked up in the
        queue once more before it is called unknown.
        """
        item = await self.store.get(work_id)
        if item is not None:
            return item
        record = await self.store.get_record(work_id)
        if record is not None:
            return record
        item = await self.store.get(work_id)
        if item is not None:
            return item
        raise UnknownWork(work_id)

    async def list_work(self, query: WorkQuery) -> list[WorkItem]:
        """Queued items matching the query."""
        _check_batch(query.limit)
        return await self.store.query(query)

    async def list_log(self, query: LogQuery) -> list[ExecutionRecord]:
        """Execution-log records matching the query."""
        _check_batch(query.limit)
        return await self.store.query_log(query)

    async def pending(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 100,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        """What the agent could claim now, waiting up to ``wait`` s for something to appear.

        ``work_types=[]`` matches nothing; a bare string is refused.
        """
        _check_batch(limit)
        types = _check_work_types(work_types)
        return await self._wait_for(
            lambda: self.store.pending_for(agent_id, self.clock.now(), types, limit), wait
        )

    async def claim(self, work_id: UUID, agent_id: UUID) -> WorkItem:
        """Claim one item by id."""
        return await self.store.claim(work_id, agent_id, self.clock.now())

    async def claim_next(
        self,
        agent_id: UUID,
        work_types: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[WorkItem]:
        """Claim up to ``limit`` items; with ``wait`` > 0, wait up to that long for work.

        Waiting wakes on the notifier and, in any case, re-checks every
        ``poll_interval`` seconds, so items whose ``not_before`` passes (or work
        submitted through another broker without a shared notifier) are found too.
        ``work_types=[]`` matches nothing; a bare string is refused.
        """
        _check_batch(limit)
        types = _check_work_types(work_types)
        return await self._wait_for(
            lambda: self.store.claim_next(agent_id, self.clock.now(), types, limit), wait
        )

    async def _wait_for(
        self, look: Callable[[], Awaitable[list[WorkItem]]], wait: float
    ) -> list[WorkItem]:
        """Call ``look`` until it finds something or ``wait`` s pass; woken by the notifier."""
        if not 0 <= wait <= 30:
            raise InvalidInput("wait must be in 0..30 seconds")
        deadline = anyio.current_time() + wait
        while True:
            mark = self._notifier.mark() if self._notifier is not None else 0
            found = await look()
            remaining = deadline - anyio.current_time()
            if found or remaining <= 0 or self._stopping:
                return found
            pause = min(remaining, self.poll_interval)
            if self._notifier is None:
                await anyio.sleep(pause)
            else:
                await self._notifier.wait(pause, since=mark)

    def stop_waiting(self) -> None:
        """Answer every long-poll now with what it finds, and every later one at once.

        For a broker that is shutting down: its agents get their (usually empty)
        answers instead of connections cut when the shutdown timeout runs out.
        """
        self._stopping = True
        if self._notifier is not None:
            self._notifier.notify()

    async def heartbeat(
        self, token: ClaimToken, agent_id: UUID, local_retries: int = 0
    ) -> WorkItem:
        """Extend a claim's lease; LeaseLost or WorkCancelled tell the agent to stop."""
        _check_local_retries(local_retries)
        return await self.store.heartbeat(token, agent_id, self.clock.now(), local_retries)

    async def complete(
        self,
        token: ClaimToken,
        agent_id: UUID,
        result: str | None = None,
        local_retries: int = 0,
    ) -> ExecutionRecord:
        """Record success (idempotent per token)."""
        _bounded_bytes("result", result, MAX_RESULT_BYTES)
        _check_local_retries(local_retries)
        return await self.store.complete(token, agent_id, self.clock.now(), result, local_retries)

    async def complete_many(
        self, completions: Sequence[Completion]
    ) -> list[ExecutionRecord | WorkqueueError]:
        """Record several successes at once."""
        _check_completions(completions)
        return await self.store.complete_many(completions, self.clock.now())

    async def complete_many_quiet(
        self, completions: Sequence[Completion]
    ) -> list[WorkqueueError | None]:
        """As ``complete_many``, answering ``None`` for each completed entry (no records)."""
        _check_completions(completions)
        return await self.store.complete_many_quiet(completions, self.clock.now())

    async def fail(
        self, token: ClaimToken, agent_id: UUID, failure: Failure, local_retries: int = 0
    ) -> WorkItem | ExecutionRecord:
        """Record a failed attempt; the core decides retry or dead letter."""
        _check_failure(failure)
        _check_local_retries(local_retries)
        return await self.store.fail(token, agent_id, self.clock.now(), failure, local_retries)

    async def cancel(
        self, work_id: UUID, actor: str = "admin", reason: str = ""
    ) -> ExecutionRecord:
        """End an item that has not finished; ``reason`` is kept as the record's result."""
        _bounded_bytes("cancel reason", reason, MAX_MESSAGE_BYTES)
        return await self.store.cancel(work_id, actor, self.clock.now(), reason)

    async def approve(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        """Release a HELD item."""
        return await self.store.approve(work_id, actor, self.clock.now())

    async def requeue(self, work_id: UUID, actor: str = "admin") -> WorkItem:
        """Give a FAILED item a fresh budget."""
        return await self.store.requeue(work_id, actor, self.clock.now())

    async def events(self, work_id: UUID) -> list[Event]:
        """The item's timeline; UnknownWork when the item is unknown (or pruned)."""
        events = await self.store.events(work_id)
        if not events:
            raise UnknownWork(work_id)
        return events

    async def stats(self) -> Stats:
        """Counts by work type and status."""
        return await self.store.stats()

    # --- maintenance -------------------------------------------------------------

    async def sweep(self, limit: int = 1000) -> list[WorkItem | ExecutionRecord]:
        """Turn expired leases into retryable failures."""
        return await self.store.sweep(self.clock.now(), limit)

    async def prune(self, retention: timedelta, limit: int = 10_000) -> int:
        """Delete log records older than ``retention``."""
        if not timedelta(0) <= retention <= timedelta(days=36_500):
            raise InvalidInput("retention must be between 0 and 100 years")
        return await self.store.prune(self.clock.now() - retention, limit)

    # --- agents ------------------------------------------------------------------

    async def register_agent(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> IssuedAgent:
        """Register an agent and issue its token (returned once, stored hashed)."""
        _bounded_text("name", name, 253)
        _no_nul("name", name)
        _check_labels(labels or {})
        _check_annotations(annotations or {})
        token = TOKEN_PREFIX + self._tokens()
        agent = Agent(
            id=self._ids(),
            name=name,
            registered_at=self.clock.now(),
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            token_hash=hash_token(token),
        )
        return IssuedAgent(await self.store.register_agent(agent), token)

    async def authenticate_agent(self, token: str) -> Agent | None:
        """The agent this token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        return await self.store.agent_by_token_hash(hash_token(token))

    async def get_agent(self, agent_id: UUID) -> Agent:
        """The agent, or UnknownAgent."""
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        return agent

    async def list_agents(self, status: AgentStatus | None = None) -> list[Agent]:
        """Agents by name."""
        return await self.store.list_agents(status)

    async def update_agent(
        self,
        agent_id: UUID,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        status: AgentStatus | None = None,
    ) -> Agent:
        """Relabel, re-annotate or change status; the agent's eligibility follows at once.

        The token hash is not changed here: rotating a token replaces the hash
        (``store.update_agent(token_hash=...)``); the port cannot clear it.
        """
        if labels is not None:
            _check_labels(labels)
        if annotations is not None:
            _check_annotations(annotations)
        return await self.store.update_agent(
            agent_id,
            labels=dict(labels) if labels is not None else None,
            annotations=dict(annotations) if annotations is not None else None,
            status=status,
        )

    async def drain_agent(self, agent_id: UUID) -> Agent:
        """Stop the agent claiming; it finishes what it holds."""
        return await self.store.update_agent(agent_id, status=AgentStatus.DRAINING)

    async def agent_heartbeat(self, agent_id: UUID) -> Agent:
        """Record that the agent is alive."""
        return await self.store.touch_agent(agent_id, self.clock.now())
