"""Servers that misbehave at the socket level, for the faults no real Redis produces on demand: one that accepts
connections and never answers (a hung server), one that answers `+OK` to everything."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def fake_server(mode: str) -> Iterator[int]:
    """A loopback TCP server in this process; yields its port. `mode`: "hung" or "ok"."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                if mode == "ok":  # one +OK per command, however it was sent (RESP arrays start with '*')
                    conn.sendall(b"+OK\r\n" * max(1, data.count(b"*")))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        stop.set()
        listener.close()
        for conn in accepted:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
