"""TTL commands: what each sets, whether it took effect (conditions, replies, keyspace `expire`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisprobe.analysis.lifecycle import linklag, lives
from redisprobe.analysis.lifecycle.limits import (
    EX_MS_SUSPECT,
    INF,
    KS_MATCH_WINDOW,
    LOG_CAP,
    MAX_MISS_ONLY_KEYS,
    MAX_PENDING_CONFIRMS,
    MAX_SECOND_VALUES,
    PX_SECONDS_SUSPECT,
    SHORTER_FRACTION,
    TTL_PAIRING_CAP,
    TTL_PAIRING_MAX,
)
from redisprobe.analysis.lifecycle.records import KeyLife, ServerState, Slot, TtlSet
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C
from redisprobe.text import secs

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Who


def clear_ttl(st: FoldState, slot: Slot, life: KeyLife, t: float, who: Who, args: list[bytes]) -> None:
    if life.expires_at is None:
        return
    dropped = life.expires_at - t
    life.expires_at = None
    if life.ttl_cleared is None:
        life.ttl_cleared = (t, who, args, dropped)
    life.note(t, who, args, "TTL cleared (set without EX/PX/KEEPTTL)")
    st.row(t, who, slot.db, args, slot.key, "TTL cleared", "ttl")


def cmd_ttl(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
         spec: C.Command) -> None:
    if len(args) < 2:
        return
    key = args[1]
    form = spec.ttl_form
    if form == C.TTL_ARG_S and len(args) == 3:  # EXPIRE k s: the commonest spelling, parsed inline
        try:
            value = int(args[2])
        except ValueError:
            return
        change = C.TtlChange("set" if value > 0 else "past", t + value, float(value), "s", value)
    else:
        change = C.ttl_change(args, t)  # type: ignore[assignment]
        if change is None:
            return
    slot = st.slots.get((server, db, key))
    life = lives.alive(st, slot, t)
    who = (server, peer, t, hint)
    if form == C.TTL_GETEX_OPTIONS:  # GETEX reads the key too
        if life is None:
            lives.miss(st, server, db, peer, hint, t, args, key, slot)
            return
        life.reads += 1
    if change.action == "set" or change.action == "past":
        note_units(st, server, peer, who, change)
    if life is None:
        if form == C.TTL_GETEX_OPTIONS or form == C.TTL_PERSIST:
            return
        if slot is None:
            if st.miss_only >= MAX_MISS_ONLY_KEYS:
                return
            st.miss_only += 1
            slot = st.slot(server, db, key)
        record = TtlSet(t, who, args, change)
        record.effective = False
        record.reason = "no such key"
        slot.absent_ttl_count += 1
        if slot.absent_ttl is None:
            slot.absent_ttl = []
        if len(slot.absent_ttl) < LOG_CAP:
            slot.absent_ttl.append(record)
        else:
            slot.absent_ttl[-1] = record
        recent_ttl(st, slot, record)
        lives.pend(st, slot, who, C.TTL, args, t + KS_MATCH_WINDOW)
        st.row(t, who, db, args, key, "TTL not set: no such key", "ttl-missed")
        if slot.last_closed is not None:
            lives.touch_after(st, slot.last_closed, t, who, args, "ttl-missed", C.TTL)
        return
    if change.action == "clear":
        if life.expires_at is not None:
            life.expires_at = None
            life.note(t, who, args, "TTL removed (PERSIST)")
            st.row(t, who, db, args, key, "TTL removed", "ttl")
        return
    if change.action == "keep":
        return
    if change.action == "past":
        lives.close_past_ttl(st, slot, life, t, who, args)  # type: ignore[arg-type]
        return
    apply_ttl(st, slot, life, TtlSet(t, who, args, change), server, peer)  # type: ignore[arg-type]


def note_units(st: FoldState, server: str, peer: str, who: Who, change: C.TtlChange) -> None:
    """Which TTL numbers a connection writes in seconds: `PEXPIRE k 30` from one that says `EX 30` elsewhere
    is a unit slip."""
    units = st.units.get((server, peer))
    if units is None:
        units = st.units[(server, peer)] = set()
        st.unit_users[(server, peer)] = who
    if change.unit == "s" and change.raw is not None and not change.absolute:
        if len(units) < MAX_SECOND_VALUES:
            units.add(change.raw)
    elif change.unit not in units:
        units.add(change.unit)


def apply_ttl(st: FoldState, slot: Slot, life: KeyLife, record: TtlSet, server: str, peer: str, *,
               quiet: bool = False) -> None:
    """An EXPIRE-like command on a live key: NX/XX/GT/LT decide, then the TTL moves."""
    current = life.expires_at
    new = record.expires_at
    cond = record.cond
    reason = ""
    if not cond:
        pass
    elif cond == "NX" and current is not None:
        reason = "NX: the key already had a TTL"
    elif cond == "XX" and current is None:
        reason = "XX: the key had no TTL"
    elif cond == "GT" and (current is None or (new is not None and new <= current)):
        reason = "GT: no TTL counts as infinite" if current is None else "GT: not longer than the current TTL"
    elif cond == "LT" and current is not None and new is not None and new >= current:
        reason = "LT: not shorter than the current TTL"
    record.life = life
    record.prev_expires_at = current
    recent_ttl(st, slot, record)
    if st.op_replies and not reason and reply_for(st, slot, record) == 0:
        reason = "the command replied 0"
        record.confirmed = True
    raw = record.raw
    unit_issue = describe_unit_issue(record) if raw is not None and (raw > EX_MS_SUSPECT or (
        raw < PX_SECONDS_SUSPECT and record.unit == "ms")) else ""
    if unit_issue:
        if life.unit_suspects is None:
            life.unit_suspects = []
        if len(life.unit_suspects) < LOG_CAP:
            life.unit_suspects.append((record, unit_issue))
    if reason:
        record.effective = False
        record.reason = reason
        missed_ttl(st, life, record)
        life.note(record.t, record.who, record.args, f"TTL not changed ({reason})")
        st.row(record.t, record.who, slot.db, record.args, slot.key, f"TTL not changed: {reason}",
                  "ttl-missed")
        return
    record.effective = True
    set_ttl(st, slot, life, record, quiet)
    if st.keyspace_seen:
        state = st.servers.get(slot.server)
        if state is not None and state.keyspace:
            queue = st.confirm_q
            if len(queue) >= MAX_PENDING_CONFIRMS:
                queue.popleft()  # keyspace stream stalled without a gap marker: that one stays unjudged
            queue.append((record.t + KS_MATCH_WINDOW, record))


def set_ttl(st: FoldState, slot: Slot, life: KeyLife, record: TtlSet, quiet: bool = False) -> None:
    life.expires_at = record.expires_at
    life.ttl_sets += 1
    if life.ttl_first is None:
        life.ttl_first = record
    life.ttl_last = record
    if life.ttl_cleared is not None and life.ttl_restored_at is None:
        life.ttl_restored_at = record.t
    creator = life.created_by[1] if life.created_by is not None else None
    seconds = record.seconds or 0.0
    if creator is not None and record.who[1] == creator and life.owner_ttl is None:
        life.owner_ttl = seconds
    elif life.owner_ttl is not None and record.who[1] != creator and seconds < SHORTER_FRACTION * life.owner_ttl:
        if life.shortened is None:
            life.shortened = []
        if len(life.shortened) < LOG_CAP:
            life.shortened.append((record, life.owner_ttl))
    if not quiet:
        life.note(record.t, record.who, record.args, "TTL set")
    if life.ttl_sets <= 2:
        if len(st.rows) < st.timeline_limit:
            st.row(record.t, record.who, slot.db, record.args, slot.key, f"TTL {secs(record.seconds)}", "ttl")
        else:
            st.rows_dropped += 1


def missed_ttl(st: FoldState, life: KeyLife, record: TtlSet) -> None:
    life.ttl_missed_count += 1
    if life.ttl_missed is None:
        life.ttl_missed = []
    if len(life.ttl_missed) < LOG_CAP:
        life.ttl_missed.append(record)


def recent_ttl(st: FoldState, slot: Slot, record: TtlSet) -> None:
    if not st.pairing:
        return
    if slot.ttl_recent is None:
        slot.ttl_recent = [record]
    else:
        recent = slot.ttl_recent
        recent.append(record)
        if len(recent) > LOG_CAP and len(recent) % TTL_PAIRING_CAP == LOG_CAP + 1:
            # a burst on one key: keep every command still awaiting its event (keyspace events can lag far behind
            # MONITOR under load) and the last few for replies; forget the confirmed and the too old
            cutoff = record.t - KS_MATCH_WINDOW
            state = st.servers.get(slot.server)
            if state is not None and state.ks_marked:  # lagging link: all it has not read that far yet
                waiting = [old for old in recent[:-LOG_CAP] if not old.confirmed
                           and (old.t >= cutoff or not linklag.delivered(state, old.t))]
            else:
                waiting = [old for old in recent[:-LOG_CAP] if not old.confirmed and old.t >= cutoff]
            slot.ttl_recent = waiting[-TTL_PAIRING_MAX:] + recent[-LOG_CAP:]


def ttl_verdict(st: FoldState, slot: Slot, record: TtlSet, effective: bool, reason: str) -> None:
    """Correct the fold's guess about one TTL command (a keyspace event or a reply said otherwise)."""
    if bool(record.effective) == effective:
        return
    if effective:
        life = record.life or slot.live
        if life is None:
            life = lives.create(st, slot, record.t, None, None, 0, preexisting=True)
        record.effective = True
        record.reason = ""
        record.life = life
        if slot.absent_ttl and record in slot.absent_ttl:
            slot.absent_ttl.remove(record)
            slot.absent_ttl_count -= 1
        if life.ttl_missed and record in life.ttl_missed:
            life.ttl_missed.remove(record)
            life.ttl_missed_count -= 1
        if life.removed_how is None:
            set_ttl(st, slot, life, record)
        return
    record.effective = False
    record.reason = reason
    life = record.life
    if life is None:
        return
    if life.ttl_last is record:
        life.expires_at = record.prev_expires_at
        life.ttl_sets -= 1
        life.ttl_last = None if life.ttl_first is record else life.ttl_last
        if life.ttl_first is record:
            life.ttl_first = None
    missed_ttl(st, life, record)
    life.note(record.t, record.who, record.args, f"TTL not changed ({reason})")


