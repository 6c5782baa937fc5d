"""Kubernetes label selectors: validation, parsing, matching and the structured form.

The semantics are those of ``k8s.io/apimachinery``: the string grammar of
``labels.Parse`` (including its quirks, e.g. ``k in ()`` means ``k in ("")``), the
``metav1.LabelSelector`` structured form, and the label key and value validation.
The ``>`` and ``<`` operators of ``labels.Parse`` are not supported.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from workqueue_core.domain.errors import SelectorError

__all__ = [
    "MAX_REQUIREMENTS",
    "MAX_SELECTOR_LENGTH",
    "LabelSelector",
    "Operator",
    "Requirement",
    "validate_label_key",
    "validate_label_value",
    "validate_labels",
]

MAX_SELECTOR_LENGTH: Final = 4096
"""Longest selector text accepted, also the longest canonical form of any selector."""

MAX_REQUIREMENTS: Final = 100
"""Most requirements one selector may hold."""

_MAX_NAME_LENGTH: Final = 63
_MAX_PREFIX_LENGTH: Final = 253
_MAX_VALUE_LENGTH: Final = 63

# Anchored by ``fullmatch`` and only applied after the length checks, so cheap.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL_RE: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")

_NAME_RULE: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


# --- validation ----------------------------------------------------------


def _show(value: object) -> str:
    """``repr`` of a value for an error message, shortened if long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: object) -> str:
    return type(value).__name__


def _key_problem(key: object) -> str | None:
    """Why ``key`` is not a valid label key, or None if it is."""
    if not isinstance(key, str):
        return f"a label key must be a string, got {_type_name(key)}"
    where = f"invalid label key {_show(key)}"
    if key.count("/") > 1:
        return f"{where}: at most one '/' may separate a DNS subdomain prefix from the name"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"{where}: prefix part must not be empty"
        if len(prefix) > _MAX_PREFIX_LENGTH:
            return f"{where}: prefix part must be no more than {_MAX_PREFIX_LENGTH} characters"
        if not all(_DNS_LABEL_RE.fullmatch(label) for label in prefix.split(".")):
            return (
                f"{where}: prefix part must be a lowercase DNS-1123 subdomain (e.g. 'example.com')"
            )
    if not name:
        return f"{where}: name part must not be empty"
    if len(name) > _MAX_NAME_LENGTH:
        return f"{where}: name part must be no more than {_MAX_NAME_LENGTH} characters"
    if not _NAME_RE.fullmatch(name):
        return f"{where}: name part {_NAME_RULE}"
    return None


def _value_problem(value: object, key: object = None) -> str | None:
    """Why ``value`` is not a valid label value, or None if it is."""
    for_key = f" for key {_show(key)}" if isinstance(key, str) else ""
    if not isinstance(value, str):
        return f"a label value{for_key} must be a string, got {_type_name(value)}"
    if not value:
        return None
    where = f"invalid label value {_show(value)}{for_key}"
    if len(value) > _MAX_VALUE_LENGTH:
        return f"{where}: must be no more than {_MAX_VALUE_LENGTH} characters"
    if not _NAME_RE.fullmatch(value):
        return f"{where}: must be empty or {_NAME_RULE.removeprefix('must ')}"
    return None


def validate_label_key(key: str) -> None:
    """Raise `SelectorError` unless ``key`` is a valid ``[prefix/]name`` label key."""
    problem = _key_problem(key)
    if problem is not None:
        raise SelectorError(problem)


def validate_label_value(value: str) -> None:
    """Raise `SelectorError` unless ``value`` is a valid (possibly empty) label value."""
    problem = _value_problem(value)
    if problem is not None:
        raise SelectorError(problem)


def validate_labels(labels: Mapping[str, str]) -> None:
    """Raise `SelectorError` unless ``labels`` maps valid label keys to valid values."""
    _check_labels(labels)


def _check_labels(labels: object) -> None:
    if not isinstance(labels, Mapping):
        raise SelectorError(f"labels must be a mapping, got {_type_name(labels)}")
    for key, value in labels.items():
        problem = _key_problem(key) or _value_problem(value, key)
        if problem is not None:
            raise SelectorError(problem)


# --- requirements --------------------------------------------------------


