"""The host's table of connected sockets and who holds each: the kernel's connections (sock_diag, else /proc/net/tcp)
joined with every process's file descriptors, so a socket inherited across fork names each process holding it.

Also noted, once per process: the parent of each socket holder (a process may exit between a scan and the question
whose child it was: rq's work horse lives milliseconds).
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Collection, Iterator
from typing import Any

import psutil

from redisprobe.producers.processes.inetdiag import open_connections

_TCP_LISTEN = "0A"


def normalize_ip(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parent_when_seen(pid: int) -> int | None:
    """The parent `pid` had when the last socket scan saw it hold a socket (None when it held none then)."""
    known = _parents.get(pid)
    return known[0] if known is not None else None


def parent_of(pid: int) -> int | None:
    """The parent of a process, from /proc/PID/stat (None when it is gone, or is a thread of another process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def socket_inodes(pid: int | str) -> set[int] | None:
    """The socket inodes process `pid` ("self" for this one) holds now, from its file descriptors; None when they
    cannot be read (it has gone, or is not ours to see)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    found = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def connected_sockets(holders: dict[int, list[int]] | None = None
                      ) -> Iterator[tuple[int, tuple[str, int], tuple[str, int]]]:
    """(pid, local, remote) of every connected inet socket, once for EACH process holding it.

    A socket inherited across fork is one kernel socket held by several processes; psutil names only the first
    one it finds. On Linux the kernel's socket table (inodes) is joined with every process's file descriptors.
    """
    holders = holders if holders is not None else socket_holders()
    if holders is not None:
        table = open_connections()  # sock_diag: a third of what the kernel's text table costs
        for inode, local, remote in table if table is not None else _proc_net_inet():
            for pid in holders.get(inode, ()):
                yield pid, local, remote
        return
    for pid, laddr, raddr in _connected_sockets():
        yield pid, (normalize_ip(laddr.ip), laddr.port), (normalize_ip(raddr.ip), raddr.port)


_parents: dict[int, tuple[int | None, set[int]]] = {}
"""pid -> (its parent, the socket inodes it held), for every process the last socket scan saw holding a socket:
a process may exit between that scan and the question whose child it was."""


def socket_holders() -> dict[int, list[int]] | None:
    """socket inode -> every pid with a file descriptor on it (the processes we may read); None without /proc.

    Each holder's parent is noted too (read once per process: kept while it holds the same sockets)."""
    global _parents
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    if not os.path.exists("/proc/net/tcp"):
        return None
    holders: dict[int, list[int]] = {}
    inodes_of: dict[int, set[int]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        inodes = socket_inodes(entry)
        if not inodes:
            continue
        pid = int(entry)
        inodes_of[pid] = inodes
        for inode in inodes:
            holders.setdefault(inode, []).append(pid)
    before = _parents
    parents: dict[int, tuple[int | None, set[int]]] = {}
    for pid, inodes in inodes_of.items():
        known = before.get(pid)  # the same process if it still holds one of its sockets (a pid may be reused)
        parents[pid] = (known[0] if known is not None and known[1] & inodes else parent_of(pid), inodes)
    _parents = parents
    return holders


def _proc_net_inet(remote_port: int | None = None, remote_ports: Collection[int] = (),
                   ) -> Iterator[tuple[int, tuple[str, int], tuple[str, int]]]:
    """(inode, local, remote) of each connected TCP socket in /proc/net/tcp and tcp6 (only those to `remote_port`,
    or to any of `remote_ports`, when given: the other lines are passed over before they are parsed)."""
    ports = {remote_port} if remote_port else set(remote_ports)
    suffixes = tuple(f":{port:04X} " for port in ports)
    ends = tuple(suffix[:-1] for suffix in suffixes)
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            with open(path, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            if suffixes and not any(suffix in line for suffix in suffixes):
                continue
            fields = line.split()
            if len(fields) < 10 or fields[3] == _TCP_LISTEN or fields[9] == "0":
                continue
            if ends and not fields[2].endswith(ends):
                continue
            remote = _hex_addr(fields[2], width)
            if remote[1]:
                yield int(fields[9]), _hex_addr(fields[1], width), remote


@functools.lru_cache(maxsize=8192)
def _hex_addr(text: str, width: int) -> tuple[str, int]:
    """`0100007F:1F90` (the kernel's byte order, 32-bit words) -> ("127.0.0.1", 8080).

    Cached: the table is read every few milliseconds and its lines are mostly the same connections again (on a
    loaded host, turning them into addresses was most of a read)."""
    host, _sep, port = text.partition(":")
    raw = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, width, 8))
    ip = ipaddress.IPv4Address(raw) if width == 8 else ipaddress.IPv6Address(raw)
    return normalize_ip(str(ip)), int(port, 16)


def _connected_sockets() -> Iterator[tuple[int, Any, Any]]:
    """(pid, laddr, raddr) of every connected inet socket whose owner we can see (psutil: one pid per socket)."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.pid is not None and conn.laddr and conn.raddr:
                yield conn.pid, conn.laddr, conn.raddr
        return
    except psutil.AccessDenied:  # macOS without root: the system-wide table is closed, our own processes are not
        pass
    for proc in psutil.process_iter():
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.laddr and conn.raddr:
                yield proc.pid, conn.laddr, conn.raddr
