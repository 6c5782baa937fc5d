"""The retry backoff a Work's controller uses: the item's policy, carried by an annotation.

The ``Work`` spec holds the retry *budget* (``spec.maxRetries``) but not the *backoff*.
The agent that creates a Work copies the claimed item's ``RetryPolicy`` into the
annotation ``workqueue.dev/retry-policy`` as JSON, for example
``{"baseDelaySeconds": 60, "multiplier": 2.0, "maxDelaySeconds": 3600, "jitter": "none"}``
(every key optional; ``format_retry_policy`` writes it).  Without the annotation the
controller's default policy applies.  ``spec.maxRetries`` always sets the budget: the
policy's own ``max_retries`` is not used by the controller.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

from workqueue_core.domain.errors import InvalidInput, SpecError
from workqueue_core.domain.retry import Jitter, RetryPolicy

__all__ = ["RETRY_POLICY_ANNOTATION", "format_retry_policy", "retry_policy_for"]

RETRY_POLICY_ANNOTATION: Final = "workqueue.dev/retry-policy"

_PATH: Final = f"metadata.annotations.{RETRY_POLICY_ANNOTATION}"
_KEYS: Final = ("baseDelaySeconds", "multiplier", "maxDelaySeconds", "jitter")


def format_retry_policy(policy: RetryPolicy) -> str:
    """The annotation value carrying ``policy``'s backoff (not its budget)."""
    return json.dumps(
        {
            "baseDelaySeconds": policy.base_delay.total_seconds(),
            "multiplier": policy.multiplier,
            "maxDelaySeconds": policy.max_delay.total_seconds(),
            "jitter": policy.jitter.value,
        },
        separators=(",", ":"),
    )


def _seconds(data: Mapping[str, object], key: str, default: timedelta) -> timedelta:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"{key} must be a number of seconds, found {value!r}", _PATH)
    if not 0 <= value <= 10 * 365 * 86400:
        raise SpecError(f"{key} must be between 0 and ten years, found {value!r}", _PATH)
    return timedelta(seconds=value)


def retry_policy_for(annotations: Mapping[str, str], default: RetryPolicy) -> RetryPolicy:
    """The backoff of a Work with these annotations; ``default`` when it names none.

    Raises ``SpecError`` at ``metadata.annotations.workqueue.dev/retry-policy`` when the
    annotation is not a JSON object of the known keys with valid values.
    """
    text = annotations.get(RETRY_POLICY_ANNOTATION)
    if text is None:
        return default
    try:
        data = json.loads(text)
    except ValueError:
        raise SpecError('must be a JSON object such as {"baseDelaySeconds": 60}', _PATH) from None
    if not isinstance(data, dict):
        raise SpecError('must be a JSON object such as {"baseDelaySeconds": 60}', _PATH)
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r}; known keys: {', '.join(_KEYS)}", _PATH)
    multiplier = data.get("multiplier", default.multiplier)
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
        raise SpecError(f"multiplier must be a number, found {multiplier!r}", _PATH)
    jitter_name = data.get("jitter", default.jitter.value)
    jitter = next((j for j in Jitter if j.value == jitter_name), None)
    if jitter is None:
        choices = ", ".join(j.value for j in Jitter)
        raise SpecError(f"jitter must be one of {choices}, found {jitter_name!r}", _PATH)
    try:
        return RetryPolicy(
            max_retries=default.max_retries,
            base_delay=_seconds(data, "baseDelaySeconds", default.base_delay),
            multiplier=float(multiplier),
            max_delay=_seconds(data, "maxDelaySeconds", default.max_delay),
            jitter=jitter,
        )
    except InvalidInput as error:
        raise SpecError(str(error), _PATH) from None
