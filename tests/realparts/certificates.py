"""Throwaway certificate authorities and certificates, made with the `openssl` CLI.

Real X.509 files, so the exporter's TLS, Python's ssl and Prometheus's Go TLS
stack are tested against each other. Keys are P-256 (fast to make); everything
lives in one directory and is valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .timeouts import scaled


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl CLI is needed (apt-get install openssl)")
    done = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=scaled(60), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")


class Pki:
    """Makes CAs and the certificates they sign, under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _key_args(self, key: Path) -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key)]  # fmt: skip

    def ca(self, name: str) -> Issued:
        """A self-signed certificate authority."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        _openssl(
            "req", "-x509", *self._key_args(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return Issued(cert, key)

    def issue(self, ca: Issued, name: str, sans: str, *, client: bool = False) -> Issued:
        """A leaf certificate for `sans` (e.g. ``IP:127.0.0.1,DNS:localhost``), for a
        server, or for a client when `client`."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        csr, ext = self.directory / f"{name}.csr", self.directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text(
            f"subjectAltName={sans}\nextendedKeyUsage={usage}\n"
            "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n"
        )
        _openssl("req", *self._key_args(key), "-out", str(csr), "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        return Issued(cert, key)
