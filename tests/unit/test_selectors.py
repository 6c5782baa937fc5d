"""Kubernetes label selectors: grammar, validation, matching and the structured form."""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Mapping
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workqueue_core.domain.errors import SelectorError
from workqueue_core.domain.selectors import (
    MAX_REQUIREMENTS,
    MAX_SELECTOR_LENGTH,
    LabelSelector,
    Operator,
    Requirement,
    validate_label_key,
    validate_label_value,
    validate_labels,
)

# --- strategies (to move to workqueue_core.testing) ----------------------

#: Small pools, so that generated selectors and label sets hit each other often.
#: They include the grammar's keywords and the empty value on purpose.
KEY_POOL = ("a", "b", "in", "example.com/c")
VALUE_POOL = ("", "x", "y", "notin")

_EDGE = string.ascii_letters + string.digits
_INNER = _EDGE + "-_."
_DNS_EDGE = string.ascii_lowercase + string.digits
_DNS_INNER = _DNS_EDGE + "-"


def _names(edge: str, inner: str, max_size: int) -> st.SearchStrategy[str]:
    """Strings of ``edge`` characters at both ends and ``inner`` ones inside."""
    return st.one_of(
        st.sampled_from(edge),
        st.builds(
            lambda first, middle, last: first + middle + last,
            st.sampled_from(edge),
            st.text(inner, max_size=max_size - 2),
            st.sampled_from(edge),
        ),
    )


def _prefixes() -> st.SearchStrategy[str]:
    """DNS-1123 subdomains of at most 4 labels of at most 20 characters."""
    return st.lists(_names(_DNS_EDGE, _DNS_INNER, 20), min_size=1, max_size=4).map(".".join)


def label_keys(*, small: bool = False) -> st.SearchStrategy[str]:
    """Valid label keys; with ``small`` only those of `KEY_POOL`."""
    pool = st.sampled_from(KEY_POOL)
    if small:
        return pool
    names = _names(_EDGE, _INNER, 63)
    prefixed = st.builds(lambda prefix, name: f"{prefix}/{name}", _prefixes(), names)
    return st.one_of(pool, names, prefixed)


def label_values(*, small: bool = False) -> st.SearchStrategy[str]:
    """Valid label values, the empty one included; with ``small`` only `VALUE_POOL`."""
    pool = st.sampled_from(VALUE_POOL)
    if small:
        return pool
    return st.one_of(pool, _names(_EDGE, _INNER, 63))


def label_sets(*, small: bool = False) -> st.SearchStrategy[dict[str, str]]:
    """Valid label sets of at most 6 labels."""
    return st.dictionaries(label_keys(small=small), label_values(small=small), max_size=6)


def requirements(*, small: bool = False) -> st.SearchStrategy[Requirement]:
    """Valid requirements of every operator."""
    keys, values = label_keys(small=small), label_values(small=small)
    return st.one_of(
        st.builds(
            Requirement,
            keys,
            st.sampled_from([Operator.EQUALS, Operator.NOT_EQUALS]),
            values.map(lambda value: (value,)),
        ),
        st.builds(
            Requirement,
            keys,
            st.sampled_from([Operator.IN, Operator.NOT_IN]),
            st.lists(values, min_size=1, max_size=4),
        ),
        st.builds(Requirement, keys, st.sampled_from([Operator.EXISTS, Operator.DOES_NOT_EXIST])),
    )


def selectors(*, small: bool = False) -> st.SearchStrategy[LabelSelector]:
    """Valid selectors of at most 6 requirements."""
    return st.lists(requirements(small=small), max_size=6).map(LabelSelector)


# --- an independent reference --------------------------------------------

_ABSENT = object()


