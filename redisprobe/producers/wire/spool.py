"""The wire spool: what the capture process writes, read back while it runs and after.

A spool is a series of segment files (`<path>`, `<path>.1`, `<path>.2`...), each starting with `MAGIC`; then
records, each a `HEAD` (kind, payload length, kernel timestamp in ns) and its payload. `PACKET`: the packet from
its network header on (IPv4 or IPv6), exactly as captured. `STATUS`: the reader's own JSON (`started`, `stats`
with the kernel's packet and drop counts since the last one, `skipped` for packets it did not spool because the
spool was over its disk budget, `rotate` naming the next segment as the last record of a full one, `stopped`).
The reader writes whole records only, so a reader killed mid-capture leaves a readable file.
"""

from __future__ import annotations

import contextlib
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
_READ_AT_ONCE = 8 << 20  # a follower reads at most this much of a segment per call: memory stays flat


def packet_record(t_ns: int, packet: bytes) -> bytes:
    return HEAD.pack(PACKET, len(packet), t_ns) + packet


def status_record(t_ns: int, **status: Any) -> bytes:
    body = json.dumps(status).encode()
    return HEAD.pack(STATUS, len(body), t_ns) + body


Record = tuple[int, float, Any]  # kind, time (s), the packet bytes or the status dict


def segment_path(first: Path, index: int) -> Path:
    """The spool's `index`th segment file (0: the first, named as the spool)."""
    return first if index == 0 else first.with_name(f"{first.name}.{index}")


def read_spool(path: Path) -> Iterator[Record]:
    """The records of every segment in order, from `path` on; a record cut short at the end (a killed reader) is
    left out. A segment's `rotate` record is followed, not yielded. (One generator, the records read inline: the
    offline parse's loop.)"""
    head = HEAD.size
    unpack = HEAD.unpack_from
    while True:
        data = _open_segment(path)
        if data is None:
            return
        following: Path | None = None
        with data:
            pos, size = len(MAGIC), len(data)
            while pos + head <= size:
                kind, length, t_ns = unpack(data, pos)
                start = pos + head
                pos = start + length
                if pos > size:
                    break
                if kind == PACKET:
                    yield PACKET, t_ns / 1e9, data[start:pos]
                elif kind == STATUS:
                    status = json.loads(data[start:pos])
                    if status.get("ev") == "rotate":
                        following = path.with_name(Path(str(status["next"])).name)
                        break
                    yield STATUS, t_ns / 1e9, status
        if following is None or not following.exists():
            return
        path = following


def _open_segment(path: Path) -> mmap.mmap | None:
    """A segment mapped (a long capture's spool stays on disk); None when it holds nothing yet."""
    try:
        with path.open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                raise ProbeError(f"{path}: not a redisprobe wire spool")
            if path.stat().st_size == len(MAGIC):
                return None
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ProbeError(f"cannot read the wire spool {str(path)!r}: {exc.strerror}") from None


def _records(data: bytes | mmap.mmap, pos: int) -> Iterator[tuple[Record, int]]:
    """Whole records from `pos` on, each with the position after it."""
    size, head = len(data), HEAD.size
    unpack = HEAD.unpack_from
    while pos + head <= size:
        kind, length, t_ns = unpack(data, pos)
        start = pos + head
        end = start + length
        if end > size:
            return
        if kind == PACKET:
            yield (PACKET, t_ns / 1e9, data[start:end]), end
        elif kind == STATUS:
            yield (STATUS, t_ns / 1e9, json.loads(data[start:end])), end
        pos = end


class SpoolFollower:
    """Reads a spool while the reader still writes it: each `read()` gives the whole records written since the
    last, across segments; a segment read to its end is deleted (unless `keep`), so the disk holds only what is
    not parsed yet."""

    def __init__(self, first: Path, *, keep: bool = False) -> None:
        self.path = first
        self.keep = keep
        self._handle: Any = None
        self._pos = 0  # offset in the current segment of the next record
        self.more = False

    def read(self) -> list[Record]:
        """The next records (at most `_READ_AT_ONCE` bytes of them); `more` says whether more are ready now."""
        self.more = False
        if self._handle is None and not self._open():
            return []
        self._handle.seek(self._pos)
        data = self._handle.read(_READ_AT_ONCE)
        out: list[Record] = []
        consumed = 0
        for record, end in _records(data, 0):
            if record[0] == STATUS and record[2].get("ev") == "rotate":
                self._next(self.path.with_name(Path(str(record[2]["next"])).name))
                self.more = True
                return out
            out.append(record)
            consumed = end
        self._pos += consumed
        self.more = len(data) == _READ_AT_ONCE
        return out

    def _open(self) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        magic = handle.read(len(MAGIC))
        if len(magic) < len(MAGIC):
            handle.close()
            return False  # the reader has just created it
        if magic != MAGIC:
            handle.close()
            raise ProbeError(f"{self.path}: not a redisprobe wire spool")
        self._handle, self._pos = handle, len(MAGIC)
        return True

    def _next(self, following: Path) -> None:
        self._handle.close()
        self._handle = None
        if not self.keep:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.path = following

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
