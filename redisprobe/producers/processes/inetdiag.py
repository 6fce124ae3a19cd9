"""Open TCP connections to some ports, asked of the kernel's sock_diag in one call per address family.

Reading /proc/net/tcp makes the kernel walk its whole connection hash table and print every socket as text: on a
host with a large table that costs milliseconds per read (4 ms on a 2-core VM with 262144 buckets, for both
families), too slow to catch a connection that lives 5 ms. One NETLINK_SOCK_DIAG dump restricted to the states of
an open connection, filtered in the kernel by destination port, returns the same facts (local address, remote
address, inode) in a tenth of that; the nodes of a cluster (one port each) share the one dump.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from redisprobe.producers.processes.sockdiag import dump, sock_diag_socket

INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP, INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE = 1, 4, 5
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_CLOSE_WAIT = 1, 2, 8
OPEN_STATES = (1 << TCP_ESTABLISHED) | (1 << TCP_SYN_SENT) | (1 << TCP_CLOSE_WAIT)
"""A connection some process still holds (after close() the kernel keeps the socket, but without an inode)."""
NOT_LISTENING = ((1 << 12) - 1) & ~(1 << 10) & ~1
"""Every state but LISTEN: what /proc/net/tcp lists (the sockets without an inode are left out all the same)."""

_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, id (unused in a dump)
_ATTR = struct.Struct("=HH")  # nlattr: len, type
_OP = struct.Struct("=BBH")  # inet_diag_bc_op: code, yes, no
_ID = struct.Struct("!HH16s16s")  # inet_diag_msg.id (after family, state, timer, retrans): ports in network order
_ID_AT, _ID_END, _INODE_AT = 4, 52, 68  # offsets in inet_diag_msg (the queue sizes between change)

Connection = tuple[int, tuple[str, int], tuple[str, int]]  # inode, local (ip, port), remote (ip, port)


def open_connections(*remote_ports: int) -> list[Connection] | None:
    """(inode, local, remote) of every open TCP connection to any of `remote_ports` (no port: every connected TCP
    socket held by a process, what /proc/net/tcp lists), IPv4 and IPv6; None when the kernel's sock_diag cannot be
    asked (not Linux, no netlink in this sandbox): the caller reads /proc instead."""
    ports = sorted(set(remote_ports))
    sock = sock_diag_socket(2.0)
    if sock is None:
        return None
    found: list[Connection] = []
    wanted = set(ports)
    with sock:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                for data, start, _end in dump(sock, _request(family, ports)):
                    connection = _parse(data, start, family, wanted)
                    if connection is not None:
                        found.append(connection)
            except OSError:
                return None
    return found


def _request(family: int, ports: list[int]) -> bytes:
    if not ports:
        return _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, NOT_LISTENING)
    code = _filter(ports)
    attr = _ATTR.pack(_ATTR.size + len(code), INET_DIAG_REQ_BYTECODE) + code
    return _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, OPEN_STATES) + attr


def _filter(ports: list[int]) -> bytes:
    """The kernel's filter program for "destination port is one of `ports`".

    Each op is followed by its port (8 bytes together); a true condition goes on to the next op, a false one jumps
    `no` bytes: to the end of the program (accept), or 4 past it (reject). The kernel checks every jump target
    by walking the program along the true branches, so every op lies on that straight path, and a last JMP
    rejects what fell through every port. Per port: dport >= port, else try the next port; then dport >= port + 1
    (not this port: try the next), else accept.
    """
    size = 16 * len(ports) + 4
    code = b""
    for port in ports:
        at = len(code)
        code += _OP.pack(INET_DIAG_BC_D_GE, 8, 16) + _OP.pack(0, 0, port)
        if port < 0xFFFF:
            code += _OP.pack(INET_DIAG_BC_D_GE, 8, size - (at + 8)) + _OP.pack(0, 0, port + 1)
        else:  # nothing is above it: a test that always fails, so that it accepts
            code += _OP.pack(INET_DIAG_BC_D_LE, 8, size - (at + 8)) + _OP.pack(0, 0, port - 1)
    return code + _OP.pack(INET_DIAG_BC_JMP, 4, 8)


def _parse(data: bytes, at: int, family: int, ports: set[int]) -> Connection | None:
    if len(data) < at + _INODE_AT + 4:
        return None
    key = data[at + _ID_AT:at + _ID_END] + data[at + _INODE_AT:at + _INODE_AT + 4]  # the socket's id and inode
    known = _parsed.get(key)
    if known is not None:
        return known if not ports or known[2][1] in ports else None
    sport, dport, src, dst = _ID.unpack_from(data, at + _ID_AT)
    inode = struct.unpack_from("=I", data, at + _INODE_AT)[0]
    if not inode or not dport or (ports and dport not in ports):
        return None
    if len(_parsed) >= _PARSED_KEPT:
        _parsed.clear()
    connection = _parsed[key] = inode, (_ip(src, family), sport), (_ip(dst, family), dport)
    return connection


_parsed: dict[bytes, Connection] = {}
"""Each connection's entry as parsed before: the table is read every few milliseconds and holds mostly the same
connections again (turning addresses into text was most of a read's CPU)."""

_PARSED_KEPT = 8192


def _ip(raw: bytes, family: int) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
