"""Tests for the vLLM traffic simulator: page shape, token accounting, profiles, HTTP."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
from functools import lru_cache

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from simulated_pages import MONDAY, SimClock, page_shape, template_text

from llm_cost_exporter.tools.simulator.arguments import (
    add_simulate_arguments,
    build_engines_from_args,
)
from llm_cost_exporter.tools.simulator.engine import REQUEST_SECONDS, SimulatedEngine
from llm_cost_exporter.tools.simulator.page import PageState
from llm_cost_exporter.tools.simulator.profiles import (
    PROFILE_NAMES,
    DiurnalProfile,
    SpikyProfile,
    make_profile,
)
from llm_cost_exporter.tools.simulator.server import (
    CONTENT_TYPE,
    build_simulator_app,
    serve_simulator,
    split_listen_address,
)

HOUR = 3600.0


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@lru_cache(maxsize=16)
def _samples(text: str) -> tuple[tuple[str, dict[str, str], float], ...]:
    return tuple(
        (s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
    )


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in _samples(text)}


def _value(text: str, name: str, **labels: str) -> float:
    found = [
        value
        for sample, have, value in _samples(text)
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _engine(clock: SimClock, profile: str = "steady", **kwargs: object) -> SimulatedEngine:
    params = {"level": 0.5} if profile == "steady" else {}
    defaults: dict[str, object] = {"acceleration": 10.0, "clock": clock}
    defaults.update(kwargs)
    return SimulatedEngine("llama-test", 1000.0, make_profile(profile, **params), **defaults)


# -- page shape -----------------------------------------------------------------


@pytest.mark.parametrize("page_format", ["v1", "v0"])
def test_page_has_same_families_types_help_and_labels_as_template(page_format: str) -> None:
    clock = SimClock()
    engine = _engine(clock, page_format=page_format)
    clock.t += 60
    page = engine.render().decode()
    assert page_shape(page) == page_shape(template_text(page_format))
    # Same lines in the same order: only values and model/engine label values change.
    template_names = [
        ln.split("{")[0].split(" ")[0] for ln in template_text(page_format).split("\n")
    ]
    assert [ln.split("{")[0].split(" ")[0] for ln in page.split("\n")] == template_names


def test_v1_page_labels_model_and_engine_and_cache_config() -> None:
    clock = SimClock()
    engine = _engine(clock, kv_capacity_tokens=1_048_576, block_size=16)
    page = engine.render().decode()
    assert "tiny-llama" not in page
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if "model_name" in sample.labels:
                assert sample.labels["model_name"] == "llama-test"
            if "engine" in sample.labels:
                assert sample.labels["engine"] == "0"
    info = _families(page)["vllm:cache_config_info"].samples[0].labels
    assert info["num_gpu_blocks"] == "65536"
    assert info["block_size"] == "16"
    assert info["kv_cache_size_tokens"] == "1048576"
    assert info["enable_prefix_caching"] == "True"


def test_counters_are_written_like_prometheus_client() -> None:
    clock = SimClock()
    engine = _engine(clock)
    clock.t += 60
    lines = engine.render().decode().splitlines()
    line = next(ln for ln in lines if ln.startswith("vllm:generation_tokens_total{"))
    assert line.endswith(" 90000.0")


def _histograms(text: str):
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        series: dict[tuple, dict[str, object]] = {}
        for s in family.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = series.setdefault(key, {"buckets": []})
            if s.name.endswith("_bucket"):
                entry["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                entry["count"] = s.value
            elif s.name.endswith("_sum"):
                entry["sum"] = s.value
        for key, entry in series.items():
            yield family.name, key, entry


@pytest.mark.parametrize("page_format", ["v1", "v0"])
def test_histograms_cumulative_and_monotonic_over_time(page_format: str) -> None:
    clock = SimClock(MONDAY + 10 * HOUR)
    engine = _engine(clock, profile="diurnal", page_format=page_format, acceleration=60.0)
    previous: dict[tuple, list[float]] = {}
    seen_buckets = 0
    for _ in range(4):
        clock.t += 37
        page = engine.render().decode()
        for name, key, entry in _histograms(page):
            buckets = entry["buckets"]
            values = [v for _, v in buckets]
            if buckets:
                seen_buckets += 1
                assert [le for le, _ in buckets] == sorted(le for le, _ in buckets)
                assert values == sorted(values), name
                assert buckets[-1][0] == math.inf
                assert values[-1] == entry["count"], name
            old = previous.get((name, key))
            if old is not None:
                assert all(n >= o for n, o in zip(values + [entry["count"]], old, strict=True)), (
                    name
                )
            previous[(name, key)] = values + [entry["count"]]
    assert seen_buckets > 0
    counts = {name: e["count"] for name, _, e in _histograms(page)}
    assert counts["vllm:e2e_request_latency_seconds"] > 0


def test_iteration_tokens_sum_equals_prompt_plus_generation() -> None:
    clock = SimClock()
    engine = _engine(clock)
    clock.t += 13.7
    page = engine.render().decode()
    prompt = _value(page, "vllm:prompt_tokens_total")
    generation = _value(page, "vllm:generation_tokens_total")
    assert _value(page, "vllm:iteration_tokens_total_sum") == prompt + generation


# -- token accounting ------------------------------------------------------------


def test_steady_profile_page_counters_match_ground_truth() -> None:
    clock = SimClock()
    engine = _engine(clock)  # level 0.5, capacity 1000, acceleration 10
    clock.t += 60
    page = engine.render().decode()
    truth = engine.ground_truth()
    prompt = _value(page, "vllm:prompt_tokens_total")
    cached = _value(page, "vllm:prompt_tokens_cached_total")
    generation = _value(page, "vllm:generation_tokens_total")
    expected = 1000 * 0.5 * 600
    assert abs(prompt + generation - expected) <= 1
    assert truth["tokens"]["total"] == prompt + generation
    assert truth["tokens"]["prompt"] == prompt - cached
    assert truth["tokens"]["cached_prompt"] == cached
    assert truth["tokens"]["generation"] == generation
    assert truth["sim_time"] == MONDAY + 600 and truth["wall_time"] == MONDAY + 60
    assert prompt == pytest.approx(0.7 * expected, abs=1)
    assert cached == pytest.approx(0.3 * 0.7 * expected, abs=1)
    by_source = {
        src: _value(page, "vllm:prompt_tokens_by_source_total", source=src)
        for src in ("local_compute", "local_cache_hit", "external_kv_transfer")
    }
    assert by_source == {
        "local_compute": prompt - cached,
        "local_cache_hit": cached,
        "external_kv_transfer": 0.0,
    }
    assert _value(page, "vllm:prefix_cache_queries_total") == prompt
    assert _value(page, "vllm:prefix_cache_hits_total") == cached
    assert _value(page, "vllm:prompt_tokens_cached_by_source_total", source="device") == cached
    requests = sum(
        _value(page, "vllm:request_success_total", finished_reason=r) for r in ("stop", "length")
    )
    assert requests == truth["requests"] == expected // 1000
    assert _value(page, "vllm:num_requests_waiting") == 0
    assert _value(page, "vllm:num_requests_running") > 0


def test_tokens_in_wall_time_accelerates_only_the_trafficpage_shape() -> None:
    clock = SimClock()
    profile = make_profile("diurnal", peak_to_trough=10)
    engine = SimulatedEngine(
        "m", 1000, profile, acceleration=3600, tokens_in_wall_time=True, clock=clock,
        sim_start=MONDAY,
    )  # fmt: skip
    clock.t += 24  # one simulated day, 24 wall seconds
    truth = engine.ground_truth()
    assert truth["sim_time"] == pytest.approx(MONDAY + 86_400)
    # Tokens are what 24 real seconds at the day's average demand would serve.
    day_average = sum(profile.rate_fraction(MONDAY + h * 60) for h in range(1440)) / 1440
    assert truth["tokens"]["total"] == pytest.approx(1000 * day_average * 24, rel=0.01)


def test_counters_never_lose_or_invent_tokens_over_many_small_scrapes() -> None:
    clock = SimClock(MONDAY + 8 * HOUR)
    engine = _engine(clock, profile="diurnal", acceleration=7.3)
    last: dict[str, float] = {}
    for i in range(150):
        clock.t += 0.37
        page = engine.render().decode()
        if i % 10:
            continue
        # Cheap parse: every counter line ends in "_total{...} value" or "_total value".
        values = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if not line.startswith("#") and "_total" in line.split(" ")[0].split("{")[0]
        }
        assert all(values[key] >= old for key, old in last.items())
        last = values
        truth = engine.ground_truth()
        counters = truth["page"]
        assert truth["tokens"]["total"] == (
            counters["prompt_tokens_total"] + counters["generation_tokens_total"]
        )
    # The ramp from 08:00 is integrated, not sampled: compare with a fine Riemann sum.
    truth = engine.ground_truth()
    profile = engine.profile
    start, end = MONDAY + 8 * HOUR, engine.sim_time
    steps = 20_000
    h = (end - start) / steps
    exact = sum(min(profile.rate_fraction(start + (i + 0.5) * h), 1.0) for i in range(steps))
    assert truth["tokens"]["total"] == pytest.approx(exact * h * 1000.0, abs=2)


def test_scheduled_restart_resets_page_but_not_ground_truth() -> None:
    clock = SimClock()
    engine = _engine(clock, restart_every=300.0)  # sim seconds; 30 wall seconds
    clock.t += 29
    before = engine.render().decode()
    truth_before = engine.ground_truth()
    assert _value(before, "vllm:generation_tokens_total") > 10_000
    clock.t += 2  # sim 310: 10 s after the restart
    after = engine.render().decode()
    truth_after = engine.ground_truth()
    assert truth_after["restarts"] == 1
    total_after = _value(after, "vllm:prompt_tokens_total") + _value(
        after, "vllm:generation_tokens_total"
    )
    assert total_after == pytest.approx(10 * 500, abs=1)
    assert truth_after["tokens"]["total"] == pytest.approx(310 * 500, abs=1)
    assert truth_after["tokens"]["total"] > truth_before["tokens"]["total"]
    created_before = _value(before, "vllm:prompt_tokens_created")
    created_after = _value(after, "vllm:prompt_tokens_created")
    assert created_before == MONDAY
    assert created_after == MONDAY + 30  # the restart's wall time
    assert _value(after, "process_start_time_seconds") == created_after
    # Every counter restarted: none may be above its value before the restart
    # unless it was 0 then (the page only shows 10 s of traffic).
    values_before = _values(before)
    for key, value in _values(after).items():
        if key[0].endswith("_total"):
            assert value <= values_before[key] or values_before[key] == 0, key


def test_restart_at_explicit_times() -> None:
    clock = SimClock()
    engine = _engine(clock, acceleration=1.0, restart_at=[5.0, 20.0])
    clock.t += 30
    truth = engine.ground_truth()
    assert truth["restarts"] == 2
    assert truth["page"]["prompt_tokens_total"] + truth["page"]["generation_tokens_total"] == (
        pytest.approx(10 * 500, abs=1)
    )
    assert truth["tokens"]["total"] == pytest.approx(30 * 500, abs=1)
    assert truth["page"]["created"] == MONDAY + 20


def test_overload_queues_requests_and_caps_served_tokens() -> None:
    clock = SimClock()
    engine = SimulatedEngine(
        "m", 1000.0, make_profile("steady", level=1.5), acceleration=1.0, clock=clock
    )
    clock.t += 100
    page = engine.render().decode()
    assert _value(page, "vllm:num_requests_waiting") == round(500 / 30)
    assert _value(page, "vllm:num_requests_waiting_by_reason", reason="capacity") == round(500 / 30)
    assert _value(page, "vllm:num_requests_waiting_by_reason", reason="deferred") == 0
    assert engine.ground_truth()["tokens"]["total"] == pytest.approx(100_000, abs=1)
    used = _value(page, "vllm:kv_cache_usage_perc") * (16384 - 1)
    assert used == pytest.approx(round(used), abs=1e-6) and used > 0


def test_idle_engine_serves_nothing() -> None:
    clock = SimClock()
    engine = _engine(clock, profile="idle")
    clock.t += 3600
    page = engine.render().decode()
    assert _value(page, "vllm:prompt_tokens_total") == 0
    assert _value(page, "vllm:num_requests_running") == 0
    assert _value(page, "vllm:kv_cache_usage_perc") == 0
    assert engine.ground_truth()["tokens"]["total"] == 0


def test_v0_page_names_and_no_prefix_caching() -> None:
    clock = SimClock()
    engine = _engine(clock, page_format="v0", block_size=16)
    clock.t += 60
    page = engine.render().decode()
    families = _families(page)
    assert "vllm:gpu_cache_usage_perc" in families
    assert "vllm:kv_cache_usage_perc" not in families
    assert "vllm:prompt_tokens_cached_total" not in families
    assert all("engine" not in s.labels for f in families.values() for s in f.samples)
    truth = engine.ground_truth()
    assert truth["tokens"]["cached_prompt"] == 0
    prompt = _value(page, "vllm:prompt_tokens_total")
    generation = _value(page, "vllm:generation_tokens_total")
    assert prompt + generation == truth["tokens"]["total"] == pytest.approx(300_000, abs=1)
    blocks = 2_097_152 // 16
    used = _value(page, "vllm:gpu_cache_usage_perc") * blocks
    assert used == pytest.approx(round(used), abs=1e-6) and used > 0
    assert families["vllm:cache_config_info"].samples[0].labels["num_gpu_blocks"] == str(blocks)
    assert _value(page, "vllm:avg_prompt_throughput_toks_per_s") == pytest.approx(350.0)


def test_engine_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="page format"):
        SimulatedEngine("m", 100.0, make_profile("idle"), page_format="v2")
    with pytest.raises(ValueError, match="capacity"):
        SimulatedEngine("m", 0.0, make_profile("idle"))


# -- profiles --------------------------------------------------------------------


def test_profile_names_and_unknown_profile() -> None:
    assert set(PROFILE_NAMES) == {"steady", "diurnal", "spiky", "idle"}
    with pytest.raises(ValueError, match="'bursty'"):
        make_profile("bursty")
    with pytest.raises(ValueError, match="steady"):
        make_profile("steady", peak_to_trough=3)


@pytest.mark.parametrize("ratio", [10.0, 4.0])
def test_diurnal_peak_to_trough_and_business_hours(ratio: float) -> None:
    profile = make_profile("diurnal", peak_to_trough=ratio)
    week = [profile.rate_fraction(MONDAY + i * 600.0) for i in range(7 * 24 * 6)]
    assert max(week) / min(week) == pytest.approx(ratio)
    assert max(week) == pytest.approx(0.9)
    noon = 12 * HOUR
    assert profile.rate_fraction(MONDAY + noon) == pytest.approx(0.9)  # Monday
    assert profile.rate_fraction(MONDAY + 3 * HOUR) == pytest.approx(0.9 / ratio)  # night
    assert profile.rate_fraction(MONDAY + 5 * 24 * HOUR + noon) == pytest.approx(0.9 / ratio)
    # Smooth: no jump bigger than a small share of the swing between 1-minute samples.
    minutes = [profile.rate_fraction(MONDAY + 6 * HOUR + i * 60.0) for i in range(15 * 60)]
    assert max(abs(b - a) for a, b in zip(minutes[:-1], minutes[1:], strict=True)) < 0.03


def test_diurnal_rejects_ratio_below_one() -> None:
    with pytest.raises(ValueError):
        DiurnalProfile(peak_to_trough=0.5)


def test_spiky_is_deterministic_and_bursts_above_capacity() -> None:
    a, b, c = SpikyProfile(seed=1), SpikyProfile(seed=1), SpikyProfile(seed=2)
    times = [MONDAY + i * 10.0 for i in range(8640)]
    series = [a.rate_fraction(t) for t in times]
    assert series == [b.rate_fraction(t) for t in times]
    assert series != [c.rate_fraction(t) for t in times]
    assert min(series) == pytest.approx(0.2)
    assert max(series) > 1.0
    busy = sum(1 for v in series if v > 1.0) / len(series)
    assert 0.005 < busy < 0.2  # short bursts, not a plateau


# -- server ----------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


def test_arguments_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args()
    assert args.listen_address == "127.0.0.1:8000"
    assert args.profile == "diurnal" and args.peak_to_trough == 10.0
    assert args.acceleration == 1.0 and args.engines == 1 and args.capacity == 2000.0
    assert args.restart_every is None and args.seed == 0
    assert [engine.page_format for engine in build_engines_from_args(args)] == ["v1"]
    monkeypatch.setenv("LLMCOST_SIM_LISTEN_ADDRESS", "0.0.0.0:9100")
    assert _args().listen_address == "0.0.0.0:9100"
    assert _args("--web.listen-address", ":9200").listen_address == ":9200"
    with pytest.raises(SystemExit):
        _args("--profile", "bursty")


def test_build_engines_from_args_assigns_models_round_robin() -> None:
    clock = SimClock()
    args = _args(
        "--engines", "5", "--model", "a,b", "--model", "c", "--profile", "steady",
        "--level", "0.25", "--page-format", "v0", "--restart-every", "60",
    )  # fmt: skip
    engines = build_engines_from_args(args, clock=clock)
    assert [e.model for e in engines] == ["a", "b", "c", "a", "b"]
    assert all(e.page_format == "v0" for e in engines)
    assert engines[0].profile.rate_fraction(MONDAY) == 0.25
    clock.t += 61
    assert engines[0].ground_truth()["restarts"] == 1


def test_split_listen_address() -> None:
    assert split_listen_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert split_listen_address("localhost:0") == ("localhost", 0)
    assert split_listen_address(":9") == (None, 9)
    assert split_listen_address("[::1]:80") == ("::1", 80)
    assert split_listen_address("[::]:9100") == ("::", 9100)


@pytest.mark.parametrize(
    "address",
    ["localhost", "localhost:", ":", "", "host:http", "host:+80", "host: 80", "host:65536",
     "host:80/metrics", "user@host:80", "[::1]"],
)  # fmt: skip
def test_split_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_listen_address(address)


def test_page_content_type_is_vllms() -> None:
    """vLLM's prometheus_client serves text format 0.0.4; the simulator says the same."""
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


