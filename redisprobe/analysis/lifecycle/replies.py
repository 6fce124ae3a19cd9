"""Our actors' own ops: commands where nobody monitored the server, replies that correct the fold, and reads that
a client-side cache answered."""

from __future__ import annotations

from typing import Any

from redisprobe import trace
from redisprobe.analysis.lifecycle import connection, expiry, lives
from redisprobe.analysis.lifecycle.dispatch import HANDLERS
from redisprobe.analysis.lifecycle.limits import (
    KS_MATCH_WINDOW,
    LOG_CAP,
    MAX_RECORDS,
)
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C


def on_op(st: FoldState, event: trace.Op) -> None:
    server = st.server_of(event.target) if event.target else st.attributor.actor_server.get(event.pid)
    if server is None:  # a cluster actor's op names its node; another's is on the server it announced
        server = st.attributor.server_of(event.pid, event.client_id)
    state = st.server_state(server)
    args = event.args
    spec = C.lookup(args[0]) if args else C.lookup(b"")
    hint = hash(tuple(args)) if args else 0
    st.attributor.op_seen(event, server, hint)
    if event.error and len(st.op_errors) < MAX_RECORDS:
        st.op_errors.append(event)
    if not args:
        return
    if state.monitored:
        annotate(st, server, event, spec)
        return
    state.ops_commands = True
    peer = f"id:{event.client_id}"
    client = (server, event.client_id)
    kind = spec.kind
    if kind == C.MULTI:
        st.op_multi.add(client)
        st.queued_by_client[client] = []
        connection.cmd_multi(st, server, event.db, peer, 0, event.t, args, spec)
        return
    if client in st.op_multi and kind not in (C.EXEC, C.DISCARD):
        queued = st.queued_by_client[client]
        if len(queued) < MAX_RECORDS:
            queued.append(event)
        return
    if kind in (C.EXEC, C.DISCARD):
        st.op_multi.discard(client)
        queued = st.queued_by_client.pop(client, [])
        if kind == C.EXEC and event.reply is not None and not event.error:
            for op in queued:
                apply_op(st, server, peer, event.t, op)
        connection.cmd_exec(st, server, event.db, peer, 0, event.t, args, spec)
        return
    apply_op(st, server, peer, event.t, event)


def apply_op(st: FoldState, server: str, peer: str, t: float, op: trace.Op) -> None:
    """An actor's op as a command (nobody monitored its server); its reply corrects the fold."""
    if op.error:
        return
    args = op.args
    spec = C.lookup(args[0])
    if spec.kind == C.OTHER:
        return
    HANDLERS[spec.kind](st, server, op.db, peer, 0, t, args, spec)
    reply_correction(st, server, op, spec, peer, t)


def reply_correction(st: FoldState, server: str, op: trace.Op, spec: C.Command, peer: str, t: float) -> None:
    """Replies say what the fold could only guess: EXPIRE 0/1, a GET that found nothing."""
    if len(op.args) < 2:
        return
    slot = st.slots.get((server, op.db, op.args[1]))
    if slot is None:
        return
    if spec.kind == C.TTL and spec.ttl_form in C.EXPIRE_FORMS and slot.ttl_recent:  # EXPIRE replies 1 or 0
        record = slot.ttl_recent[-1]
        if record.t == t and isinstance(op.reply, int):
            expiry.ttl_verdict(st, slot, record, bool(op.reply), "the command replied 0")
    elif spec.kind == C.READ and spec.value_reply and op.reply is not None and slot.live is None:
        # the key existed: the trace started after it was made
        life = lives.create(st, slot, t, None, None, 0, preexisting=True)
        life.reads += 1
        if slot.miss_log and slot.miss_log[-1][0] == t:
            slot.miss_log.pop()
            slot.misses -= 1


def annotate(st: FoldState, server: str, op: trace.Op, spec: C.Command) -> None:
    """On a monitored server an op only adds its reply: EXPIRE's 0/1 settles whether it took effect."""
    tracking = C.tracking_switch(spec, op.args)
    if tracking is not None:
        (st.tracking.add if tracking else st.tracking.discard)((server, op.client_id))
        return
    if spec.kind == C.READ and (server, op.client_id) in st.tracking and len(op.args) > 1:
        stale_candidate(st, server, op)
        return
    if spec.kind != C.TTL or len(op.args) < 2 or not isinstance(op.reply, int):
        return
    if spec.ttl_form not in C.EXPIRE_FORMS:  # PERSIST, GETEX: their reply says nothing about a TTL taking effect
        return
    slot = st.slots.get((server, op.db, op.args[1]))
    for record in reversed(slot.ttl_recent) if slot is not None and slot.ttl_recent else ():
        if abs(record.t - op.t) > KS_MATCH_WINDOW:
            continue
        client = st.attributor.client_at(server, record.who[1], record.t)
        if client == op.client_id and record.args == op.args:
            expiry.ttl_verdict(st, slot, record, bool(op.reply), "the command replied 0")  # type: ignore[arg-type]
            record.confirmed = True
            return
    waiting = st.op_replies.setdefault((server, op.db, op.args[1]), [])
    if len(waiting) < LOG_CAP:
        waiting.append((op.t, op.client_id, op.args, op.reply))  # its MONITOR line has not come yet


def stale_candidate(st: FoldState, server: str, op: trace.Op) -> None:
    """A tracking client's read: if no GET reaches MONITOR for it, its local cache answered."""
    slot = st.slots.get((server, op.db, op.args[1]))
    life = slot.live if slot is not None else None
    info = st.attributor.clients.get((server, op.client_id))
    if life is None or info is None or not info.addr:
        return
    mine = (life.readers or {}).get(info.addr)
    st.stale_q.append((op.t + KS_MATCH_WINDOW, (server, info.addr, life, op,
                                                      mine[0] if mine else 0, mine[1] if mine else None)))


def check_stale(st: FoldState, candidate: tuple[Any, ...]) -> None:
    server, peer, life, op, reads_before, last_read = candidate
    mine = (life.readers or {}).get(peer)
    if mine is not None and mine[0] > reads_before:
        return  # the read reached the server
    changed = [(entry[2], p, entry[3]) for p, entry in (life.writers or {}).items()
               if p != peer and entry[2] < op.t and (last_read is None or entry[2] > last_read)]
    if not changed or len(st.stale_reads) >= MAX_RECORDS:
        return
    write_t, writer, hint = max(changed)
    args = next((a for t, w, a, _e in reversed(life.history()) if w is not None and w[1] == writer and a), None)
    st.stale_reads.append((server, peer, life.key, life.db, op, write_t, (server, writer, write_t, hint), args))


def on_check(st: FoldState, event: trace.Check) -> None:
    """An actor waited for a key and never saw it: a certain miss, from that pid's server and db."""
    if len(st.checks) < MAX_RECORDS:
        st.checks.append(event)
    if event.ok and not event.first_miss:
        return
    started = st.attributor.actor_pids.get(event.pid)
    server = st.server_for(event)
    db = started.db if started is not None else 0
    key = event.key.encode()
    slot = st.slots.get((server, db, key))
    if slot is not None and slot.live is not None:
        return
    peer = f"id:{started.client_id}" if started is not None and started.client_id else f"pid:{event.pid}"
    lives.miss(st, server, db, peer, 0, event.t, [b"(check)", key], key, slot, certain=not event.ok)


def settle_stale(st: FoldState, now: float) -> None:
    queue = st.stale_q
    while queue and queue[0][0] < now:
        check_stale(st, queue.popleft()[1])
