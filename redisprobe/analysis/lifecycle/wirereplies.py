"""Replies read off the network (`trace.WireReply`, `monitor --source wire|both`) settle what MONITOR leaves open.

A read's reply says whether its key existed: a nil GET is a miss even of a key the capture never saw made and its
baseline did not cover, and a value means the key was there (never a miss). An EXPIRE that replied 0 set no TTL,
one that replied 1 (or a SET with EX that replied OK) did, keyspace event or not. A blocking pop never served
(a nil reply, or none by the end) waited on an absent key.
A command the server refused (it never reached MONITOR) is counted per server, error, connection and command for
the rules that name who sent it (`write-rejected`, `cross-slot`, `cluster-unaware-client`).

Each reply corrects the fold's verdict on the very command it answers: the same connection, the same key, at the
time the command was sent (with `both`, MONITOR's line carries the server's clock: close, not equal). Without
replies nothing here runs, so a MONITOR trace folds exactly as before.
"""

from __future__ import annotations

from typing import Any

from redisprobe import trace
from redisprobe.analysis.lifecycle import expiry, lives
from redisprobe.analysis.lifecycle.coverage import known_absent
from redisprobe.analysis.lifecycle.limits import KS_MATCH_WINDOW, LOG_CAP, MAX_RECORDS
from redisprobe.analysis.lifecycle.records import Slot
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C

_COMMANDS = C.COMMANDS
ROWS_SEARCHED = 256
"""Timeline rows looked back through to replace the row the fold wrote for a read its reply has now settled."""


class WireRefused:
    """Commands one connection sent that the server refused with one error code: counted, a few kept whole."""

    __slots__ = ("count", "db", "examples", "first", "last", "peer")

    def __init__(self, peer: str, t: float, db: int) -> None:
        self.peer = peer
        self.db = db
        self.count = 0
        self.first = t
        self.last = t
        self.examples: list[tuple[float, list[bytes], str]] = []  # (when, the command, the error)


def on_wire_reply(st: FoldState, event: trace.WireReply) -> None:
    st.wire_servers.add(event.target)
    args = event.command
    if not args:  # a write's reply, or a refusal (the common cases first: this runs once per command)
        if event.refused:
            _refused(st, st.server_of(event.target), event)
        return
    if len(args) < 2 or event.error is not None:
        return
    server = st.server_of(event.target)
    if st.baselines and _ours(st, server, event.peer):
        return
    spec = _COMMANDS.get(args[0]) or C.lookup(args[0])
    if spec.blocking or (spec.block_option and C.block_timeout(args, spec.block_option) is not None):
        if event.reply is None:  # it timed out, or was still blocked when the capture ended: never served
            st.unserved.setdefault((server, event.peer), []).append(event.sent)
        return
    if "no-reply" in event.flags or ("db-unknown" in event.flags and not _db_agrees(st, server, event)):
        return
    if spec.kind == C.TTL and spec.ttl_form in C.EXPIRE_FORMS:
        _ttl_reply(st, server, event, args)
        return
    if spec.kind == C.SET:
        _set_reply(st, server, event, args)
        return
    for key, existed in existence(spec, args, event.reply):
        if existed:
            _found(st, server, event, args, key)
        else:
            _absent(st, server, event, args, key)


def existence(spec: C.Command, args: list[bytes], reply: Any) -> list[tuple[bytes, bool]]:
    """The keys whose existence this reply settles, each with whether it existed."""
    says = spec.reply_says
    key = args[1]
    if says == C.REPLY_VALUE:
        return [(key, reply is not None)]
    if says == C.REPLY_COUNT:
        return [(key, reply > 0)] if isinstance(reply, int) and not isinstance(reply, bool) else []
    if says == C.REPLY_MEMBERS:
        return [(key, bool(reply))] if isinstance(reply, list | dict) else []
    if says == C.REPLY_TTL:
        return [(key, reply != -2)] if isinstance(reply, int) and not isinstance(reply, bool) else []
    if says == C.REPLY_TYPE:
        return [(key, reply != "none")] if isinstance(reply, str) else []
    if says == C.REPLY_FOUND:
        if isinstance(reply, list):
            keys = spec.keys(args)
            if len(keys) == len(reply) and len(keys) > 1:  # MGET: one value per key
                return [(k, True) for k, value in zip(keys, reply, strict=True) if value is not None]
            return [(key, True)] if any(value is not None for value in reply) else []
        return [(key, True)] if reply is not None and reply != "" else []
    return []


def unserved(st: FoldState, server: str, peer: str, t: float) -> bool:
    """Whether the wire saw this connection's blocking pop sent at `t` never served (a nil reply, or none by the
    end): the key was absent all along, whatever the baseline could say."""
    return any(abs(sent - t) <= KS_MATCH_WINDOW for sent in st.unserved.get((server, peer), ()))


def _ours(st: FoldState, server: str, peer: str) -> bool:
    """The baseline's own connection: its TYPE and PTTL replies are the baseline's business, already in it."""
    bases = st.baselines.get(server)
    return bases is not None and any(base.peer == peer for base in bases.values())


def _db_agrees(st: FoldState, server: str, event: trace.WireReply) -> bool:
    """A connection open before the capture that never SELECTed: its db is a guess (0), kept only where CLIENT
    LIST does not say otherwise."""
    client_id = st.attributor.client_at(server, event.peer, event.sent)
    info = st.attributor.client_info(server, client_id) if client_id is not None else None
    return info is None or info.db == event.db


