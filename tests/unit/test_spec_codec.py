"""Safe YAML loading: limits, JSON-only values, Kubernetes-style scalars, round trips."""

from __future__ import annotations

import contextlib
import math
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workqueue_core.domain.errors import SpecError, SpecTooLarge
from workqueue_core.work import safe_yaml as spec_codec
from workqueue_core.work.safe_yaml import (
    DEFAULT_YAML_LIMITS,
    YamlLimits,
    child_path,
    describe_type,
    dump_yaml,
    load_json_compatible_mapping,
    load_yaml,
)

LOADERS: list[type[Any]] = [spec_codec._PySpecLoader]
if hasattr(spec_codec, "_CSpecLoader"):
    LOADERS.insert(0, spec_codec._CSpecLoader)


@pytest.fixture(params=LOADERS, ids=lambda loader: loader.__name__)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test with libyaml (when present) and with the pure-Python loader."""
    monkeypatch.setattr(spec_codec, "_SpecLoader", request.param)


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ["lol0: &lol0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*lol{level - 1}"] * width)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def doubling_bomb(levels: int, base_width: int) -> str:
    """Each level refers to the previous one twice: 2 * levels aliases, 2**levels expansion."""
    lines = ["l0: &l0 [" + ", ".join(["x"] * base_width) + "]"]
    lines += [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def block_mappings(depth: int) -> str:
    return "".join("  " * level + f"k{level}:\n" for level in range(depth)) + "  " * depth + "v\n"


# --- hostile documents -------------------------------------------------------------


@pytest.mark.usefixtures("loader")
class TestHostileDocuments:
    def test_billion_laughs_is_rejected(self) -> None:
        text = billion_laughs()
        assert text.count("*") == 90  # under the alias limit: the expansion count catches it
        with pytest.raises(SpecError, match=r"expands|alias"):
            load_yaml(text)

    def test_doubling_bomb_with_few_aliases_is_rejected_by_expansion(self) -> None:
        text = doubling_bomb(levels=25, base_width=1)
        with pytest.raises(SpecError, match="expands") as caught:
            load_yaml(text)
        assert "100000 nodes" in str(caught.value)

    def test_twenty_aliases_can_expand_past_the_node_limit(self) -> None:
        text = doubling_bomb(levels=10, base_width=100)
        assert text.count("*") == 20
        with pytest.raises(SpecError, match="expands"):
            load_yaml(text)

    def test_small_expansion_is_allowed(self) -> None:
        value = load_yaml(doubling_bomb(levels=5, base_width=1))
        assert isinstance(value, dict)
        assert value["l1"] == [["x"], ["x"]]

    def test_too_many_aliases(self) -> None:
        text = "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n"
        with pytest.raises(SpecError, match="more than 100 aliases"):
            load_yaml(text)
        assert load_yaml(text, YamlLimits(max_aliases=101)) == {"a": "x", "b": ["x"] * 101}

    @pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "&r [[*r]]\n"])
    def test_recursive_alias(self, text: str) -> None:
        with pytest.raises(SpecError, match="recursive alias"):
            load_yaml(text)

    def test_deep_flow_sequence(self) -> None:
        with pytest.raises(SpecError, match="depth limit of 64"):
            load_yaml("[" * 100 + "]" * 100)

    def test_deep_block_mappings(self) -> None:
        with pytest.raises(SpecError, match="depth") as caught:
            load_yaml(block_mappings(100))
        assert "line 65" in str(caught.value)

    def test_deep_document_is_rejected_before_it_is_composed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_composing(*args: object) -> None:
            raise AssertionError("composed a document that the event pass should have refused")

        monkeypatch.setattr(spec_codec, "_check_graph", no_composing)
        with pytest.raises(SpecError, match="depth"):
            load_yaml("[" * 10_000 + "]" * 10_000)

    def test_sixty_levels_are_accepted(self) -> None:
        value = load_yaml("[" * 60 + "]" * 60)
        for _ in range(59):
            assert isinstance(value, list)
            value = value[0]
        assert value == []
        mapping = load_yaml(block_mappings(60))
        assert isinstance(mapping, dict)
        assert "k0" in mapping

    def test_node_limit_counts_plain_nodes_too(self) -> None:
        text = "[" + ", ".join(["1"] * 50) + "]"
        with pytest.raises(SpecError, match="more than 10 nodes"):
            load_yaml(text, YamlLimits(max_nodes=10))


class TestSize:
    def test_oversized_text(self) -> None:
        text = "a: " + "x" * DEFAULT_YAML_LIMITS.max_bytes
        with pytest.raises(SpecTooLarge) as caught:
            load_yaml(text)
        assert str(DEFAULT_YAML_LIMITS.max_bytes) in str(caught.value)
        assert str(len(text)) in str(caught.value)

    def test_oversized_bytes(self) -> None:
        with pytest.raises(SpecTooLarge, match="101 bytes long, over the limit of 100 bytes"):
            load_yaml(b"#" * 101, YamlLimits(max_bytes=100))

    def test_multibyte_characters_count_as_bytes(self) -> None:
        text = "é" * 60  # 60 characters, 120 bytes
        with pytest.raises(SpecTooLarge, match="120 bytes"):
            load_yaml(text, YamlLimits(max_bytes=100))

    def test_limits_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="max_depth"):
            YamlLimits(max_depth=0)


# --- malformed and non-JSON documents --------------------------------------------------


@pytest.mark.usefixtures("loader")
class TestRejections:
    def test_multiple_documents(self) -> None:
        with pytest.raises(SpecError, match="single YAML document"):
            load_yaml("a: 1\n---\nb: 2\n")

    def test_syntax_error_names_the_line(self) -> None:
        with pytest.raises(SpecError, match="line 3") as caught:
            load_yaml("a: 1\nb: [1, 2\nc: 3\n")
        assert caught.value.detail.startswith("YAML error at line")

    def test_bad_indentation(self) -> None:
        with pytest.raises(SpecError, match="line 3"):
            load_yaml("a:\n  b: 1\n c: 2\n")

    def test_merge_key(self) -> None:
        with pytest.raises(SpecError, match=r"merge keys \(<<\)") as caught:
            load_yaml("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n")
        assert caught.value.path == "derived"

    def test_quoted_merge_key_is_an_ordinary_string(self) -> None:
        assert load_yaml("'<<': 1\n") == {"<<": 1}

    @pytest.mark.parametrize(
        "text", ["1: a\n", "true: a\n", "~: a\n", "? [1, 2]\n: a\n", "? {a: 1}\n: b\n", "1.5: a\n"]
    )
    def test_non_string_key(self, text: str) -> None:
        with pytest.raises(SpecError, match="keys must be strings"):
            load_yaml(text)

    def test_non_string_key_path(self) -> None:
        with pytest.raises(SpecError) as caught:
            load_yaml("spec:\n  template:\n    - 1: a\n")
        assert caught.value.path == "spec.template[0]"

    def test_duplicate_key(self) -> None:
        with pytest.raises(SpecError, match="duplicate key 'a'"):
            load_yaml("a: 1\nb: 2\na: 3\n")

    @pytest.mark.parametrize(
        "text",
        [
            "a: !!binary aGVsbG8=\n",
            "a: !!set {x, y}\n",
            "a: !!omap [x: 1]\n",
            "a: !!timestamp 2025-01-01\n",
            "a: !!python/object:os.system ls\n",
            "a: !!python/name:os.system\n",
            "a: !custom thing\n",
        ],
    )
    def test_unsupported_tags(self, text: str) -> None:
        with pytest.raises(SpecError, match="unsupported YAML tag") as caught:
            load_yaml(text)
        assert caught.value.path == "a"

    @pytest.mark.parametrize(
        "text", ["a: .inf\n", "a: -.Inf\n", "a: .NaN\n", "a: !!float nan\n", "a: !!float 1e999\n"]
    )
    def test_non_finite_floats(self, text: str) -> None:
        with pytest.raises(SpecError, match="finite"):
            load_yaml(text)

    @pytest.mark.parametrize("text", ["a: !!int x\n", "a: !!bool maybe\n", "a: !!float x\n"])
    def test_bad_explicit_scalars(self, text: str) -> None:
        with pytest.raises(SpecError, match="line 1"):
            load_yaml(text)

    def test_integer_too_long_to_convert(self) -> None:
        with pytest.raises(SpecError, match="invalid !!int"):
            load_yaml("a: " + "9" * 5000 + "\n")

    def test_undefined_alias(self) -> None:
        with pytest.raises(SpecError, match="undefined alias"):
            load_yaml("a: *nowhere\n")

    def test_invalid_utf8(self) -> None:
        with pytest.raises(SpecError, match="unreadable"):
            load_yaml(b"a: \xff\xfe\n")

    def test_control_character(self) -> None:
        with pytest.raises(SpecError, match="unreadable"):
            load_yaml("a: \x00\n")

    def test_lone_surrogate(self) -> None:
        with pytest.raises(SpecError, match="not valid Unicode"):
            load_yaml("a: \ud800\n")

    def test_not_text(self) -> None:
        with pytest.raises(SpecError, match="expected YAML text"):
            load_yaml(42)  # type: ignore[arg-type]


# --- what loads ----------------------------------------------------------------------


@pytest.mark.usefixtures("loader")
class TestValues:
    def test_dates_and_times_stay_strings(self) -> None:
        value = load_yaml(
            "date: 2025-01-01\n"
            "time: 2025-11-02T10:00:00Z\n"
            "spaced: 2025-11-02 10:00:00\n"
            "sexagesimal: 1:30\n"
        )
        assert value == {
            "date": "2025-01-01",
            "time": "2025-11-02T10:00:00Z",
            "spaced": "2025-11-02 10:00:00",
            "sexagesimal": "1:30",
        }

    def test_json_scalars(self) -> None:
        value = load_yaml("a: 1\nb: -2.5\nc: true\nd: null\ne: ~\nf: hi\ng: '1'\nh: 0x10\n")
        assert value == {
            "a": 1,
            "b": -2.5,
            "c": True,
            "d": None,
            "e": None,
            "f": "hi",
            "g": "1",
            "h": 16,
        }

    def test_aliases_expand_to_equal_values(self) -> None:
        assert load_yaml("a: &x {k: [1, 2]}\nb: *x\n") == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}

    @pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "--- ~\n"])
    def test_empty_document_is_none(self, text: str) -> None:
        assert load_yaml(text) is None

    def test_bytes_and_utf16(self) -> None:
        assert load_yaml("name: café\n".encode()) == {"name": "café"}
        assert load_yaml("name: café\n".encode("utf-16")) == {"name": "café"}

    def test_explicit_document_end(self) -> None:
        assert load_yaml("--- \na: 1\n...\n") == {"a": 1}


class TestMapping:
    def test_requires_a_mapping(self) -> None:
        with pytest.raises(SpecError, match="expected a mapping at the top level, found a list"):
            load_json_compatible_mapping("- a\n")
        with pytest.raises(SpecError, match="found null"):
            load_json_compatible_mapping("")

    def test_returns_the_mapping(self) -> None:
        assert load_json_compatible_mapping("a: {b: 1}\n") == {"a": {"b": 1}}


# --- dumping --------------------------------------------------------------------------


class TestDump:
    def test_block_style_in_insertion_order(self) -> None:
        text = dump_yaml({"z": 1, "a": {"y": [1, 2], "b": "x"}})
        assert text == "z: 1\na:\n  y:\n  - 1\n  - 2\n  b: x\n"

    def test_strings_that_look_like_other_things_are_quoted(self) -> None:
        data = {"a": "2025-01-01", "b": "true", "c": "1:30", "d": "null", "e": "012", "f": ""}
        assert load_yaml(dump_yaml(data)) == data

    def test_no_anchors_for_shared_values(self) -> None:
        shared = {"k": [1, 2]}
        text = dump_yaml({"a": shared, "b": shared})
        assert "&" not in text
        assert "*" not in text

    def test_tuples_and_read_only_mappings(self) -> None:
        data = MappingProxyType({"a": (1, 2), "b": MappingProxyType({"c": None})})
        assert load_yaml(dump_yaml(data)) == {"a": [1, 2], "b": {"c": None}}

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ({"a": {1: "x"}}, "a"),
            ({"a": [math.nan]}, "a[0]"),
            ({"a": {"b": {1, 2}}}, "a.b"),
            ({"a": b"bytes"}, "a"),
        ],
    )
    def test_rejects_non_json(self, data: object, path: str) -> None:
        with pytest.raises(SpecError) as caught:
            dump_yaml(data)
        assert caught.value.path == path

    def test_rejects_cycles(self) -> None:
        cycle: list[object] = []
        cycle.append(cycle)
        with pytest.raises(SpecError, match="contains itself"):
            dump_yaml(cycle)


def test_child_path() -> None:
    assert child_path("", "spec") == "spec"
    assert child_path("spec", "template") == "spec.template"
    assert child_path("spec.template", 2) == "spec.template[2]"
    assert child_path("metadata.labels", "brokkr.io/agent") == 'metadata.labels["brokkr.io/agent"]'


def test_describe_type() -> None:
    assert [describe_type(v) for v in (None, True, 1, 1.5, "s", {}, [], object())] == [
        "null",
        "a boolean",
        "an integer",
        "a number",
        "a string",
        "a mapping",
        "a list",
        "a object",
    ]


# --- properties ------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)


@given(json_values)
@settings(max_examples=300)
def test_dump_then_load_is_identity(value: object) -> None:
    assert load_yaml(dump_yaml(value)) == value


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_loads_or_raises_spec_error(text: str) -> None:
    with contextlib.suppress(SpecError):
        load_yaml(text)


@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_spec_error(data: bytes) -> None:
    with contextlib.suppress(SpecError):
        load_yaml(data)


yaml_fragments = st.sampled_from(
    [
        "a", "b", "1", "1.5", ".inf", "~", "true", "2025-01-01", "<<", ": ", "- ", "? ",
        "&a ", "&b ", "*a", "*b", "!!str ", "!!int ", "!!map ", "!!seq ", "!!binary ", "!x ",
        "[", "]", "{", "}", ", ", "'", '"', "|", ">", "#", "---", "...", "\n", "  ", "\t",
        "\\", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
    ]
)  # fmt: skip


@given(st.lists(yaml_fragments, max_size=60).map("".join))
@settings(max_examples=500)
def test_yaml_like_text_loads_or_raises_spec_error(text: str) -> None:
    try:
        value = load_yaml(text, YamlLimits(max_nodes=1000, max_aliases=10))
    except SpecError:
        return
    # Whatever loads is JSON-compatible, so it dumps and loads back unchanged.
    assert load_yaml(dump_yaml(value)) == value


def test_pure_python_and_libyaml_agree() -> None:
    text = "a: [1, 2.5, x, 2025-01-01]\nb: {c: &n null, d: *n}\n"
    values = []
    for loader_class in LOADERS:
        loader = loader_class(text)
        try:
            values.append(loader.get_single_data())
        finally:
            loader.dispose()
    assert all(value == values[0] for value in values)
    assert isinstance(yaml.__version__, str)
