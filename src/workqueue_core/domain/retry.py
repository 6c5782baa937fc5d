"""The retry budget: how long to wait before the n-th retry, and whether to retry at all."""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import Any

import attrs

from workqueue_core.domain.errors import InvalidInput


class Jitter(enum.Enum):
    """How a computed delay is randomised.

    NONE keeps it; FULL draws uniformly from ``[0, d]``; EQUAL from ``[d/2, d]``.
    """

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


MAX_RETRIES_LIMIT = 1000


def _check_retries(_: object, __: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES_LIMIT:
        raise InvalidInput(f"max_retries must be an integer in 0..{MAX_RETRIES_LIMIT}, got {value}")


def _check_delay(_: object, attribute: attrs.Attribute[Any], value: timedelta) -> None:
    if value < timedelta(0):
        raise InvalidInput(f"{attribute.name} must not be negative, got {value}")


def _check_multiplier(_: object, __: attrs.Attribute[Any], value: float) -> None:
    if not 1.0 <= value <= 100.0:
        raise InvalidInput(f"multiplier must be in 1..100, got {value}")


@attrs.frozen
class RetryPolicy:
    """Budget and backoff of one item: at most ``max_retries + 1`` runs in total.

    The delay before the n-th retry (n >= 1) is
    ``min(max_delay, base_delay * multiplier ** (n - 1))``, then jitter.
    """

    max_retries: int = attrs.field(default=3, validator=_check_retries)
    base_delay: timedelta = attrs.field(default=timedelta(seconds=60), validator=_check_delay)
    multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    max_delay: timedelta = attrs.field(default=timedelta(hours=1), validator=_check_delay)
    jitter: Jitter = Jitter.NONE

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.base_delay:
            raise InvalidInput("max_delay must be at least base_delay")

    def raw_delay(self, n: int) -> timedelta:
        """The capped delay before the n-th retry, before jitter."""
        if n < 1:
            raise InvalidInput(f"retry number must be >= 1, got {n}")
        base = self.base_delay.total_seconds()
        if base == 0:
            return timedelta(0)
        exponent = n - 1
        if self.multiplier > 1.0 and exponent * math.log(self.multiplier) >= math.log(
            self.max_delay.total_seconds() / base
        ):
            return self.max_delay  # decided in log space: no float overflow, cap exact
        try:
            raw = timedelta(seconds=base * self.multiplier**exponent)
        except OverflowError:
            return self.max_delay
        return min(raw, self.max_delay)

    def delay(self, n: int, sample: float = 0.0) -> timedelta:
        """The delay before the n-th retry; ``sample`` in ``[0, 1)`` drives the jitter.

        Jitter is computed in whole microseconds, so the result never leaves
        ``delay_bounds(n)``.
        """
        if not 0.0 <= sample < 1.0:
            raise InvalidInput(f"jitter sample must be in [0, 1), got {sample}")
        low, high = self._bounds_us(n)
        return timedelta(microseconds=low + round((high - low) * sample))

    def delay_bounds(self, n: int) -> tuple[timedelta, timedelta]:
        """The smallest and largest delay jitter can produce for the n-th retry.

        NONE: ``(d, d)``; FULL: ``(0, d)``; EQUAL: ``(d/2, d)`` with ``d/2`` rounded up
        to a whole microsecond.
        """
        low, high = self._bounds_us(n)
        return (timedelta(microseconds=low), timedelta(microseconds=high))

    def _bounds_us(self, n: int) -> tuple[int, int]:
        raw = self.raw_delay(n) // _MICROSECOND
        if self.jitter is Jitter.FULL:
            return (0, raw)
        if self.jitter is Jitter.EQUAL:
            return ((raw + 1) // 2, raw)
        return (raw, raw)


_MICROSECOND = timedelta(microseconds=1)
