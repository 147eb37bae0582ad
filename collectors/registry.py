"""Which collector reads each engine type: `engines[].type` in the configuration.

Adding an engine is one collector module, one line here, its fixtures and tests.
"""

from __future__ import annotations

from llm_cost_exporter.collectors.base import EngineCollector, PageSource
from llm_cost_exporter.collectors.llamacpp import LlamaCppCollector
from llm_cost_exporter.collectors.lmdeploy import LmdeployCollector
from llm_cost_exporter.collectors.sglang import SglangCollector
from llm_cost_exporter.collectors.tgi import TgiCollector
from llm_cost_exporter.collectors.triton import TritonCollector
from llm_cost_exporter.collectors.vllm import VllmCollector

ENGINE_COLLECTORS: dict[str, type[EngineCollector]] = {
    VllmCollector.name: VllmCollector,
    SglangCollector.name: SglangCollector,
    LmdeployCollector.name: LmdeployCollector,
    TritonCollector.name: TritonCollector,
    LlamaCppCollector.name: LlamaCppCollector,
    TgiCollector.name: TgiCollector,
}
ENGINE_TYPES = frozenset(ENGINE_COLLECTORS)
DEFAULT_ENGINE_TYPE = VllmCollector.name
"""What `engines[].type` is when not given: the engine the exporter started with."""


def engine_collector(
    engine_type: str, target: str, page: PageSource, model: str | None = None
) -> EngineCollector:
    """The collector for one engine, reading its page from `page`; `model` names its
    model where configured."""
    return ENGINE_COLLECTORS[engine_type](target, page, model)
