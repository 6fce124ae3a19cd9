"""Keyspace events paired with the command that caused them (same key and db, nearest before)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisprobe import trace
from redisprobe.analysis.lifecycle import expiry, keys, linklag, lives
from redisprobe.analysis.lifecycle.limits import (
    KS_MATCH_WINDOW,
    ON_TIME_TOLERANCE,
)
from redisprobe.analysis.lifecycle.records import BlockedClient, KeyLife, Slot, TtlSet
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Who


def on_mark(st: FoldState, event: trace.KeyspaceMark) -> None:
    """The keyspace link answered a mark: every event published before it was sent has been read."""
    state = st.server_state(st.server_of(event.target))
    state.ks_marked = True
    if event.sent > state.ks_mark_sent:
        state.ks_mark_sent = event.sent
    if st.confirm_q and st.confirm_q[0][0] < event.t:
        expiry.settle(st, event.t)


def on_keyspace(st: FoldState, event: trace.Keyspace) -> None:
    server = st.server_of(event.target)
    state = st.server_state(server)
    if state.primary is not None:
        return  # a cluster replica's events echo its primary's writes, followed on the primary
    state.keyspace = True
    st.keyspace_seen = True
    t = event.t
    if t > state.ks_last_t:
        state.ks_last_t = t
    if t < state.ks_first_t:
        state.ks_first_t = t
    name = event.event
    if name in C.GENERIC_EVENTS:
        state.ks_generic = True
    key = (server, event.db, event.key)
    slot = st.slots.get(key)
    window = linklag.window(state, t)  # how far back its command may lie: further when the link lags
    if name == "expired" or name == "evicted":
        server_removal(st, server, event.db, event.key, slot, t, name, window)
    elif name == "del":
        on_del(st, server, event.db, event.key, slot, t, window)
    elif name == "expire":
        on_expire(st, server, event.db, event.key, slot, t, window)
    elif name in ("rename_from", "move_from"):
        on_gone(st, server, event.db, event.key, slot, t, "rename" if name == "rename_from" else "move", window)
    elif (name in ("rename_to", "move_to", "copy_to", "new") or not state.monitored) \
            and (slot is None or slot.live is None):
        slot = slot or st.slot(server, event.db, event.key)
        cause = find_cause(st, slot, t, name, window)
        who = cause[1] if cause is not None else None
        args = cause[3] if cause is not None else [f"({name})".encode(), event.key]
        lives.create(st, slot, t, who, args, C.WRITE)
    elif name in C.POP_EVENTS and slot is not None and slot.live is None and slot.pending:
        popped(st, slot, t, window)
    # other type events (set, lpush, hset...) confirm what MONITOR already showed
    seen = st.slots.get(key)
    if seen is not None:
        seen.ks_last = t
    if st.confirm_q and st.confirm_q[0][0] < t:
        expiry.settle(st, t)


def popped(st: FoldState, slot: Slot, t: float, window: float) -> None:
    """A pop took an element from a key the fold did not know (made before the trace): it was there. A blocking
    pop on it was served at once, and a pop's miss just before was no miss."""
    last = slot.last_closed
    if last is not None and last.removed_how == "pop" and last.removed_at is not None \
            and t - last.removed_at <= window:
        return  # the event of a pop the fold already saw empty the key
    lives.create(st, slot, t, None, None, 0, preexisting=True)
    log = slot.miss_log
    if log and t - log[-1][0] <= window and C.lookup(log[-1][2][0]).kind == C.POP:
        withdrawn = log.pop()
        slot.misses -= 1
        if slot.raced is not None and slot.raced[1] == withdrawn[1]:  # it did not come away empty either
            slot.raced_count -= 1
            if not slot.raced_count:
                slot.raced = None


