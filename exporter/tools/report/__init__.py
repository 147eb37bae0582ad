"""The monthly review: realized versus projected cost, read back from Prometheus."""
