"""A nesting-depth bound for JSON request bodies, checked before they are decoded.

msgspec's decoder recurses once per ``[`` or ``{`` and stops at Python's recursion
limit, which counts the frames already on the stack: whether a deep body fails to
decode (``RecursionError``) or decodes and meets validation later depends on where the
request happens to run. ``check_depth`` makes the answer a property of the body alone:
deeper than ``MAX_JSON_DEPTH`` is a 400, whatever the stack.

The scan works on bytes at C speed. Most bodies hold at most ``MAX_JSON_DEPTH``
brackets in all, so they cannot nest deeper: two ``bytes.count`` calls settle them.
Otherwise only brackets and quotes are kept (``translate``), strings are cut out
(``split``) and the depth is computed in a time linear in the body.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

from litestar import Request
from litestar.exceptions import ClientException

__all__ = ["MAX_JSON_DEPTH", "BodyTooDeep", "DepthCheckedRequest", "check_depth", "json_depth"]

MAX_JSON_DEPTH = 64
"""Deepest nesting a JSON request body may have: ``[]`` and ``{}`` are depth 1.

The deepest legitimate body is a batch submit with a ``matchExpressions`` selector,
``{"items": [{"targeting": {"selector": {"matchExpressions": [{"values": [...]}]}}}]}``:
depth 8. Specs and results are strings, so their brackets do not count.
"""

_KEPT = b'"[]{}'
_DROPPED = bytes(b for b in range(256) if b not in _KEPT)
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_STEPS = bytes.maketrans(b"()", b"\x01\xff")


class BodyTooDeep(ClientException):
    """A JSON body nests deeper than the limit (400 ``bad-request``, with ``limit``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(detail=f"the JSON body nests deeper than the limit of {limit} levels")
        self.limit = limit


def json_depth(body: bytes, cap: int | None = None) -> int:
    """The deepest nesting of ``[``/``{`` in ``body``; brackets in strings do not count.

    Exact for valid JSON. For invalid JSON never less than the depth a decoder reaches
    before the first error. With ``cap``, counting stops once past it.
    """
    return _depth(_brackets_and_quotes(body), cap)


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ``BodyTooDeep`` when ``body`` nests deeper than ``limit``."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # too few brackets to nest deeper
    if json_depth(body, limit) > limit:
        raise BodyTooDeep(limit)


def _brackets_and_quotes(body: bytes) -> bytes:
    """``body``'s brackets, as "(" and ")", and the quotes that open or close strings."""
    if b"\\" in body:  # drop escaped backslashes, then escaped quotes
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return body.translate(_PARENS, _DROPPED)


def _depth(kept: bytes, cap: int | None) -> int:
    """``json_depth`` of what ``_brackets_and_quotes`` kept."""
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])  # even pieces lie outside strings
    # Each pass removes the innermost pairs: one level of a balanced nesting. While the
    # passes shrink the brackets fast (wide, shallow bodies: all legitimate ones) they
    # are cheapest; otherwise the rest is summed up in one linear pass.
    depth = 0
    while kept and (cap is None or depth <= cap):
        peeled = kept.replace(b"()", b"")
        if len(peeled) == len(kept):
            break
        depth += 1
        slow = len(peeled) * 4 > len(kept) * 3
        kept = peeled
        if slow:
            break
    if not kept or (cap is not None and depth > cap):
        return depth
    if cap is not None and b"(" * (cap + 1 - depth) in kept:
        return cap + 1  # a run of brackets deeper than the cap by itself
    # Balanced, the rest nests exactly ``depth`` levels less than the whole; unbalanced
    # (invalid JSON), no less.
    steps = memoryview(kept.translate(_STEPS)).cast("b")  # "(" as 1, ")" as -1
    return depth + max(accumulate(steps, initial=0))


class DepthCheckedRequest(Request[Any, Any, Any]):
    """The broker's request class: its JSON body is depth-checked before it is decoded.

    Every handler's ``data`` comes from ``Request.json``, so this one override covers
    every route that reads a JSON body.
    """

    async def json(self) -> Any:
        check_depth(await self.body())
        return await super().json()
