"""Hypothesis strategies for the domain: labels, selectors, targeting, policies, items, agents.

Keys and values come from small alphabets so that generated selectors and label
sets overlap often: matches and non-matches are both common. Free text (specs,
results, failure reasons and messages, annotations) comes from the whole of
Unicode but NUL, with quotes, backslashes, newlines and sizes up to a few KiB, to
catch quoting and encoding bugs; it stays within the service's documented limits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from hypothesis import strategies as st

from workqueue_core.domain.models import (
    Agent,
    AgentStatus,
    Failure,
    FailureClass,
    Targeting,
    WorkItem,
    WorkStatus,
)
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.domain.selectors import LabelSelector, Operator, Requirement
from workqueue_core.testing.clock import EPOCH

LABEL_KEYS = ("zone", "gpu", "arch", "tier", "example.com/team")
LABEL_VALUES = ("a", "b", "c", "true", "")

WORK_TYPES = ("build", "job", "test")

TRICKY_TEXTS = (
    "",
    " ",
    "'",
    '"',
    "\\",
    "\\'",
    'it\'s a "quoted" \\path\\',
    "line one\nline two\r\nline three\n",
    "\ttab\tseparated\t",
    "ünïcødé ✓ 日本語 🚀 ﷽",
    "%s %(name)s {0} $1 ? :name @p",
    "'; DROP TABLE work_queue; --",
    "/* not a comment */ -- nor this",
    "\u2028\u2029\u0085\x7f\x01\x1b[0m",
    "null",
    "NULL",
    '{"json": true, "list": [1, 2]}',
    "trailing space ",
    "\ud7ff\ue000\uffff\U0010ffff",
)
"""Strings that break naive quoting, escaping, encoding or trimming."""

TEXT_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
"""Any character a UTF-8 store can hold: NUL is excluded (the service refuses it)."""

LARGE_TEXT_CHARS = 1000
"""Large generated texts reach this many characters (up to 4 KiB of UTF-8)."""


def label_keys() -> st.SearchStrategy[str]:
    """Label keys from a small set, one of them prefixed."""
    return st.sampled_from(LABEL_KEYS)


def label_values() -> st.SearchStrategy[str]:
    """Label values from a small set, the empty value included."""
    return st.sampled_from(LABEL_VALUES)


@functools.cache
def label_sets() -> st.SearchStrategy[dict[str, str]]:
    """Agent label sets."""
    return st.dictionaries(label_keys(), label_values(), max_size=len(LABEL_KEYS))


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    """One selector requirement with a valid operator/value combination."""
    key = draw(label_keys())
    operator = draw(st.sampled_from(list(Operator)))
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        values: tuple[str, ...] = (draw(label_values()),)
    elif operator in (Operator.IN, Operator.NOT_IN):
        values = tuple(draw(st.lists(label_values(), min_size=1, max_size=3, unique=True)))
    else:
        values = ()
    return Requirement(key, operator, values)


@functools.cache
def selectors(max_requirements: int = 3) -> st.SearchStrategy[LabelSelector]:
    """Label selectors of up to ``max_requirements`` requirements (possibly empty)."""
    return st.lists(requirements(), max_size=max_requirements).map(
        lambda reqs: LabelSelector(tuple(reqs))
    )


def targetings(agent_ids: Sequence[UUID] = ()) -> st.SearchStrategy[Targeting]:
    """Targeting by some of ``agent_ids``, by a selector, or both; never neither."""
    ids = (
        st.frozensets(st.sampled_from(list(agent_ids)), max_size=len(agent_ids))
        if agent_ids
        else st.just(frozenset[UUID]())
    )

    def build(chosen: frozenset[UUID], selector: LabelSelector | None) -> Targeting:
        if not chosen and selector is None:
            return Targeting.everyone()
        return Targeting(agent_ids=chosen, selector=selector)

    everyone = st.just(Targeting.everyone())
    return st.one_of(everyone, everyone, st.builds(build, ids, st.none() | selectors()))


@functools.cache
def texts(max_chars: int = LARGE_TEXT_CHARS) -> st.SearchStrategy[str]:
    """Free text of at most ``max_chars`` characters: tricky fixed strings, short random
    strings from all of Unicode (NUL excluded), and large repeated ones."""
    small = st.text(TEXT_CHARACTERS, max_size=min(max_chars, 24))
    large = st.builds(
        lambda unit, times: (unit * times)[:max_chars],
        st.text(TEXT_CHARACTERS, min_size=1, max_size=8),
        st.integers(16, max_chars),
    )
    tricky = st.sampled_from([t for t in TRICKY_TEXTS if len(t) <= max_chars])
    return st.one_of(tricky, small, large)


def payloads(simple: Sequence[str], max_chars: int = LARGE_TEXT_CHARS) -> st.SearchStrategy[str]:
    """Mostly one of the ``simple`` strings (readable runs), sometimes free text."""
    return _payloads(tuple(simple), max_chars)


@functools.cache
def _payloads(simple: tuple[str, ...], max_chars: int) -> st.SearchStrategy[str]:
    common = st.sampled_from(simple)
    return st.one_of(common, common, texts(max_chars))


@functools.cache
def micro_offsets() -> st.SearchStrategy[timedelta]:
    """Sub-second offsets: stores must keep timestamps exact to the microsecond."""
    return st.sampled_from([0, 0, 1, 999_999, 123_456]).map(
        lambda us: timedelta(microseconds=us)
    ) | st.integers(0, 999_999).map(lambda us: timedelta(microseconds=us))


@functools.cache
def durations(min_seconds: int = 0, max_seconds: int = 600) -> st.SearchStrategy[timedelta]:
    """Whole-second durations."""
    return st.integers(min_seconds, max_seconds).map(lambda s: timedelta(seconds=s))


@functools.cache
def precise_durations(min_seconds: int = 1, max_seconds: int = 300) -> st.SearchStrategy[timedelta]:
    """Durations of whole seconds plus, often, microseconds (at least ``min_seconds``)."""
    return st.builds(
        lambda s, us: timedelta(seconds=s) + us,
        st.integers(min_seconds, max_seconds),
        micro_offsets(),
    )


@functools.cache
def retry_policies(jitter: bool = False) -> st.SearchStrategy[RetryPolicy]:
    """Small budgets and delays; zero delays are frequent so retries are reachable soon."""

    def build(
        max_retries: int, base: timedelta, multiplier: float, extra: timedelta, jit: Jitter
    ) -> RetryPolicy:
        return RetryPolicy(max_retries, base, multiplier, base + extra, jit)

    return st.builds(
        build,
        st.integers(0, 4),
        st.sampled_from([0, 0, 1, 5, 60, 0.25, 1.5]).map(lambda s: timedelta(seconds=s)),
        st.sampled_from([1.0, 2.0, 3.0]),
        st.sampled_from([0, 30, 600]).map(lambda s: timedelta(seconds=s)),
        st.sampled_from(list(Jitter)) if jitter else st.just(Jitter.NONE),
    )


MAX_REASON_CHARS = 256
MAX_MESSAGE_CHARS = 1000  # <= 4 KiB of UTF-8


@functools.cache
def failures() -> st.SearchStrategy[Failure]:
    """Permanent or retryable failures; reasons and messages mostly simple, sometimes wild."""
    return st.builds(
        Failure,
        st.sampled_from(list(FailureClass)),
        payloads(["Timeout", "GitRemoteFailed", "InvalidImage", "Unknown"], MAX_REASON_CHARS),
        payloads(["", "details"], MAX_MESSAGE_CHARS),
    )


@functools.cache
def results() -> st.SearchStrategy[str | None]:
    """Completion results: None, short ones, and free text up to a few KiB."""
    return st.one_of(st.none(), payloads(["ok", "sha256:abc"], 4000))


@functools.cache
def agent_annotations() -> st.SearchStrategy[dict[str, str]]:
    """Agent annotations: free-form keys and values (free text, a few KiB at most)."""
    keys = st.sampled_from(["note", "example.com/owner", "ключ", "it's", 'say "hi"', "a\\b"])
    return st.dictionaries(keys, texts(MAX_MESSAGE_CHARS), max_size=3)


def agents(agent_id: UUID, name: str, now: datetime = EPOCH) -> st.SearchStrategy[Agent]:
    """An agent with the given id and name, random labels and annotations, mostly ACTIVE.

    Its token hash, when it has one, is ``token_hash_for(agent_id)`` (unique per agent).
    """
    return st.builds(
        Agent,
        id=st.just(agent_id),
        name=st.just(name),
        registered_at=st.just(now),
        labels=label_sets(),
        annotations=st.just({}) | agent_annotations(),
        status=st.sampled_from([AgentStatus.ACTIVE] * 4 + [AgentStatus.DRAINING]),
        token_hash=st.sampled_from([None, token_hash_for(agent_id)]),
    )


def token_hash_for(agent_id: UUID, generation: int = 0) -> str:
    """A distinct stand-in token hash for an agent (and a rotation ``generation``)."""
    return f"{agent_id.int:032x}{generation:032x}"


CALLBACK_URLS = (
    "https://hooks.example.com/workqueue/done",
    "http://user:p%40ss@127.0.0.1:9/cb?team=a&q='x'",
)
"""Completion callback URLs; nothing is ever posted to them in the conformance suite."""


@functools.cache
def item_labels() -> st.SearchStrategy[dict[str, str]]:
    """Item labels: free metadata; values mostly simple, sometimes free text."""
    return st.dictionaries(
        st.sampled_from(["team", "app", "example.com/x"]), payloads(["x", "y"], 200), max_size=3
    )


def work_items(
    work_id: UUID, now: datetime = EPOCH, agent_ids: Sequence[UUID] = ()
) -> st.SearchStrategy[WorkItem]:
    """A new PENDING or HELD item created at ``now``."""
    return st.builds(
        WorkItem,
        id=st.just(work_id),
        work_type=st.sampled_from(WORK_TYPES),
        spec=payloads(["{}", "kind: Job\n", "echo hello"], 4000),
        targeting=targetings(agent_ids),
        created_at=st.just(now),
        retry_policy=retry_policies(),
        claim_timeout=precise_durations(1, 300),
        priority=st.integers(-2, 2),
        not_before=st.one_of(
            st.none(),
            st.none(),
            st.none(),
            st.builds(
                lambda s, us: now + timedelta(seconds=s) + us,
                st.sampled_from([30, 120]),
                micro_offsets(),
            ),
        ),
        idempotency_key=st.none() | st.sampled_from(["k1", "k2", "k3", "k'\\\"ü"]),
        correlation_id=st.just(str(work_id)) | texts(255).map(lambda t: t or "-"),
        labels=item_labels(),
        callback_url=st.none() | st.sampled_from(CALLBACK_URLS),
        status=st.sampled_from([WorkStatus.PENDING] * 5 + [WorkStatus.HELD]),
    )