def find_cause(st: FoldState, slot: Slot, t: float, event: str,
               window: float) -> tuple[float, Who, int, list[bytes]] | None:
    """The nearest preceding unexplained command on this key that can produce `event` (`window`: how far back a
    command may lie, beyond the deadline it was given when the link lags)."""
    pending = slot.pending
    if not pending:
        return None
    kinds = C.EVENT_CAUSES.get(event, frozenset())
    late = window - KS_MATCH_WINDOW
    for index in range(len(pending) - 1, -1, -1):
        deadline, who, kind, _args = pending[index]
        if (kind in kinds or not kinds) and who[2] <= t + KS_MATCH_WINDOW and t <= deadline + late:
            return pending.pop(index)
    return None


def server_removal(st: FoldState, server: str, db: int, key: bytes, slot: Slot | None, t: float, how: str,
                   window: float) -> None:
    if slot is None:
        slot = st.slot(server, db, key)
    life = slot.live
    last = slot.last_closed
    if how == "expired" and last is not None and last.removed_how == "expired" and not last.removed_confirmed \
            and (life is None or (life.created_at is not None and last.removed_at is not None
                                  and life.created_at >= last.removed_at)):
        last.removed_confirmed = True  # the fold already expired it on access
        return
    if how == "expired" and life is not None and expired_before(life, t, window) \
            and slot.ks_last < (life.created_at or 0.0):
        expired_on_access(st, slot, life)
        return
    if life is None:
        life = lives.create(st, slot, t, None, None, 0, preexisting=True)
    at = t
    if how == "expired" and life.expires_at is not None and life.expires_at <= t:
        at = life.expires_at
    lives.close(st, slot, life, at, how, None, None, confirmed=True)


def expired_before(life: KeyLife, t: float, window: float) -> bool:
    """An `expired` event just after a command created this life, which cannot have expired yet (no TTL, or one
    clearly not run out): the command touched a key whose TTL (set before the trace) had run out, the server expired it
    on access, then the command made the key anew (an INCR in a rate limiter's script, a SET after a GET). The
    caller also checks that no event of that command came first: `incrby` then `expired` is a key that existed
    before the trace (the fold took the INCR for its creation) expiring after it."""
    created = life.created_at
    return created is not None and life.created_by is not None and 0.0 <= t - created <= window \
        and (life.expires_at is None or life.expires_at - t > ON_TIME_TOLERANCE)


def expired_on_access(st: FoldState, slot: Slot, life: KeyLife) -> None:
    """The key's earlier life (not seen: it predates the trace) expired when `life`'s creating command touched
    it; `life` stays the live one, now known as recreated after expiring."""
    at = life.created_at if life.created_at is not None else 0.0
    old = KeyLife(slot.server, slot.db, slot.key)
    old.resolver = st.attributor
    old.preexisting = True
    slot.count += 1
    lives.close(st, slot, old, at, "expired", None, None, confirmed=True)
    slot.live = life
    st.server_state(slot.server).live.setdefault(slot.db, {})[slot.key] = slot
    life.prev_how, life.prev_at, life.prev_by, life.prev_ttl = "expired", at, None, None
    lives.touch_after(st, old, at, life.created_by, life.created_args, "recreated", C.WRITE)


