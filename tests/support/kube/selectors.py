"""Label and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["FieldSelector", "LabelSelector", "SelectorError"]


class SelectorError(ValueError):
    """A selector that does not parse (the API server answers 400 BadRequest)."""


_SET_OP = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_OP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


@attrs.frozen
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as in Kubernetes.
        return self.key not in labels or labels[self.key] not in self.values


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


@attrs.frozen
class LabelSelector:
    """``a=b,c!=d,e in (f,g),h notin (i),j,!k``; the empty selector matches everything."""

    requirements: tuple[_Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text:
            return cls()
        requirements = []
        for part in _split_top_level(text):
            eq = _EQ_OP.match(part)
            if eq:
                op = "!=" if eq.group(2) == "!=" else "="
                requirements.append(_Requirement(eq.group(1), op, frozenset({eq.group(3)})))
                continue
            match = _SET_OP.match(part)
            if not match:
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
            negated, key, op, values = match.groups()
            if op:
                if negated:
                    raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
                items = frozenset(v.strip() for v in values.split(",") if v.strip())
                requirements.append(_Requirement(key, op, items))
            else:
                requirements.append(_Requirement(key, "!" if negated else "exists"))
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)


_FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


@attrs.frozen
class FieldSelector:
    """``metadata.name=x,metadata.namespace!=y`` (the two fields every resource supports)."""

    terms: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if not text:
            return cls()
        terms = []
        for part in text.split(","):
            match = _EQ_OP.match(part)
            if not match or match.group(1) not in _FIELDS:
                raise SelectorError(f"field label not supported: {part.strip()!r}")
            terms.append((match.group(1), match.group(2) != "!=", match.group(3)))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for field, equal, value in self.terms:
            outer, inner = _FIELDS[field]
            actual = (obj.get(outer) or {}).get(inner) or ""
            if (actual == value) != equal:
                return False
        return True