def _satisfying_states(operator: str, values: set[str], universe: set[object]) -> set[object]:
    """The states of a key (a value or ``_ABSENT``) a requirement accepts, by set logic."""
    present = universe - {_ABSENT}
    table: dict[str, set[object]] = {
        "EQUALS": set(values),
        "IN": set(values),
        "NOT_EQUALS": (present - values) | {_ABSENT},
        "NOT_IN": (present - values) | {_ABSENT},
        "EXISTS": present,
        "DOES_NOT_EXIST": {_ABSENT},
    }
    return table[operator]


def reference_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Brute force: each key's state must lie in the states every requirement accepts."""
    universe: set[object] = {_ABSENT, "<some other value>", *labels.values()}
    for requirement in selector.requirements:
        universe.update(requirement.values)
    for requirement in selector.requirements:
        state = labels.get(requirement.key, _ABSENT)
        accepted = _satisfying_states(requirement.operator.name, set(requirement.values), universe)
        if state not in accepted:
            return False
    return True


def all_small_label_sets() -> list[dict[str, str]]:
    """Every label set over `KEY_POOL` and `VALUE_POOL` (5 states per key: 625 sets)."""
    states: list[str | None] = [None, *VALUE_POOL]
    return [
        {key: value for key, value in zip(KEY_POOL, choice, strict=True) if value is not None}
        for choice in itertools.product(states, repeat=len(KEY_POOL))
    ]


ALL_SMALL_LABEL_SETS = all_small_label_sets()


def _req(key: str, operator: Operator, *values: str) -> Requirement:
    return Requirement(key, operator, values)


# --- the Kubernetes documentation examples -------------------------------

EQ, NE, IN, NOTIN = Operator.EQUALS, Operator.NOT_EQUALS, Operator.IN, Operator.NOT_IN
EXISTS, ABSENT = Operator.EXISTS, Operator.DOES_NOT_EXIST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("environment = production", [_req("environment", EQ, "production")]),
        ("tier != frontend", [_req("tier", NE, "frontend")]),
        (
            "environment=production,tier!=frontend",
            [_req("environment", EQ, "production"), _req("tier", NE, "frontend")],
        ),
        ("environment in (production, qa)", [_req("environment", IN, "production", "qa")]),
        ("tier notin (frontend, backend)", [_req("tier", NOTIN, "backend", "frontend")]),
        ("partition", [_req("partition", EXISTS)]),
        ("!partition", [_req("partition", ABSENT)]),
        (
            "partition,environment notin (qa)",
            [_req("environment", NOTIN, "qa"), _req("partition", EXISTS)],
        ),
        ("a==b", [_req("a", EQ, "b")]),
    ],
)
def test_documentation_examples_parse(text: str, expected: list[Requirement]) -> None:
    assert LabelSelector.parse(text).requirements == tuple(expected)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("environment = production", {"environment": "production"}, True),
        ("environment = production", {"environment": "qa"}, False),
        ("environment = production", {}, False),
        ("tier != frontend", {"tier": "backend"}, True),
        ("tier != frontend", {"tier": "frontend"}, False),
        ("tier != frontend", {"environment": "qa"}, True),
        ("environment=production,tier!=frontend", {"environment": "production"}, True),
        (
            "environment=production,tier!=frontend",
            {"environment": "production", "tier": "frontend"},
            False,
        ),
        ("environment in (production, qa)", {"environment": "qa"}, True),
        ("environment in (production, qa)", {"environment": "dev"}, False),
        ("environment in (production, qa)", {}, False),
        ("tier notin (frontend, backend)", {"tier": "cache"}, True),
        ("tier notin (frontend, backend)", {"tier": "backend"}, False),
        ("tier notin (frontend, backend)", {}, True),
        ("partition", {"partition": ""}, True),
        ("partition", {"tier": "x"}, False),
        ("!partition", {"tier": "x"}, True),
        ("!partition", {"partition": "a"}, False),
        ("partition,environment notin (qa)", {"partition": "a"}, True),
        ("partition,environment notin (qa)", {"partition": "a", "environment": "qa"}, False),
        ("partition,environment notin (qa)", {"environment": "dev"}, False),
        ("a==b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
    ],
)
def test_documentation_examples_match(text: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is expected


# --- matching, per operator ----------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "labels", "expected"),
    [
        (_req("k", EQ, "v"), {"k": "v"}, True),
        (_req("k", EQ, "v"), {"k": "w"}, False),
        (_req("k", EQ, "v"), {}, False),
        (_req("k", EQ, ""), {"k": ""}, True),
        (_req("k", EQ, ""), {}, False),
        (_req("k", NE, "v"), {"k": "v"}, False),
        (_req("k", NE, "v"), {"k": "w"}, True),
        (_req("k", NE, "v"), {}, True),
        (_req("k", NE, "v"), {"other": "v"}, True),
        (_req("k", IN, "a", "b"), {"k": "a"}, True),
        (_req("k", IN, "a", "b"), {"k": "b"}, True),
        (_req("k", IN, "a", "b"), {"k": "c"}, False),
        (_req("k", IN, "a", "b"), {}, False),
        (_req("k", IN, ""), {"k": ""}, True),
        (_req("k", NOTIN, "a", "b"), {"k": "a"}, False),
        (_req("k", NOTIN, "a", "b"), {"k": "c"}, True),
        (_req("k", NOTIN, "a", "b"), {}, True),
        (_req("k", EXISTS), {"k": ""}, True),
        (_req("k", EXISTS), {"K": "v"}, False),
        (_req("k", ABSENT), {"k": "v"}, False),
        (_req("k", ABSENT), {}, True),
    ],
)
def test_requirement_matches(
    requirement: Requirement, labels: dict[str, str], expected: bool
) -> None:
    assert requirement.matches(labels) is expected
    assert LabelSelector([requirement]).matches(labels) is expected


