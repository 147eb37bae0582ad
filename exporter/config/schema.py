"""The schema's building blocks: settings grouped in sections, lists and maps.

Every node loads a YAML value into its Python value (raising ConfigError that
names the field), dumps a Python value back into what loads as the same value,
and describes itself as rows of the reference table. A section's settings come
from a frozen dataclass whose fields are declared with `setting()`, so the
dataclass attribute, its default and its documentation are written once.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from llm_cost_exporter.config.errors import ConfigError, child


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The default of a setting that must be given."""

_SETTING = "llm_cost_exporter.config.setting"


class Node(Protocol):
    type_name: str

    def load(self, value: Any, where: str) -> Any: ...

    def dump(self, value: Any) -> Any: ...


@dataclass(frozen=True)
class Row:
    """One line of the reference table."""

    path: str
    type_name: str
    default: str
    doc: str


@dataclass(frozen=True)
class Setting:
    """One key of a section: `None` in the file means "not given" for every setting."""

    name: str
    node: Node
    doc: str
    default: Any = REQUIRED
    missing: str = "missing"
    """What follows `path: ` when a required setting is not given."""
    group: str | None = None
    """A sub-mapping holding this key in the file (`collection` for `interval`)
    while the value stays an attribute of the section's own object."""
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    """Computes the default from the settings given in the file and the defaults of
    those declared before this one."""
    default_doc: str | None = None
    """The default as the reference table shows it, where derived."""
    money: bool = False
    """Its default changes what is billed: check-config says when the default is used."""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_value(self, loaded: Mapping[str, Any]) -> Any:
        return self.derive(loaded) if self.derive else copy.copy(self.default)


def setting(
    node: Node,
    doc: str,
    default: Any = REQUIRED,
    *,
    kw_only: bool = False,
    **options: Any,
) -> Any:
    """A dataclass field declared as a setting: its default is the dataclass default."""
    spec: dict[str, Any] = {
        "metadata": {_SETTING: dict(node=node, doc=doc, default=default, **options)}
    }
    if kw_only:  # otherwise the class decides
        spec["kw_only"] = True
    if isinstance(default, (dict, list, set)):
        spec["default_factory"] = lambda: copy.copy(default)
    elif default is not REQUIRED:
        spec["default"] = default
    return dataclasses.field(**spec)


@dataclass(frozen=True)
class Loaded:
    """A section's values as its rules see them, before the object is built."""

    section: Section
    values: dict[str, Any]
    given: frozenset[str]
    where: str

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def path(self, name: str) -> str:
        return self.section.path_of(self.section.setting(name), self.where)


Rule = Callable[[Loaded], None]


def as_mapping(value: Any, where: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where or '(top level)'}: must be a mapping, got {type(value).__name__}"
        )
    return value