async def test_http_app_routes() -> None:
    clock = SimClock()
    engines = [
        SimulatedEngine("a", 1000.0, make_profile("steady", level=0.5), clock=clock),
        SimulatedEngine("b", 1000.0, make_profile("idle"), clock=clock, page_format="v0"),
    ]
    clock.t += 10
    async with TestClient(TestServer(build_simulator_app(engines))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        page = await resp.text()
        assert _value(page, "vllm:generation_tokens_total", model_name="a") == 1500

        resp = await client.get("/engine/1/metrics")
        assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
        assert 'vllm:gpu_cache_usage_perc{model_name="b"}' in await resp.text()

        assert (await client.get("/engine/2/metrics")).status == 404
        assert (await client.get("/engine/x/metrics")).status == 404

        resp = await client.get("/ground-truth")
        assert resp.status == 200 and resp.content_type == "application/json"
        body = json.loads(await resp.text())
        assert [e["index"] for e in body["engines"]] == [0, 1]
        assert body["engines"][0]["tokens"]["total"] == 5000
        assert body["engines"][1]["model"] == "b"

        resp = await client.get("/")
        assert resp.status == 200 and "/ground-truth" in await resp.text()


async def test_serve_simulator_listens_and_prints_address(capsys: pytest.CaptureFixture) -> None:
    args = _args("--web.listen-address", "127.0.0.1:0", "--profile", "steady", "--engines", "2")
    engines = build_engines_from_args(args)
    task = asyncio.create_task(serve_simulator(args, engines, "127.0.0.1", 0))
    try:
        url = ""
        for _ in range(6000):  # returns as soon as the address is printed
            await asyncio.sleep(0.01)
            out = capsys.readouterr().out
            if "http://" in out:
                url = out.split("http://", 1)[1].split()[0]
                break
        assert url.endswith("/metrics"), url
        engine_url = "http://" + url.replace("/metrics", "/engine/1/metrics")
        async with ClientSession() as session, session.get(engine_url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            assert "vllm:prompt_tokens_total" in await resp.text()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- runtime control --------------------------------------------------------------


def _total_tokens(body: dict, index: int = 0) -> int:
    return body["engines"][index]["tokens"]["total"]


async def test_control_changes_served_rate_from_now_on_and_counters_stay_continuous() -> None:
    clock = SimClock()
    engines = [SimulatedEngine("a", 1000.0, make_profile("steady", level=0.5), clock=clock)]
    async with TestClient(TestServer(build_simulator_app(engines))) as client:
        clock.t += 10
        before = await (await client.get("/ground-truth")).json()
        page_before = await (await client.get("/metrics")).text()
        assert _total_tokens(before) == 5000

        # Nothing asks for the page between t=10 and t=20: the switch itself must
        # account those 10 s at the old 500 tokens/s before the new profile applies.
        clock.t += 10
        resp = await client.post("/control", json={"profile": "steady", "level": 0.05})
        assert resp.status == 200
        state = await resp.json()
        assert state["changed"] == [0]
        assert state["engines"][0]["profile"] == "steady"
        assert state["engines"][0]["params"] == {"level": 0.05}
        assert state["engines"][0]["served_tokens_per_second"] == pytest.approx(50.0)
        switched = await (await client.get("/ground-truth")).json()
        assert _total_tokens(switched) == 10_000

        clock.t += 10
        after = await (await client.get("/ground-truth")).json()
        page_after = await (await client.get("/metrics")).text()

    assert _total_tokens(after) - _total_tokens(switched) == 500  # 50 tokens/s for 10 s
    assert after["engines"][0]["served_tokens_per_second"] == pytest.approx(50.0)
    # Same engine life: no restart, counters only grew.
    assert after["engines"][0]["restarts"] == 0
    assert after["engines"][0]["start_time"] == before["engines"][0]["start_time"]
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert _value(page_after, name, model_name="a") > _value(page_before, name, model_name="a")
    assert (
        _value(page_after, "vllm:generation_tokens_total", model_name="a")
        == (after["engines"][0]["page"]["generation_tokens_total"])
    )


async def test_control_restores_load_and_picks_engines() -> None:
    clock = SimClock()
    engines = [
        SimulatedEngine(name, 1000.0, make_profile("steady", level=0.5), clock=clock, seed=i)
        for i, name in enumerate("ab")
    ]
    async with TestClient(TestServer(build_simulator_app(engines))) as client:
        resp = await client.post("/control", json={"profile": "idle", "engines": [1]})
        assert resp.status == 200 and (await resp.json())["changed"] == [1]
        clock.t += 10
        idle = await (await client.get("/ground-truth")).json()
        assert [_total_tokens(idle, i) for i in (0, 1)] == [5000, 0]

        resp = await client.post("/control", json={"profile": "steady", "level": 0.5})
        assert (await resp.json())["changed"] == [0, 1]
        clock.t += 10
        restored = await (await client.get("/ground-truth")).json()
        assert [_total_tokens(restored, i) for i in (0, 1)] == [10_000, 5000]

        # Spiky engines keep distinct bursts, as with `--profile spiky`.
        resp = await client.post("/control", json={"profile": "spiky"})
        state = await (await client.get("/control")).json()
    assert resp.status == 200
    assert [e["params"]["seed"] for e in state["engines"]] == [0, 1]
    assert [e["profile"] for e in state["engines"]] == ["spiky", "spiky"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "JSON"),
        ("[1, 2]", "JSON object"),
        ('{"level": 0.1}', '"profile"'),
        ('{"profile": "bursty"}', "unknown traffic profile"),
        ('{"profile": "steady", "level": -1}', "level must be >= 0"),
        ('{"profile": "steady", "level": "high"}', "bad parameters"),
        ('{"profile": "steady", "level": NaN}', "finite"),
        ('{"profile": "idle", "speed": 2}', "bad parameters"),
        ('{"profile": "idle", "engines": [0, 2]}', "no engine 2"),
        ('{"profile": "idle", "engines": 0}', '"engines"'),
        ('{"profile": "idle", "engines": []}', '"engines"'),
    ],
)
async def test_control_rejects_bad_input_and_changes_nothing(body: str, reason: str) -> None:
    clock = SimClock()
    engines = [
        SimulatedEngine(name, 1000.0, make_profile("steady", level=0.5), clock=clock)
        for name in "ab"
    ]
    async with TestClient(TestServer(build_simulator_app(engines))) as client:
        resp = await client.post(
            "/control", data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
        text = await resp.text()
        clock.t += 10
        truth = await (await client.get("/ground-truth")).json()
    assert reason in text
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert [e.profile for e in engines] == [make_profile("steady", level=0.5)] * 2
    assert [_total_tokens(truth, i) for i in (0, 1)] == [5000, 5000]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--web.listen-address", "nope"], "simulate: listen address 'nope' is not host:port"),
        (["--engines", "0"], "simulate: --engines must be at least 1"),
    ],
)
def test_a_bad_simulate_option_is_one_line_and_exit_2(argv, message, capsys) -> None:
    from llm_cost_exporter.cli import main

    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"llm-cost-exporter: {message}\n"


