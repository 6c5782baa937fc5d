"""Safe, bounded YAML for specs: JSON-compatible values in, JSON-compatible values out.

``load_yaml`` works in four steps so that hostile text is rejected cheaply:

1. size: the text is measured before anything is parsed (``SpecTooLarge``);
2. events: one pass over PyYAML's event stream counts nesting depth, aliases and nodes
   and stops at the first limit crossed, before any node is composed;
3. nodes: the composed node graph is walked once, memoising shared (anchored) nodes, to
   count the nodes the document would have once every alias is expanded; a "billion
   laughs" document is rejected here in time and memory linear in its text.  The same
   walk rejects what JSON cannot hold: non-string or duplicate keys, merge keys (``<<``),
   recursive aliases and tags other than the JSON ones;
4. values: the safe constructor builds the value; non-finite floats are rejected.

Resolution follows Kubernetes rather than YAML 1.1 where the two differ in ways that
matter for specs: dates and times (``2025-01-01``) and base-60 numbers (``1:30``) load as
strings.  Every failure is a ``SpecError``; nothing else escapes for bad text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs
import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from workqueue_core.domain.errors import SpecError, SpecTooLarge

__all__ = [
    "DEFAULT_YAML_LIMITS",
    "YamlLimits",
    "child_path",
    "describe_type",
    "dump_yaml",
    "load_json_compatible_mapping",
    "load_yaml",
]

_STR_TAG: Final = "tag:yaml.org,2002:str"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS: Final = frozenset({_STR_TAG, _INT_TAG, _FLOAT_TAG, _BOOL_TAG, _NULL_TAG})

_DUMP_MAX_DEPTH: Final = 256


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class YamlLimits:
    """Bounds on a YAML text; ``max_nodes`` counts nodes after every alias is expanded."""

    max_bytes: int = attrs.field(default=1_048_576, validator=_positive)
    max_depth: int = attrs.field(default=64, validator=_positive)
    max_aliases: int = attrs.field(default=100, validator=_positive)
    max_nodes: int = attrs.field(default=100_000, validator=_positive)


DEFAULT_YAML_LIMITS: Final = YamlLimits()


# --- paths and type names ------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def child_path(parent: str, key: str | int) -> str:
    """The JSON-path-like location of ``key`` under ``parent``: ``a.b``, ``a[0]``, ``a["x/y"]``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def describe_type(value: object) -> str:
    """A JSON-flavoured name for the type of ``value``, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# --- the loader ----------------------------------------------------------------

# YAML 1.1 resolution minus what Kubernetes (and JSON) would read as strings: timestamps
# and base-60 numbers.  The regular expressions are PyYAML's without the base-60 branch.
_INT_PATTERN = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def _spec_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    replacements = {_INT_TAG: _INT_PATTERN, _FLOAT_TAG: _FLOAT_PATTERN}
    return {
        first: [
            (tag, replacements.get(tag, pattern))
            for tag, pattern in resolvers
            if tag != _TIMESTAMP_TAG
        ]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }


_SPEC_RESOLVERS: Final = _spec_resolvers()


if TYPE_CHECKING:
    _AnyLoader: TypeAlias = yaml.SafeLoader | yaml.CSafeLoader


def _reporting_bad_scalars(
    construct: Callable[[SafeConstructor, ScalarNode], object],
) -> Callable[[_AnyLoader, Node], object]:
    """Wrap a scalar constructor: bad text (``!!int x``) and non-finite floats are YAML errors."""

    def constructor(loader: _AnyLoader, node: Node) -> object:
        if not isinstance(node, ScalarNode):
            raise ConstructorError(
                None, None, f"{_tag_name(node.tag)} must be a scalar", node.start_mark
            )
        try:
            value = construct(loader, node)
        except (ValueError, LookupError, TypeError, OverflowError) as exc:
            raise ConstructorError(
                None,
                None,
                f"invalid {_tag_name(node.tag)} value {_shorten(node.value)}:"
                f" {_shorten(str(exc), 120)}",
                node.start_mark,
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConstructorError(
                None,
                None,
                f"{_shorten(node.value)} is not a finite number (JSON has no NaN or infinity)",
                node.start_mark,
            )
        return value

    return constructor


def _install_spec_rules(loader_class: type[_AnyLoader]) -> None:
    loader_class.add_constructor(
        _INT_TAG, _reporting_bad_scalars(SafeConstructor.construct_yaml_int)
    )
    loader_class.add_constructor(
        _FLOAT_TAG, _reporting_bad_scalars(SafeConstructor.construct_yaml_float)
    )
    loader_class.add_constructor(
        _BOOL_TAG, _reporting_bad_scalars(SafeConstructor.construct_yaml_bool)
    )


class _PySpecLoader(yaml.SafeLoader):
    """The pure-Python safe loader with the spec resolution rules."""

    yaml_implicit_resolvers = _SPEC_RESOLVERS


_install_spec_rules(_PySpecLoader)

_SpecLoader: type[_AnyLoader] = _PySpecLoader
if getattr(yaml, "__with_libyaml__", False):

    class _CSpecLoader(yaml.CSafeLoader):
        """The libyaml safe loader with the spec resolution rules."""

        yaml_implicit_resolvers = _SPEC_RESOLVERS

    _install_spec_rules(_CSpecLoader)
    _SpecLoader = _CSpecLoader


def load_yaml(text: str | bytes, limits: YamlLimits = DEFAULT_YAML_LIMITS) -> object:
    """Load one YAML document into JSON-compatible values (``None`` for an empty text)."""
    data = _bounded_bytes(text, limits)
    _scan_events(data, limits)
    loader = _SpecLoader(data)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, data) from None
        if node is None:
            return None
        _check_graph(node, limits)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, data) from None
    except RecursionError:
        raise SpecError("document is nested too deeply to load") from None
    finally:
        loader.dispose()


def load_json_compatible_mapping(
    text: str | bytes, limits: YamlLimits = DEFAULT_YAML_LIMITS
) -> dict[str, object]:
    """Load one YAML document that must be a mapping at the top level."""
    value = load_yaml(text, limits)
    if not isinstance(value, dict):
        raise SpecError(f"expected a mapping at the top level, found {describe_type(value)}")
    return value


def _bounded_bytes(text: str | bytes, limits: YamlLimits) -> bytes:
    """The UTF-8 (or as-given) bytes of ``text``, refused if over ``limits.max_bytes``."""
    given: object = text
    if isinstance(given, str):
        if len(given) > limits.max_bytes:
            raise SpecTooLarge(
                f"spec is {len(given)} characters long, over the limit of {limits.max_bytes} bytes"
            )
        try:
            data = given.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SpecError(
                f"text is not valid Unicode at character {exc.start}: {exc.reason}"
            ) from None
    elif isinstance(given, bytes):
        data = given
    else:
        raise SpecError(f"expected YAML text (str or bytes), got {type(given).__name__}")
    if len(data) > limits.max_bytes:
        raise SpecTooLarge(
            f"spec is {len(data)} bytes long, over the limit of {limits.max_bytes} bytes"
        )
    return data


def _scan_events(data: bytes, limits: YamlLimits) -> None:
    """Reject the text at the first event that crosses a limit, before composing anything."""
    depth = aliases = nodes = documents = 0
    try:
        for event in yaml.parse(data, Loader=_SpecLoader):
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                nodes += 1
                if depth > limits.max_depth:
                    raise SpecError(
                        f"document nests deeper than the depth limit of {limits.max_depth}"
                        f"{_where(event.start_mark)}"
                    )
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
            elif isinstance(event, ScalarEvent):
                nodes += 1
            elif isinstance(event, AliasEvent):
                aliases += 1
                nodes += 1
                if aliases > limits.max_aliases:
                    raise SpecError(
                        f"document uses more than {limits.max_aliases} aliases"
                        f"{_where(event.start_mark)}"
                    )
            elif isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise SpecError(
                        f"expected a single YAML document, found another one"
                        f"{_where(event.start_mark)}"
                    )
            if nodes > limits.max_nodes:
                raise SpecError(
                    f"document has more than {limits.max_nodes} nodes{_where(event.start_mark)}"
                )
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, data) from None


def _check_graph(root: Node, limits: YamlLimits) -> None:
    """Walk the node graph once: JSON-only shapes, no cycles, bounded expanded size.

    Shared nodes (targets of aliases) are counted once and their expanded size memoised,
    so the walk is linear in the composed graph however large the expansion would be.
    """
    if isinstance(root, ScalarNode):
        _check_scalar_tag(root, "")
        return
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # (node, path, children_done); only collection nodes are pushed, scalars count inline.
    stack: list[tuple[Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(expanded.get(id(child), 1) for child in _collection_children(node))
            if isinstance(node, MappingNode):
                size += len(node.value)  # the keys, all scalars by now
            if size > limits.max_nodes:
                raise SpecError(
                    f"document expands (through its aliases) to more than {limits.max_nodes}"
                    f" nodes{_where(node.start_mark)}",
                    path,
                )
            expanded[key] = size
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise SpecError(
                f"recursive alias: a node contains itself{_where(node.start_mark)}", path
            )
        on_path.add(key)
        stack.append((node, path, True))
        pending: list[tuple[Node, str]] = []
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                raise _tag_error(node, path)
            seen: set[str] = set()
            for key_node, value_node in node.value:
                name = _check_key(key_node, path)
                if name in seen:
                    raise SpecError(
                        f"duplicate key {_shorten(name)}{_where(key_node.start_mark)}", path
                    )
                seen.add(name)
                pending.append((value_node, child_path(path, name)))
        elif isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                raise _tag_error(node, path)
            pending.extend((item, child_path(path, index)) for index, item in enumerate(node.value))
        for child, child_at in reversed(pending):
            if isinstance(child, ScalarNode):
                _check_scalar_tag(child, child_at)
            else:
                stack.append((child, child_at, False))


def _collection_children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [value for _, value in node.value]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_key(node: Node, path: str) -> str:
    if isinstance(node, ScalarNode) and node.tag == _MERGE_TAG:
        raise SpecError(
            f"merge keys (<<) are not supported; write the keys out{_where(node.start_mark)}", path
        )
    if not isinstance(node, ScalarNode) or node.tag != _STR_TAG:
        shown = f" {_shorten(node.value)}" if isinstance(node, ScalarNode) else ""
        raise SpecError(
            f"mapping keys must be strings, found key{shown} of type {_tag_name(node.tag)}"
            f"{_where(node.start_mark)}; quote it",
            path,
        )
    value: str = node.value
    return value


def _check_scalar_tag(node: ScalarNode, path: str) -> None:
    if node.tag not in _SCALAR_TAGS:
        raise _tag_error(node, path)


def _tag_error(node: Node, path: str) -> SpecError:
    return SpecError(
        f"unsupported YAML tag {_tag_name(node.tag)}{_where(node.start_mark)}:"
        " specs hold JSON values only",
        path,
    )


def _tag_name(tag: str) -> str:
    """``!!int`` for the standard tags, the tag itself for the others."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_error(exc: yaml.YAMLError, data: bytes) -> SpecError:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "malformed YAML"
        context = ""
        if exc.problem and exc.context:
            context = f" ({exc.context}{_where(exc.context_mark)})"
        mark = exc.problem_mark or exc.context_mark
        return SpecError(f"YAML error{_where(mark)}: {problem}{context}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = data[: exc.position].count(b"\n") + 1
        return SpecError(
            f"unreadable YAML text at offset {exc.position} (line {line}): {exc.reason}"
            f" (character {exc.character!r})"
        )
    return SpecError(f"YAML error: {exc}")


# --- the dumper ----------------------------------------------------------------


class _SpecDumper(yaml.SafeDumper):
    """Safe dumper that never writes anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# PyYAML writes these line breaks raw in plain and single-quoted scalars, where a reader
# folds them into spaces; double quotes escape them, so such strings survive a round trip.
_UNICODE_LINE_BREAKS: Final = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if _UNICODE_LINE_BREAKS.intersection(data) else None
    return dumper.represent_scalar(_STR_TAG, data, style=style)


_SpecDumper.add_representer(str, _represent_str)


def dump_yaml(data: object) -> str:
    """Dump JSON-compatible ``data`` as block-style YAML, keys in insertion order.

    Mappings with string keys, lists, tuples, strings, integers, finite floats, booleans
    and ``None`` are accepted; anything else is a ``SpecError`` naming its path.
    """
    plain = plain_json(data, "", _DUMP_MAX_DEPTH)
    try:
        return yaml.dump(
            plain,
            Dumper=_SpecDumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=100,
        )
    except RecursionError:
        raise SpecError("value is nested too deeply to dump") from None


def plain_json(value: object, path: str, max_depth: int, depth: int = 0) -> object:
    """A fresh copy of ``value`` made of dicts, lists and JSON scalars, or a SpecError.

    Deeper than ``max_depth`` levels (or containing itself) is an error at ``path``.
    """
    if depth > max_depth:
        raise SpecError(f"value nests deeper than {max_depth} levels or contains itself", path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{value!r} is not a finite number", path)
        return value
    if isinstance(value, Mapping):
        result: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(f"mapping keys must be strings, found {describe_type(key)}", path)
            result[key] = plain_json(item, child_path(path, key), max_depth, depth + 1)
        return result
    if isinstance(value, list | tuple):
        return [
            plain_json(item, child_path(path, i), max_depth, depth + 1)
            for i, item in enumerate(value)
        ]
    raise SpecError(f"expected a JSON value, found {describe_type(value)}", path)
