"""Assembling and running the daemon from a validated configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.price_catalog import resolve_catalog_prices
from llm_cost_exporter.collectors.base import EngineCollector, GpuCollector
from llm_cost_exporter.collectors.credentials import Credentials
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.kubelet.pod_resources import PodResourcesCollector
from llm_cost_exporter.collectors.nvml import NvmlCollector
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.config import Config, ConfigError, ModelPrice, split_listen_address
from llm_cost_exporter.config.settings import MAX_ENGINES
from llm_cost_exporter.daemon.gpu_checks import billed_gpus, check_against_nvml, one_line
from llm_cost_exporter.daemon.http_server import HttpServer
from llm_cost_exporter.daemon.loop import CollectionLoop, EngineTargets
from llm_cost_exporter.daemon.state_file import open_state_file
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.base import Output
from llm_cost_exporter.outputs.prometheus import PrometheusPage

if TYPE_CHECKING:
    from llm_cost_exporter.discovery.connection import Connection
    from llm_cost_exporter.outputs.otlp.output import OtlpOutput

log = logging.getLogger("llm-cost-exporter")

NVML_START_TIMEOUT = 10.0
"""A driver can hang in init; the exporter serves the engines meanwhile."""


def _discovery_connection(config: Config) -> Connection | None:
    """Where to watch pods when discovery is on; ConfigError when that is unknown."""
    if not config.kubernetes.discovery.enabled:
        return None
    from llm_cost_exporter.discovery.connection import connection

    return connection(config.kubernetes.discovery)


def _otlp_output(config: Config, state: NodeState) -> OtlpOutput | None:
    """The OTLP output when it is on; the SDK is imported only then."""
    if not config.otlp.enabled:
        return None
    from llm_cost_exporter.outputs.otlp.output import OtlpOutput
    from llm_cost_exporter.outputs.otlp.resource import resource_attributes

    return OtlpOutput(config.otlp, resource_attributes(config.otlp), lambda: state.started_wall)


def resolve_prices(config: Config) -> tuple[dict[str, ApiPrices], ApiPrices | None]:
    """Per-model and default API prices, catalog references resolved."""
    resolved = resolve_catalog_prices(config.api_prices.catalog_refs(), config.currency)

    def lookup(entry: ModelPrice) -> ApiPrices:
        return entry.prices or resolved[entry.catalog]

    models = {name: lookup(entry) for name, entry in config.api_prices.models.items()}
    default = lookup(config.api_prices.default) if config.api_prices.default else None
    return models, default


async def serve(
    config: Config,
    model_prices: dict[str, ApiPrices],
    default_price: ApiPrices | None,
    web_config: LiveWebConfig | None = None,
    gpus: GpuCollector | None = None,
) -> None:
    """Run collection and HTTP serving until cancelled or signalled; `web_config` (the
    `--web.config.file`) adds TLS, basic auth and headers. `gpus` reads the GPUs instead
    of NVML (the demo's simulated ones): billed as cost.gpus declares until they are read,
    then by what they report, like GPUs NVML lists after start."""
    discovery = _discovery_connection(config)
    nvml = NvmlCollector(config.timeout) if config.nvml.enabled and gpus is None else None
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
        await _serve(
            config,
            model_prices,
            default_price,
            nvml,
            gpus if gpus is not None else nvml,
            web_config or LiveWebConfig(None),
            discovery,
        )
    finally:
        if nvml is not None:
            nvml.close()


async def _serve(
    config: Config,
    model_prices: dict[str, ApiPrices],
    default_price: ApiPrices | None,
    nvml: NvmlCollector | None,
    gpu_collector: GpuCollector | None,
    web_config: LiveWebConfig,
    discovery: Connection | None,
) -> None:
    gpus = billed_gpus(config, nvml)
    findings = check_against_nvml(config, nvml, gpus)
    if findings.claims:
        raise ConfigError(one_line(findings.claims))
    for problem in findings.utilization:
        log.error("%s; meanwhile busy time stands in on those GPUs", problem)
    for note in findings.unchecked:
        log.info("not checked: %s", note)
    state = NodeState(config, model_prices, default_price, gpus=gpus)
    state_file = open_state_file(config.state_file, state)
    async with HttpClient() as http:

        def collector(
            engine_type: str,
            url: str,
            credentials: Credentials | None = None,
            model: str | None = None,
        ) -> EngineCollector:
            page = HttpPage(
                http, url, config.timeout, config.max_page_bytes, credentials=credentials
            )
            return engine_collector(engine_type, url, page, model)

        static = [collector(e.type, e.url, e.credentials, e.model) for e in config.engines]
        engines: list[EngineCollector] | EngineTargets = static
        background: list[asyncio.Future[None]] = []
        if discovery is not None:
            from llm_cost_exporter.daemon.engine_targets import DiscoveredEngines
            from llm_cost_exporter.discovery.kubernetes import PodWatch

            watch = PodWatch(config.kubernetes.discovery, discovery, MAX_ENGINES - len(static))
            engines = DiscoveredEngines(static, watch, collector)
            background.append(asyncio.ensure_future(watch.run()))
        page = PrometheusPage() if config.serve_metrics else None
        otlp = _otlp_output(config, state)
        outputs: list[Output] = [o for o in (page, otlp) if o is not None]
        pod_resources = config.kubernetes.pod_resources
        pods = PodResourcesCollector(pod_resources.socket, config.timeout)
        loop = CollectionLoop(
            state,
            engines,
            gpu_collector,
            outputs,
            config.interval,
            config.timeout,
            state_file=state_file,
            pods=pods if pod_resources.enabled else None,
        )
        # Listen before the first collection, however long it takes: /metrics serves
        # the state as it is (no I/O to compute; resumed from the state file, its
        # counters are the ones last saved) and /healthz says "starting".
        loop.publish()
        server = HttpServer(loop, page, web_config)
        host, port = split_listen_address(config.listen_address)
        try:
            await server.start(host, port, config.idle_timeout)
        except OSError as error:
            raise SystemExit(
                f"web.listen_address: cannot listen on {config.listen_address}: "
                f"{error.strerror or error}"
            ) from None
        log.info(
            "listening on %s (%s), watching %d engine(s)%s and %d billed GPU(s) every %gs, "
            "node cost %.4f %s/h",
            config.listen_address,
            "TLS" if web_config.tls_enabled else "plain HTTP",
            len(config.engines),
            f" and the engine pods of node {discovery.node_name}" if discovery else "",
            len(state.fleet.gpus),
            config.interval,
            state.accrual.hourly_total,
            config.currency,
        )
        if otlp is not None:
            otlp.start()
            log.info(
                "pushing over OTLP (%s) to %s every %gs%s",
                config.otlp.protocol,
                config.otlp.target,
                config.otlp.interval,
                "" if config.serve_metrics else "; /metrics is not served",
            )
        task = asyncio.ensure_future(loop.run_forever())
        background.append(task)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for future in background:
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await future
            loop.finish()
            await loop.close_outputs()
            await server.stop()
            log.info("stopped")
