"""Which series a review reads: label matchers given on the command line.

Matchers select target labels (``cluster``, ``instance``, ``job``, anything
relabelling attached) and models. A ``model`` matcher can only apply to
series that carry a model label, so node-level series are read without it
and the review switches to per-model figures (see ``Selection.by_model``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MATCHER = re.compile(
    r"""^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s,{}]+))\s*$"""
)
# Labels our own series use for what they measure; selecting on them is meaningless.
_RESERVED = {"__name__", "kind", "component", "source", "window", "le", "quantile"}


class SelectionError(ValueError):
    """A matcher cannot be understood; the message is one line naming it."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str  # as PromQL reads it between double quotes (escapes kept)

    def promql(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    match = _MATCHER.match(text)
    if not match:
        raise SelectionError(f'--match {text!r}: expected label="value" with one of = != =~ !~')
    label, op, quoted, bare = match.groups()
    if label in _RESERVED:
        raise SelectionError(f"--match {text!r}: selecting on {label!r} is not supported")
    value = quoted if quoted is not None else bare
    if op in ("=~", "!~"):
        try:
            re.compile(value.replace('\\"', '"'))
        except re.error as err:
            raise SelectionError(f"--match {text!r}: bad regular expression: {err}") from None
    return Matcher(label, op, value)


@dataclass(frozen=True)
class Selection:
    matchers: tuple[Matcher, ...] = ()

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...]) -> Selection:
        return cls(tuple(parse_matcher(t) for t in texts))

    @property
    def by_model(self) -> bool:
        """A model matcher narrows spend to the models' attributed share."""
        return any(m.label == "model" for m in self.matchers)

    def selector(self, metric: str, has_model_label: bool, *extra: str) -> str:
        """``metric{...}`` with the matchers that apply to it, plus ``extra`` ones."""
        parts = [m.promql() for m in self.matchers if has_model_label or m.label != "model"]
        parts.extend(extra)
        return metric + "{" + ",".join(parts) + "}"

    def describe(self) -> tuple[str, ...]:
        return tuple(m.promql() for m in self.matchers)
