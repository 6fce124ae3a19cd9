"""The wire capture process: an AF_PACKET socket with the kernel filter, spooled as it comes, nothing parsed.

    python -m redisprobe.producers.wire.reader --port 6379 --spool FILE [--interface lo] [--segment-bytes N]
        [--budget-bytes N]

Run as a process of its own, like the MONITOR reader: the less it does per packet, the fewer the kernel drops.
Each packet is stored with its kernel timestamp (SO_TIMESTAMPNS); every second the kernel's counts
(PACKET_STATISTICS: packets queued and dropped since the last read) become a `stats` status record, so a drop is
a gap with a count and a window. SIGTERM ends it after what the socket still holds is spooled.
Without root or CAP_NET_RAW it prints one line and exits 2 (`NO_PRIVILEGE`).

The spool is written in segments of `--segment-bytes` (`FILE`, `FILE.1`, ...): the parent parses them while the
capture runs and deletes each one it has read. If the segments still on disk reach `--budget-bytes` (the parent
fell behind, or it reads only at the end), packets are read and counted but not spooled until there is room
again, and a `skipped` record says how many and when: a gap with a count and a window, never a silent one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from redisprobe.producers.wire import bpf
from redisprobe.producers.wire.spool import MAGIC, packet_record, segment_path, status_record

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
NO_PRIVILEGE = 2
SPOOL_FAILED = 3
_RCVBUF = 64 << 20  # asked of the kernel: a burst waits here instead of being dropped
_FLUSH_BYTES = 1 << 20
SEGMENT_BYTES = 64 << 20  # a new spool segment after this much
BUDGET_BYTES = 2 << 30  # the segments on disk at most at once (the unparsed backlog)
_STATS_EVERY = 1.0
_TIMESPEC = struct.Struct("qq")


def privilege_message(exc: OSError) -> str | None:
    """The one line for a capture socket refused for lack of privilege; None for any other failure."""
    if exc.errno in (errno.EPERM, errno.EACCES):
        return ("wire capture needs root or CAP_NET_RAW (a raw packet socket was refused: "
                f"{exc.strerror or exc}); run as root, or grant it: setcap cap_net_raw+ep <python>")
    return None


def open_socket(port: int, interface: str | None, rcvbuf: int = _RCVBUF) -> socket.socket:
    """The filtered, timestamped capture socket (raises OSError: see `privilege_message`)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    try:
        loopback = _loopback_index()
        program = bpf.pack(bpf.tcp_port_program(port, loopback))
        buffer = ctypes.create_string_buffer(program)
        fprog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buffer))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if interface:
            sock.bind((interface, ETH_P_ALL))
        _discard_unfiltered(sock)
        _packet_stats(sock)  # start the counts from here
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _loopback_index() -> int | None:
    try:
        return socket.if_nametoindex("lo")
    except OSError:
        return None


def _discard_unfiltered(sock: socket.socket) -> None:
    """Packets queued between the socket's creation and the filter's attachment matched nothing yet: drop them."""
    while True:
        try:
            sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


def _packet_stats(sock: socket.socket) -> tuple[int, int]:
    """(packets, drops) since the last call: the kernel resets them when read."""
    return struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))


class _Spool:
    """The segment the reader appends to, moved on to the next every `segment_bytes`; what is still on disk
    (the segments the parent has not deleted yet) kept under `budget_bytes`."""

    def __init__(self, first: Path, segment_bytes: int, budget_bytes: int) -> None:
        self.first = first
        self.segment_bytes = segment_bytes
        self.budget_bytes = budget_bytes
        self.index = 0
        self.fd = self._create(first)
        self.written = 0
        self.older: list[Path] = []  # full segments, deleted by the parent once parsed
        self.older_bytes = 0
        self.skipped = 0  # packets not spooled since the budget was reached
        self.skipped_bytes = 0
        self.skipped_since = 0

    @staticmethod
    def _create(path: Path) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        except OSError as exc:
            raise _SpoolFailed(f"{path}: {exc.strerror or exc}") from None
        _write_all(fd, MAGIC)
        return fd

    def write(self, data: bytes) -> None:
        """Whole records only, so that a rotation never splits one."""
        _write_all(self.fd, data)
        self.written += len(data)
        if self.written >= self.segment_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.index += 1
        following = segment_path(self.first, self.index)
        fd = self._create(following)  # exists before the old segment names it
        _write_all(self.fd, status_record(time.time_ns(), ev="rotate", next=following.name))
        os.close(self.fd)
        self.older.append(segment_path(self.first, self.index - 1))
        self.older_bytes += self.written
        self.fd, self.written = fd, 0

    def room(self) -> bool:
        """Whether the disk budget allows spooling (the parent's deletions are noticed here)."""
        if self.older_bytes + self.written < self.budget_bytes:
            return True
        kept: list[Path] = []
        size = 0
        for path in self.older:
            with contextlib.suppress(OSError):
                size += path.stat().st_size
                kept.append(path)
        self.older, self.older_bytes = kept, size
        return size + self.written < self.budget_bytes

    def skip(self, t_ns: int, size: int) -> None:
        if not self.skipped:
            self.skipped_since = t_ns
        self.skipped += 1
        self.skipped_bytes += size

    def said_skipped(self) -> None:
        """The packets not spooled since the budget was reached, as one record (once there is room again)."""
        if self.skipped:
            now = time.time_ns()
            _write_all(self.fd, status_record(now, ev="skipped", packets=self.skipped, bytes=self.skipped_bytes,
                                              since=self.skipped_since / 1e9, budget=self.budget_bytes))
            self.skipped = self.skipped_bytes = 0

    def close(self) -> None:
        os.close(self.fd)


