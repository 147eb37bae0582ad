"""The `/metrics` text renderer: byte for byte what prometheus_client's `generate_latest`
writes for the same families, render after render, with a cache no larger than the
last render's series.

The renderer keeps each series' line prefix from one render to the next; these tests
feed it what could make a kept prefix wrong (hostile names, labels and help texts,
every kind of float, label sets that come and go, help texts that change) and compare
every page with the library's.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable, Iterator, Sequence

import golden_pages
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.samples import Timestamp
from prometheus_client.utils import floatToGoString

from llm_cost_exporter.outputs.exposition import TextPage, go_float
from llm_cost_exporter.outputs.prometheus import PrometheusPage


class _Families:
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def library_page(families: Sequence[Metric]) -> bytes:
    """The page prometheus_client writes for these families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def assert_same_page(page: TextPage, families: Sequence[Metric]) -> None:
    expected = library_page(families)
    actual = page.render(families)
    if actual != expected:
        import difflib

        diff = difflib.unified_diff(
            expected.decode().splitlines(), actual.decode().splitlines(), lineterm="", n=0
        )
        pytest.fail("rendered page differs from generate_latest:\n" + "\n".join(diff))


def series_of(families: Iterable[Metric]) -> int:
    """The distinct series of a page: what the cache may keep after rendering it."""
    return len(
        {
            (f.name, f.type, f.documentation, s.name, tuple(sorted(s.labels.items())))
            for f in families
            for s in f.samples
        }
    )


# --- the golden nodes ---------------------------------------------------------------


class _Recording:
    """An output keeping the families of every cycle."""

    def __init__(self) -> None:
        self.cycles: list[list[Metric]] = []

    def publish(self, families: Sequence[Metric]) -> None:
        self.cycles.append(list(families))

    def own_families(self) -> Iterable[Metric]:
        return ()

    def close(self) -> None:
        pass


def _node_cycles(monkeypatch: pytest.MonkeyPatch, node: str) -> list[list[Metric]]:
    recording = _Recording()
    if node == "sized":
        # sized_node takes no outputs: the page it renders records instead.
        class RecordingPage(PrometheusPage):
            def publish(self, families: Sequence[Metric]) -> None:
                recording.publish(families)
                super().publish(families)

        monkeypatch.setattr(golden_pages, "PrometheusPage", RecordingPage)
        golden_pages.sized_node(8, 8)
    elif node == "owned-without-optional":
        golden_pages.owned_node(outputs=[recording], optional=False)
    else:
        getattr(golden_pages, f"{node}_node")(outputs=[recording])
    assert len(recording.cycles) == len(golden_pages.CYCLE_TIMES)
    return recording.cycles


NODES = ("rented", "owned", "owned-without-optional", "kubernetes", "sized")


@pytest.mark.parametrize("node", NODES)
def test_every_cycle_of_a_golden_node_is_the_library_page(
    monkeypatch: pytest.MonkeyPatch, node: str
) -> None:
    page = TextPage()
    for families in _node_cycles(monkeypatch, node):
        assert sum(len(f.samples) for f in families) > 0
        assert_same_page(page, families)
        assert page.cached_series == series_of(families)
    # Again, the prefixes all kept from the last cycle.
    for families in _node_cycles(monkeypatch, node):
        assert_same_page(page, families)


