"""The kernel filter a wire capture attaches: only TCP segments to or from the watched port reach user space.

Classic BPF on a cooked (SOCK_DGRAM) AF_PACKET socket, so offsets are from the network header whatever the link
(loopback, Ethernet, tunnels); the ethertype comes from the kernel's ancillary data. On loopback every packet is
seen twice (once leaving, once arriving): the leaving copy is dropped here, as libpcap does.
"""

from __future__ import annotations

import struct

SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
PACKET_OUTGOING = 4
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SNAPLEN = 262144  # whole packets: loopback's GSO segments reach 64 KiB

_LDH_ABS, _LDB_ABS, _LDH_IND, _LDXB_MSH = 0x28, 0x30, 0x48, 0xB1
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06

Instruction = tuple[int, str | int, str | int, int]  # code, jump-true label, jump-false label, k


def tcp_port_program(port: int, loopback_ifindex: int | None) -> list[tuple[int, int, int, int]]:
    """`tcp port PORT` (either end), not fragments; loopback's outgoing copies dropped when its index is given."""
    anc = SKF_AD_OFF & 0xFFFFFFFF
    code: list[Instruction | str] = []
    if loopback_ifindex is not None:
        code += [(_LDH_ABS, 0, 0, anc + SKF_AD_IFINDEX), (_JEQ, 0, "proto", loopback_ifindex),
                 (_LDH_ABS, 0, 0, anc + SKF_AD_PKTTYPE), (_JEQ, "drop", "proto", PACKET_OUTGOING)]
    code += [
        "proto", (_LDH_ABS, 0, 0, anc + SKF_AD_PROTOCOL),
        (_JEQ, "v4", 0, ETH_P_IP), (_JEQ, "v6", "drop", ETH_P_IPV6),
        "v4", (_LDB_ABS, 0, 0, 9), (_JEQ, 0, "drop", 6),
        (_LDH_ABS, 0, 0, 6), (_JSET, "drop", 0, 0x1FFF),  # a fragment other than the first: no TCP header
        (_LDXB_MSH, 0, 0, 0),
        (_LDH_IND, 0, 0, 0), (_JEQ, "accept", 0, port),
        (_LDH_IND, 0, 0, 2), (_JEQ, "accept", "drop", port),
        "v6", (_LDB_ABS, 0, 0, 6), (_JEQ, 0, "drop", 6),  # TCP right after the fixed header (no extensions)
        (_LDH_ABS, 0, 0, 40), (_JEQ, "accept", 0, port),
        (_LDH_ABS, 0, 0, 42), (_JEQ, "accept", "drop", port),
        "accept", (_RET, 0, 0, SNAPLEN),
        "drop", (_RET, 0, 0, 0),
    ]
    return _assemble(code)


def _assemble(code: list[Instruction | str]) -> list[tuple[int, int, int, int]]:
    """Resolve labels into the relative jump offsets BPF wants (0: the next instruction)."""
    labels: dict[str, int] = {}
    count = 0
    for item in code:
        if isinstance(item, str):
            labels[item] = count
        else:
            count += 1
    out: list[tuple[int, int, int, int]] = []
    for item in code:
        if isinstance(item, str):
            continue
        op, jt, jf, k = item
        here = len(out)
        out.append((op, _offset(labels, jt, here), _offset(labels, jf, here), k))
    return out


def _offset(labels: dict[str, int], target: str | int, here: int) -> int:
    return labels[target] - here - 1 if isinstance(target, str) else target


def pack(program: list[tuple[int, int, int, int]]) -> bytes:
    """The instructions as `struct sock_filter[]`."""
    return b"".join(struct.pack("HBBI", *insn) for insn in program)