def _pump(sock: socket.socket, spool: _Spool, stopping: list[bool]) -> None:
    """Spool packets until `stopping[0]` (set by SIGTERM) and the socket is empty; whole records only."""
    recvmsg = sock.recvmsg
    cmsg_space = socket.CMSG_SPACE(_TIMESPEC.size)
    unpack = _TIMESPEC.unpack_from
    out: list[bytes] = []
    next_stats = time.monotonic() + _STATS_EVERY
    stats_from = time.time_ns()
    room = spool.room()
    while True:
        size = 0
        empty = False
        while size < _FLUSH_BYTES:
            try:
                data, ancillary, flags, _address = recvmsg(bpf.SNAPLEN, cmsg_space)
            except BlockingIOError:
                empty = True
                break
            t_ns = 0
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = unpack(value)
                    t_ns = sec * 1_000_000_000 + nsec
            if not t_ns:
                t_ns = time.time_ns()
            size += len(data) + 16
            if not room:
                spool.skip(t_ns, len(data))
                continue
            out.append(packet_record(t_ns, data))
            if flags & socket.MSG_TRUNC:
                out.append(status_record(t_ns, ev="truncated"))
        if out:
            spool.write(b"".join(out))
            out.clear()
        room = spool.room()
        if room:
            spool.said_skipped()
        now = time.monotonic()
        done = stopping[0] and empty
        if now >= next_stats or done:
            packets, drops = _packet_stats(sock)
            t_ns = time.time_ns()
            spool.write(status_record(t_ns, ev="stats", packets=packets, drops=drops, since=stats_from / 1e9))
            stats_from = t_ns
            next_stats = now + _STATS_EVERY
        if done:
            spool.said_skipped()  # over budget or not: the last record says what was not spooled
            return
        if empty:
            select.select([sock], [], [], 0.2)  # a signal ends the wait early (PEP 475 retries only the rest)


class _SpoolFailed(Exception):
    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise _SpoolFailed(exc.strerror or str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redisprobe.producers.wire.reader",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--interface", default=None, help="one interface (default: all)")
    parser.add_argument("--rcvbuf", type=int, default=_RCVBUF, help="the socket's receive buffer, bytes")
    parser.add_argument("--segment-bytes", type=int, default=SEGMENT_BYTES, help="a new spool segment after this")
    parser.add_argument("--budget-bytes", type=int, default=BUDGET_BYTES,
                        help="the spool segments on disk at most at once")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop

    stopping = [False]

    def on_term(signum: int, frame: object) -> None:
        stopping[0] = True  # only a flag: the loop never stops halfway through a record

    try:
        sock = open_socket(args.port, args.interface, args.rcvbuf)
    except OSError as exc:
        message = privilege_message(exc)
        if message is None:
            message = f"wire capture could not open its packet socket: {exc.strerror or exc}"
        sys.stderr.write(message + "\n")
        return NO_PRIVILEGE if exc.errno in (errno.EPERM, errno.EACCES) else 1
    try:
        spool = _Spool(Path(args.spool), args.segment_bytes, args.budget_bytes)
    except _SpoolFailed as exc:
        sys.stderr.write(f"cannot write the wire spool {exc}\n")
        sock.close()
        return SPOOL_FAILED
    try:
        spool.write(status_record(time.time_ns(), ev="started", port=args.port, interface=args.interface or "any",
                                  pid=os.getpid(), segment_bytes=args.segment_bytes, budget_bytes=args.budget_bytes))
        signal.signal(signal.SIGTERM, on_term)
        _pump(sock, spool, stopping)
        spool.write(status_record(time.time_ns(), ev="stopped"))
    except _SpoolFailed as exc:
        sys.stderr.write(f"cannot write the wire spool: {exc}\n")
        return SPOOL_FAILED
    finally:
        spool.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
