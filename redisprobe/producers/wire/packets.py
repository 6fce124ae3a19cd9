"""The IPv4/IPv6 and TCP headers of a spooled packet: who sent it to whom, its sequence numbers and its data."""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_TCP = struct.Struct("!HHIIBB")


class Segment(NamedTuple):
    t: float
    src: str  # "ip:port" as Redis writes a peer ("[ip]:port" for IPv6)
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes


_names: dict[bytes, str] = {}


def _v4(raw: bytes) -> str:
    name = _names.get(raw)
    if name is None:
        name = _names[raw] = str(ipaddress.IPv4Address(raw))
    return name


def _v6(raw: bytes) -> str:
    name = _names.get(raw)
    if name is None:
        name = _names[raw] = f"[{ipaddress.IPv6Address(raw).compressed}]"
    return name


def decode(t: float, packet: memoryview | bytes) -> Segment | None:
    """The TCP segment in an IP packet; None for anything else (a fragment, an IPv6 extension header, junk)."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        total = (packet[2] << 8) | packet[3]
        if packet[9] != 6 or ihl < 20 or total < ihl + 20 or len(packet) < total:
            return None
        src, dst = _v4(bytes(packet[12:16])), _v4(bytes(packet[16:20]))
        tcp, end = ihl, total
    elif version == 6:
        if len(packet) < 60 or packet[6] != 6:
            return None
        end = 40 + ((packet[4] << 8) | packet[5])
        if len(packet) < end:
            return None
        src, dst = _v6(bytes(packet[8:24])), _v6(bytes(packet[24:40]))
        tcp = 40
    else:
        return None
    sport, dport, seq, ack, offset, flags = _TCP.unpack_from(packet, tcp)
    data = tcp + (offset >> 4) * 4
    if data > end:
        return None
    return Segment(t, f"{src}:{sport}", f"{dst}:{dport}", sport, dport, seq, ack, flags, bytes(packet[data:end]))
