"""The kernel's sock_diag, asked over netlink: one socket and one dump reader for the TCP table (`inetdiag`) and the
unix sockets (`unixdiag`).

Both ask the same way: a NETLINK_SOCK_DIAG socket (absent off Linux, or refused in some sandboxes: then the caller
falls back to /proc or goes without), one SOCK_DIAG_BY_FAMILY dump request, and replies read until NLMSG_DONE.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid


class DumpRefused(OSError):
    """The kernel answered a dump request with an error (a request it does not understand)."""


def sock_diag_socket(timeout: float) -> socket.socket | None:
    """A NETLINK_SOCK_DIAG socket whose reads wait at most `timeout` seconds; None where the kernel cannot be asked
    this way (not Linux, no netlink in this sandbox)."""
    if not hasattr(socket, "AF_NETLINK"):
        return None
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except OSError:
        return None
    sock.settimeout(timeout)
    return sock


def dump(sock: socket.socket, request: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Send one dump request (the body after the netlink header) and yield each reply message as (the received
    buffer, where its body starts, where it ends), without copying it out. Raises `OSError` (`DumpRefused` for an
    error reply)."""
    sock.send(HEADER.pack(HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
              + request)
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind = HEADER.unpack_from(data, offset)[:2]
            if length < HEADER.size or kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                raise DumpRefused("sock_diag refused the request")
            yield data, offset + HEADER.size, offset + length
            offset += (length + 3) & ~3
