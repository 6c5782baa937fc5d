"""The nesting-depth bound of JSON request bodies (``workqueue_http.nesting``)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_http.nesting import MAX_JSON_DEPTH, BodyTooDeep, check_depth, json_depth

# Strings full of what a depth counter could be fooled by.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\/ax\n\u00e9\U0001f600'), max_size=12)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    """The reference: nesting depth of a decoded value."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def nested(depth: int, *, arrays: bool = False) -> bytes:
    """A valid JSON value ``depth`` deep: objects ``{"a": …}`` or arrays ``[…]``."""
    if arrays:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@given(json_values)
@settings(max_examples=500)
def test_the_depth_of_any_json_is_exact(value: Any) -> None:
    expected = depth_of(value)
    assert json_depth(json.dumps(value).encode()) == expected
    assert json_depth(json.dumps(value, ensure_ascii=False, indent=1).encode()) == expected
    assert json_depth(msgspec.json.encode(value)) == expected


@given(json_values, st.integers(min_value=0, max_value=6))
@settings(max_examples=300)
def test_check_depth_agrees_with_the_depth(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    if depth_of(value) > limit:
        with pytest.raises(BodyTooDeep):
            check_depth(body, limit)
    else:
        check_depth(body, limit)


@pytest.mark.parametrize("arrays", [False, True], ids=["objects", "arrays"])
def test_the_limit_is_accepted_and_one_more_is_refused(arrays: bool) -> None:
    check_depth(nested(MAX_JSON_DEPTH, arrays=arrays))
    with pytest.raises(BodyTooDeep) as refused:
        check_depth(nested(MAX_JSON_DEPTH + 1, arrays=arrays))
    assert refused.value.status_code == 400
    assert refused.value.limit == MAX_JSON_DEPTH
    assert f"limit of {MAX_JSON_DEPTH} levels" in refused.value.detail


@pytest.mark.parametrize(
    "text",
    ["[" * 10_000, "{" * 10_000, '\\"[[[', '\\\\"', '[\\\\\\"{', "\\n[{" * 3000],
    ids=["brackets", "braces", "escaped-quote", "escaped-backslash", "both-escapes", "newlines"],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    body = json.dumps({"spec": text, "labels": {text: text}, "list": [text]}).encode()
    assert json_depth(body) == 2
    check_depth(body)


def test_deep_bodies_are_refused_cheaply_at_any_depth() -> None:
    for depth in (MAX_JSON_DEPTH + 1, 5_000, 500_000):
        assert json_depth(nested(depth, arrays=True), cap=MAX_JSON_DEPTH) > MAX_JSON_DEPTH
        with pytest.raises(BodyTooDeep):
            check_depth(nested(depth))


def test_many_nests_side_by_side_count_as_the_deepest() -> None:
    under = nested(MAX_JSON_DEPTH - 1, arrays=True)
    wide = b"[" + b",".join([b"[]", under, nested(5)] * 200) + b"]"
    assert json_depth(wide) == MAX_JSON_DEPTH
    check_depth(wide)
    over = wide[:-1] + b"," + nested(MAX_JSON_DEPTH, arrays=True) + b"]"
    assert json_depth(over) == MAX_JSON_DEPTH + 1
    with pytest.raises(BodyTooDeep):
        check_depth(over)


@pytest.mark.parametrize(
    ("body", "at_least"),
    [
        (b"[" * 100, 100),  # never closed
        (b"[" * 100 + b'"', 100),  # an unterminated string after the brackets
        (b"[[[]" + b"[" * 100, 102),  # closed in part
        (b'["' + b"[" * 100, 1),  # the brackets are inside an unterminated string
    ],
)
def test_invalid_json_is_never_counted_shallower_than_a_decoder_reads(
    body: bytes, at_least: int
) -> None:
    assert json_depth(body) >= at_least


def test_a_flat_body_is_not_refused() -> None:
    check_depth(b"")
    check_depth(b"null")
    check_depth(b"]]]]" * 100)  # invalid, but nests nothing
