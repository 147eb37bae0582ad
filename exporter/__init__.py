"""llm-cost-exporter: the live cost of self-hosted LLM inference, as Prometheus metrics."""

__version__ = "0.1.0"
"""The one place the version is written: the package metadata takes it from here at
build time, so the daemon never reads its own metadata from disk."""