NO_EXPIRE_EVENT = "no keyspace `expire` event followed"


def settle(st: FoldState, now: float) -> None:
    """EXPIREs the fold called effective but that no keyspace `expire` event confirmed did not happen.

    Judged once the keyspace link has read everything the server published up to the command: the answer to a
    mark sent after it came back (`linklag.delivered`); until then, however late, its event may still come, and
    if no such answer ever comes, the command's effect stays unknown. A trace without marks judges on the keyspace
    stream's own clock (`ks_last_t`): once that server's notifications have gone past the deadline.
    """
    queue = st.confirm_q
    while queue and queue[0][0] < now:
        deadline, record = queue[0]
        state = st.servers.get(record.who[0])
        if state is not None and state.ks_marked:
            if not linklag.delivered(state, record.t):
                if now != INF:
                    break  # the link has not read that far yet
                queue.popleft()  # it never did: unknown, no verdict
                continue
        elif now != INF and state is not None and state.ks_last_t < deadline:
            break  # that server's keyspace stream has not reached the deadline yet
        queue.popleft()
        if record.confirmed or not record.effective:
            continue
        if state is None or _in_gap(state, record.t):
            continue
        if not state.ks_generic:
            if now != INF and state.keyspace and len(st.undecided) < MAX_MISS_ONLY_KEYS:
                st.undecided.append(record)  # decided at the end: do generic events ever come?
            continue
        life = record.life
        if life is not None and life.removed_how is not None and life.removed_at is not None \
                and life.removed_at <= record.t + KS_MATCH_WINDOW:
            continue  # removed right after: its event may never have been needed
        if record.t < state.ks_first_t and st.wire_servers and _wire_captured(st, record):
            continue  # the wire began before the keyspace subscription: no event yet is no verdict
        slot = st.slots.get((life.server, life.db, life.key)) if life is not None else None
        if slot is not None:
            ttl_verdict(st, slot, record, False, NO_EXPIRE_EVENT)


