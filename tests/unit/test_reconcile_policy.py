"""The Work's retry backoff from its annotation (``workqueue_core.work.reconcile_policy``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workqueue_core.domain.errors import SpecError
from workqueue_core.domain.retry import Jitter, RetryPolicy
from workqueue_core.work.reconcile_policy import (
    RETRY_POLICY_ANNOTATION,
    format_retry_policy,
    retry_policy_for,
)

DEFAULT = RetryPolicy(max_retries=7, base_delay=timedelta(seconds=11))
PATH = "metadata.annotations.workqueue.dev/retry-policy"


def test_without_the_annotation_the_default_applies() -> None:
    assert retry_policy_for({"other": "x"}, DEFAULT) is DEFAULT


def test_the_annotation_round_trips_a_policy_backoff() -> None:
    policy = RetryPolicy(
        max_retries=2,
        base_delay=timedelta(seconds=1.5),
        multiplier=3.0,
        max_delay=timedelta(minutes=10),
        jitter=Jitter.EQUAL,
    )
    parsed = retry_policy_for({RETRY_POLICY_ANNOTATION: format_retry_policy(policy)}, DEFAULT)
    assert parsed == RetryPolicy(
        max_retries=DEFAULT.max_retries,
        base_delay=policy.base_delay,
        multiplier=policy.multiplier,
        max_delay=policy.max_delay,
        jitter=policy.jitter,
    )


def test_missing_keys_come_from_the_default() -> None:
    parsed = retry_policy_for({RETRY_POLICY_ANNOTATION: '{"multiplier": 1}'}, DEFAULT)
    assert (parsed.base_delay, parsed.multiplier, parsed.jitter) == (
        timedelta(seconds=11),
        1.0,
        Jitter.NONE,
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("not json", "must be a JSON object"),
        ("[1]", "must be a JSON object"),
        ('{"baseDelay": 5}', "unknown key 'baseDelay'"),
        ('{"baseDelaySeconds": "5"}', "must be a number of seconds"),
        ('{"baseDelaySeconds": true}', "must be a number of seconds"),
        ('{"baseDelaySeconds": -1}', "between 0 and ten years"),
        ('{"maxDelaySeconds": 1e300}', "between 0 and ten years"),
        ('{"baseDelaySeconds": NaN}', "must be a number of seconds"),
        ('{"multiplier": "2"}', "multiplier must be a number"),
        ('{"multiplier": 0.5}', "multiplier must be in 1..100"),
        ('{"jitter": "some"}', "jitter must be one of none, full, equal"),
        ('{"baseDelaySeconds": 100, "maxDelaySeconds": 10}', "max_delay must be at least"),
    ],
)
def test_a_bad_annotation_is_a_spec_error_naming_it(text: str, detail: str) -> None:
    with pytest.raises(SpecError) as caught:
        retry_policy_for({RETRY_POLICY_ANNOTATION: text}, DEFAULT)
    assert caught.value.path == PATH
    assert detail in caught.value.detail
