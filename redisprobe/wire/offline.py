"""A wire spool read: packets to connections, connections to exchanges, drops to gaps.

Incremental: `Reassembler` takes records as the spool follower reads them during the capture, and `take()` hands
over the exchanges complete so far (a connection's in order); `parse_spool` reads a whole spool after the fact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from redisprobe import trace
from redisprobe.wire import packets
from redisprobe.wire.conversation import Conversation, Exchange
from redisprobe.wire.spool import PACKET, STATUS, Record, read_spool
from redisprobe.wire.tcp import Stream

SOURCE = "wire"


@dataclass
class Connection:
    conversation: Conversation
    to_server: Stream = field(default_factory=Stream)
    to_client: Stream = field(default_factory=Stream)
    closing: int = 0  # FINs seen


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

    def segment(self, seg: packets.Segment) -> None:
        if seg.dport == self.port:
            key, outbound = (seg.src, seg.dst), True
        elif seg.sport == self.port:
            key, outbound = (seg.dst, seg.src), False
        else:
            return
        flags = seg.flags
        conn = self.live.get(key)
        if flags & packets.SYN and not flags & packets.ACK and outbound:  # a new connection from the client
            if conn is not None:
                self._close(key, conn)
            conn = Connection(Conversation(client=key[0], server=key[1], clean=True))
            conn.to_server.syn(seg.seq)
            self.live[key] = conn
            return
        if conn is None:
            if not seg.payload:
                return
            conn = Connection(Conversation(client=key[0], server=key[1], clean=False))
            self.live[key] = conn
        mine, theirs = (conn.to_server, conn.to_client) if outbound else (conn.to_client, conn.to_server)
        feed_mine, feed_theirs = (conn.conversation.from_client, conn.conversation.from_server) if outbound else \
            (conn.conversation.from_server, conn.conversation.from_client)
        if flags & packets.SYN:  # SYN-ACK from the server
            mine.syn(seg.seq)
        if flags & packets.ACK:
            theirs.peer_acked(seg.ack)
            if theirs.pending and theirs.acked > (theirs.next or 0):
                # This side acknowledges bytes the capture lost: what waits behind the hole goes first (a reply
                # must not reach the conversation before the request it answers).
                skipped = theirs.skip_hole()
                if skipped:
                    self._hole(seg, conn, not outbound)
                for chunk in skipped:
                    feed_theirs(chunk)
        if seg.payload:
            ack = theirs.unwrap(seg.ack)
            chunks = mine.add(seg.t, seg.seq + (1 if flags & packets.SYN else 0), seg.payload, ack)
            if chunks and chunks[0].after_hole and mine.holes:
                self._hole(seg, conn, outbound)
            for chunk in chunks:
                feed_mine(chunk)
        if flags & packets.RST:
            self._close(key, conn)
        elif flags & packets.FIN:
            conn.closing += 1
            if conn.closing >= 2:
                self._close(key, conn)

    def _hole(self, seg: packets.Segment, conn: Connection, outbound: bool) -> None:
        side = "requests" if outbound else "replies"
        self.result.gaps.append(trace.Gap(
            t=seg.t, until=seg.t, source=SOURCE, target=self.target,
            reason=f"wire: bytes of the {side} of {conn.conversation.client} were never captured; its "
                   "conversation was resynchronised at the next command"))

    def _close(self, key: tuple[str, str], conn: Connection) -> None:
        for stream, feed in ((conn.to_server, conn.conversation.from_client),
                             (conn.to_client, conn.conversation.from_server)):
            for chunk in stream.skip_hole():
                feed(chunk)
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
        decode, segment = packets.decode, self.segment
        count = 0
        for kind, t, body in records:
            if kind == PACKET:
                count += 1
                seg = decode(t, body)
                if seg is not None:
                    segment(seg)
            elif kind == STATUS:
                self.status(t, body)
        self.result.packets += count


def parse_records(records: Iterable[Record], port: int, target: str = "") -> WireResult:
    reassembler = Reassembler(port, target)
    reassembler.records(records)
    return reassembler.finish()


def parse_spool(path: Path, port: int, target: str = "") -> WireResult:
    """Every exchange the spool holds, per connection in order, and its gaps (kernel drops, holes)."""
    return parse_records(read_spool(path), port, target)
