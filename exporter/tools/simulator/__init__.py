"""A vLLM-compatible traffic simulator.

It lets the exporter be demonstrated and tested without GPUs.
"""
