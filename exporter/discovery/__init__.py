"""Engine discovery: the engine pods of this node, found and watched through the Kubernetes
API (`kubernetes.discovery`). Imported only when discovery is enabled: the default daemon
carries none of it."""