def check_keys(data: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    """Unknown keys are errors, so that a typo never falls back to a default."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{child(where, key)}: unknown field{hint} (allowed: {', '.join(sorted(allowed))})"
            )


def default_text(entry: Setting) -> str:
    """The default as the reference table shows it."""
    if entry.default_doc is not None:
        return entry.default_doc
    if entry.required:
        return "required"
    if entry.default is None:
        return "unset"
    if isinstance(entry.node, Section):
        return ""  # each of its fields shows its own
    return f"`{flow(entry.node.dump(entry.default))}`"


def flow(value: Any) -> str:
    """A dumped value in YAML flow style, on one line: `[5m, 1h]`, `true`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


@dataclass(frozen=True)
class Section:
    """A mapping of known keys, built into one object once its rules hold."""

    settings: tuple[Setting, ...]
    build: Callable[..., Any]
    """Called with the loaded values as keyword arguments."""
    unbuild: Callable[[Any], Mapping[str, Any]]
    """The values to dump by setting name; a setting left out is not printed."""
    rules: tuple[Rule, ...] = ()
    shorthand: str | None = None
    """A bare string stands for `{shorthand: string}`."""
    type_name: str = "mapping"

    def setting(self, name: str) -> Setting:
        return next(s for s in self.settings if s.name == name)

    def path_of(self, entry: Setting, where: str) -> str:
        """The dotted path of one of its settings, with this section at `where`."""
        return child(child(where, entry.group) if entry.group else where, entry.name)

    def _keys(self, group: str | None) -> set[str]:
        if group is not None:
            return {s.name for s in self.settings if s.group == group}
        return {s.group or s.name for s in self.settings}

    def load(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and self.shorthand:
            value = {self.shorthand: value}
        data = as_mapping(value, where)
        check_keys(data, self._keys(None), where)
        sources: dict[str | None, dict[Any, Any]] = {None: data}
        for group in dict.fromkeys(s.group for s in self.settings if s.group):
            at = child(where, group)
            sources[group] = as_mapping(data.get(group), at)
            check_keys(sources[group], self._keys(group), at)
        values: dict[str, Any] = {}
        given: set[str] = set()
        for entry in self.settings:
            raw = sources[entry.group].get(entry.name)
            if raw is not None:
                values[entry.name] = entry.node.load(raw, self.path_of(entry, where))
                given.add(entry.name)
        # Defaults after every given value: a derived default may depend on a setting
        # declared after it (the engines on whether discovery is on).
        for entry in self.settings:
            if entry.name in given:
                continue
            if entry.required:
                raise ConfigError(f"{self.path_of(entry, where)}: {entry.missing}")
            values[entry.name] = entry.default_value(values)
        loaded = Loaded(self, values, frozenset(given), where)
        for rule in self.rules:
            rule(loaded)
        return self.build(**values)

    def dump(self, value: Any) -> dict[str, Any]:
        values = self.unbuild(value)
        out: dict[str, Any] = {}
        for entry in self.settings:
            if entry.name not in values:
                continue
            item = values[entry.name]
            target = out.setdefault(entry.group, {}) if entry.group else out
            target[entry.name] = None if item is None else entry.node.dump(item)
        return out

    def rows(self, prefix: str) -> Iterator[Row]:
        for entry in self.settings:
            path = self.path_of(entry, prefix)
            yield Row(path, entry.node.type_name, default_text(entry), entry.doc)
            yield from _rows(entry.node, path)


def dataclass_section(
    cls: type,
    *,
    rules: tuple[Rule, ...] = (),
    shorthand: str | None = None,
    type_name: str = "mapping",
) -> Section:
    """The section whose settings are the fields of `cls`, declared with setting()."""
    fields = dataclasses.fields(cls)
    return Section(
        settings=tuple(Setting(name=f.name, **f.metadata[_SETTING]) for f in fields),
        build=cls,
        unbuild=lambda obj: {f.name: getattr(obj, f.name) for f in fields},
        rules=rules,
        shorthand=shorthand,
        type_name=type_name,
    )


@dataclass(frozen=True)
class ListOf:
    """A YAML list, loaded as a tuple."""

    item: Node
    describe: str
    """What the error says the list holds: `durations like 5m, 1h`."""
    non_empty: bool = False
    check: Callable[[tuple[Any, ...], str], None] | None = None
    """A rule over the whole list, given the loaded items and the list's path."""
    max_items: int | None = None

    @property
    def type_name(self) -> str:
        most = f" (at most {self.max_items})" if self.max_items is not None else ""
        return f"list of {self.item.type_name}{most}"

    def load(self, value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or (self.non_empty and not value):
            kind = "non-empty list" if self.non_empty else "list"
            raise ConfigError(f"{where}: must be a {kind} of {self.describe}")
        if self.max_items is not None and len(value) > self.max_items:
            raise ConfigError(f"{where}: at most {self.max_items} items, got {len(value)}")
        items = tuple(self.item.load(item, f"{where}[{i}]") for i, item in enumerate(value))
        if self.check is not None:
            self.check(items, where)
        return items

    def dump(self, value: tuple[Any, ...]) -> list[Any]:
        return [self.item.dump(item) for item in value]

    def rows(self, prefix: str) -> Iterator[Row]:
        return _rows(self.item, f"{prefix}[]")


@dataclass(frozen=True)
class MapOf:
    """A YAML mapping from names the user chooses (GPU models, served models)."""

    value: Node
    key: str
    """What the names are, for the reference table: `model` shows as `<model>`."""

    @property
    def type_name(self) -> str:
        return f"map of {self.key} to {self.value.type_name}"

    def load(self, value: Any, where: str) -> dict[str, Any]:
        out = {}
        for key, item in as_mapping(value, where).items():
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(f"{where}: {key!r} is not a {self.key} name")
            out[key.strip()] = self.value.load(item, child(where, key.strip()))
        return out

    def dump(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return {key: self.value.dump(item) for key, item in value.items()}

    def rows(self, prefix: str) -> Iterator[Row]:
        return _rows(self.value, child(prefix, f"<{self.key}>"))


def _rows(node: Node, prefix: str) -> Iterator[Row]:
    """The rows of the fields inside `node`; scalars have none."""
    rows = getattr(node, "rows", None)
    return rows(prefix) if rows is not None else iter(())