@pytest.mark.parametrize("labels", [{}, {"a": "b"}, {"x/y": ""}])
def test_the_empty_selector_matches_everything(labels: dict[str, str]) -> None:
    for selector in (LabelSelector(), LabelSelector.parse(""), LabelSelector.parse(" \t\r\n ")):
        assert selector.is_empty
        assert selector.matches(labels)
        assert selector.to_string() == ""
        assert selector.to_mapping() == {}
    assert LabelSelector.from_mapping({}) == LabelSelector()


def test_requirements_are_a_conjunction() -> None:
    selector = LabelSelector.parse("a=x,b")
    assert selector.matches({"a": "x", "b": "y"})
    assert not selector.matches({"a": "x"})
    assert not selector.matches({"b": "y"})
    assert not selector.is_empty


# --- the grammar: valid edge cases ---------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a=", "a="),
        ("a==", "a="),
        ("a ==", "a="),
        ("a!=", "a!="),
        ("a=,b", "a=,b"),
        ("  a  =  b  ,  c  ", "a=b,c"),
        ("a\tin\n(x,\ry)", "a in (x,y)"),
        ("a in(x)", "a in (x)"),
        ("a notin(y,x,y)", "a notin (x,y)"),
        # Kubernetes reads "()" as the set of the empty value, and accepts empty
        # members written with commas ("x in (foo,,baz),y,z notin ()" is its own example).
        ("a in ()", "a in ()"),
        ("a notin ()", "a notin ()"),
        ("a in (,)", "a in ()"),
        ("a in (x,)", "a in (,x)"),
        ("a in (,x)", "a in (,x)"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        # 'in' and 'notin' are keywords only where an operator is expected.
        ("in in (in, notin)", "in in (in,notin)"),
        ("notin", "notin"),
        ("!in", "!in"),
        ("in=notin", "in=notin"),
        # Canonical order: by key, then operator, then values; duplicates dropped.
        ("b,a=x,!c,a=x,a", "a=x,a,b,!c"),
        ("a notin (x),a in (x),a!=x,a=x,!a", "a=x,a!=x,a in (x),a notin (x),!a"),
        ("example.com/app=web", "example.com/app=web"),
    ],
)
def test_valid_edge_cases(text: str, canonical: str) -> None:
    selector = LabelSelector.parse(text)
    assert selector.to_string() == canonical
    assert str(selector) == canonical
    assert LabelSelector.parse(canonical) == selector


