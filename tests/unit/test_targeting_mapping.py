"""One JSON encoding of targeting (``Targeting.to_mapping`` / ``from_mapping``), as the
stores keep it and the HTTP API shows it; and the stores' ``BoundedCache``."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_selectors import label_sets, selectors

from workqueue_core._stored import BoundedCache
from workqueue_core.domain.errors import InvalidInput, SelectorError
from workqueue_core.domain.models import Targeting
from workqueue_core.domain.selectors import LabelSelector
from workqueue_postgres import codec as pg_codec
from workqueue_sqlite import codec as sqlite_codec

A = UUID("6f1c1a60-3c4a-4a4e-9a55-2d7f0c1b9e10")
B = UUID("0b6c5e2f-5d0a-4e55-9d5b-0c9a3f0f2b11")

targetings = st.one_of(
    st.builds(Targeting, selector=selectors()),
    st.builds(Targeting, agent_ids=st.frozensets(st.uuids(), min_size=1, max_size=3)),
    st.builds(
        Targeting,
        agent_ids=st.frozensets(st.uuids(), min_size=1, max_size=3),
        selector=selectors(),
    ),
)


@given(targetings)
def test_the_exact_form_round_trips_to_an_equal_targeting(targeting: Targeting) -> None:
    mapping = targeting.to_mapping()
    assert Targeting.from_mapping(json.loads(json.dumps(mapping))) == targeting
    assert mapping["agent_ids"] == sorted(mapping["agent_ids"])


@given(targetings, label_sets())
def test_the_structured_form_matches_the_same_agents(
    targeting: Targeting, labels: dict[str, str]
) -> None:
    shown = Targeting.from_mapping(targeting.to_mapping(structured_selector=True))
    assert shown.agent_ids == targeting.agent_ids
    assert shown.matches(A, labels) == targeting.matches(A, labels)


def test_the_forms_of_one_targeting() -> None:
    targeting = Targeting(agent_ids=frozenset({A, B}), selector=LabelSelector.parse("zone!=a"))
    assert targeting.to_mapping() == {
        "agent_ids": [str(B), str(A)],
        "selector": [["zone", "!=", ["a"]]],
    }
    assert targeting.to_mapping(structured_selector=True)["selector"] == {
        "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]
    }
    assert Targeting.agents(A).to_mapping() == {"agent_ids": [str(A)], "selector": None}
    assert Targeting.everyone().to_mapping() == {"agent_ids": [], "selector": []}
    assert Targeting.from_mapping({"selector": "zone in (a,b)"}) == Targeting.labels(
        "zone in (a,b)"
    )
    assert Targeting.from_mapping({"agent_ids": [A]}) == Targeting.agents(A)


# Written by the stores before Targeting.to_mapping existed: they must still read.
OLD_SQLITE_TEXT = (
    '{"agent_ids":["0b6c5e2f-5d0a-4e55-9d5b-0c9a3f0f2b11"],'
    '"selector":[["gpu","exists",[]],["zone","in",["a","b"]]]}'
)
OLD_POSTGRES_KEY = (
    '[["0b6c5e2f-5d0a-4e55-9d5b-0c9a3f0f2b11"],[["gpu","exists",[]],["zone","in",["a","b"]]]]'
)


def test_stored_formats_are_unchanged() -> None:
    targeting = Targeting(
        agent_ids=frozenset({B}), selector=LabelSelector.parse("zone in (a,b),gpu")
    )
    assert sqlite_codec.dump_targeting(targeting) == OLD_SQLITE_TEXT
    assert sqlite_codec.load_targeting(OLD_SQLITE_TEXT) == targeting
    assert pg_codec.targeting_key(targeting) == OLD_POSTGRES_KEY
    stored_selector = json.loads(OLD_POSTGRES_KEY)[1]
    assert pg_codec.targeting_from([B], stored_selector) == targeting
    assert pg_codec.selector_json(targeting.selector) == stored_selector


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, InvalidInput),
        ({"agent_ids": "0b6c5e2f-5d0a-4e55-9d5b-0c9a3f0f2b11"}, InvalidInput),
        ({"agent_ids": ["not-a-uuid"]}, InvalidInput),
        ({"agent_ids": True}, InvalidInput),
        ({"agent_ids": {"a": 1}}, InvalidInput),
        ({"selector": 5}, SelectorError),
        ({"selector": [["zone", "near", ["a"]]]}, SelectorError),
        ({"selector": [["zone", "in"]]}, SelectorError),
        ({"selector": ["zone"]}, SelectorError),
        ({"selector": [["zone", "=", ["a", "b"]]]}, SelectorError),
        ({"selector": "zone in (a"}, SelectorError),
    ],
)
def test_malformed_mappings_are_refused(data: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Targeting.from_mapping(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.uuids(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["agent_ids", "selector", "other"]), json_values))
def test_any_mapping_reads_or_is_refused_as_invalid_input(data: dict[str, object]) -> None:
    try:
        targeting = Targeting.from_mapping(data)
    except InvalidInput:
        return
    assert Targeting.from_mapping(targeting.to_mapping()) == targeting


# --- the bounded cache ------------------------------------------------------------------------


def test_a_bounded_cache_keeps_at_most_its_size_dropping_the_oldest() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for n in range(5):
        assert cache.put(f"k{n}", n) == n
    assert len(cache) == 3 and cache.size == 3
    assert [cache.get(f"k{n}") for n in range(5)] == [None, None, 2, 3, 4]
    assert "k2" in cache and "k0" not in cache
    cache.put("k2", 20)  # replacing a kept key evicts nothing
    assert (len(cache), cache.get("k2"), cache.get("k3")) == (3, 20, 3)
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(0)


def test_the_sqlite_targeting_cache_is_bounded() -> None:
    cache = sqlite_codec.TargetingCache(size=2)
    texts = [sqlite_codec.dump_targeting(Targeting.labels(f"zone={n}")) for n in range(4)]
    parsed = [cache.get(text) for text in texts]
    assert parsed == [Targeting.labels(f"zone={n}") for n in range(4)]
    assert cache.get(texts[3]) is parsed[3]  # kept: the same object
    assert cache.get(texts[0]) == parsed[0] and cache.get(texts[0]) is not parsed[0]
