"""One connection's conversation: requests paired with their replies, in order.

Redis answers a connection's commands in the order they came, so pipelining needs only a queue. The exceptions
are handled here: MULTI (each queued command answered QUEUED, the EXEC array answering them all at EXEC's time),
CLIENT REPLY OFF/SKIP, RESP3 pushes (never an answer), pub/sub in RESP2 and MONITOR (the connection stops being
request/reply: recognised and skipped), TLS (unreadable: named, not guessed). The db is tracked per connection
through SELECT and RESET; a connection open before the capture has an unknown db until it SELECTs.

A stream joined mid-way (open before the capture, or after a hole) is resynchronised on a request boundary at a
moment the server had nothing unacknowledged in flight: the client's segment starts a command and acknowledges
every reply byte the server had sent, so the replies from that acknowledgement on answer that command and the
following ones. Every exchange after a resynchronisation says so (`resynced`).

Speed: the offline parse must keep up with a loaded server, so RESP is read by hiredis's C reader (a dependency of
redis-py's fast path) wherever a stream starts at a RESP boundary; `resp`'s pure-Python parser reads the rest (an
inline command stream, a telnet session). hiredis reads RESP3 too; it returns a big number (`(`) as its digits,
and never sees an attribute (`|`), which Redis sends only to `DEBUG PROTOCOL attrib`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import hiredis  # type: ignore[import-not-found,unused-ignore]

from redisprobe.producers.wire import resp
from redisprobe.producers.wire.tcp import Delivered

REFUSED_PREFIXES = ("ERR unknown command", "ERR wrong number of arguments", "ERR unknown subcommand", "NOAUTH ",
                    "NOPERM ", "OOM ", "READONLY ", "MISCONF ", "MOVED ", "ASK ", "CROSSSLOT ", "CLUSTERDOWN ",
                    "TRYAGAIN ", "LOADING ", "BUSY ", "MASTERDOWN ", "NOREPLICAS ", "ERR Can't execute")
"""Errors the server gives before running a command (MONITOR never shows these commands); each code is a whole
word (BUSYGROUP and BUSYKEY are commands that ran and said no)."""

_SUBSCRIBE = frozenset({b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE"})
_UNSUBSCRIBE = frozenset({b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE"})
_REDACTED = b"(redacted)"
_SPECIAL = frozenset({b"AUTH", b"HELLO", b"MIGRATE", b"CLIENT", b"MULTI", b"EXEC", b"DISCARD"}) | _SUBSCRIBE | \
    _UNSUBSCRIBE
"""Commands `_request` looks at more closely (secrets, transactions, reply modes, pub/sub)."""
_STATEFUL = frozenset({b"SELECT", b"RESET", b"MONITOR", b"HELLO"}) | _SUBSCRIBE
"""Commands whose successful reply changes how the connection goes on (`_reply` looks at them)."""


@dataclass(slots=True)
class Exchange:
    """One command seen on the wire and what the server answered."""

    t: float  # when the request was complete (for a command queued in MULTI: when EXEC was)
    client: str
    server: str
    args: list[bytes]
    db: int | None = None  # None: the connection was open before the capture and has not SELECTed since
    reply: Any = None
    error: str | None = None
    replied: float | None = None  # when the reply was complete; None: no reply seen
    resynced: bool = False  # the connection was joined mid-stream (open before the capture, or after a hole)
    queued: bool = False  # ran inside MULTI/EXEC
    refused: bool = False  # the server did not run it (refused before running, or its transaction was not run)

    @property
    def latency(self) -> float | None:
        return None if self.replied is None else max(0.0, self.replied - self.t)


class _Unparsed:
    """Bytes received and not parsed yet, joined only once a value can be complete: a 100 MB value arriving in
    64 KiB segments is copied once, not once per segment."""

    __slots__ = ("need", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.need = 0  # total size before parsing is worth trying again

    def add(self, data: bytes) -> bool:
        """Whether a parse may now succeed."""
        self.parts.append(data)
        self.size += len(data)
        return self.size >= self.need

    def take(self) -> bytes:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts, self.size, self.need = [], 0, 0
        return data

    def keep(self, rest: bytes, need: int = 0) -> None:
        """What follows the last complete value, and the size it must reach to complete the next."""
        self.parts = [rest] if rest else []
        self.size, self.need = len(rest), need

    def clear(self) -> None:
        self.keep(b"")

    def __bool__(self) -> bool:
        return self.size > 0


_Waiting = tuple[Exchange, str]  # the request, and its kind: "plain", "multi", "queue", "exec", "discard"


def _reader() -> hiredis.Reader:
    return hiredis.Reader(replyError=resp.RespError)


@dataclass
class Conversation:
    client: str
    server: str
    clean: bool  # both SYNs seen: both streams start at a boundary, db 0
    mode: str = "rr"  # rr (request/reply), pubsub, monitor, tls, unreadable
    db: int | None = None
    out: list[Exchange] = field(default_factory=list)
    resyncs: int = 0
    subscribed: bool = False  # a RESP3 pub/sub client: still request/reply, its messages (pushes) skipped
    unanswered: int = 0  # requests whose reply was lost in a hole
    _req: _Unparsed = field(default_factory=_Unparsed)
    _rep: _Unparsed = field(default_factory=_Unparsed)
    _req_synced: bool = False
    _rep_from: int | None = None  # unsynced reply stream: the offset the replies to the sync point start at
    _rep_synced: bool = False
    _joined: bool = False  # exchanges from here on are flagged resynced
    _waiting: deque[_Waiting] = field(default_factory=deque)
    _multi_open: bool = False
    _tx: list[Exchange] | None = None
    _resp3: bool = False
    _reply_off: bool = False
    _skip_next: bool = False
    _server_seen: int = -1  # offset after the last server byte seen
    _talked: bool = False  # exchanges were taken already (`out` no longer says whether any were seen)
    _hreq: hiredis.Reader | None = None  # the request stream's C reader (None: `_req` and the Python parser)
    _hrep: hiredis.Reader | None = None  # the reply stream's

    def __post_init__(self) -> None:
        if self.clean:
            self.db = 0
            self._req_synced = self._rep_synced = True
            self._hrep = _reader()

    # -- input -----------------------------------------------------------------------------------------------

    def from_client(self, chunk: Delivered) -> None:
        if self.mode != "rr":
            return
        if chunk.after_hole:
            self._lost_sync()
        if not self._req_synced:
            if not self._try_sync(chunk):
                return
            self._req.clear()
            self._hreq = _reader()  # a sync point starts a RESP array
        elif self._hreq is None and not self._req:
            if self.clean and not self.out and not self._talked and not self._waiting and chunk.data[:1] == b"\x16":
                self.mode = "tls"
                return
            if chunk.data[:1] == b"*":
                self._hreq = _reader()
        if self._hreq is not None:
            self._read_requests_fast(chunk.t, chunk.data)
        elif self._req.add(chunk.data):
            self._read_requests(chunk.t)

    def client_bytes(self, t: float, data: bytes) -> bool:
        """In-order request bytes with no hole before them: read at once when the stream is synced and read by
        hiredis (what `from_client` would do); False: hand them to `from_client` instead."""
        if self._hreq is None or not self._req_synced or self.mode != "rr":
            return False
        self._read_requests_fast(t, data)
        return True

    def server_bytes(self, t: float, seq: int, data: bytes) -> bool:
        """As `client_bytes`, for reply bytes starting at offset `seq`."""
        if self._hrep is None or not self._rep_synced or self.mode != "rr":
            return False
        end = seq + len(data)
        if end > self._server_seen:
            self._server_seen = end
        self._read_replies_fast(t, data)
        return True

    def from_server(self, chunk: Delivered) -> None:
        self._server_seen = max(self._server_seen, chunk.seq + len(chunk.data))
        if self.mode != "rr":
            return
        if chunk.after_hole and self._rep_synced:
            self._lost_sync()
            return
        # (a hole before the place a sync point waits for is no loss: those replies were given up already)
        data = chunk.data
        if not self._rep_synced:
            self._recognise(data)
            if self._rep_from is None or self.mode != "rr":
                return
            if chunk.seq + len(data) <= self._rep_from:
                return  # answers to commands sent before the sync point
            if chunk.seq > self._rep_from:  # the bytes the sync point names were never seen
                self._lost_sync()
                return
            data = data[self._rep_from - chunk.seq:]
            self._rep_synced = True
            self._rep.clear()
            self._hrep = _reader()
        if self._hrep is not None:
            self._read_replies_fast(chunk.t, data)
        elif self._rep.add(data):
            self._read_replies(chunk.t)

    def finish(self) -> None:
        """The capture ended: requests still waiting are emitted without a reply, in order."""
        self._drop_waiting()

    def take(self) -> list[Exchange]:
        """The exchanges complete so far, handed over (a streaming parse takes them as it goes)."""
        out, self.out = self.out, []
        self._talked = self._talked or bool(out)
        return out

    # -- synchronisation -------------------------------------------------------------------------------------

    def _try_sync(self, chunk: Delivered) -> bool:
        data = chunk.data
        if data[:2] == b"\x17\x03" or data[:2] == b"\x16\x03":
            self.mode = "tls"
            return False
        if not chunk.segment_start or not resp.looks_like_request(data):
            return False
        if chunk.ack >= 0 and self._server_seen > chunk.ack:
            return False  # the server had replies in flight: they may answer commands sent before this one
        self._req_synced = True
        self._rep_synced = False
        self._rep_from = chunk.ack
        self._joined = True
        self.resyncs += 1
        return True

    def _lost_sync(self) -> None:
        """A hole: what was waiting will never be answered readably; start over at the next sync point."""
        self._drop_waiting(lost=True)
        self._req.clear()
        self._rep.clear()
        self._hreq = self._hrep = None
        self._req_synced = self._rep_synced = False
        self._rep_from = None
        self._multi_open, self._tx = False, None

    def _recognise(self, data: bytes) -> None:
        """A connection joined mid-way that is not request/reply: pub/sub messages or MONITOR lines."""
        if data.startswith((b"*3\r\n$7\r\nmessage\r\n", b"*4\r\n$8\r\npmessage\r\n", b"*3\r\n$9\r\nsubscribe",
                            b">3\r\n$7\r\nmessage\r\n", b"*3\r\n$8\r\nsmessage\r\n")):
            self.mode = "pubsub"
        elif data[:1] == b"+" and data[1:2].isdigit() and b" [" in data[:40]:
            self.mode = "monitor"

    # -- requests --------------------------------------------------------------------------------------------

    def _read_requests(self, t: float) -> None:
        buf, pos = self._req.take(), 0
        need = 0
        while pos < len(buf):
            try:
                args, pos = resp.parse_request(buf, pos)
            except resp.Incomplete as more:
                need = more.need - pos if more.need else 0
                break
            except resp.Malformed:
                if self.clean and not self._joined and not self.out and not self._talked and not self._waiting:
                    self.mode = "unreadable"
                else:
                    self._lost_sync()
                return
            if args:
                self._request(t, args)
            if self.mode != "rr":
                return
        self._req.keep(buf[pos:] if pos else buf, need)

    def _read_requests_fast(self, t: float, data: bytes) -> None:
        """Every request `data` completes, read by hiredis: the hot loop of the offline parse."""
        reader = self._hreq
        assert reader is not None
        reader.feed(data)
        waiting = self._waiting
        client, server, joined = self.client, self.server, self._joined
        try:
            while True:
                args = reader.gets()
                if args is False:
                    return
                if type(args) is not list:
                    raise resp.Malformed("a request is an array")
                for arg in args:
                    if type(arg) is not bytes:
                        raise resp.Malformed("a request's arguments are bulk strings")
                if not args:
                    continue
                if args[0].upper() not in _SPECIAL and not (self._multi_open or self._reply_off or self._skip_next):
                    waiting.append((Exchange(t, client, server, args, None, None, None, None, joined), "plain"))
                    continue
                self._request(t, args)
                if self.mode != "rr":
                    return
        except (hiredis.ProtocolError, resp.Malformed):
            if self.clean and not self._joined and not self.out and not self._talked and not self._waiting:
                self.mode = "unreadable"
            else:
                self._lost_sync()

    def _request(self, t: float, args: list[bytes]) -> None:
        name = args[0].upper()
        if name not in _SPECIAL and not self._multi_open and not self._reply_off and not self._skip_next:
            self._waiting.append((Exchange(t, self.client, self.server, args, resynced=self._joined), "plain"))
            return  # the common case, kept short: the offline parse spends its time here
        args = _redacted(name, args)
        exchange = Exchange(t=t, client=self.client, server=self.server, args=args, resynced=self._joined)
        if self._reply_off or self._skip_next:
            self._skip_next = False
            if name == b"CLIENT" and len(args) > 2 and args[1].upper() == b"REPLY" and args[2].upper() == b"ON":
                self._reply_off = False
                self._waiting.append((exchange, "plain"))
                return
            self._emit(exchange)
            return
        if name == b"CLIENT" and len(args) > 2 and args[1].upper() == b"REPLY":
            mode = args[2].upper()
            if mode in (b"OFF", b"SKIP"):
                self._reply_off = mode == b"OFF"
                self._skip_next = mode == b"SKIP"
                self._emit(exchange)
                return
        if self._resp3 and (name in _SUBSCRIBE or name in _UNSUBSCRIBE):
            self.subscribed = self.subscribed or name in _SUBSCRIBE
            self._emit(exchange)  # answered by pushes, not replies
            return
        if name == b"MULTI":
            kind = "queue" if self._multi_open else "multi"
            self._multi_open = True
        elif name == b"EXEC" and self._multi_open:
            kind, self._multi_open = "exec", False
        elif name == b"DISCARD" and self._multi_open:
            kind, self._multi_open = "discard", False
        elif self._multi_open:
            kind = "queue"
        else:
            kind = "plain"
        self._waiting.append((exchange, kind))

    # -- replies ---------------------------------------------------------------------------------------------

    def _read_replies(self, t: float) -> None:
        buf, pos = self._rep.take(), 0
        need = 0
        while pos < len(buf):
            try:
                value, pos = resp.parse(buf, pos)
            except resp.Incomplete as more:
                need = more.need - pos if more.need else 0
                break
            except resp.Malformed:
                self._lost_sync()
                return
            if isinstance(value, resp.Push):
                continue
            if not self._waiting:  # a reply to nothing we saw: we are not where we thought
                self._lost_sync()
                return
            self._reply(self._waiting.popleft(), value, t)
            if self.mode != "rr":
                return
        self._rep.keep(buf[pos:] if pos else buf, need)

    def _read_replies_fast(self, t: float, data: bytes) -> None:
        """Every reply `data` completes, read by hiredis, each paired with the oldest request waiting."""
        reader = self._hrep
        assert reader is not None
        reader.feed(data)
        waiting, out = self._waiting, self.out
        try:
            while True:
                value = reader.gets()
                if value is False:
                    return
                if type(value) is hiredis.PushNotification:
                    continue
                if not waiting:  # a reply to nothing we saw: we are not where we thought
                    self._lost_sync()
                    return
                pair = waiting.popleft()
                exchange = pair[0]
                if (pair[1] == "plain" and type(value) is not resp.RespError
                        and exchange.args[0].upper() not in _STATEFUL):
                    exchange.replied, exchange.reply, exchange.db = t, value, self.db
                    out.append(exchange)
                    continue
                self._reply(pair, value, t)
                if self.mode != "rr":
                    return
        except hiredis.ProtocolError:
            self._lost_sync()

    def _reply(self, waiting: _Waiting, value: Any, t: float) -> None:
        exchange, kind = waiting
        _answer(exchange, value, t)
        name = exchange.args[0].upper()
        if kind == "multi":
            if exchange.error is None:
                self._tx = []
            self._emit(exchange)
        elif kind == "queue":
            if exchange.error is None and self._tx is not None:
                self._tx.append(exchange)  # answered QUEUED: it runs (or not) at EXEC
            else:
                exchange.refused = True
                self._emit(exchange)
        elif kind in ("exec", "discard"):
            queued, self._tx = self._tx or [], None
            results = value if kind == "exec" and isinstance(value, list) else None
            for index, command in enumerate(queued):
                command.queued = True
                command.t, command.replied = exchange.t, t
                if results is not None and index < len(results):
                    _answer(command, results[index], t)
                else:
                    command.reply = None
                    command.error = f"not run: {'DISCARD' if kind == 'discard' else 'the transaction was aborted'}"
                    command.refused = True
                self._emit(command)
            self._emit(exchange)
        else:
            self._emit(exchange)
            if exchange.error is None:
                if name in _SUBSCRIBE and not self._resp3:
                    self.mode = "pubsub"
                elif name == b"MONITOR":
                    self.mode = "monitor"
                elif name == b"HELLO" and len(exchange.args) > 1 and exchange.args[1] == b"3":
                    self._resp3 = True
                elif name == b"HELLO" and len(exchange.args) > 1 and exchange.args[1] == b"2":
                    self._resp3 = False
        if self.mode != "rr":
            self._drop_waiting()

    def _emit(self, exchange: Exchange) -> None:
        """Emitted in the order the server ran them; the db is the one the command ran in (MONITOR's)."""
        name = exchange.args[0].upper()
        if not exchange.refused and exchange.error is None and exchange.replied is not None:
            if name == b"SELECT" and len(exchange.args) == 2 and exchange.args[1].isdigit():
                self.db = int(exchange.args[1])
            elif name == b"RESET":
                self.db, self._resp3 = 0, False
        elif exchange.error is not None and not exchange.queued and exchange.error.startswith(REFUSED_PREFIXES):
            exchange.refused = True
        exchange.db = self.db
        self.out.append(exchange)

    def _drop_waiting(self, lost: bool = False) -> None:
        while self._waiting:
            exchange = self._waiting.popleft()[0]
            if lost:
                self.unanswered += 1
            self._emit(exchange)
        for exchange in self._tx or ():
            exchange.queued = True
            self._emit(exchange)
        self._tx = None


def _answer(exchange: Exchange, value: Any, t: float) -> None:
    exchange.replied = t
    if isinstance(value, resp.RespError):
        exchange.error, exchange.reply = str(value), None
    else:
        exchange.reply, exchange.error = value, None


def _redacted(name: bytes, args: list[bytes]) -> list[bytes]:
    """Secrets never leave the capture: AUTH's arguments, HELLO's and MIGRATE's AUTH and AUTH2 values."""
    if name == b"AUTH":
        return [args[0]] + [_REDACTED] * (len(args) - 1)
    if name in (b"HELLO", b"MIGRATE"):
        out = list(args)
        index = 1
        while index < len(out):
            word = out[index].upper()
            take = 2 if word == b"AUTH2" or (word == b"AUTH" and name == b"HELLO") else 1 if word == b"AUTH" else 0
            for offset in range(1, take + 1):
                if index + offset < len(out):
                    out[index + offset] = _REDACTED
            index += take + 1
        return out
    return args