def test_empty_set_means_the_empty_value() -> None:
    selector = LabelSelector.parse("a in ()")
    assert selector.requirements == (_req("a", IN, ""),)
    assert selector.matches({"a": ""})
    assert not selector.matches({"a": "x"})
    assert not selector.matches({})


# --- the grammar: malformed input ----------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("a in (x", 7, "unexpected end of input: expected ',' or ')'"),
        ("a in x)", 5, "expected '('"),
        ("a in", 4, "unexpected end of input: expected '('"),
        ("a in ((x))", 6, "expected a value, ',' or ')'"),
        ("a in (x y)", 8, "expected ',' or ')'"),
        ("a in (x,", 8, "unexpected end of input: expected a value or ','"),
        ("a in (x,,)", 9, "expected a value or ','"),  # as Kubernetes: ",," then ")" fails
        (",a", 0, "expected a label key or '!'"),
        ("a,,b", 2, "expected a label key or '!' after ','"),
        ("a,", 2, "unexpected end of input"),
        ("a in (x),  ", 11, "unexpected end of input"),
        ("!a=b", 2, "expected ',' or end of input"),
        ("!a in (x)", 3, "expected ',' or end of input"),
        ("!!a", 1, "expected a label key"),
        ("  !", 3, "unexpected end of input: expected a label key"),
        ("!=a", 0, "expected a label key or '!'"),
        ("a b", 2, "expected 'in', 'notin', '=', '==', '!=', ',' or end of input"),
        ("a!b", 1, "expected 'in', 'notin'"),
        ("a=b c", 4, "expected ',' or end of input"),
        ("a = = b", 4, "expected a value"),
        ("a===b", 3, "expected a value"),
        ("a > 1", 2, "'>' is not supported"),
        ("a<1", 1, "'<' is not supported"),
        ("-a=b", 0, "invalid label key '-a'"),
        ("x,a-=b", 2, "invalid label key 'a-'"),
        ("k" * 64, 0, "name part must be no more than 63 characters"),
        ("a/b/c", 0, "at most one '/'"),
        ("/a", 0, "prefix part must not be empty"),
        ("a/", 0, "name part must not be empty"),
        ("Example.com/a", 0, "prefix part must be a lowercase DNS-1123 subdomain"),
        ("a=b/c", 2, "invalid label value 'b/c' for key 'a'"),
        ("a in (x, -y)", 9, "invalid label value '-y'"),
        ("a=" + "v" * 64, 2, "must be no more than 63 characters"),
        ("é", 0, "invalid label key"),
    ],
)
def test_malformed_selectors_report_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        LabelSelector.parse(text)
    assert isinstance(caught.value.position, int)
    assert caught.value.position == position
    assert fragment in caught.value.detail
    assert f"at position {position}" in str(caught.value)


def test_selector_text_length_limit() -> None:
    long_value = "a=" + "b" * (MAX_SELECTOR_LENGTH - 1)
    with pytest.raises(SelectorError) as caught:
        LabelSelector.parse(long_value)
    assert caught.value.position == MAX_SELECTOR_LENGTH
    assert "longer than 4096" in caught.value.detail


def test_requirement_count_limit() -> None:
    keys = [f"k{i}" for i in range(MAX_REQUIREMENTS + 1)]
    assert len(LabelSelector.parse(",".join(keys[:-1])).requirements) == MAX_REQUIREMENTS
    text = ",".join(keys)
    with pytest.raises(SelectorError) as caught:
        LabelSelector.parse(text)
    assert caught.value.position == text.index(keys[-1])
    with pytest.raises(SelectorError, match="at most 100 requirements"):
        LabelSelector([Requirement(key, EXISTS) for key in keys])
    with pytest.raises(SelectorError, match="at most 100 requirements"):
        LabelSelector.from_mapping({"matchLabels": dict.fromkeys(keys, "v")})


