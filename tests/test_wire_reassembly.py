"""Reassembly and pairing on hand-made TCP segments: the cases a loopback capture rarely shows on its own
(retransmissions, reordering, a segment the capture lost, a kernel drop), checked against what they must give.
Redis's own behaviour is checked on real servers in test_wire_capture.py."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from redisprobe.producers.wire import resp
from redisprobe.producers.wire.offline import Reassembler, WireResult
from redisprobe.producers.wire.packets import ACK, FIN, SYN, Segment
from redisprobe.producers.wire.spool import PACKET

CLIENT, SERVER = "10.0.0.1:50000", "10.0.0.2:6379"
C_ISN, S_ISN = 0xFFFFFF00, 1000  # the client's numbers wrap past 2**32 during the test


class Wire:
    """Builds a connection's segments: `send` and `answer` advance each side's sequence number."""

    def __init__(self, *, handshake: bool = True) -> None:
        self.c, self.s, self.t = C_ISN + 1, S_ISN + 1, 100.0
        self.segments: list[Segment] = []
        if handshake:
            self.segments.append(self._seg(True, C_ISN, 0, SYN, b""))
            self.segments.append(self._seg(False, S_ISN, C_ISN + 1, SYN | ACK, b""))

    def _seg(self, outbound: bool, seq: int, ack: int, flags: int, data: bytes) -> Segment:
        self.t += 0.001
        src, dst = (CLIENT, SERVER) if outbound else (SERVER, CLIENT)
        return Segment(self.t, src, dst, int(src.rsplit(":")[1]), int(dst.rsplit(":")[1]), seq % 2**32,
                       ack % 2**32, flags, data)

    def send(self, data: bytes, *, keep: bool = True) -> Segment:
        seg = self._seg(True, self.c, self.s, ACK, data)
        self.c += len(data)
        if keep:
            self.segments.append(seg)
        return seg

    def answer(self, data: bytes, *, keep: bool = True) -> Segment:
        seg = self._seg(False, self.s, self.c, ACK, data)
        self.s += len(data)
        if keep:
            self.segments.append(seg)
        return seg

    def close(self) -> None:
        self.segments.append(self._seg(True, self.c, self.s, FIN | ACK, b""))
        self.segments.append(self._seg(False, self.s, self.c + 1, FIN | ACK, b""))


def cmd(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def packet(seg: Segment) -> bytes:
    """The segment as the capture spools it: an IPv4 header (no options) and a TCP header, then the data."""
    src, dst = (socket.inet_aton(addr.rsplit(":", 1)[0]) for addr in (seg.src, seg.dst))
    tcp = struct.pack("!HHIIBBHHH", seg.sport, seg.dport, seg.seq, seg.ack, 5 << 4, seg.flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(seg.payload), 0, 0x4000, 64, 6, 0, src, dst)
    return ip + tcp + seg.payload


@pytest.fixture(params=["segments", "packets"], autouse=True)
def path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test twice: segments handed to `segment`, and packets through `records` (its fast path for the
    segments of a connection it knows)."""
    global _PATH
    _PATH = request.param
    yield


_PATH = "segments"


def run(segments: list[Segment], statuses: tuple[tuple[float, dict[str, object]], ...] = ()) -> WireResult:
    reassembler = Reassembler(6379)
    if _PATH == "packets":
        reassembler.records([(PACKET, seg.t, packet(seg)) for seg in segments])
    else:
        for seg in segments:
            reassembler.segment(seg)
    for t, status in statuses:
        reassembler.status(t, status)
    return reassembler.finish()


def test_retransmissions_and_reordering_give_each_command_once_in_order() -> None:
    wire = Wire()
    first, second = cmd(b"SET", b"a", b"1"), cmd(b"GET", b"a")
    s1 = wire.send(first)
    wire.segments.append(s1)  # retransmitted whole
    s2 = wire.send(second[:5], keep=False)
    s3 = wire.send(second[5:], keep=False)
    wire.segments += [s3, s2, s1]  # out of order, then the first command again, late
    wire.answer(b"+OK\r\n$1\r\n")
    wire.answer(b"1\r\n")
    wire.close()
    result = run(wire.segments)
    assert [(e.args, e.reply) for e in result.exchanges] == [([b"SET", b"a", b"1"], b"OK"), ([b"GET", b"a"], b"1")]
    assert not result.gaps and not any(e.resynced for e in result.exchanges)


def test_a_lost_segment_is_a_hole_and_the_conversation_resynchronises() -> None:
    wire = Wire()
    wire.send(cmd(b"SET", b"a", b"1"))
    wire.answer(b"+OK\r\n")
    wire.send(cmd(b"SET", b"b", b"2"), keep=False)  # the capture missed it; the server got it and answered
    wire.answer(b"+OK\r\n")
    wire.send(cmd(b"GET", b"b"))
    wire.answer(b"$1\r\n2\r\n")
    wire.close()
    result = run(wire.segments)
    assert [e.args for e in result.exchanges] == [[b"SET", b"a", b"1"], [b"GET", b"b"]]
    assert result.exchanges[0].resynced is False
    last = result.exchanges[1]
    assert last.resynced and last.reply == b"2"
    assert len(result.gaps) == 1 and "never captured" in result.gaps[0].reason


