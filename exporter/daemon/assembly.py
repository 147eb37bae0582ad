"""Assembling and running the daemon from a validated configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import aiohttp
from aiohttp import web

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.gpu_inventory import BilledGpu, UnpricedGpu, build_inventory
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.price_catalog import resolve_catalog_prices
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.nvml import NvmlCollector
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.config import Config, ConfigError, ModelPrice, split_listen_address
from llm_cost_exporter.daemon.http_server import build_app
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.outputs.prometheus import PrometheusPage

log = logging.getLogger("llm-cost-exporter")

NVML_START_TIMEOUT = 10.0
"""A driver can hang in init; the exporter serves the engines meanwhile."""


def resolve_prices(config: Config) -> tuple[dict[str, ApiPrices], ApiPrices | None]:
    """Per-model and default API prices, catalog references resolved."""
    resolved = resolve_catalog_prices(config.api_prices.catalog_refs(), config.currency)

    def lookup(entry: ModelPrice) -> ApiPrices:
        return entry.prices or resolved[entry.catalog]

    models = {name: lookup(entry) for name, entry in config.api_prices.models.items()}
    default = lookup(config.api_prices.default) if config.api_prices.default else None
    return models, default


def billed_gpus(config: Config, nvml: NvmlCollector | None) -> list[BilledGpu]:
    """The GPUs to bill: what NVML lists (when it can), else what cost.gpus declares."""
    cost = config.cost
    table = "cost.owned.purchase_prices" if cost.owned else "cost.gpu_prices_per_hour"
    try:
        inventory = build_inventory(
            nvml.inventory() if nvml is not None and nvml.available else [],
            [(g.model, g.count) for g in cost.gpus],
            cost.gpu_hourly_by_key,
            nvml_available=nvml is not None and nvml.available,
        )
    except UnpricedGpu as error:
        raise ConfigError(f"{table}: {error}") from None
    if not inventory and cost.node_extra_per_hour <= 0:
        if nvml is None:
            source = "NVML is disabled"
        elif nvml.available:
            source = "NVML lists no GPU"
        else:
            source = f"NVML is unavailable ({nvml.unavailable_reason or 'not initialized in time'})"
        raise ConfigError(
            f"cost.gpus: nothing to bill on this node: {source} and cost.gpus declares none "
            "(declare the GPUs, or set cost.node_extra_per_hour for a CPU-only node)"
        )
    return inventory


async def serve(
    config: Config, model_prices: dict[str, ApiPrices], default_price: ApiPrices | None
) -> None:
    """Run collection and HTTP serving until cancelled or signalled."""
    nvml = NvmlCollector(config.timeout) if config.nvml.enabled else None
    if nvml is not None:
        try:
            await asyncio.wait_for(nvml.open(), NVML_START_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning(
                "NVML did not initialize within %gs: billing the GPUs declared in cost.gpus "
                "until it does",
                NVML_START_TIMEOUT,
            )
    try:
        await _serve(config, model_prices, default_price, nvml)
    finally:
        if nvml is not None:
            nvml.close()


async def _serve(
    config: Config,
    model_prices: dict[str, ApiPrices],
    default_price: ApiPrices | None,
    nvml: NvmlCollector | None,
) -> None:
    state = NodeState(config, model_prices, default_price, gpus=billed_gpus(config, nvml))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.timeout)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        engines = [
            engine_collector(
                engine.type,
                engine.url,
                HttpPage(
                    session,
                    engine.url,
                    config.timeout,
                    config.max_page_bytes,
                    credentials=engine.credentials,
                ),
            )
            for engine in config.engines
        ]
        page = PrometheusPage()
        loop = CollectionLoop(state, engines, nvml, [page], config.interval, config.timeout)
        await loop.run_once()
        runner = web.AppRunner(build_app(loop, page), access_log=None)
        await runner.setup()
        host, port = split_listen_address(config.listen_address)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise SystemExit(
                f"web.listen_address: cannot listen on {config.listen_address}: "
                f"{error.strerror or error}"
            ) from None
        log.info(
            "listening on %s, watching %d engine(s) and %d billed GPU(s) every %gs, "
            "node cost %.4f %s/h",
            config.listen_address,
            len(config.engines),
            len(state.fleet.gpus),
            config.interval,
            state.accrual.hourly_total,
            config.currency,
        )
        task = asyncio.ensure_future(loop.run_forever())
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runner.cleanup()
            log.info("stopped")
