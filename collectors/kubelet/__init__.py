"""The kubelet's pod-resources API: which pod, namespace and container hold each GPU.

`api.proto` is the part of the kubelet's v1 API this exporter reads; `api_pb2` and
`api_pb2_grpc` are generated from it by grpcio-tools and committed (regenerate with
`python tests/kubelet_stubs.py --write`). Nothing here imports gRPC: the client that
does (`client`) is imported only once the kubelet's socket exists.
"""
