"""The outputs: the node state as metric families, and the Prometheus page."""
