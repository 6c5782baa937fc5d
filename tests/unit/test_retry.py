"""RetryPolicy: the backoff formula, its cap, jitter bounds and input validation (DESIGN §4)."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_core.domain.errors import InvalidInput
from workqueue_core.domain.retry import MAX_RETRIES_LIMIT, Jitter, RetryPolicy

US = timedelta(microseconds=1)
DAY_US = 86_400 * 1_000_000
LARGEST_SAMPLE = math.nextafter(1.0, 0.0)


def micros(delta: timedelta) -> int:
    """A duration as a whole number of microseconds (exact)."""
    return delta // US


@st.composite
def policies(
    draw: st.DrawFn,
    jitter: Jitter = Jitter.NONE,
    multiplier: float | None = None,
) -> RetryPolicy:
    """Policies with delays of arbitrary microsecond precision up to a few weeks."""
    base_us = draw(
        st.one_of(
            st.sampled_from([0, 1, 3, 1_000_000, 60_000_000]),
            st.integers(0, 10 * DAY_US),
        )
    )
    extra_us = draw(st.one_of(st.sampled_from([0, 1, 2]), st.integers(0, 30 * DAY_US)))
    if multiplier is None:
        multiplier = draw(
            st.one_of(
                st.sampled_from([1.0, 1.5, 2.0, 3.0, 100.0]),
                st.floats(1.0, 100.0, allow_nan=False),
            )
        )
    return RetryPolicy(
        max_retries=draw(st.integers(0, MAX_RETRIES_LIMIT)),
        base_delay=timedelta(microseconds=base_us),
        multiplier=multiplier,
        max_delay=timedelta(microseconds=base_us + extra_us),
        jitter=jitter,
    )


retry_numbers = st.one_of(
    st.integers(1, 80),
    st.sampled_from([1099, 1100, 1101, 1102, 5000]),
    st.integers(81, 10_000),
)


# --- the formula -----------------------------------------------------------------


@settings(max_examples=300)
@given(policy=policies(multiplier=2.0), n=retry_numbers)
def test_doubling_delay_is_base_times_two_to_the_n_minus_one_capped(
    policy: RetryPolicy, n: int
) -> None:
    expected_us = min(micros(policy.max_delay), micros(policy.base_delay) * 2 ** (n - 1))
    expected = timedelta(microseconds=expected_us)
    assert policy.raw_delay(n) == expected
    assert policy.delay(n) == expected
    assert policy.delay_bounds(n) == (expected, expected)


@pytest.mark.parametrize("n", [64, 70, 1025, 1100, 1101, 5000, 100_000])
def test_huge_retry_numbers_do_not_overflow_and_hit_the_cap(n: int) -> None:
    policy = RetryPolicy(
        max_retries=3,
        base_delay=timedelta(seconds=60),
        multiplier=2.0,
        max_delay=timedelta(hours=1),
    )
    assert policy.delay(n) == timedelta(hours=1)
    assert policy.raw_delay(n) == timedelta(hours=1)


def test_seed_formula_first_retries() -> None:
    """The seed's ``2^retries * base_delay`` with the default policy: 60 s, 120 s, 240 s …"""
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
        timedelta(seconds=480),
        timedelta(seconds=960),
        timedelta(seconds=1920),
        timedelta(hours=1),
    ]


def test_zero_base_delay_means_no_wait_at_any_retry() -> None:
    policy = RetryPolicy(base_delay=timedelta(0), max_delay=timedelta(hours=1))
    assert [policy.delay(n) for n in (1, 2, 50, 5000)] == [timedelta(0)] * 4


@settings(max_examples=300)
@given(
    policy=policies(),
    ns=st.lists(st.one_of(st.integers(1, 120), st.integers(1, 3000)), min_size=2, max_size=12),
)
def test_raw_delay_is_non_decreasing_and_capped(policy: RetryPolicy, ns: list[int]) -> None:
    delays = [policy.raw_delay(n) for n in sorted(ns)]
    for earlier, later in itertools.pairwise(delays):
        assert earlier <= later
    assert all(timedelta(0) <= d <= policy.max_delay for d in delays)
    # The first retry waits the base delay (never more than the cap, which is >= base).
    assert policy.raw_delay(1) == policy.base_delay


@settings(max_examples=200)
@given(policy=policies(), n=retry_numbers, sample=st.floats(0.0, 1.0, exclude_max=True))
def test_no_jitter_ignores_the_sample(policy: RetryPolicy, n: int, sample: float) -> None:
    raw = policy.raw_delay(n)
    assert policy.delay(n, sample) == raw
    assert policy.delay_bounds(n) == (raw, raw)


# --- jitter ------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    policy=policies(jitter=Jitter.FULL),
    n=retry_numbers,
    samples=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=5),
)
def test_full_jitter_lies_in_zero_to_raw(policy: RetryPolicy, n: int, samples: list[float]) -> None:
    raw = policy.raw_delay(n)
    low, high = policy.delay_bounds(n)
    assert (low, high) == (timedelta(0), raw)
    delays = [policy.delay(n, s) for s in sorted(samples)]
    assert all(low <= d <= high for d in delays)
    # A larger sample never gives a shorter delay.
    assert delays == sorted(delays)
    # The bounds are reached: sample 0 gives 0, the largest sample gives the raw delay.
    assert policy.delay(n, 0.0) == low
    assert policy.delay(n, LARGEST_SAMPLE) == high