def test_canonical_text_must_fit_the_length_limit() -> None:
    prefix = ".".join(["p" * 60] * 4)  # 243 characters
    requirements = [Requirement(f"{prefix}/{'n' * 60}{i:03}", EXISTS) for i in range(14)]
    assert len(LabelSelector(requirements[:13]).to_string()) <= MAX_SELECTOR_LENGTH
    with pytest.raises(SelectorError, match="canonical text is longer than 4096"):
        LabelSelector(requirements)


@pytest.mark.parametrize("value", [None, 1, b"a=b", ["a"]])
def test_parse_rejects_non_text(value: object) -> None:
    with pytest.raises(SelectorError, match="must be a string"):
        LabelSelector.parse(value)  # type: ignore[arg-type]


# --- key and value validation --------------------------------------------

VALID_KEYS = [
    "a",
    "A",
    "0",
    "app",
    "a.b-c_d",
    "A9",
    "k" * 63,
    "example.com/a",
    "a-b.c0/Z",
    "kubernetes.io/os",
    "9/x",
    ".".join(["a" * 63] * 3 + ["b" * 61]) + "/n",  # a 253-character prefix
]
INVALID_KEYS = [
    "",
    "-a",
    "a-",
    "_a",
    "a.",
    "a b",
    "a=b",
    "k" * 64,
    "é",
    "a/b/c",
    "/a",
    "a/",
    "A.com/x",
    "a..b/x",
    "-a.com/x",
    "a_b/x",
    ".".join(["a" * 63] * 3 + ["b" * 62]) + "/n",  # a 254-character prefix
    "a\n",
]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_valid_label_keys(key: str) -> None:
    validate_label_key(key)
    assert LabelSelector.parse(key).requirements == (Requirement(key, EXISTS),)


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_label_keys(key: str) -> None:
    with pytest.raises(SelectorError, match="label key"):
        validate_label_key(key)
    with pytest.raises(SelectorError):
        Requirement(key, EXISTS)


VALID_VALUES = ["", "a", "A", "0", "a.b-c_d", "v" * 63, "in", "notin"]
INVALID_VALUES = ["-a", "a-", ".", "a b", "a/b", "a=b", "v" * 64, "é", "a\n", "(a)"]


@pytest.mark.parametrize("value", VALID_VALUES)
def test_valid_label_values(value: str) -> None:
    validate_label_value(value)
    assert Requirement("k", EQ, (value,)).values == (value,)


@pytest.mark.parametrize("value", INVALID_VALUES)
def test_invalid_label_values(value: str) -> None:
    with pytest.raises(SelectorError, match="label value"):
        validate_label_value(value)
    with pytest.raises(SelectorError, match="label value"):
        Requirement("k", IN, ("ok", value))