def _wire_captured(st: FoldState, record: TtlSet) -> bool:
    """Whether the command's server was captured off the wire (`wire_servers` holds targets as traced)."""
    return any(st.server_of(target) == record.who[0] for target in st.wire_servers)


def describe_unit_issue(record: TtlSet) -> str:
    raw = record.raw
    if raw is None or record.expires_at is None:
        return ""
    if record.unit == "ms" and raw < PX_SECONDS_SUSPECT and not _absolute(record.args):
        return f"{raw} ms is under a second"
    if record.unit == "s" and raw > EX_MS_SUSPECT and not _absolute(record.args):
        return f"{raw} s is {raw / 86400:.0f} days"
    return ""


def _absolute(args: list[bytes]) -> bool:
    form = C.lookup(args[0]).ttl_form
    return form == C.TTL_ARG_AT_S or form == C.TTL_ARG_AT_MS or any(a.upper() in (b"EXAT", b"PXAT") for a in args[3:])


def _in_gap(state: ServerState, t: float) -> bool:
    for gap in state.gaps or ():
        if gap.source == "keyspace" and gap.t <= t + KS_MATCH_WINDOW and (gap.until is None or t <= gap.until):
            return True
    return False


def reply_for(st: FoldState, slot: Slot, record: TtlSet) -> int | None:
    """An actor's reply to this very command, recorded before its MONITOR line arrived."""
    waiting = st.op_replies.get((slot.server, slot.db, slot.key))
    if not waiting:
        return None
    for index, (t, client_id, args, reply) in enumerate(waiting):
        if abs(record.t - t) <= KS_MATCH_WINDOW and args == record.args \
                and st.attributor.client_at(slot.server, record.who[1], record.t) == client_id:
            del waiting[index]
            if not waiting:
                del st.op_replies[(slot.server, slot.db, slot.key)]
            return reply
    return None