@settings(max_examples=300)
@given(
    policy=policies(jitter=Jitter.EQUAL),
    n=retry_numbers,
    samples=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=5),
)
def test_equal_jitter_lies_in_half_raw_to_raw(
    policy: RetryPolicy, n: int, samples: list[float]
) -> None:
    raw = policy.raw_delay(n)
    low, high = policy.delay_bounds(n)
    assert (low, high) == (timedelta(microseconds=(micros(raw) + 1) // 2), raw)
    delays = [policy.delay(n, s) for s in sorted(samples)]
    assert all(low <= d <= high for d in delays)
    assert delays == sorted(delays)
    assert policy.delay(n, 0.0) == low
    assert policy.delay(n, LARGEST_SAMPLE) == high


@pytest.mark.parametrize(
    ("jitter", "sample", "expected"),
    [
        (Jitter.FULL, 0.0, timedelta(0)),
        (Jitter.FULL, 0.25, timedelta(seconds=30)),
        (Jitter.FULL, 0.5, timedelta(seconds=60)),
        (Jitter.EQUAL, 0.0, timedelta(seconds=60)),
        (Jitter.EQUAL, 0.5, timedelta(seconds=90)),
        (Jitter.NONE, 0.5, timedelta(seconds=120)),
    ],
)
def test_jitter_examples(jitter: Jitter, sample: float, expected: timedelta) -> None:
    policy = RetryPolicy(base_delay=timedelta(seconds=60), jitter=jitter)
    assert policy.delay(2, sample) == expected


def test_equal_jitter_never_exceeds_raw_for_odd_microsecond_delays() -> None:
    # base 3 s, multiplier 1.5: the 7th retry waits 34.171875 s (an odd number of µs).
    policy = RetryPolicy(
        base_delay=timedelta(seconds=3),
        multiplier=1.5,
        max_delay=timedelta(hours=1),
        jitter=Jitter.EQUAL,
    )
    raw = policy.raw_delay(7)
    assert raw == timedelta(seconds=34, microseconds=171875)
    assert policy.delay_bounds(7) == (timedelta(microseconds=(micros(raw) + 1) // 2), raw)
    assert policy.delay(7, LARGEST_SAMPLE) == raw


def test_multiplier_one_keeps_the_base_delay_for_very_high_retry_numbers() -> None:
    policy = RetryPolicy(
        base_delay=timedelta(seconds=1), multiplier=1.0, max_delay=timedelta(hours=1)
    )
    assert policy.raw_delay(1100) == timedelta(seconds=1)
    assert policy.raw_delay(1101) == timedelta(seconds=1)


def test_largest_max_delay_does_not_overflow() -> None:
    policy = RetryPolicy(base_delay=timedelta(seconds=1), max_delay=timedelta.max)
    assert policy.raw_delay(5000) == timedelta.max


def test_raw_delay_never_exceeds_a_huge_max_delay() -> None:
    cap = timedelta(days=4810908, seconds=33232, microseconds=664893)
    policy = RetryPolicy(base_delay=timedelta(seconds=1), max_delay=cap)
    assert policy.raw_delay(5000) <= cap


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": MAX_RETRIES_LIMIT + 1},
        {"max_retries": True},
        {"max_retries": False},
        {"multiplier": 0.999},
        {"multiplier": 0.0},
        {"multiplier": -2.0},
        {"multiplier": 100.5},
        {"multiplier": math.nan},
        {"base_delay": timedelta(seconds=-1)},
        {"base_delay": -US},
        {"max_delay": timedelta(seconds=-1)},
        {"base_delay": timedelta(seconds=-5), "max_delay": timedelta(seconds=-1)},
        {"base_delay": timedelta(seconds=61), "max_delay": timedelta(seconds=60)},
        {"base_delay": timedelta(seconds=60), "max_delay": timedelta(seconds=60) - US},
    ],
    ids=repr,
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"max_retries": MAX_RETRIES_LIMIT},
        {"multiplier": 1.0},
        {"multiplier": 100.0},
        {"base_delay": timedelta(0), "max_delay": timedelta(0)},
        {"base_delay": timedelta(seconds=60), "max_delay": timedelta(seconds=60)},
    ],
    ids=repr,
)
def test_boundary_policies_are_accepted(kwargs: dict[str, object]) -> None:
    policy = RetryPolicy(**kwargs)  # type: ignore[arg-type]
    for name, value in kwargs.items():
        assert getattr(policy, name) == value


def test_fractional_max_retries_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(max_retries=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1, -1000])
@pytest.mark.parametrize("jitter", list(Jitter))
def test_retry_number_must_be_positive(n: int, jitter: Jitter) -> None:
    policy = RetryPolicy(jitter=jitter)
    with pytest.raises(InvalidInput):
        policy.delay(n)
    with pytest.raises(InvalidInput):
        policy.raw_delay(n)
    with pytest.raises(InvalidInput):
        policy.delay_bounds(n)


@pytest.mark.parametrize("sample", [-0.1, -1e-300, 1.0, 1.5, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("jitter", list(Jitter))
def test_jitter_sample_must_be_in_unit_interval(sample: float, jitter: Jitter) -> None:
    policy = RetryPolicy(jitter=jitter)
    with pytest.raises(InvalidInput):
        policy.delay(1, sample)
