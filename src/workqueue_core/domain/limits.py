"""The bounds every entry point shares: one definition each, used by the service, the
HTTP API, the client, the executor and the Work resource.

The service enforces them on every call; the HTTP layer checks the same numbers earlier
only to answer with a precise problem before decoding further.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

__all__ = [
    "MAX_AGENT_IDS",
    "MAX_ANNOTATIONS",
    "MAX_ANNOTATION_KEY_CHARS",
    "MAX_ANNOTATION_VALUE_BYTES",
    "MAX_BATCH",
    "MAX_CALLBACK_URL_CHARS",
    "MAX_CLAIM_TIMEOUT",
    "MAX_LABELS",
    "MAX_MESSAGE_BYTES",
    "MAX_PRIORITY",
    "MAX_REASON_CHARS",
    "MAX_RESULT_BYTES",
    "MAX_SPEC_BYTES",
    "MAX_TEXT",
    "MAX_WAIT",
    "MAX_WORK_TYPES",
    "MAX_WORK_TYPE_CHARS",
    "WORK_TYPE_RE",
    "work_type_problem",
]

MAX_SPEC_BYTES: Final = 1_048_576
"""Largest spec, in UTF-8 bytes."""
MAX_PRIORITY: Final = 32_767
"""Priorities run from ``-MAX_PRIORITY`` to ``MAX_PRIORITY``."""
MAX_CLAIM_TIMEOUT: Final = timedelta(days=7)
"""Longest lease an item may ask for."""
MAX_BATCH: Final = 1000
"""Most items in one batch: submit, claim, completion, page."""
MAX_WORK_TYPES: Final = 100
"""Most work types one claim or pending request may name."""
MAX_WAIT: Final = 30.0
"""Longest long-poll of a claim or pending request, in seconds."""
MAX_TEXT: Final = 255
"""Longest idempotency key and correlation id, in characters."""
MAX_LABELS: Final = 64
"""Most labels on one item or agent."""
MAX_REASON_CHARS: Final = 256
"""Longest failure reason."""
MAX_MESSAGE_BYTES: Final = 4096
"""Longest failure message or cancel reason, in UTF-8 bytes."""
MAX_RESULT_BYTES: Final = 65_536
"""Longest result, in UTF-8 bytes."""
MAX_AGENT_IDS: Final = 100
"""Most agents one item's targeting may list by id (a page of items stays small)."""
MAX_ANNOTATIONS: Final = 64
"""Most annotations on one agent."""
MAX_ANNOTATION_KEY_CHARS: Final = 253
MAX_ANNOTATION_VALUE_BYTES: Final = 4096
MAX_CALLBACK_URL_CHARS: Final = 2048

MAX_WORK_TYPE_CHARS: Final = 50
WORK_TYPE_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
"""A work type name: lowercase letters, digits, '-', '_' and '.', starting and ending
alphanumeric (so it is also a valid Kubernetes label value)."""


def work_type_problem(value: object) -> str | None:
    """Why ``value`` is not a work type name, or None when it is one."""
    if not isinstance(value, str):
        return f"a work type must be a string, got {type(value).__name__}"
    if not 0 < len(value) <= MAX_WORK_TYPE_CHARS or not WORK_TYPE_RE.fullmatch(value):
        return (
            f"a work type must be 1-{MAX_WORK_TYPE_CHARS} characters of a-z, 0-9, '-', '_' or"
            f" '.', starting and ending alphanumeric; got {value!r:.80}"
        )
    return None
