"""llm-cost-exporter: the live cost of self-hosted LLM inference, as Prometheus metrics."""

from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    try:
        return version("llm-cost-exporter")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