def test_a_taken_port_is_one_line_and_exit_2(capsys) -> None:
    import socket

    from llm_cost_exporter.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        assert main(["simulate", "--web.listen-address", address]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llm-cost-exporter: simulate: cannot listen on {address}: ")
    assert err.count("\n") == 1


# -- counters of finished requests ----------------------------------------------


def test_finished_request_counts_lag_the_live_ones_by_one_request() -> None:
    """Engines that count a request's tokens when it ends show what was served one
    request's length ago: behind the live counts, never ahead, never going back."""
    clock = SimClock()
    engine = _engine(clock, acceleration=1.0)  # 500 tokens/s, steady
    lag = REQUEST_SECONDS
    seen: list[PageState] = []
    for _ in range(40):
        clock.t += 5.0
        seen.append(engine.page_state())
    for before, after in itertools.pairwise(seen):
        assert after.finished_prompt_tokens >= before.finished_prompt_tokens
        assert after.finished_generation_tokens >= before.finished_generation_tokens
    for state in seen:
        assert state.finished_prompt_tokens <= state.prompt_tokens
        assert state.finished_cached_prompt_tokens <= state.finished_prompt_tokens
    last = seen[-1]
    live = last.prompt_tokens + last.generation_tokens
    finished = last.finished_prompt_tokens + last.finished_generation_tokens
    assert live - finished == pytest.approx(500.0 * lag, abs=2)
    assert seen[0].finished_prompt_tokens == 0  # nothing ran a whole request yet


def test_engines_take_page_formats_in_turn_and_serve_their_documents() -> None:
    args = _args("--engines", "3", "--page-format", "v1,v0")
    assert [e.page_format for e in build_engines_from_args(args)] == ["v1", "v0", "v1"]
    with pytest.raises(ValueError, match="unknown --page-format 'v9'"):
        build_engines_from_args(_args("--page-format", "v9"))