def test_validate_labels() -> None:
    validate_labels({"app": "web", "example.com/tier": ""})
    with pytest.raises(SelectorError, match="invalid label key '-x'"):
        validate_labels({"app": "web", "-x": "y"})
    with pytest.raises(SelectorError, match="invalid label value '-y' for key 'app'"):
        validate_labels({"app": "-y"})
    with pytest.raises(SelectorError, match="must be a string, got int"):
        validate_labels({"app": 1})  # type: ignore[dict-item]
    with pytest.raises(SelectorError, match="must be a string, got int"):
        validate_labels({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(SelectorError, match="must be a mapping"):
        validate_labels(["app"])  # type: ignore[arg-type]


# --- requirements ---------------------------------------------------------


def test_requirement_values_are_sorted_and_deduplicated() -> None:
    requirement = Requirement("k", IN, ["b", "a", "b", ""])
    assert requirement.values == ("", "a", "b")
    assert requirement == Requirement("k", IN, ("a", "b", ""))
    assert str(requirement) == "k in (,a,b)"


@pytest.mark.parametrize(
    ("operator", "values", "fragment"),
    [
        (EQ, (), "exactly one value, got 0"),
        (EQ, ("a", "b"), "exactly one value, got 2"),
        (NE, (), "exactly one value"),
        (IN, (), "at least one value"),
        (NOTIN, (), "at least one value"),
        (EXISTS, ("a",), "takes no values"),
        (ABSENT, ("a",), "takes no values"),
    ],
)
def test_requirement_value_counts(
    operator: Operator, values: tuple[str, ...], fragment: str
) -> None:
    with pytest.raises(SelectorError, match=fragment):
        Requirement("k", operator, values)


@pytest.mark.parametrize(
    ("key", "operator", "values"),
    [
        (1, EXISTS, ()),
        (None, EXISTS, ()),
        ("k", "in", ("a",)),
        ("k", None, ()),
        ("k", IN, "ab"),
        ("k", IN, 5),
        ("k", IN, (1,)),
        ("k", IN, (None,)),
    ],
)
def test_requirement_rejects_garbage(key: object, operator: object, values: object) -> None:
    with pytest.raises(SelectorError):
        Requirement(key, operator, values)  # type: ignore[arg-type]


@pytest.mark.parametrize("requirements", [[1], ["a"], "a", 5, None])
def test_selector_rejects_garbage_requirements(requirements: object) -> None:
    with pytest.raises(SelectorError):
        LabelSelector(requirements)  # type: ignore[arg-type]


# --- the structured form -------------------------------------------------


def test_from_mapping() -> None:
    selector = LabelSelector.from_mapping(
        {
            "matchLabels": {"app": "web", "example.com/tier": ""},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["qa", "prod", "qa"]},
                {"key": "zone", "operator": "NotIn", "values": ["z1"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
                {"key": "spot", "operator": "Exists", "values": None},
            ],
        }
    )
    assert selector == LabelSelector.parse(
        "app=web,example.com/tier=,env in (prod,qa),zone notin (z1),gpu,!legacy,spot"
    )
    assert LabelSelector.from_mapping({"matchLabels": None, "matchExpressions": None}).is_empty
    assert LabelSelector.from_mapping({"matchExpressions": ()}).is_empty


def test_to_mapping() -> None:
    selector = LabelSelector.parse("app=web,a=x,a=y,b!=z,c in (p,q),d notin (r),e,!f")
    assert selector.to_mapping() == {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["x"]},
            {"key": "a", "operator": "In", "values": ["y"]},
            {"key": "b", "operator": "NotIn", "values": ["z"]},
            {"key": "c", "operator": "In", "values": ["p", "q"]},
            {"key": "d", "operator": "NotIn", "values": ["r"]},
            {"key": "e", "operator": "Exists"},
            {"key": "f", "operator": "DoesNotExist"},
        ],
    }
    assert LabelSelector.parse("a=x").to_mapping() == {"matchLabels": {"a": "x"}}


