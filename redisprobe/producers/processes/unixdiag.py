"""Which process is at the other end of a unix-socket connection: the kernel's sock_diag, asked directly.

Only the kernel knows a unix socket's peer: /proc/net/unix lists inodes and paths (the client end has no path)
but not who is connected to whom, and `ss -xp` (which asks sock_diag) is not installed everywhere. One
NETLINK_SOCK_DIAG dump gives every unix socket's inode, path and peer inode; each process's file descriptors
(/proc/PID/fd) then say who holds each inode. A server's client fd (CLIENT LIST `fd`) leads to its accepted
socket, its peer to the client's socket, and that to every process holding it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass

from redisprobe.producers.processes.sockdiag import dump, sock_diag_socket

UDIAG_SHOW_NAME, UDIAG_SHOW_PEER = 0x1, 0x4
UNIX_DIAG_NAME, UNIX_DIAG_PEER = 0, 2
TCP_LISTEN = 10
_REQUEST = struct.Struct("=BBHIIIII")  # unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_MESSAGE = struct.Struct("=BBBBIII")  # unix_diag_msg: family, type, state, pad, ino, cookie[2]
_ATTR = struct.Struct("=HH")  # rtattr: len, type


@dataclass(frozen=True)
class UnixSocket:
    inode: int
    path: str  # "" for an unnamed end (a client's); accepted server ends carry the listening path
    peer: int  # the peer's inode, 0 when not connected
    listening: bool


def unix_sockets() -> dict[int, UnixSocket] | None:
    """inode -> UnixSocket for every unix socket of our network namespace; None when sock_diag is unavailable
    (not Linux, or the kernel module is missing)."""
    sock = sock_diag_socket(5.0)
    if sock is None:
        return None
    found: dict[int, UnixSocket] = {}
    with sock:
        request = _REQUEST.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_PEER, 0, 0)
        try:
            for data, start, end in dump(sock, request):
                parsed = _parse(data[start:end])
                if parsed is not None:
                    found[parsed.inode] = parsed
        except OSError:
            return None
    return found


def _parse(body: bytes) -> UnixSocket | None:
    if len(body) < _MESSAGE.size:
        return None
    _family, _type, state, _pad, inode, _c1, _c2 = _MESSAGE.unpack_from(body, 0)
    path, peer = "", 0
    offset = _MESSAGE.size
    while offset + _ATTR.size <= len(body):
        length, kind = _ATTR.unpack_from(body, offset)
        if length < _ATTR.size:
            break
        value = body[offset + _ATTR.size: offset + length]
        if kind == UNIX_DIAG_NAME:
            path = value.split(b"\0", 1)[0].decode("utf-8", "replace") if value[:1] != b"\0" else \
                "@" + value[1:].decode("utf-8", "replace")
        elif kind == UNIX_DIAG_PEER and len(value) >= 4:
            peer = struct.unpack_from("=I", value)[0]
        offset += (length + 3) & ~3
    return UnixSocket(inode=inode, path=path, peer=peer, listening=state == TCP_LISTEN)


def fd_inode(pid: int, fd: int) -> int | None:
    """The socket inode behind one file descriptor of a process, when we may read it."""
    with contextlib.suppress(OSError, ValueError):
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if link.startswith("socket:["):
            return int(link[8:-1])
    return None


def client_holders(path: str, server_fd: int, sockets: dict[int, UnixSocket],
                   holders: dict[int, list[int]]) -> list[int]:
    """Every pid holding the client end of the connection a server on `path` has as file descriptor
    `server_fd` (CLIENT LIST `fd`); [] when that cannot be learnt."""
    listening = [s.inode for s in sockets.values() if s.listening and s.path == path]
    for inode in listening:
        for server_pid in holders.get(inode, ()):
            accepted = fd_inode(server_pid, server_fd)
            mine = sockets.get(accepted) if accepted is not None else None
            if mine is None or mine.path != path or not mine.peer:
                continue
            return list(holders.get(mine.peer, ()))
    return []


def connected_table() -> dict[int, tuple[str, int, list[tuple[str, int, int]]]]:
    """inode -> (path or "*", peer inode, [(process name, pid, fd)]) for every connected unix socket: what
    `ss -xp` prints, without `ss`. {} when sock_diag is unavailable."""
    sockets = unix_sockets()
    if not sockets:
        return {}
    owners: dict[int, list[tuple[str, int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        name = ""
        for fd in fds:
            inode = fd_inode(int(entry), int(fd)) if fd.isdigit() else None
            if inode is None or inode not in sockets:
                continue
            if not name:
                name = _comm(entry)
            owners.setdefault(inode, []).append((name, int(entry), int(fd)))
    return {inode: (s.path or "*", s.peer, owners.get(inode, [])) for inode, s in sockets.items() if s.peer}


def _comm(pid: str) -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
        return handle.read().strip()
    return ""
