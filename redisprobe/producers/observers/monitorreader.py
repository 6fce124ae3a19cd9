"""The MONITOR reader: a child process (`python -m redisprobe.producers.observers.monitorreader`) that does nothing but
append the raw bytes MONITOR sends to a spool file, with big receive buffers and no parsing, so capture keeps up
with a loaded server. `observers/monitor.py` starts it, reads the spool and hands the lines on.

Spool format: complete MONITOR lines exactly as the server sent them, interleaved with status lines
`!{json}\\r\\n` (`monitoring`, `lost`, `retrying`, `fatal`, `rotate`). Credentials reach it on stdin as JSON,
never in argv (argv is world-readable in /proc). It imports no redis-py: it starts fast on a loaded machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from redisprobe.producers.observers.commandcount import shown_commands

_RECV_BUFFER = 4 << 20  # the reader's receive buffer (grows for a longer line)
_SOCKET_RCVBUF = 4 << 20  # asked of the kernel (capped by net.core.rmem_max)
ROTATE_BYTES = 64 << 20  # a new spool file after this much; the parent deletes read ones
_RETRY_MAX = 1.0  # reconnect backoff cap, seconds
SPOOL_FAILED = 3  # the exit code when the spool cannot be written


class _Refused(Exception):
    """The server answered our handshake with an error (wrong password, NOPERM...)."""


class _Spool:
    """The file the reader appends to, moved on to a new one (`<path>.1`, `.2`...) every `rotate_bytes`."""

    def __init__(self, path: str, rotate_bytes: int) -> None:
        base, _, number = path.rpartition(".")
        self.base, self.number = (base, int(number)) if number.isdigit() else (path, 0)
        self.rotate_bytes = rotate_bytes
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        """Whole lines only, so that a rotation never splits one."""
        _write_all(self.fd, data)
        self.written += len(data)
        if self.written >= self.rotate_bytes:
            self.rotate()

    def status(self, **status: Any) -> None:
        _write_all(self.fd, b"!" + json.dumps(status).encode() + b"\r\n")

    def rotate(self) -> None:
        self.number += 1
        following = f"{self.base}.{self.number}"
        fd = os.open(following, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.status(ev="rotate", next=following)  # the last line of the old file: the parent moves on after it
        os.close(self.fd)
        self.fd, self.written = fd, 0


class _SpoolFailed(Exception):
    """The spool cannot be written (disk full, file too large): nothing the reader can do about it."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise _SpoolFailed(exc.strerror or str(exc)) from None


def _connect(target: dict[str, Any], name: str, timeout: float,
             hidden: frozenset[str] = frozenset()) -> tuple[socket.socket, bytes, int | None]:
    """Open the connection, authenticate, name it, read the server's command count, and send MONITOR; returns the
    socket, the bytes after +OK, and the count of commands run that MONITOR shows, just before MONITOR (None if
    refused)."""
    if target.get("unix_path"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(target["unix_path"])
        except BaseException:
            sock.close()
            raise
    else:
        host = target.get("host") or "localhost"
        sock = socket.create_connection((host, target.get("port") or 6379), timeout=timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        if target.get("tls"):
            import ssl

            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_RCVBUF)
    try:
        buffered = b""
        if target.get("password") is not None:
            words = ["AUTH"] + ([target["username"]] if target.get("username") else []) + [target["password"]]
            reply, buffered = _command(sock, words, buffered)
            if not reply.startswith(b"+"):
                raise _Refused(reply[1:].decode("utf-8", "replace"))
        reply, buffered = _command(sock, ["CLIENT", "SETNAME", name], buffered)  # refusal is harmless
        reply, buffered = _command(sock, ["INFO", "stats", "commandstats"], buffered)
        processed = None
        if reply.startswith(b"$"):
            body, buffered = _bulk(sock, int(reply[1:]), buffered)
            processed = shown_commands(body, hidden)
        reply, buffered = _command(sock, ["MONITOR"], buffered)
        if not reply.startswith(b"+"):
            raise _Refused(reply[1:].decode("utf-8", "replace"))
        sock.settimeout(None)  # an idle server sends nothing for hours; keepalive notices a dead peer
        return sock, buffered, processed
    except BaseException:
        sock.close()
        raise


def _command(sock: socket.socket, words: list[str], buffered: bytes) -> tuple[bytes, bytes]:
    """Send one command as RESP and read a one-line reply (all our handshake gets back)."""
    encoded = [word.encode() for word in words]
    sock.sendall(b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded))
    while b"\r\n" not in buffered:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("connection closed by the server during the handshake")
        buffered += more
    line, _, rest = buffered.partition(b"\r\n")
    return line, rest


