"""TCP reassembly for one connection and direction: the bytes in order, each once, holes said out loud.

A retransmission (data already delivered) is trimmed away, an out-of-order segment waits for the bytes before it.
A hole the capture will never fill (the kernel dropped the packet, or the peer had already acknowledged bytes we
never saw) is skipped: `Delivered.after_hole` tells the reader to resynchronise there. Sequence numbers are kept
as 64-bit offsets so that streams longer than 4 GiB wrap correctly.
"""

from __future__ import annotations

from typing import NamedTuple

_MOD = 1 << 32
_HALF = 1 << 31
MAX_PENDING = 8 << 20  # bytes waiting behind a hole before it is declared permanent


class Delivered(NamedTuple):
    t: float  # when the segment carrying these bytes was captured
    seq: int  # 64-bit offset of the first byte
    data: bytes
    ack: int  # 64-bit (in the other direction's numbering) or -1 when that direction is unknown
    after_hole: bool  # bytes before these were never seen: the reader resynchronises here
    segment_start: bool  # the data starts where a segment started (a natural place for a request to begin)


class Stream:
    """One direction of one connection."""

    __slots__ = ("acked", "holes", "next", "pending", "pending_bytes")

    def __init__(self) -> None:
        self.next: int | None = None  # 64-bit offset of the next byte expected
        self.pending: dict[int, tuple[float, bytes, int]] = {}  # seq64 -> (t, data, ack)
        self.pending_bytes = 0
        self.acked = -1  # the highest offset the peer acknowledged
        self.holes = 0

    def unwrap(self, seq: int) -> int:
        """A 32-bit sequence number as the 64-bit offset nearest to where the stream is."""
        if self.next is None:
            return seq
        delta = ((seq - (self.next % _MOD) + _HALF) % _MOD) - _HALF
        return self.next + delta

    def syn(self, seq: int) -> None:
        self.next = seq + 1
        self.pending.clear()
        self.pending_bytes = 0

    def peer_acked(self, ack: int) -> None:
        following = self.next
        if following is not None:
            ack = following + ((ack - (following % _MOD) + _HALF) % _MOD) - _HALF  # `unwrap`, inlined: per packet
            if ack > self.acked:
                self.acked = ack

    def add(self, t: float, seq: int, data: bytes, ack: int) -> list[Delivered]:
        """What this segment makes deliverable, in order."""
        if self.next is None:  # open before the capture: start at the first byte seen (the reader knows to sync)
            self.next = seq
            first = Delivered(t, seq, data, ack, False, True)
            self.next += len(data)
            return [first, *self._flush(False)]
        following = self.next
        seq = following + ((seq - (following % _MOD) + _HALF) % _MOD) - _HALF  # `unwrap`, inlined: per packet
        end = seq + len(data)
        if end <= self.next:
            return []  # a retransmission of what was delivered
        if seq < self.next:
            data = data[self.next - seq:]  # partly new: keep the new part
            seq = self.next
            start = False
        else:
            start = True
        if seq > self.next:
            if seq not in self.pending or len(self.pending[seq][1]) < len(data):
                self.pending_bytes += len(data) - len(self.pending.get(seq, (0, b"", 0))[1])
                self.pending[seq] = (t, data, ack)
            if self.acked > self.next or self.pending_bytes > MAX_PENDING:
                return self.skip_hole()
            return []
        self.next = end
        if not self.pending:
            return [Delivered(t, seq, data, ack, False, start)]
        return [Delivered(t, seq, data, ack, False, start), *self._flush(False)]

    def _flush(self, hole: bool) -> list[Delivered]:
        out: list[Delivered] = []
        while self.pending and self.next is not None:
            ready = [s for s in self.pending if s <= self.next]
            if not ready:
                break
            for seq in sorted(ready):
                t, data, ack = self.pending.pop(seq)
                self.pending_bytes -= len(data)
                end = seq + len(data)
                if end <= self.next:
                    continue
                cut = self.next - seq
                out.append(Delivered(t, self.next, data[cut:], ack, hole, cut == 0))
                hole = False
                self.next = end
        return out

    def skip_hole(self) -> list[Delivered]:
        """Give up on the missing bytes: go on from the first segment waiting, flagged as after a hole."""
        if not self.pending:
            return []
        self.holes += 1
        self.next = min(self.pending)
        return self._flush(True)