def _miss_at(slot: Slot | None, peer: str, t: float) -> int | None:
    """Where, in the key's miss log, the fold put the miss this connection's read at `t` made (the nearest in time:
    a connection may read one key many times a second)."""
    best, gap = None, KS_MATCH_WINDOW
    for index, (when, who, _args, _certain) in enumerate(slot.miss_log or () if slot is not None else ()):
        if who[1] == peer and abs(when - t) <= gap:
            best, gap = index, abs(when - t)
    return best


def _absent(st: FoldState, server: str, event: trace.WireReply, args: list[bytes], key: bytes) -> None:
    """The server said the key did not exist when this read ran."""
    db, t = event.db, event.sent
    slot = st.slots.get((server, db, key))
    index = _miss_at(slot, event.peer, t)
    if index is not None:
        assert slot is not None and slot.miss_log is not None
        when, who, margs, _certain = slot.miss_log[index]
        slot.miss_log[index] = (when, who, margs, True)
        return
    life = slot.live if slot is not None else None
    if life is not None and (life.created_at is None or life.created_at <= t):
        return  # the fold counted a hit: its own verdict stands (the reply may answer another db's key)
    if not _unknown(st, server, db, key, t, slot):
        return  # the fold counted this miss itself (its log keeps the first few only)
    _drop_row(st, t, db, key, "unknown")
    lives.miss(st, server, db, event.peer, 0, t, args, key, slot, certain=True)


def _unknown(st: FoldState, server: str, db: int, key: bytes, t: float, slot: Slot | None) -> bool:
    """Whether the fold called a read of this absent key unknown rather than a miss (the baseline did not cover it:
    it may have existed since before the capture)."""
    return bool(st.baselines) and (slot is None or not slot.count) and known_absent(st, server, db, key, t) is False


def _found(st: FoldState, server: str, event: trace.WireReply, args: list[bytes], key: bytes) -> None:
    """The server answered with the key's value: it existed, whatever the capture saw of it."""
    db, t = event.db, event.sent
    slot = st.slots.get((server, db, key))
    if slot is not None and slot.live is not None and slot.miss_log is None:
        return  # a hit, as the fold had it (the commonest read)
    index = _miss_at(slot, event.peer, t)
    if index is not None:
        assert slot is not None and slot.miss_log is not None
        del slot.miss_log[index]
        slot.misses -= 1
        if not slot.miss_log:
            slot.miss_log = None
        _drop_row(st, t, db, key, "missed")
    elif slot is not None and slot.live is not None:
        return  # a hit, as the fold had it
    elif _unknown(st, server, db, key, t, slot):
        _drop_row(st, t, db, key, "unknown")
    elif slot is not None and slot.misses > 0:
        slot.misses -= 1  # a miss the fold counted past its log
    if slot is None:
        slot = st.slot(server, db, key)
    if slot.live is None and not slot.count:  # first sight: it was made before the capture
        life = lives.create(st, slot, t, None, None, 0, preexisting=True)
        life.reads += 1
        life.readers = {event.peer: [1, t, 0]}


def _drop_row(st: FoldState, t: float, db: int, key: bytes, effect: str) -> None:
    """Remove the timeline row the fold wrote for this read (a miss, or 'unknown'), now that its reply settled it."""
    rows = st.rows
    for index in range(len(rows) - 1, max(-1, len(rows) - 1 - ROWS_SEARCHED), -1):
        row = rows[index]
        if row[4] == key and row[2] == db and abs(row[0] - t) <= KS_MATCH_WINDOW and row[5].startswith(effect):
            del rows[index]
            return


def _ttl_reply(st: FoldState, server: str, event: trace.WireReply, args: list[bytes]) -> None:
    """EXPIRE and friends reply 1 when they set the TTL and 0 when they did nothing."""
    reply = event.reply
    if not isinstance(reply, int) or isinstance(reply, bool):
        return
    slot = st.slots.get((server, event.db, args[1]))
    for record in reversed(slot.ttl_recent or ()) if slot is not None else ():
        if record.who[1] == event.peer and record.args == args and abs(record.t - event.sent) <= KS_MATCH_WINDOW:
            expiry.ttl_verdict(st, slot, record, bool(reply), "the command replied 0")  # type: ignore[arg-type]
            record.confirmed = True
            return


def _set_reply(st: FoldState, server: str, event: trace.WireReply, args: list[bytes]) -> None:
    """A SET with EX/PX (or SETEX) that replied OK (or, with GET, the old value) wrote the key and its TTL: no
    keyspace event is needed to say so (one missing may only mean the subscription was not up yet)."""
    if event.reply is None:
        return  # NX/XX: it did nothing, as the fold decided from what it knew
    slot = st.slots.get((server, event.db, args[1]))
    for record in reversed(slot.ttl_recent or ()) if slot is not None else ():
        if record.who[1] == event.peer and record.args[:2] == args and abs(record.t - event.sent) <= KS_MATCH_WINDOW:
            if not record.effective and record.reason == expiry.NO_EXPIRE_EVENT:  # judged before a slow reply came
                expiry.ttl_verdict(st, slot, record, True, "")  # type: ignore[arg-type]
            if record.effective:
                record.confirmed = True
            return


def _refused(st: FoldState, server: str, event: trace.WireReply) -> None:
    code = (event.error or "").split(" ", 1)[0].upper()
    if not code or not event.refused:
        return
    command = event.refused[0].decode("latin-1").lower()
    key = (server, code, event.peer, command)
    found = st.wire_refused.get(key)
    if found is None:
        if len(st.wire_refused) >= MAX_RECORDS:
            return
        found = st.wire_refused[key] = WireRefused(event.peer, event.sent, event.db)
    found.count += 1
    found.last = event.sent
    if len(found.examples) < LOG_CAP:
        found.examples.append((event.sent, event.refused, event.error or ""))