class Operator(enum.Enum):
    """How a requirement relates a label key to its values."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_OPERATOR_RANK: Final = {op: rank for rank, op in enumerate(Operator)}
_SINGLE_VALUE: Final = frozenset({Operator.EQUALS, Operator.NOT_EQUALS})
_SET_VALUES: Final = frozenset({Operator.IN, Operator.NOT_IN})
_MATCH_ABSENT: Final = frozenset({Operator.NOT_EQUALS, Operator.NOT_IN, Operator.DOES_NOT_EXIST})


def _checked_values(values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise SelectorError(
            f"requirement values must be a collection of strings, got {_type_name(values)}"
        )
    items = tuple(values)
    for item in items:
        problem = _value_problem(item)
        if problem is not None:
            raise SelectorError(problem)
    return tuple(sorted(set(items)))


def _canonical_values(values: Iterable[str]) -> tuple[str, ...]:
    """Validate the values and return them sorted and de-duplicated."""
    return _checked_values(values)


@attrs.frozen
class Requirement:
    """One condition on one label key; ``values`` are kept sorted and de-duplicated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = attrs.field(default=(), converter=_canonical_values)

    def __attrs_post_init__(self) -> None:
        _check_requirement(self.key, self.operator, self.values)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (Kubernetes semantics)."""
        if self.key not in labels:
            return self.operator in _MATCH_ABSENT
        if self.operator in (Operator.EQUALS, Operator.IN):
            return labels[self.key] in self.values
        if self.operator in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return labels[self.key] not in self.values
        return self.operator is Operator.EXISTS

    def to_string(self) -> str:
        """The canonical text of this requirement, e.g. ``k in (a,b)``."""
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in _SINGLE_VALUE:
            return f"{self.key}{op.value}{self.values[0]}"
        return f"{self.key} {op.value} ({','.join(self.values)})"

    def __str__(self) -> str:
        return self.to_string()


def _check_requirement(key: object, operator: object, values: tuple[str, ...]) -> None:
    problem = _key_problem(key)
    if problem is not None:
        raise SelectorError(problem)
    if not isinstance(operator, Operator):
        raise SelectorError(f"operator must be an Operator, got {_show(operator)}")
    count = len(values)
    if operator in _SINGLE_VALUE and count != 1:
        raise SelectorError(f"operator '{operator.value}' needs exactly one value, got {count}")
    if operator in _SET_VALUES and count == 0:
        raise SelectorError(f"operator '{operator.value}' needs at least one value")
    if operator not in _SINGLE_VALUE | _SET_VALUES and count != 0:
        raise SelectorError(f"operator '{operator.value}' takes no values, got {count}")


def _requirement_order(requirement: Requirement) -> tuple[str, int, tuple[str, ...]]:
    return requirement.key, _OPERATOR_RANK[requirement.operator], requirement.values


def _checked_requirements(requirements: object) -> tuple[Requirement, ...]:
    if isinstance(requirements, str | bytes) or not isinstance(requirements, Iterable):
        raise SelectorError(
            f"requirements must be a collection of Requirement, got {_type_name(requirements)}"
        )
    items = tuple(requirements)
    for item in items:
        if not isinstance(item, Requirement):
            raise SelectorError(f"expected a Requirement, got {_type_name(item)}")
    return tuple(dict.fromkeys(sorted(items, key=_requirement_order)))


def _canonical_requirements(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    """Return the requirements in canonical order, duplicates removed."""
    return _checked_requirements(requirements)


# --- the selector --------------------------------------------------------

_EXPRESSION_OPERATORS: Final = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}
_SELECTOR_FIELDS: Final = ("matchLabels", "matchExpressions")
_EXPRESSION_FIELDS: Final = ("key", "operator", "values")


@attrs.frozen
class LabelSelector:
    """A conjunction of requirements, kept in canonical order; empty matches everything."""

    requirements: tuple[Requirement, ...] = attrs.field(
        default=(), converter=_canonical_requirements
    )

    def __attrs_post_init__(self) -> None:
        if len(self.requirements) > MAX_REQUIREMENTS:
            raise SelectorError(f"a selector may hold at most {MAX_REQUIREMENTS} requirements")
        if len(self.to_string()) > MAX_SELECTOR_LENGTH:
            raise SelectorError(
                f"the selector's canonical text is longer than {MAX_SELECTOR_LENGTH} characters"
            )

    @property
    def is_empty(self) -> bool:
        """Whether the selector has no requirement (and so matches every label set)."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every requirement."""
        return all(requirement.matches(labels) for requirement in self.requirements)

    def to_string(self) -> str:
        """The canonical text: requirements in canonical order joined by ``,``."""
        return ",".join(requirement.to_string() for requirement in self.requirements)

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the Kubernetes selector grammar, e.g. ``env in (prod,qa),!legacy``."""
        return cls(_parse(text))

    @classmethod
    def from_mapping(cls, data: object) -> LabelSelector:
        """Build from the structured form ``{"matchLabels": ..., "matchExpressions": ...}``."""
        return cls(_requirements_from_mapping(data))

    def to_mapping(self) -> dict[str, object]:
        """The structured form; ``from_mapping`` of it matches the same label sets."""
        equals = Counter(r.key for r in self.requirements if r.operator is Operator.EQUALS)
        match_labels: dict[str, str] = {}
        expressions: list[dict[str, object]] = []
        for r in self.requirements:
            if r.operator is Operator.EQUALS and equals[r.key] == 1:
                match_labels[r.key] = r.values[0]
            elif r.operator in (Operator.EQUALS, Operator.IN):
                expressions.append({"key": r.key, "operator": "In", "values": list(r.values)})
            elif r.operator in (Operator.NOT_EQUALS, Operator.NOT_IN):
                expressions.append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
            elif r.operator is Operator.EXISTS:
                expressions.append({"key": r.key, "operator": "Exists"})
            else:
                expressions.append({"key": r.key, "operator": "DoesNotExist"})
        result: dict[str, object] = {}
        if match_labels:
            result["matchLabels"] = match_labels
        if expressions:
            result["matchExpressions"] = expressions
        return result

    def to_requirement_list(self) -> list[list[object]]:
        """The exact form: ``[[key, operator, [values]], ...]`` in canonical order.

        Unlike ``to_mapping`` it keeps each requirement as written (``a!=x`` stays ``!=``),
        so ``from_requirement_list`` of it is equal to this selector: what stores keep.
        """
        return [[r.key, r.operator.value, list(r.values)] for r in self.requirements]

    @classmethod
    def from_requirement_list(cls, data: object) -> LabelSelector:
        """The selector ``to_requirement_list`` wrote; ``SelectorError`` if malformed."""
        if isinstance(data, str | bytes) or not isinstance(data, Iterable):
            raise SelectorError(f"expected a list of requirements, got {_type_name(data)}")
        requirements = []
        for item in data:
            if isinstance(item, str | bytes) or not isinstance(item, Iterable):
                raise SelectorError(f"expected [key, operator, [values]], got {_type_name(item)}")
            parts = tuple(item)
            if len(parts) != 3 or isinstance(parts[2], str) or not isinstance(parts[2], Iterable):
                raise SelectorError("expected [key, operator, [values]]")
            key, operator, values = parts
            try:
                op = Operator(operator)
            except ValueError:
                raise SelectorError(f"unknown operator {_show(operator)}") from None
            requirements.append(Requirement(key, op, tuple(values)))
        return cls(tuple(requirements))

    @classmethod
    def coerce(cls, value: str | Mapping[str, object] | LabelSelector) -> LabelSelector:
        """Return ``value`` itself, or parse it from text, or build it from a mapping."""
        return _coerce(value)


def _coerce(value: object) -> LabelSelector:
    if isinstance(value, LabelSelector):
        return value
    if isinstance(value, str):
        return LabelSelector.parse(value)
    if isinstance(value, Mapping):
        return LabelSelector.from_mapping(value)
    raise SelectorError(
        f"expected a selector string, mapping or LabelSelector, got {_type_name(value)}"
    )


# --- the structured form -------------------------------------------------


def _requirements_from_mapping(data: object) -> list[Requirement]:
    if not isinstance(data, Mapping):
        raise SelectorError(f"a label selector must be a mapping, got {_type_name(data)}")
    for name in data:
        if name not in _SELECTOR_FIELDS:
            raise SelectorError(
                f"unknown field {_show(name)}: expected 'matchLabels' and/or 'matchExpressions'"
            )
    labels = data.get("matchLabels")
    if labels is None:
        labels = {}
    if not isinstance(labels, Mapping):
        raise SelectorError(
            f"matchLabels: expected a mapping of label keys to values, got {_type_name(labels)}"
        )
    expressions = data.get("matchExpressions")
    if expressions is None:
        expressions = ()
    if not isinstance(expressions, list | tuple):
        raise SelectorError(f"matchExpressions: expected a list, got {_type_name(expressions)}")
    if len(labels) + len(expressions) > MAX_REQUIREMENTS:
        raise SelectorError(f"a selector may hold at most {MAX_REQUIREMENTS} requirements")

    requirements: list[Requirement] = []
    for key, value in labels.items():
        problem = _key_problem(key)
        if problem is not None:
            raise SelectorError(f"matchLabels: {problem}")
        problem = _value_problem(value, key)
        if problem is not None:
            raise SelectorError(f"matchLabels[{_show(key)}]: {problem}")
        requirements.append(Requirement(key, Operator.EQUALS, (value,)))
    for index, expression in enumerate(expressions):
        requirements.append(_expression_requirement(expression, f"matchExpressions[{index}]"))
    return requirements


def _expression_requirement(expression: object, path: str) -> Requirement:
    if not isinstance(expression, Mapping):
        raise SelectorError(f"{path}: expected a mapping, got {_type_name(expression)}")
    for name in expression:
        if name not in _EXPRESSION_FIELDS:
            raise SelectorError(
                f"{path}: unknown field {_show(name)}: expected 'key', 'operator' and 'values'"
            )
    key = expression.get("key")
    if key is None:
        raise SelectorError(f"{path}.key: required")
    problem = _key_problem(key)
    if problem is not None:
        raise SelectorError(f"{path}.key: {problem}")

    operator_name = expression.get("operator")
    if operator_name is None:
        raise SelectorError(f"{path}.operator: required")
    operator = _EXPRESSION_OPERATORS.get(operator_name) if isinstance(operator_name, str) else None
    if operator is None:
        raise SelectorError(
            f"{path}.operator: unsupported operator {_show(operator_name)}: "
            "expected 'In', 'NotIn', 'Exists' or 'DoesNotExist'"
        )

    values = expression.get("values")
    if values is None:
        values = ()
    if not isinstance(values, list | tuple):
        raise SelectorError(f"{path}.values: expected a list of strings, got {_type_name(values)}")
    for index, value in enumerate(values):
        problem = _value_problem(value, key)
        if problem is not None:
            raise SelectorError(f"{path}.values[{index}]: {problem}")
    if operator in _SET_VALUES and not values:
        raise SelectorError(f"{path}.values: must be non-empty when operator is {operator_name!r}")
    if operator not in _SET_VALUES and values:
        raise SelectorError(f"{path}.values: must be empty when operator is {operator_name!r}")
    return Requirement(key, operator, values)


# --- the text form: lexer ------------------------------------------------


class _Kind(enum.Enum):
    IDENTIFIER = "identifier"
    IN = "in"
    NOT_IN = "notin"
    BANG = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    GREATER = ">"
    LESS = "<"
    OPEN = "("
    CLOSE = ")"
    COMMA = ","
    END = "end of input"


@attrs.frozen
class _Token:
    kind: _Kind
    text: str
    position: int


_WHITESPACE: Final = frozenset(" \t\r\n")
_SPECIAL: Final = frozenset("=!(),<>")
_SYMBOLS: Final = {
    "!=": _Kind.NOT_EQUALS,
    "==": _Kind.DOUBLE_EQUALS,
    "=": _Kind.EQUALS,
    "!": _Kind.BANG,
    "(": _Kind.OPEN,
    ")": _Kind.CLOSE,
    ",": _Kind.COMMA,
    ">": _Kind.GREATER,
    "<": _Kind.LESS,
}
_KEYWORDS: Final = {"in": _Kind.IN, "notin": _Kind.NOT_IN}


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens, ending with an END token, as the Kubernetes lexer does."""
    tokens: list[_Token] = []
    index, length = 0, len(text)
    while True:
        while index < length and text[index] in _WHITESPACE:
            index += 1
        if index >= length:
            tokens.append(_Token(_Kind.END, "", length))
            return tokens
        start = index
        if text[index] in _SPECIAL:
            symbol = text[index : index + 2]
            if symbol not in _SYMBOLS:
                symbol = text[index]
            index += len(symbol)
            tokens.append(_Token(_SYMBOLS[symbol], symbol, start))
            continue
        while index < length and text[index] not in _SPECIAL and text[index] not in _WHITESPACE:
            index += 1
        word = text[start:index]
        tokens.append(_Token(_KEYWORDS.get(word, _Kind.IDENTIFIER), word, start))