def test_kernel_drops_become_a_gap_with_their_count_and_window() -> None:
    wire = Wire()
    wire.send(cmd(b"PING"))
    wire.answer(b"+PONG\r\n")
    result = run(wire.segments, ((200.0, {"ev": "stats", "packets": 10, "drops": 7, "since": 199.0}),))
    assert result.kernel_drops == 7
    (gap,) = result.gaps
    assert (gap.t, gap.until, gap.source) == (199.0, 200.0, "wire") and "7 packets" in gap.reason


def test_multi_exec_pairs_each_queued_command_with_its_exec_element() -> None:
    wire = Wire()
    wire.send(cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"INCR", b"a") + cmd(b"EXEC"))
    wire.answer(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:2\r\n")
    wire.send(cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"DISCARD"))
    wire.answer(b"+OK\r\n+QUEUED\r\n+OK\r\n")
    result = run(wire.segments)
    got = [(e.args[0], e.reply, e.queued, e.refused) for e in result.exchanges]
    assert got == [(b"MULTI", b"OK", False, False), (b"SET", b"OK", True, False), (b"INCR", 2, True, False),
                   (b"EXEC", [b"OK", 2], False, False), (b"MULTI", b"OK", False, False),
                   (b"SET", None, True, True), (b"DISCARD", b"OK", False, False)]
    assert result.exchanges[1].t == result.exchanges[3].t  # a queued command ran when EXEC did


def test_refusals_auth_secrets_and_tls() -> None:
    wire = Wire()
    wire.send(cmd(b"AUTH", b"user", b"s3cret") + cmd(b"SET", b"a", b"1"))
    wire.answer(b"+OK\r\n-OOM command not allowed when used memory > 'maxmemory'.\r\n")
    result = run(wire.segments)
    auth, refused = result.exchanges
    assert auth.args == [b"AUTH", b"(redacted)", b"(redacted)"]
    assert refused.refused and refused.error is not None and refused.error.startswith("OOM")

    tls = Wire()
    tls.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40))
    assert run(tls.segments).notes == [f"connection {CLIENT} is TLS: its commands are unreadable"]



def test_errors_of_commands_that_ran_are_not_refusals() -> None:
    """BUSYGROUP, BUSYKEY (a command that ran and said no) are not BUSY (a server that refused to run it)."""
    wire = Wire()
    wire.send(cmd(b"XGROUP", b"CREATE", b"s", b"g", b"$") + cmd(b"RESTORE", b"k", b"0", b"x") + cmd(b"SET", b"a", b"1"))
    wire.answer(b"-BUSYGROUP Consumer Group name already exists\r\n-BUSYKEY Target key name already exists.\r\n"
                b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n")
    result = run(wire.segments)
    assert [(e.args[0], e.refused) for e in result.exchanges] == [(b"XGROUP", False), (b"RESTORE", False),
                                                                   (b"SET", True)]

def test_resp3_values() -> None:
    data = (b"%2\r\n+a\r\n,1.5\r\n$1\r\nb\r\n#t\r\n", b"~2\r\n:1\r\n(12345678901234567890\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n", b">2\r\n$7\r\nmessage\r\n_\r\n", b"=8\r\ntxt:some\r\n",
            b"!5\r\nERR x\r\n")
    values = [resp.parse(d)[0] for d in data]
    assert values[:3] == [{b"a": 1.5, b"b": True}, [1, 12345678901234567890], b"hi"]
    assert isinstance(values[3], resp.Push) and values[4] == b"some" and values[5] == resp.RespError("ERR x")


def test_a_value_in_many_segments_is_read_whole() -> None:
    wire = Wire()
    value = bytes(range(256)) * 4096  # 1 MiB, sent in 1,000-byte segments
    request = cmd(b"SET", b"big", value) + cmd(b"GET", b"big")
    for start in range(0, len(request), 1000):
        wire.send(request[start:start + 1000])
    reply = b"+OK\r\n$%d\r\n%s\r\n" % (len(value), value)
    for start in range(0, len(reply), 1000):
        wire.answer(reply[start:start + 1000])
    result = run(wire.segments)
    assert [(e.args[0], e.reply) for e in result.exchanges] == [(b"SET", b"OK"), (b"GET", value)]
    assert result.exchanges[0].args[2] == value


def test_inline_commands_and_resp3_replies_through_the_conversation() -> None:
    inline = Wire()
    inline.send(b"SET a 1\r\nGET a\r\n")
    inline.answer(b"+OK\r\n$1\r\n1\r\n")
    assert [(e.args, e.reply) for e in run(inline.segments).exchanges] == [([b"SET", b"a", b"1"], b"OK"),
                                                                            ([b"GET", b"a"], b"1")]
    resp3 = Wire()
    resp3.send(cmd(b"HELLO", b"3") + cmd(b"GET", b"a") + cmd(b"HGETALL", b"h") + cmd(b"INCR", b"h"))
    resp3.answer(b"%1\r\n+proto\r\n:3\r\n" + b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n_\r\n")
    resp3.answer(b"%1\r\n$1\r\nf\r\n,1.5\r\n-WRONGTYPE Operation against a key\r\n")
    exchanges = run(resp3.segments).exchanges
    assert [(e.args[0], e.reply, e.error) for e in exchanges] == [
        (b"HELLO", {b"proto": 3}, None), (b"GET", None, None), (b"HGETALL", {b"f": 1.5}, None),
        (b"INCR", None, "WRONGTYPE Operation against a key")]
    assert all(e.replied is not None for e in exchanges)
