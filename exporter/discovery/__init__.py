"""Engine discovery: the engine pods of this node, found and watched through the Kubernetes
API (`kubernetes.discovery`). Imported only when discovery is enabled, so the Kubernetes
client costs the default daemon no memory."""
