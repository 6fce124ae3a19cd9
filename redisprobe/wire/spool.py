"""The wire spool: what the capture process writes, read back later.

A file starts with `MAGIC`; then records, each a `HEAD` (kind, payload length, kernel timestamp in ns) and its
payload. `PACKET`: the packet from its network header on (IPv4 or IPv6), exactly as captured. `STATUS`: the
reader's own JSON (`started`, `stats` with the kernel's packet and drop counts since the last one, `stopped`).
The reader writes whole records only, so a reader killed mid-capture leaves a readable file.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redisprobe.errors import ProbeError

MAGIC = b"redisprobe-wire 1\n"
HEAD = struct.Struct("<BxxxIq")
PACKET, STATUS = 1, 2


def packet_record(t_ns: int, packet: bytes) -> bytes:
    return HEAD.pack(PACKET, len(packet), t_ns) + packet


def status_record(t_ns: int, **status: Any) -> bytes:
    body = json.dumps(status).encode()
    return HEAD.pack(STATUS, len(body), t_ns) + body


Record = tuple[int, float, Any]  # kind, time (s), the packet bytes or the status dict


def read_spool(path: Path) -> Iterator[Record]:
    """The records in file order; a record cut short at the end (a killed reader) is left out."""
    try:
        with path.open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                raise ProbeError(f"{path}: not a redisprobe wire spool")
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # a long capture's spool stays on disk
    except OSError as exc:
        raise ProbeError(f"cannot read the wire spool {str(path)!r}: {exc.strerror}") from None
    with data:
        yield from _records(data)


def _records(data: mmap.mmap) -> Iterator[Record]:
    pos, size, head = len(MAGIC), len(data), HEAD.size
    unpack = HEAD.unpack_from
    while pos + head <= size:
        kind, length, t_ns = unpack(data, pos)
        start = pos + head
        end = start + length
        if end > size:
            return
        if kind == PACKET:
            yield PACKET, t_ns / 1e9, data[start:end]
        elif kind == STATUS:
            yield STATUS, t_ns / 1e9, json.loads(data[start:end])
        pos = end