# --- the text form: parser -----------------------------------------------

_REQUIREMENT_START: Final = (_Kind.IDENTIFIER, _Kind.BANG)
_TEXT_OPERATORS: Final = {
    _Kind.EQUALS: Operator.EQUALS,
    _Kind.DOUBLE_EQUALS: Operator.EQUALS,
    _Kind.NOT_EQUALS: Operator.NOT_EQUALS,
    _Kind.IN: Operator.IN,
    _Kind.NOT_IN: Operator.NOT_IN,
}


def _unexpected(token: _Token, expected: str) -> SelectorError:
    if token.kind is _Kind.END:
        return SelectorError(f"unexpected end of input: expected {expected}", token.position)
    return SelectorError(f"expected {expected}, found {_show(token.text)}", token.position)


def _parse(text: object) -> list[Requirement]:
    if not isinstance(text, str):
        raise SelectorError(f"a selector must be a string, got {_type_name(text)}")
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(
            f"selector text is longer than {MAX_SELECTOR_LENGTH} characters", MAX_SELECTOR_LENGTH
        )
    return _Parser(_tokenize(text)).parse()


class _Parser:
    """Recursive descent over the tokens, step for step like ``labels.Parse``.

    In value position the keywords ``in`` and ``notin`` are plain identifiers.
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def _lookahead(self, *, value: bool = True) -> tuple[_Kind, _Token]:
        token = self._tokens[min(self._index, len(self._tokens) - 1)]
        kind = token.kind
        if value and kind in (_Kind.IN, _Kind.NOT_IN):
            kind = _Kind.IDENTIFIER
        return kind, token

    def _consume(self, *, value: bool = True) -> tuple[_Kind, _Token]:
        result = self._lookahead(value=value)
        self._index += 1
        return result

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, token = self._lookahead()
            if kind is _Kind.END:
                return requirements
            if kind not in _REQUIREMENT_START:
                raise _unexpected(token, "a label key or '!'")
            if len(requirements) >= MAX_REQUIREMENTS:
                raise SelectorError(
                    f"a selector may hold at most {MAX_REQUIREMENTS} requirements",
                    token.position,
                )
            requirements.append(self._requirement())
            kind, token = self._consume()
            if kind is _Kind.END:
                return requirements
            if kind is not _Kind.COMMA:
                raise _unexpected(token, "',' or end of input")
            kind, token = self._lookahead()
            if kind not in _REQUIREMENT_START:
                raise _unexpected(token, "a label key or '!' after ','")

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator is not None:
            return Requirement(key, operator)
        kind, token = self._consume(value=False)
        operator = _TEXT_OPERATORS.get(kind)
        if kind in (_Kind.GREATER, _Kind.LESS):
            raise SelectorError(f"operator {token.text!r} is not supported", token.position)
        if operator is None:
            raise _unexpected(token, "'in', 'notin', '=', '==', '!=', ',' or end of input")
        if operator in _SET_VALUES:
            return Requirement(key, operator, self._value_set(key))
        return Requirement(key, operator, (self._exact_value(key),))

    def _key_and_inferred_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        kind, token = self._consume()
        if kind is _Kind.BANG:
            operator = Operator.DOES_NOT_EXIST
            kind, token = self._consume()
        if kind is not _Kind.IDENTIFIER:
            raise _unexpected(token, "a label key")
        problem = _key_problem(token.text)
        if problem is not None:
            raise SelectorError(problem, token.position)
        following, _ = self._lookahead()
        if operator is None and following in (_Kind.END, _Kind.COMMA):
            operator = Operator.EXISTS
        return token.text, operator

    def _checked_value(self, token: _Token, key: str) -> str:
        problem = _value_problem(token.text, key)
        if problem is not None:
            raise SelectorError(problem, token.position)
        return token.text

    def _exact_value(self, key: str) -> str:
        kind, _ = self._lookahead()
        if kind in (_Kind.END, _Kind.COMMA):
            return ""
        kind, token = self._consume()
        if kind is not _Kind.IDENTIFIER:
            raise _unexpected(token, "a value, ',' or end of input")
        return self._checked_value(token, key)

    def _value_set(self, key: str) -> list[str]:
        kind, token = self._consume()
        if kind is not _Kind.OPEN:
            raise _unexpected(token, "'('")
        kind, token = self._lookahead()
        if kind is _Kind.CLOSE:  # "()" is the set of the empty value, as in Kubernetes
            self._consume()
            return [""]
        if kind not in (_Kind.IDENTIFIER, _Kind.COMMA):
            raise _unexpected(token, "a value, ',' or ')'")
        values = self._value_list(key)
        kind, token = self._consume()
        if kind is not _Kind.CLOSE:  # pragma: no cover - _value_list stops before ')'
            raise _unexpected(token, "')'")
        return values

    def _value_list(self, key: str) -> list[str]:
        """A comma-separated list of possibly empty values, up to (not including) ``)``."""
        values: list[str] = []
        while True:
            kind, token = self._consume()
            if kind is _Kind.IDENTIFIER:
                values.append(self._checked_value(token, key))
                following, after = self._lookahead()
                if following is _Kind.CLOSE:
                    return values
                if following is not _Kind.COMMA:
                    raise _unexpected(after, "',' or ')'")
            elif kind is _Kind.COMMA:
                if not values:
                    values.append("")  # "(,"
                following, _ = self._lookahead()
                if following is _Kind.CLOSE:
                    values.append("")  # ",)"
                    return values
                if following is _Kind.COMMA:
                    self._consume()
                    values.append("")  # ",,"
            else:
                raise _unexpected(token, "a value or ','")
