"""The generated gRPC modules of the kubelet's pod-resources API, and their regeneration.

`collectors/kubelet/api_pb2.py` and `api_pb2_grpc.py` are committed; the test compares
them with what grpcio-tools (pinned in the test extra) generates from `api.proto` now.
Generated under the installed package path, so `api_pb2_grpc` imports
`llm_cost_exporter.collectors.kubelet.api_pb2` and the descriptor pool knows the file
by a name no other library uses. After an intended change of the .proto:

    python tests/kubelet_stubs.py --write
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

KUBELET = Path(__file__).resolve().parent.parent / "collectors" / "kubelet"
PACKAGE_PATH = Path("llm_cost_exporter", "collectors", "kubelet")
GENERATED = ("api_pb2.py", "api_pb2_grpc.py")


def generate() -> dict[str, bytes]:
    """What grpcio-tools generates from `api.proto` now, by file name."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / PACKAGE_PATH).mkdir(parents=True)
        proto = PACKAGE_PATH / "api.proto"
        (root / proto).write_bytes((KUBELET / "api.proto").read_bytes())
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={root}",
                f"--python_out={root}",
                f"--grpc_python_out={root}",
                str(root / proto),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"grpc_tools.protoc failed:\n{result.stderr}")
        return {name: (root / PACKAGE_PATH / name).read_bytes() for name in GENERATED}


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        return 2
    for name, text in generate().items():
        (KUBELET / name).write_bytes(text)
        print(f"wrote collectors/kubelet/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
