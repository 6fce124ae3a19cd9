"""A wire spool read: packets to connections, connections to exchanges, drops to gaps.

Incremental: `Reassembler` takes records as the spool follower reads them during the capture, and `take()` hands
over the exchanges complete so far (a connection's in order); `parse_spool` reads a whole spool after the fact."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from redisprobe import trace
from redisprobe.producers.wire import packets
from redisprobe.producers.wire.conversation import Conversation, Exchange
from redisprobe.producers.wire.spool import PACKET, STATUS, Record, read_spool
from redisprobe.producers.wire.tcp import Stream

SOURCE = "wire"


@dataclass
class Connection:
    conversation: Conversation
    to_server: Stream = field(default_factory=Stream)
    to_client: Stream = field(default_factory=Stream)
    closing: int = 0  # FINs seen
    key: tuple[str, str] = ("", "")
    routes: tuple[bytes, ...] = ()  # its `Reassembler._routes` keys


@dataclass(frozen=True, slots=True)
class Closed:
    """A closed connection, in short: its parser state is let go (a long capture sees many connections)."""

    client: str
    mode: str  # rr, pubsub, monitor, tls, unreadable
    subscribed: bool
    resyncs: int
    unanswered: int


@dataclass
class WireResult:
    exchanges: list[Exchange] = field(default_factory=list)  # per connection in order; connections by first use
    gaps: list[trace.Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    packets: int = 0
    kernel_drops: int = 0
    skipped: int = 0  # packets the reader did not spool (over its disk budget)
    connections: list[Closed] = field(default_factory=list)  # what each closed connection was (its state let go)
    started: float | None = None
    stopped: float | None = None


class Reassembler:
    """Feeds segments to their connection's streams and conversation, in capture order."""

    def __init__(self, port: int, target: str = "") -> None:
        self.port = port
        self.target = target
        self.live: dict[tuple[str, str], Connection] = {}
        self.result = WireResult()
        self._done: list[Exchange] = []  # exchanges of closed connections, not taken yet
        self._routes: dict[bytes, tuple[Connection, bool]] = {}  # IPv4 addresses and ports as sent -> connection

    def segment(self, seg: packets.Segment) -> Connection | None:
        """One segment; the connection it belongs to while that stays open (None: closed, or none)."""
        if seg.dport == self.port:
            key, outbound = (seg.src, seg.dst), True
        elif seg.sport == self.port:
            key, outbound = (seg.dst, seg.src), False
        else:
            return None
        flags = seg.flags
        conn = self.live.get(key)
        if flags & packets.SYN and not flags & packets.ACK and outbound:  # a new connection from the client
            if conn is not None:
                self._close(key, conn)
            conn = Connection(Conversation(client=key[0], server=key[1], clean=True), key=key)
            conn.to_server.syn(seg.seq)
            self.live[key] = conn
            return conn
        if conn is None:
            if not seg.payload:
                return None
            conn = Connection(Conversation(client=key[0], server=key[1], clean=False), key=key)
            self.live[key] = conn
        self._flow(conn, outbound, seg.t, flags, seg.seq, seg.ack, seg.payload)
        if flags & packets.RST:
            self._close(key, conn)
            return None
        if flags & packets.FIN:
            conn.closing += 1
            if conn.closing >= 2:
                self._close(key, conn)
                return None
        return conn

    def _flow(self, conn: Connection, outbound: bool, t: float, flags: int, seq: int, ack: int,
              payload: bytes) -> None:
        """A segment's acknowledgement and data, on a connection known to be open."""
        if outbound:
            mine, theirs = conn.to_server, conn.to_client
            feed_mine, feed_theirs = conn.conversation.from_client, conn.conversation.from_server
        else:
            mine, theirs = conn.to_client, conn.to_server
            feed_mine, feed_theirs = conn.conversation.from_server, conn.conversation.from_client
        if flags & packets.SYN:  # SYN-ACK from the server
            mine.syn(seq)
        if flags & packets.ACK:
            theirs.peer_acked(ack)
            if theirs.pending and theirs.acked > (theirs.next or 0):
                # This side acknowledges bytes the capture lost: what waits behind the hole goes first (a reply
                # must not reach the conversation before the request it answers).
                skipped = theirs.skip_hole()
                if skipped:
                    self._hole(t, conn, not outbound)
                for chunk in skipped:
                    feed_theirs(chunk)
        if payload and not flags & packets.SYN:
            following = mine.next
            if following is not None and not mine.pending and \
                    following + ((seq - (following % _MOD) + _HALF) % _MOD) - _HALF == following:
                # In order with nothing waiting (nearly every segment): the bytes go straight to the parser.
                conversation = conn.conversation
                if conversation.client_bytes(t, payload) if outbound else \
                        conversation.server_bytes(t, following, payload):
                    mine.next = following + len(payload)
                    return
        if payload:
            base = theirs.next
            if base is not None:  # `theirs.unwrap(ack)`, inlined: per packet
                ack = base + ((ack - (base % _MOD) + _HALF) % _MOD) - _HALF
            chunks = mine.add(t, seq + (1 if flags & packets.SYN else 0), payload, ack)
            if chunks and chunks[0].after_hole and mine.holes:
                self._hole(t, conn, outbound)
            for chunk in chunks:
                feed_mine(chunk)

    def _hole(self, t: float, conn: Connection, outbound: bool) -> None:
        side = "requests" if outbound else "replies"
        self.result.gaps.append(trace.Gap(
            t=t, until=t, source=SOURCE, target=self.target,
            reason=f"wire: bytes of the {side} of {conn.conversation.client} were never captured; its "
                   "conversation was resynchronised at the next command"))

    def _close(self, key: tuple[str, str], conn: Connection) -> None:
        for stream, feed in ((conn.to_server, conn.conversation.from_client),
                             (conn.to_client, conn.conversation.from_server)):
            for chunk in stream.skip_hole():
                feed(chunk)
        for route in conn.routes:
            self._routes.pop(route, None)
        conversation = conn.conversation
        conversation.finish()
        self._done.extend(conversation.take())
        self.result.connections.append(Closed(conversation.client, conversation.mode, conversation.subscribed,
                                              conversation.resyncs, conversation.unanswered))
        if conversation.mode == "tls":
            self.result.notes.append(f"connection {conversation.client} is TLS: its commands are unreadable")
        elif conversation.mode == "unreadable":
            self.result.notes.append(f"connection {conversation.client} does not speak RESP: skipped")
        self.live.pop(key, None)

    def status(self, t: float, status: dict[str, object]) -> None:
        event = status.get("ev")
        if event == "started":
            self.result.started = t
        elif event == "stopped":
            self.result.stopped = t
        elif event == "stats":
            drops = int(status.get("drops") or 0)  # type: ignore[call-overload]
            if drops:
                self.result.kernel_drops += drops
                since = float(status.get("since") or t)  # type: ignore[arg-type]
                self.result.gaps.append(trace.Gap(
                    t=since, until=t, source=SOURCE, target=self.target,
                    reason=f"wire: the kernel dropped {drops:,} packets in this window (the capture fell behind); "
                           "the connections they belonged to were resynchronised"))
        elif event == "skipped":
            count = int(status.get("packets") or 0)  # type: ignore[call-overload]
            budget = int(status.get("budget") or 0)  # type: ignore[call-overload]
            since = float(status.get("since") or t)  # type: ignore[arg-type]
            self.result.skipped += count
            self.result.gaps.append(trace.Gap(
                t=since, until=t, source=SOURCE, target=self.target,
                reason=f"wire: {count:,} packets in this window were not spooled: the unparsed spool had reached "
                       f"its disk budget ({budget / 2**30:.1f} GiB); the connections they belonged to were "
                       "resynchronised"))
        elif event == "truncated":
            self.result.notes.append("a packet larger than the capture buffer was cut short")

    def take(self) -> list[Exchange]:
        """The exchanges complete since the last `take`: closed connections' first, then each open one's."""
        out, self._done = self._done, []
        for conn in self.live.values():
            if conn.conversation.out:
                out.extend(conn.conversation.take())
        return out

    def finish(self) -> WireResult:
        """Every connection closed (the capture ended): the result, with the exchanges not taken yet."""
        for key, conn in list(self.live.items()):
            self._close(key, conn)
        self.result.exchanges.extend(self.take())
        return self.result


    def records(self, records: Iterable[Record]) -> None:
        """Spool records in order. The hot path: a plain IPv4 data or ACK segment of an open connection is found
        by its raw addresses and ports and goes straight to `_flow`, without a `Segment` or address strings."""
        decode, segment, flow, routes = packets.decode, self.segment, self._flow, self._routes
        unpack = _SEQ_ACK.unpack_from
        count = 0
        for kind, t, body in records:
            if kind != PACKET:
                if kind == STATUS:
                    self.status(t, body)
                continue
            count += 1
            plain_v4 = body[0] == 0x45 and body[9] == 6 and len(body) >= 40
            if plain_v4:
                route = routes.get(body[12:24])
                if route is not None:
                    seq, ack, offset, flags = unpack(body, 24)
                    total = (body[2] << 8) | body[3]
                    start = 20 + (offset >> 4) * 4
                    if not flags & _OPEN_CLOSE and start <= total <= len(body):
                        flow(route[0], route[1], t, flags, seq, ack, body[start:total])
                        continue
            seg = decode(t, body)
            if seg is None:
                continue
            conn = segment(seg)
            if conn is not None and plain_v4 and not conn.routes:
                forward, backward = body[12:24], body[16:20] + body[12:16] + body[22:24] + body[20:22]
                outbound = seg.dport == self.port
                conn.routes = (forward, backward)
                routes[forward] = (conn, outbound)
                routes[backward] = (conn, not outbound)
        self.result.packets += count


_SEQ_ACK = struct.Struct("!IIBB")
_MOD, _HALF = 1 << 32, 1 << 31
_OPEN_CLOSE = packets.SYN | packets.FIN | packets.RST


def parse_records(records: Iterable[Record], port: int, target: str = "") -> WireResult:
    reassembler = Reassembler(port, target)
    reassembler.records(records)
    return reassembler.finish()


def parse_spool(path: Path, port: int, target: str = "") -> WireResult:
    """Every exchange the spool holds, per connection in order, and its gaps (kernel drops, holes)."""
    return parse_records(read_spool(path), port, target)
