"""Kubernetes API shapes: name rules and JSON-shape checks, for the ``Work`` resource.

Everything here raises ``SpecError`` whose ``path`` names the offending field, so callers
can nest checks and report ``spec.template.metadata.name`` rather than a bare message.

* Name rules follow Kubernetes apimachinery validation: DNS-1123 labels and subdomains,
  qualified names (label, annotation and finalizer keys), label values, RFC 3339
  date-times.
* Shape helpers (``expect_mapping``, ``required_field``, ``reject_unknown``,
  ``json_object``, ...) check decoded JSON one field at a time; ``join_path`` and
  ``at_path`` build the error paths.

Templates are checked against real upstream schemas by their work types' adapters, with a
JSON Schema library, not here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from workqueue_core.domain.errors import SpecError
from workqueue_core.work.safe_yaml import child_path, describe_type, plain_json

__all__ = [
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "QUALIFIED_NAME_PART",
    "Check",
    "at_path",
    "check_dns_label",
    "check_dns_subdomain",
    "check_label_value",
    "check_qualified_name",
    "check_rfc3339",
    "expect_bool",
    "expect_int",
    "expect_list",
    "expect_mapping",
    "expect_str",
    "int_between",
    "join_path",
    "json_object",
    "optional_int",
    "optional_str",
    "read_time",
    "reject_unknown",
    "required_field",
    "str_dict",
    "string_check",
]

_MAX_JSON_DEPTH: Final = 64

# --- name rules (Kubernetes apimachinery validation) ------------------------------

DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
QUALIFIED_NAME_PART: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|[+-]([0-9]{2}):([0-9]{2}))"
)


def check_dns_label(value: str, path: str) -> None:
    """A namespace or container name: at most 63 of ``[-a-z0-9]``, alphanumeric ends."""
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise SpecError(
            f"{value!r} is not a DNS-1123 label (at most 63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit)",
            path,
        )


def check_dns_subdomain(value: str, path: str) -> None:
    """An object name: at most 253 characters, dot-separated DNS labels."""
    if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
        raise SpecError(
            f"{value!r} is not a DNS-1123 subdomain (at most 253 lowercase letters, digits,"
            " '-' and '.', starting and ending with a letter or digit)",
            path,
        )


def check_qualified_name(value: str, path: str) -> None:
    """A label, annotation or finalizer key: ``[prefix/]name``."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix)):
        raise SpecError(f"key {value!r} has an invalid prefix: use a DNS subdomain", path)
    if len(name) > 63 or not QUALIFIED_NAME_PART.fullmatch(name):
        raise SpecError(
            f"key {value!r} is not a qualified name (at most 63 letters, digits, '-', '_' and"
            " '.', starting and ending with a letter or digit, after an optional prefix/)",
            path,
        )


def check_label_value(value: str, path: str) -> None:
    """A label value: empty, or at most 63 of ``[-_.A-Za-z0-9]`` with alphanumeric ends."""
    if value and (len(value) > 63 or not QUALIFIED_NAME_PART.fullmatch(value)):
        raise SpecError(
            f"label value {value!r} is invalid (at most 63 letters, digits, '-', '_' and '.',"
            " starting and ending with a letter or digit, or empty)",
            path,
        )


def check_rfc3339(value: str, path: str) -> None:
    """A ``metav1.Time``: an RFC 3339 date-time that exists, with ``Z`` or an offset."""
    match = _RFC3339.fullmatch(value)
    valid = match is not None
    if match is not None:
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        try:
            datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            valid = False
        if match.group(9) is not None and (int(match.group(9)) > 23 or int(match.group(10)) > 59):
            valid = False
    if not valid:
        raise SpecError(
            f"{value!r} is not an RFC 3339 date-time such as '2025-11-02T10:00:00Z'", path
        )


