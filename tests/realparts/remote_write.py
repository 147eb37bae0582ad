"""Prometheus remote-write requests, encoded by hand for the few samples tests send.

The text import formats cannot carry a staleness marker (Prometheus's special NaN
that ends a series); the remote-write protocol can. The request is the protobuf
`WriteRequest` (timeseries: labels, samples), snappy-compressed: a snappy block
made only of literals is valid and needs no compression library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
"""The value Prometheus writes as a staleness marker."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _sample(timestamp_ms: int, value: float) -> bytes:
    return (
        _varint(1 << 3 | 1)
        + struct.pack("<d", value)
        + _varint(2 << 3 | 0)
        + _varint(timestamp_ms & 0xFFFFFFFFFFFFFFFF)
    )


def write_request(series: Iterable[tuple[Mapping[str, str], Sequence[tuple[int, float]]]]) -> bytes:
    """`WriteRequest` bytes: each series' labels (with `__name__`) and (ms, value) samples."""
    body = bytearray()
    for labels, samples in series:
        timeseries = b"".join(
            _field(1, _field(1, name.encode()) + _field(2, value.encode()))
            for name, value in sorted(labels.items())
        )
        timeseries += b"".join(_field(2, _sample(ts, value)) for ts, value in samples)
        body += _field(1, timeseries)
    return bytes(body)


def snappy_literal(data: bytes) -> bytes:
    """`data` as a snappy block of literal chunks (valid snappy, not compressed)."""
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start : start + 65536]
        size = len(chunk) - 1
        if size < 60:
            out.append(size << 2)
        elif size < 256:
            out += bytes([60 << 2, size])
        else:
            out += bytes([61 << 2]) + size.to_bytes(2, "little")
        out += chunk
    return bytes(out)
