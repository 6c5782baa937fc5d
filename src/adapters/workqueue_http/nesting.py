"""A nesting-depth bound for JSON request bodies, checked before they are decoded.

msgspec's decoder recurses once per ``[`` or ``{`` and stops at Python's recursion
limit, which counts the frames already on the stack: whether a deep body fails to
decode (``RecursionError``) or decodes and meets validation later depends on where the
request happens to run. ``check_depth`` makes the answer a property of the body alone:
deeper than ``MAX_JSON_DEPTH`` is a 400, whatever the stack.

The scan works on bytes at C speed. Most bodies hold at most ``MAX_JSON_DEPTH``
brackets in all, so they cannot nest deeper: two ``bytes.count`` calls settle them.
Otherwise the exact depth is computed with brackets inside strings not counted.
"""

from __future__ import annotations

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
    # Drop escaped backslashes, then escaped quotes: each quote left opens or closes a
    # string. Keep only quotes and brackets, brackets as "(" and ")".
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = body.translate(_PARENS, _DROPPED)
    # Adjacent quotes end one string and open the next, or enclose an empty one:
    # dropping them keeps the rest paired. Pieces at even places lie outside strings.
    kept = kept.replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])
    # Each pass removes the innermost pairs: one level of a balanced nesting.
    depth = 0
    while b"()" in kept and (cap is None or depth <= cap):
        kept = kept.replace(b"()", b"")
        depth += 1
    # What is left, ")" * a + "(" * b when stable, is unbalanced: invalid JSON.
    return depth + max(0, kept.count(b"(") - kept.count(b")"))


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ``BodyTooDeep`` when ``body`` nests deeper than ``limit``."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # too few brackets to nest deeper
    if json_depth(body, cap=limit) > limit:
        raise BodyTooDeep(limit)


class DepthCheckedRequest(Request[Any, Any, Any]):
    """The broker's request class: its JSON body is depth-checked before it is decoded.

    Every handler's ``data`` comes from ``Request.json``, so this one override covers
    every route that reads a JSON body.
    """

    async def json(self) -> Any:
        check_depth(await self.body())
        return await super().json()