def on_del(st: FoldState, server: str, db: int, key: bytes, slot: Slot | None, t: float, window: float) -> None:
    if slot is None:
        slot = st.slot(server, db, key)
    life = slot.live
    last = slot.last_closed
    if life is None and last is not None and last.removed_by is not None and not last.removed_confirmed \
            and last.removed_at is not None and t - last.removed_at <= window:
        last.removed_confirmed = True
        return
    cause = find_cause(st, slot, t, "del", window)
    if life is None:
        life = lives.create(st, slot, t, None, None, 0, preexisting=True)
        if cause is not None and slot.miss_log and slot.miss_log[-1][1] == cause[1]:
            slot.miss_log.pop()  # the key was there after all: the trace began after it was made
            slot.misses -= 1
    if cause is None:
        blocked = blocked_taker(st, server, db, t)
        if blocked is not None:  # its BLPOP/BLMOVE was sent before the capture: only CLIENT LIST shows it
            who = (server, blocked.addr, t, 0)
            args = [blocked.cmd.upper().encode(), key]
            lives.taker(st, slot, blocked.addr, 0, t, args)
            lives.close(st, slot, life, t, "pop", who, args, confirmed=True,
                        detail="served a client blocked since before the capture (CLIENT LIST)")
            return
        lives.close(st, slot, life, t, "del", None, None, detail="no command seen for it (a gap in MONITOR?)",
                    confirmed=True)
        return
    _, who, kind, args = cause
    how = C.removal_how(args[0])
    if kind == C.TTL:
        how = "del"
    at = who[2]
    if life.created_at is not None and at < life.created_at:  # a blocking pop served when the key came: it
        at = t                                                # took the element then
        lives.taker(st, slot, who[1], who[3], t, args)
        life.takes += 1
        lives.close(st, slot, life, at, how, who, args, confirmed=True)
        if C.lookup(args[0]).kind == C.MOVE_ELEMENT and len(args) > 2:  # BLMOVE: the element went on to its
            keys.cmd_write(st, server, db, who[1], who[3], t, [b"RPUSH", args[2], b""], C.COMMANDS[b"RPUSH"])
            dest = st.slots[(server, db, args[2])].live  # destination
            if dest is not None and dest.created_at == t:
                dest.created_args = args
        return
    lives.close(st, slot, life, at, how, who, args, confirmed=True)


def blocked_taker(st: FoldState, server: str, db: int, t: float) -> BlockedClient | None:
    """The one client CLIENT LIST showed blocked in a pop on this db since before the capture, not yet served."""
    found = [blocked for (where, _id), blocked in st.blocked.items() if where == server and blocked.db == db
             and not blocked.served and not blocked.returned and blocked.first_t <= t
             and blocked.cmd in C.BLOCKING_FEEDS]
    if len(found) != 1:
        return None
    found[0].served = True
    return found[0]


def on_expire(st: FoldState, server: str, db: int, key: bytes, slot: Slot | None, t: float, window: float) -> None:
    if slot is None:
        slot = st.slot(server, db, key)
    if slot.ttl_recent:
        record = expire_cause(slot.ttl_recent, t, window)
        if record is not None:
            record.confirmed = True
            if not record.effective:
                expiry.ttl_verdict(st, slot, record, True, "")
            return
    if slot.live is None:
        lives.create(st, slot, t, None, None, 0, preexisting=True)
    cause = find_cause(st, slot, t, "expire", window)
    if slot.live is not None and cause is None:
        slot.live.ttl_unknown = True


def expire_cause(recent: list[TtlSet], t: float, window: float) -> TtlSet | None:
    """The TTL command an `expire` event answers: the server emits events in the order it ran the commands, so
    the oldest unconfirmed one in the window that took effect (a burst of same-millisecond EXPIREs on one key gets
    one event each, in order); else the oldest the fold thought ineffective (the event says otherwise)."""
    fallback = None
    for record in recent:
        if record.confirmed or record.t > t + KS_MATCH_WINDOW or t - record.t > window:
            continue
        if record.effective:
            return record
        if fallback is None:
            fallback = record
    return fallback


def on_gone(st: FoldState, server: str, db: int, key: bytes, slot: Slot | None, t: float, how: str,
            window: float) -> None:
    if slot is None:
        slot = st.slot(server, db, key)
    last = slot.last_closed
    if slot.live is None and last is not None and last.removed_how == how and not last.removed_confirmed:
        last.removed_confirmed = True
        return
    cause = find_cause(st, slot, t, "rename_from" if how == "rename" else "move_from", window)
    life = slot.live or lives.create(st, slot, t, None, None, 0, preexisting=True)
    who = cause[1] if cause is not None else None
    lives.close(st, slot, life, who[2] if who else t, how, who, cause[3] if cause else None, confirmed=True)
