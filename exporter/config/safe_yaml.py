"""YAML as the configuration reads it: PyYAML's safe loader, refusing what would
take the exporter down or hide a mistake.

- nesting deeper than MAX_DEPTH (PyYAML composes recursively: a few thousand
  brackets exhaust Python's stack), counting what aliases bring in;
- more than MAX_VALUES values once aliases are expanded (a "billion laughs"
  document is a few lines that expand to 10^9 values), and aliases that contain
  themselves;
- the same key twice in a mapping (YAML would silently keep the last one);
- integers of more than MAX_INT_DIGITS digits, and dates that do not exist.

Structural errors name the field's dotted path; syntax errors keep PyYAML's
line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from llm_cost_exporter.config.errors import ConfigError, child

MAX_DEPTH = 32
"""The configuration nests five levels deep; this leaves room for anchors."""
MAX_VALUES = 20_000
MAX_INT_DIGITS = 30

_MERGE = "tag:yaml.org,2002:merge"
_INT = "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []
        """Where the node being composed sits, as parts of a dotted path."""
        self._composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if parent is None:
            where = ""
        elif isinstance(index, int):
            where = f"[{index}]"
        else:
            where = index.value if isinstance(index, ScalarNode) else "?"
        self._path.append(where)
        try:
            if len(self._path) > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"{self.path()}: nested deeper than {MAX_DEPTH} levels (line {line})"
                )
            self._composed += 1
            if self._composed > MAX_VALUES:
                raise ConfigError(f"{self.path()}: more than {MAX_VALUES} values")
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def path(self) -> str:
        where = ""
        for part in self._path[1:]:
            where = f"{where}{part}" if part.startswith("[") else child(where, part)
        return where


def load(text: str) -> Any:
    """The document in `text` (None when empty), or yaml.YAMLError / ConfigError."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Walk(loader).check(node, "", 0)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Walk:
    """One pass over the composed nodes, each visited once however many aliases
    refer to it, checking depth, size, cycles and duplicate keys."""

    def __init__(self, loader: _Loader) -> None:
        self._loader = loader
        self._measured: dict[int, tuple[int, int]] = {}
        """Per node: values under it once expanded, and its height."""
        self._open: set[int] = set()

    def check(self, node: Node, where: str, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self._open:
            raise ConfigError(f"{where or '(top level)'}: an alias that contains itself")
        if key not in self._measured:
            self._open.add(key)
            self._measured[key] = self._measure(node, where, depth)
            self._open.discard(key)
        size, height = self._measured[key]
        if depth + height > MAX_DEPTH:
            raise ConfigError(
                f"{where or '(top level)'}: nested deeper than {MAX_DEPTH} levels with its aliases"
            )
        if size > MAX_VALUES:
            raise ConfigError(
                f"{where or '(top level)'}: more than {MAX_VALUES} values once aliases are expanded"
            )
        return size, height

    def _measure(self, node: Node, where: str, depth: int) -> tuple[int, int]:
        if isinstance(node, SequenceNode):
            children = [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            self._unique_keys(node, where)
            children = []
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, ScalarNode) else "?"
                children += [(key_node, where), (value_node, child(where, name))]
        else:
            self._scalar(node, where)
            return 1, 0
        size, height = 1, 0
        for item, at in children:
            item_size, item_height = self.check(item, at, depth + 1)
            size += item_size
            height = max(height, item_height + 1)
        return size, height

    def _scalar(self, node: Node, where: str) -> None:
        """Integers and dates that construction would choke on, refused by field."""
        if node.tag == _INT:
            digits = sum(c.isalnum() for c in str(node.value))
            if digits > MAX_INT_DIGITS:
                raise ConfigError(f"{where}: an integer of {digits} digits is too large")
        elif node.tag == _TIMESTAMP:
            try:
                self._loader.construct_object(node)
            except (ValueError, OverflowError, ConstructorError) as error:
                raise ConfigError(f"{where}: {node.value!r} is not a date: {error}") from None

    def _unique_keys(self, node: MappingNode, where: str) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue
            try:
                key = self._loader.construct_object(key_node)
                hash(key)
            except Exception:  # noqa: BLE001 - compared as written; construction reports it
                key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{child(where, key_node.value)}: given twice (lines {seen[key]} and {line}); "
                    f"YAML would keep only the last"
                )
            seen[key] = line