def read_time(value: object) -> datetime | None:
    """A ``metav1.Time`` read from an object's status (``2030-01-01T00:00:00Z``); None
    unless it is an RFC 3339 time with an offset."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None and when.utcoffset() is not None else None


# --- error paths and shape helpers ------------------------------------------------


@contextmanager
def at_path(prefix: str) -> Iterator[None]:
    """Re-raise a SpecError from the block with its path placed under ``prefix``."""
    try:
        yield
    except SpecError as exc:
        raise SpecError(exc.detail, join_path(prefix, exc.path)) from None


def join_path(prefix: str, path: str) -> str:
    """``path`` placed under ``prefix``: ``a`` + ``b`` is ``a.b``, ``a`` + ``[0]`` is ``a[0]``."""
    if not path:
        return prefix
    if not prefix or path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def expect_mapping(value: object, path: str) -> Mapping[str, object]:
    """``value`` if it is a mapping with string keys."""
    if not isinstance(value, Mapping):
        raise SpecError(f"expected a mapping, found {describe_type(value)}", path)
    for key in value:
        if not isinstance(key, str):
            raise SpecError(f"mapping keys must be strings, found {describe_type(key)}", path)
    return value


def expect_list(value: object, path: str) -> Sequence[object]:
    """``value`` if it is a list or tuple."""
    if not isinstance(value, list | tuple):
        raise SpecError(f"expected a list, found {describe_type(value)}", path)
    return value


def expect_str(value: object, path: str) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        raise SpecError(f"expected a string, found {describe_type(value)}", path)
    return value


def expect_int(value: object, path: str) -> int:
    """``value`` if it is an integer (a boolean is not)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"expected an integer, found {describe_type(value)}", path)
    return value


def expect_bool(value: object, path: str) -> bool:
    """``value`` if it is a boolean."""
    if not isinstance(value, bool):
        raise SpecError(f"expected a boolean, found {describe_type(value)}", path)
    return value


def required_field(mapping: Mapping[str, object], key: str, path: str) -> object:
    """``mapping[key]``; missing and null are both errors at ``path.key``."""
    value = mapping.get(key)
    if value is None:
        raise SpecError("required field is missing", child_path(path, key))
    return value


def optional_str(mapping: Mapping[str, object], key: str, path: str) -> str | None:
    """``mapping[key]`` as a string, or None when missing or null."""
    value = mapping.get(key)
    return None if value is None else expect_str(value, child_path(path, key))


def optional_int(mapping: Mapping[str, object], key: str, path: str) -> int | None:
    """``mapping[key]`` as an integer, or None when missing or null."""
    value = mapping.get(key)
    return None if value is None else expect_int(value, child_path(path, key))


def reject_unknown(mapping: Mapping[str, object], known: Collection[str], path: str) -> None:
    """Raise for the first key of ``mapping`` not in ``known``."""
    for key in mapping:
        if key not in known:
            raise SpecError(
                f"unknown field {key!r}; expected one of {', '.join(sorted(known))}",
                child_path(path, key),
            )


def str_dict(value: object, path: str) -> dict[str, str]:
    """A copy of ``value`` if it maps strings to strings."""
    mapping = expect_mapping(value, path)
    return {key: expect_str(item, child_path(path, key)) for key, item in mapping.items()}


def json_object(value: object, path: str) -> dict[str, object]:
    """A deep JSON-compatible copy of a mapping."""
    return {
        key: plain_json(item, child_path(path, key), _MAX_JSON_DEPTH, 1)
        for key, item in expect_mapping(value, path).items()
    }


# --- checks for validators ------------------------------------------------------

Check: TypeAlias = Callable[[Any, str], None]
"""Checks ``(value, path)``; raises SpecError at ``path`` when ``value`` is invalid."""


def int_between(low: int, high: int | None = None) -> Check:
    """A check for an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def check(value: Any, path: str) -> None:
        number = expect_int(value, path)
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SpecError(f"must be an integer {bound}, found {number}", path)

    return check


def string_check(max_length: int | None = None, *, non_empty: bool = False) -> Check:
    """A check for a string, optionally non-empty and at most ``max_length`` long."""

    def check(value: Any, path: str) -> None:
        text = expect_str(value, path)
        if non_empty and not text:
            raise SpecError("must not be empty", path)
        if max_length is not None and len(text) > max_length:
            raise SpecError(f"must be at most {max_length} characters long", path)

    return check