def _bulk(sock: socket.socket, size: int, buffered: bytes) -> tuple[bytes, bytes]:
    """The body of a bulk reply of `size` bytes (its header line already read), and the bytes after it."""
    while len(buffered) < size + 2:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("connection closed by the server during the handshake")
        buffered += more
    return buffered[:size], buffered[size + 2:]


def _pump(sock: socket.socket, spool: _Spool, leftover: bytes) -> tuple[str, float, int]:
    """Append whole lines to the spool until the connection ends; returns (why, last receive time, dropped)."""
    buf = bytearray(max(_RECV_BUFFER, len(leftover) * 2))
    buf[:len(leftover)] = leftover
    filled = len(leftover)
    last_rx = time.time()
    view = memoryview(buf)
    try:
        scanned = 0  # buf[:scanned] holds no newline: search only the bytes just received
        while True:
            cut = buf.rfind(b"\n", scanned, filled) + 1
            if cut:
                spool.write(view[:cut])
                rest = filled - cut
                if rest:
                    buf[:rest] = bytes(view[cut:filled])
                filled = rest
            scanned = filled
            if filled == len(buf):  # one line longer than the buffer (a big value): grow
                view.release()
                buf.extend(bytes(len(buf)))
                view = memoryview(buf)
            try:
                received = sock.recv_into(view[filled:])
            except OSError as exc:
                return f"MONITOR connection lost: {exc.strerror or exc}", last_rx, filled
            if not received:
                return ("MONITOR connection closed by the server (CLIENT KILL, restart, timeout or "
                        "client-output-buffer-limit)"), last_rx, filled
            last_rx = time.time()
            filled += received
    finally:
        view.release()


def _describe(exc: BaseException) -> tuple[str, str]:
    """(kind, text) of a handshake failure, for the parent to phrase."""
    if isinstance(exc, _Refused):
        return "resp", str(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", "timed out"
    if isinstance(exc, OSError):
        return "os", (exc.strerror or str(exc))
    return "os", str(exc) or type(exc).__name__


def reader_main() -> int:
    """The child: connect, MONITOR, spool; on loss write a status line, reconnect with backoff, repeat."""
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when we stop (it drains
    # first), so ignore it. SIGTERM (procs.stop, or the parent's death) ends us at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    try:
        return _read_forever(config)
    except _SpoolFailed as exc:
        sys.stderr.write(f"cannot write the MONITOR spool: {exc}\n")
        return SPOOL_FAILED


def _read_forever(config: dict[str, Any]) -> int:
    target, name = config["target"], config["name"]
    spool = _Spool(config["spool"], int(config.get("rotate_bytes") or ROTATE_BYTES))
    retry_forever = bool(config.get("retry_forever"))
    timeout = float(config.get("timeout") or 10)
    hidden = frozenset(config.get("hidden") or ())
    first = True
    delay = 0.05
    last_error = ""
    while True:
        try:
            sock, leftover, processed = _connect(target, name, timeout, hidden)
        except Exception as exc:  # every failure is reported or retried
            kind, text = _describe(exc)
            if first and not retry_forever:
                spool.status(ev="fatal", t=time.time(), kind=kind, text=text)
                return 2
            if text != last_error:
                last_error = text
                spool.status(ev="retrying", t=time.time(), kind=kind, text=text)
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
            continue
        spool.status(ev="monitoring", t=time.time(), reconnect=not first, processed=processed)
        first, delay, last_error = False, 0.05, ""
        try:
            reason, last_rx, dropped = _pump(sock, spool, leftover)
        finally:
            sock.close()
        spool.status(ev="lost", t=last_rx, at=time.time(), reason=reason, dropped=dropped)


if __name__ == "__main__":
    sys.exit(reader_main())