def _expression(**fields: object) -> dict[str, object]:
    return {"matchExpressions": [{"key": "ok", "operator": "Exists"}, fields]}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("a=b", "a label selector must be a mapping, got str"),
        (None, "must be a mapping, got NoneType"),
        ({"matchLabel": {}}, "unknown field 'matchLabel'"),
        ({1: {}}, "unknown field 1"),
        ({"matchLabels": []}, "matchLabels: expected a mapping"),
        ({"matchLabels": {"a": 1}}, "matchLabels['a']: a label value for key 'a' must be a string"),
        ({"matchLabels": {"a": "-x"}}, "matchLabels['a']: invalid label value '-x'"),
        ({"matchLabels": {1: "x"}}, "matchLabels: a label key must be a string, got int"),
        ({"matchLabels": {"-a": "x"}}, "matchLabels: invalid label key '-a'"),
        ({"matchExpressions": {"key": "a"}}, "matchExpressions: expected a list, got dict"),
        ({"matchExpressions": "a"}, "matchExpressions: expected a list, got str"),
        ({"matchExpressions": ["a"]}, "matchExpressions[0]: expected a mapping, got str"),
        (_expression(operator="Exists"), "matchExpressions[1].key: required"),
        (_expression(key=1, operator="Exists"), "matchExpressions[1].key: a label key must be"),
        (_expression(key="a/b/c", operator="Exists"), "matchExpressions[1].key: invalid label key"),
        (_expression(key="a"), "matchExpressions[1].operator: required"),
        (_expression(key="a", operator="Foo"), "matchExpressions[1].operator: unsupported"),
        (_expression(key="a", operator="in", values=["x"]), "matchExpressions[1].operator"),
        (_expression(key="a", operator=["In"]), "matchExpressions[1].operator"),
        (_expression(key="a", operator="In"), "matchExpressions[1].values: must be non-empty"),
        (_expression(key="a", operator="NotIn", values=[]), "[1].values: must be non-empty"),
        (_expression(key="a", operator="Exists", values=["x"]), "[1].values: must be empty"),
        (_expression(key="a", operator="DoesNotExist", values=[""]), "[1].values: must be empty"),
        (_expression(key="a", operator="In", values="x"), "[1].values: expected a list"),
        (_expression(key="a", operator="In", values=["x", 2]), "[1].values[1]: a label value"),
        (_expression(key="a", operator="In", values=["x/"]), "[1].values[0]: invalid label value"),
        (_expression(key="a", operator="In", extra=1), "[1]: unknown field 'extra'"),
    ],
)
def test_from_mapping_errors_name_the_field(data: object, fragment: str) -> None:
    with pytest.raises(SelectorError) as caught:
        LabelSelector.from_mapping(data)
    assert caught.value.position is None
    assert fragment in caught.value.detail


def test_coerce() -> None:
    selector = LabelSelector.parse("a=b")
    assert LabelSelector.coerce(selector) is selector
    assert LabelSelector.coerce("a = b") == selector
    assert LabelSelector.coerce({"matchLabels": {"a": "b"}}) == selector
    with pytest.raises(SelectorError, match="got int"):
        LabelSelector.coerce(3)  # type: ignore[arg-type]
    with pytest.raises(SelectorError, match="unknown field"):
        LabelSelector.coerce({"a": "b"})


# --- properties ----------------------------------------------------------


@given(selectors())
def test_canonical_text_round_trips(selector: LabelSelector) -> None:
    text = selector.to_string()
    assert LabelSelector.parse(text) == selector
    assert " " not in text.replace(" in (", "").replace(" notin (", "")