def test_one_renderer_over_every_golden_node_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes in turn: most series go and others come at every render."""
    cycles = [families for node in NODES for families in _node_cycles(monkeypatch, node)]
    page = TextPage()
    for families in cycles + cycles[::-1]:
        assert_same_page(page, families)
        assert page.cached_series == series_of(families)


def test_the_page_keeps_the_content_type_of_the_format() -> None:
    from llm_cost_exporter.outputs.prometheus import CONTENT_TYPE

    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# --- values ---------------------------------------------------------------------------

SPECIAL_VALUES: list[float] = [
    math.nan,
    -math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    0,
    1,
    -1,
    True,
    False,
    1.0,
    0.1 + 0.2,
    1e22,
    1e-7,
    1e-5,
    1e-4,
    123456789012345678,
    2**53 + 1,
    2**63,
    -(2**63),
    10**20,
    10**300,
    1e6,
    1_000_000,
    999_999,
    999_999.9999999999,
    1_234_567.0,
    1_000_000.5,
    12_345_678.9,
    -1_234_567.0,
    9_999_999_999_999_998.0,
    1e16,
    1e15,
    123456789012345.6,
    1e21,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.pi,
    -math.e,
    3.0e9,
    85_899_345_920.0,
    0.55,
]


def _boundaries() -> Iterator[float]:
    """Floats beside the points where Python's or Go's notation changes."""
    for edge in (1e-5, 1e-4, 1.0, 1e5, 1e6, 1e7, 1e15, 1e16, 1e17, 1e21, 1e22):
        below = above = edge
        for _ in range(3):
            below = math.nextafter(below, 0.0)
            above = math.nextafter(above, math.inf)
            yield from (below, above, -below, -above)
        yield from (edge, -edge)


def test_go_float_is_float_to_go_string_for_every_kind_of_value() -> None:
    rng = random.Random(20260)
    values: list[float] = [*SPECIAL_VALUES, *_boundaries()]
    # Any bit pattern: every exponent, subnormals, NaNs with payloads.
    values += [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(50_000)
    ]
    # The magnitudes of real figures, at full and at short precision.
    for _ in range(50_000):
        value = rng.uniform(-1, 1) * 10 ** rng.uniform(-12, 24)
        values += [value, round(value, rng.randrange(0, 8))]
    values += [rng.randrange(-(10**20), 10**20) for _ in range(5_000)]
    mismatches = [v for v in values if go_float(v) != floatToGoString(v)]
    assert mismatches == []


def test_every_special_value_on_a_page() -> None:
    gauge = GaugeMetricFamily("values", "Every kind of value.", labels=["i"])
    plain = GaugeMetricFamily("values_plain", "Without labels.")
    counter = CounterMetricFamily("values_counted", "As counters.", labels=["i"])
    for i, value in enumerate(SPECIAL_VALUES):
        gauge.add_metric([str(i)], value)
        counter.add_metric([str(i)], value, created=value if i % 2 else None)
    plain.add_metric([], -0.0)
    page = TextPage()
    for _ in range(2):
        assert_same_page(page, [gauge, plain, counter])


# --- names, labels, help texts --------------------------------------------------------

HOSTILE_TEXTS = [
    "",
    "plain",
    "back\\slash",
    "\\",
    "\\\\n",
    'quo"te',
    '"',
    "new\nline",
    "\n",
    "\\n literal",
    "tab\there",
    "carriage\rreturn",
    "ünïcödé ✓ 模型 🦙",
    '{a="b"}',
    "trailing space ",
    " ",
    "\u2028line separator\u0085",
    "nul\x00byte",
]


def test_hostile_label_values_and_help_texts() -> None:
    families: list[Metric] = []
    for i, text in enumerate(HOSTILE_TEXTS):
        gauge = GaugeMetricFamily(f"hostile_{i}", text, labels=["model", "pod"])
        for j, value in enumerate(HOSTILE_TEXTS):
            gauge.add_metric([value, text], float(j))
        counter = CounterMetricFamily(f"hostile_{i}_total", text, labels=["model"])
        counter.add_metric([text], i, created=1_795_340_000.25)
        families += [gauge, counter]
    page = TextPage()
    for _ in range(2):
        assert_same_page(page, families)


HOSTILE_NAMES = [
    "name.with.dots",
    "0leading_digit",
    "ünï",
    "with space",
    "colon:ok",
    "dash-ed",
    "__reserved",
    "_",
    "trailing_newline\n",
    "__reserved_newline\n",
    'quo"te',
]


def test_hostile_metric_and_label_names() -> None:
    families: list[Metric] = []
    for i, name in enumerate(HOSTILE_NAMES):
        gauge = GaugeMetricFamily(name, f"Gauge {i}.", labels=[name, "b", "a"])
        gauge.add_metric(["x", "y", "z"], i)
        counter = CounterMetricFamily(name + "_total", f"Counter {i}.", labels=[name])
        counter.add_metric(["v"], i, created=float(i))
        families += [gauge, counter]
    odd = Metric("odd_samples", "Samples named freely, labels in any order.", "gauge")
    odd.add_sample("odd_samples", {"z": "1", "a": "2"}, 1.0)
    odd.add_sample("odd_samples", {"a": "3", "z": "1"}, 2.0)
    odd.add_sample("odd.samples", {"": "empty label name"}, 3.0)
    odd.add_sample("odd_samples_created", {"a": "2"}, 4.0)  # moves to a gauge after
    odd.add_sample("odd_samples_gsum", {}, 5.0)
    odd.add_sample("other_family", {}, 6.0)
    families.append(odd)
    page = TextPage()
    for _ in range(2):
        assert_same_page(page, families)


# --- family types, timestamps, empty families -------------------------------------------


def _all_kinds(seed: int) -> list[Metric]:
    rng = random.Random(seed)
    value = rng.random() * 100
    counter = CounterMetricFamily("requests", "Requests.", labels=["code"])
    counter.add_metric(["200"], value, created=1_700_000_000.5)
    counter.add_metric(["500"], 3)
    bare_counter = CounterMetricFamily("bare_total", "A counter without labels.", value=value)
    created_counter = CounterMetricFamily(
        "with_created", "A counter without labels.", value=1, created=1_700_000_000.0
    )
    stamped = GaugeMetricFamily("stamped", "Timestamped samples.", labels=["how"])
    stamped.add_metric(["float"], value, timestamp=1_700_000_000.123)
    stamped.add_metric(["Timestamp"], 2, timestamp=Timestamp(1_700_000_000, 456_000_000))
    stamped.add_metric(["none"], 3)
    stamped_counter = CounterMetricFamily("stamped_counter", "Timestamped.", labels=["a"])
    stamped_counter.add_metric(["b"], 4, created=1.0, timestamp=1_700_000_001.0)
    info = InfoMetricFamily("build", "Build.", labels=["node"])
    info.add_metric(["n1"], {"version": "1.2.3", "commit": 'ab"c'})
    unknown = UnknownMetricFamily("mystery", "Untyped.", value=value)
    stateset = StateSetMetricFamily("mode", "States.", value={"a": True, "b": False})
    summary = SummaryMetricFamily("latency", "Latency.", count_value=3, sum_value=value)
    histogram = HistogramMetricFamily(
        "sizes",
        "Sizes.",
        buckets=[("1.0", 1), ("10.0", 2), ("+Inf", 3)],
        sum_value=value,
    )
    gauge_histogram = GaugeHistogramMetricFamily(
        "queue", "Queue.", buckets=[("1.0", 1), ("+Inf", 2)], gsum_value=value
    )
    return [
        GaugeMetricFamily("empty_gauge", "No samples.", labels=["a"]),
        CounterMetricFamily("empty_counter", "No samples.", labels=["a"]),
        GaugeMetricFamily("lone", "A gauge without labels.", value=value),
        counter,
        bare_counter,
        created_counter,
        stamped,
        stamped_counter,
        info,
        unknown,
        stateset,
        summary,
        histogram,
        gauge_histogram,
        Metric("empty_untyped", "No samples.", "unknown"),
    ]


def test_every_family_type_timestamps_and_empty_families() -> None:
    page = TextPage()
    for seed in range(3):
        families = _all_kinds(seed)
        assert_same_page(page, families)
        assert page.cached_series == series_of(families)


def test_a_family_twice_on_one_page() -> None:
    first = GaugeMetricFamily("twice", "Twice.", labels=["a"])
    first.add_metric(["1"], 1)
    second = GaugeMetricFamily("twice", "Twice.", labels=["a"])
    second.add_metric(["1"], 2)
    second.add_metric(["2"], 3)
    page = TextPage()
    for _ in range(2):
        assert_same_page(page, [first, second])


# --- render after render ----------------------------------------------------------------

MODELS = ["llama", "qwen", 'we"ird', "new\nline", "back\\slash", "ünï"]
PODS = [f"pod-{i}" for i in range(6)]


def _cycle(rng: random.Random) -> list[Metric]:
    """A page whose label sets, values, help texts and families change at random."""
    values = [*SPECIAL_VALUES, rng.random(), rng.uniform(1e5, 1e8), -rng.random()]
    serving = GaugeMetricFamily(
        "serving",
        rng.choice(["Serving models.", "Serving models,\nreworded.", "Back\\slash."]),
        labels=["model", "pod"],
    )
    tokens = CounterMetricFamily("tokens", "Tokens.", labels=["model", "kind"])
    for model in rng.sample(MODELS, rng.randrange(0, len(MODELS) + 1)):
        for pod in rng.sample(PODS, rng.randrange(0, 3)):
            serving.add_metric([model, pod], rng.choice(values))
        for kind in ("prompt", "generation"):
            if rng.random() < 0.7:
                created = rng.choice([None, 1_700_000_000.0 + rng.randrange(100)])
                tokens.add_metric([model, kind], rng.choice(values), created=created)
    families: list[Metric] = [serving, tokens]
    if rng.random() < 0.5:
        families.append(GaugeMetricFamily("sometimes", "Now and then.", value=rng.random()))
    # The same name now a gauge, now a counter.
    if rng.random() < 0.5:
        families.append(GaugeMetricFamily("shifty", "Shifty.", value=1))
    else:
        families.append(CounterMetricFamily("shifty", "Shifty.", value=1))
    rng.shuffle(families)
    return families


def test_renders_in_a_row_with_changing_values_labels_and_families() -> None:
    rng = random.Random(7)
    page = TextPage()
    for _ in range(300):
        families = _cycle(rng)
        assert_same_page(page, families)
        assert page.cached_series == series_of(families)
        assert page.cached_families == len({(f.name, f.type, f.documentation) for f in families})


def test_a_series_that_leaves_and_returns_has_its_new_value() -> None:
    def one(value: float, *models: str) -> list[Metric]:
        family = GaugeMetricFamily("cost", "Cost.", labels=["model"])
        for model in models:
            family.add_metric([model], value)
        return [family]

    page = TextPage()
    for families in (one(1, "a", "b"), one(2, "b"), one(3), one(4, "a"), one(-0.0, "a", "b")):
        assert_same_page(page, families)


def test_a_value_kept_from_the_last_render_is_written_as_that_value_is() -> None:
    """A series' value is compared with its last one to reuse its text: equal values of
    another type or sign (0.0 and -0.0, 1 and True) and NaN must still read right."""
    sequence = [
        0.0, -0.0, -0.0, 0.0, 0, 1, True, 1.0, 1e6, 1_000_000, math.nan, math.nan,
        -math.nan, math.inf, math.inf, -math.inf, 2.5, 2.5,
    ]  # fmt: skip
    page = TextPage()
    for value in sequence + sequence[::-1]:
        family = GaugeMetricFamily("value", "Value.", labels=["a"])
        family.add_metric(["x"], value)
        family.add_metric(["y"], -value if isinstance(value, float) else value)
        assert_same_page(page, [family])


def test_the_cache_holds_the_last_render_only_however_long_series_churn() -> None:
    """Pods and models that come and go leave nothing behind."""
    page = TextPage()
    for cycle in range(500):
        pods = GaugeMetricFamily("pod_gpu", "Pods.", labels=["pod"])
        for pod in range(cycle, cycle + 5):
            pods.add_metric([f"pod-{pod}"], pod)
        models = CounterMetricFamily("model_tokens", "Tokens.", labels=["model"])
        models.add_metric([f"model-{cycle}"], cycle, created=float(cycle))
        churning = GaugeMetricFamily(f"family_{cycle % 50}", "Comes and goes.", labels=["a"])
        families = [pods, models, churning]
        page.render(families)
        assert page.cached_series == 5 + 2
        assert page.cached_families == 3
    assert page.render(families) == library_page(families)