@given(st.lists(requirements(), max_size=6), st.randoms())
def test_canonical_form_ignores_order_and_duplicates(items: list[Requirement], rng: Random) -> None:
    shuffled = items + items[: len(items) // 2]
    rng.shuffle(shuffled)
    assert LabelSelector(shuffled) == LabelSelector(items)
    assert LabelSelector(shuffled).to_string() == LabelSelector(items).to_string()


@given(selectors(small=True))
def test_matching_agrees_with_the_reference_on_every_small_label_set(
    selector: LabelSelector,
) -> None:
    for labels in ALL_SMALL_LABEL_SETS:
        assert selector.matches(labels) is reference_matches(selector, labels), labels


@given(selectors(), st.data())
def test_matching_agrees_with_the_reference(selector: LabelSelector, data: st.DataObject) -> None:
    keys = [r.key for r in selector.requirements] + list(KEY_POOL)
    values = [v for r in selector.requirements for v in r.values] + list(VALUE_POOL)
    labels = data.draw(
        st.one_of(
            st.dictionaries(st.sampled_from(keys), st.sampled_from(values), max_size=8),
            label_sets(),
        )
    )
    assert selector.matches(labels) is reference_matches(selector, labels)
    text_selector = LabelSelector.parse(selector.to_string())
    assert text_selector.matches(labels) is reference_matches(selector, labels)


@given(selectors(small=True))
def test_structured_form_matches_the_same_label_sets(selector: LabelSelector) -> None:
    rebuilt = LabelSelector.from_mapping(selector.to_mapping())
    for labels in ALL_SMALL_LABEL_SETS:
        assert rebuilt.matches(labels) is selector.matches(labels), labels
        assert rebuilt.matches(labels) is reference_matches(selector, labels), labels


@given(selectors(), label_sets())
def test_structured_form_round_trips(selector: LabelSelector, labels: dict[str, str]) -> None:
    mapping = selector.to_mapping()
    rebuilt = LabelSelector.from_mapping(mapping)
    assert rebuilt.matches(labels) is selector.matches(labels)
    assert LabelSelector.from_mapping(rebuilt.to_mapping()) == rebuilt

    # Nothing is lost: the structured form writes `k=v` as `k In (v)`, so requirements
    # that become identical that way appear once.
    def normalised(requirement: Requirement) -> tuple[str, str, tuple[str, ...]]:
        op = {Operator.EQUALS: Operator.IN, Operator.NOT_EQUALS: Operator.NOT_IN}.get(
            requirement.operator, requirement.operator
        )
        return (requirement.key, op.value, tuple(sorted(requirement.values)))

    assert {normalised(r) for r in rebuilt.requirements} == {
        normalised(r) for r in selector.requirements
    }


def _outcome(build: Callable[[], LabelSelector]) -> LabelSelector | SelectorError:
    """The selector ``build`` returns, or the `SelectorError` it raises (anything else escapes)."""
    try:
        return build()
    except SelectorError as error:
        return error


def _check_parse_outcome(text: str) -> None:
    outcome = _outcome(lambda: LabelSelector.parse(text))
    if isinstance(outcome, SelectorError):
        assert isinstance(outcome.position, int)
        assert 0 <= outcome.position <= len(text)
        assert outcome.detail
    else:
        assert LabelSelector.parse(outcome.to_string()) == outcome


@given(st.text())
def test_parsing_arbitrary_text_only_raises_selector_error(text: str) -> None:
    _check_parse_outcome(text)


@given(st.text(alphabet="ab/.-_=!(),<> \tin", max_size=40))
def test_parsing_selector_like_text_only_raises_selector_error(text: str) -> None:
    _check_parse_outcome(text)


@given(
    st.lists(st.sampled_from(["a", "in", "notin", "=", "==", "!=", "!", "(", ")", ",", " ", "x"]))
)
def test_parsing_token_soup_only_raises_selector_error(tokens: list[str]) -> None:
    _check_parse_outcome("".join(tokens))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.sampled_from(KEY_POOL),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["matchLabels", "matchExpressions", "key", "operator", "values", "x"])
            | st.text(max_size=3),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)
_near_valid_expressions = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(KEY_POOL) | _json,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Eq"]) | _json,
        "values": st.lists(st.sampled_from(VALUE_POOL) | _json, max_size=3) | _json,
    },
)
_near_valid_mappings = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(
            st.sampled_from(KEY_POOL) | st.none() | st.integers() | st.text(max_size=5),
            st.sampled_from(VALUE_POOL) | _json,
            max_size=3,
        )
        | _json,
        "matchExpressions": st.lists(_near_valid_expressions, max_size=3) | _json,
    },
)


@given(_json | _near_valid_mappings)
def test_from_mapping_on_garbage_only_raises_selector_error(data: object) -> None:
    outcome = _outcome(lambda: LabelSelector.from_mapping(data))
    if isinstance(outcome, SelectorError):
        assert outcome.position is None
        assert outcome.detail
    else:
        assert LabelSelector.from_mapping(outcome.to_mapping()) == outcome
