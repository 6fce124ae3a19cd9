"""A key's life begins and ends here: creation, removal, misses, who wrote and who took."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisprobe.analysis.lifecycle.coverage import known_absent
from redisprobe.analysis.lifecycle.limits import (
    COMPACT_HEAD,
    CREATE_AFTER_MISS_WINDOW,
    LIVES_KEPT,
    LOG_CAP,
    MAX_MISS_ONLY_KEYS,
    POST_TOUCH_WINDOW,
    REMARKABLE_KEPT,
)
from redisprobe.analysis.lifecycle.records import KeyLife, Slot, intended
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Who


def create(st: FoldState, slot: Slot, t: float, who: Who | None, args: list[bytes] | None, kind: int, *,
            preexisting: bool = False) -> KeyLife:
    life = KeyLife(slot.server, slot.db, slot.key)
    life.resolver = st.attributor
    if preexisting:
        life.preexisting = True
    else:
        life.created_at = t
        life.created_by = who
        life.created_args = args
    prev = slot.last_closed
    if prev is not None:
        life.prev_how = prev.removed_how
        life.prev_at = prev.removed_at
        life.prev_by = prev.removed_by
        life.prev_ttl = prev.ttl_set
        if not preexisting:
            touch_after(st, prev, t, who, args, "recreated", kind)
    absent = slot.absent_ttl
    if absent and not preexisting and t - absent[-1].t <= CREATE_AFTER_MISS_WINDOW and not absent[-1].effective:
        life.ttl_before_create = absent[-1]
    if st.intended_ttls:
        life.owner_ttl = intended(st.intended_ttls, slot.key)
    slot.live = life
    slot.count += 1
    live = st.server_state(slot.server).live
    index = live.get(slot.db)
    if index is None:
        index = live[slot.db] = {}
    index[slot.key] = slot
    if not preexisting:
        life.note(t, who, args, "created")
        st.row(t, who, slot.db, args, slot.key, "created", "created")
    return life


PAST_TTL = "expire time in the past"


def close_past_ttl(st: FoldState, slot: Slot, life: KeyLife, t: float, who: Who, args: list[bytes]) -> None:
    """A TTL <= 0 or an EXPIREAT already gone: the server deletes the key at once (a `del` event, no `expire`)."""
    life.removed_by_past_ttl = True
    close(st, slot, life, t, "del", who, args, detail=PAST_TTL)


def close(st: FoldState, slot: Slot, life: KeyLife, at: float, how: str, who: Who | None, args: list[bytes] | None,
          *, detail: str = "", confirmed: bool = False) -> None:
    life.removed_how = how
    life.removed_at = at
    life.removed_by = who
    life.removed_args = args
    life.removed_detail = detail
    life.removed_confirmed = confirmed
    slot.live = None
    slot.last_closed = life
    index = st.server_state(slot.server).live.get(slot.db)
    if index is not None:
        index.pop(slot.key, None)
    lives = slot.lives
    if lives is None:
        lives = slot.lives = []
    elif len(lives) == LIVES_KEPT:
        oldest = lives.pop(0)
        if oldest.remarkable and (slot.kept is None or len(slot.kept) < REMARKABLE_KEPT):
            if slot.kept is None:
                slot.kept = []
            oldest.readers = None  # no rule reads per-reader tallies of a past life
            if oldest.head is not None and len(oldest.head) > COMPACT_HEAD:
                oldest.head = oldest.head[:COMPACT_HEAD]
            slot.kept.append(oldest)
        else:
            slot.dropped += 1
            oldest.release()
    lives.append(life)
    effect = _REMOVAL_EFFECT.get(how, how)
    if detail and how in ("rename", "move", "del"):
        effect = f"{effect} ({detail})"
    life.note(at, who, args, effect)
    st.row(at, who, slot.db, args, slot.key, effect, _REMOVAL_FLAG.get(how, "removed"))
    if not life.remarkable:
        life.compact()


def touch_after(st: FoldState, life: KeyLife, t: float, who: Who | None, args: list[bytes] | None, what: str,
                 kind: int) -> None:
    """Remember who came back to a key soon after it was removed (the writer that didn't know)."""
    if life.removed_at is None or t - life.removed_at > POST_TOUCH_WINDOW:
        return
    if life.after is None:
        life.after = []
    if len(life.after) < LOG_CAP:
        life.after.append((t, who, args, what, kind))


def alive(st: FoldState, slot: Slot | None, t: float) -> KeyLife | None:
    """The live life, expiring it first if its TTL ran out (the server does the same, lazily)."""
    if slot is None:
        return None
    life = slot.live
    if life is not None and life.expires_at is not None and ran_out(life.expires_at, t):
        close(st, slot, life, life.expires_at, "expired", None, None)
        return None
    return life


def ran_out(expires_at: float, t: float) -> bool:
    """Whether the server has expired, by `t`, a key whose TTL ends at `expires_at`: it keeps the TTL in whole
    milliseconds (from the setting command's millisecond) and expires the key only once its clock's millisecond is
    past that one, up to a millisecond after `expires_at` itself."""
    return t >= expires_at and int(t * 1000.0) > int(expires_at * 1000.0)


def miss(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
          slot: Slot | None, *, certain: bool | None = None) -> None:
    if certain is None and st.baselines and (slot is None or not slot.count) \
            and known_absent(st, server, db, key, t) is False:
        # The baseline did not cover this key: it may well have existed since before the capture, and MONITOR
        # shows no reply. Unknown, said as such; never a miss inferred from silence.
        if len(st.rows) < st.timeline_limit:
            st.row(t, (server, peer, t, hint), db, args, key, "unknown: not in the baseline, and MONITOR shows no "
                   "reply (a miss or a hit)", "")
        return
    if slot is None:
        if st.miss_only >= MAX_MISS_ONLY_KEYS:
            st.untracked_misses += 1
            return
        st.miss_only += 1
        slot = st.slot(server, db, key)
    slot.misses += 1
    who = (server, peer, t, hint)
    if certain is None:
        certain = slot.count > 0 or bool(st.baselines and known_absent(st, server, db, key, t))
    if slot.miss_log is None:
        slot.miss_log = []
    if len(slot.miss_log) < LOG_CAP:
        slot.miss_log.append((t, who, args, certain))
        st.row(t, who, db, args, key, "missed: no such key", "missed")
    last = slot.last_closed
    if last is not None and last.removed_at is not None and t >= last.removed_at:  # (a blocking pop's miss is
        touch_after(st, last, t, who, args, "missed", C.READ)                        # decided late: it may be older)


def pend(st: FoldState, slot: Slot, who: Who, kind: int, args: list[bytes], deadline: float) -> None:
    pending = slot.pending
    if pending is None:
        slot.pending = [(deadline, who, kind, args)]
        return
    if len(pending) >= LOG_CAP:
        del pending[0]
    pending.append((deadline, who, kind, args))


def writer(st: FoldState, life: KeyLife, peer: str, hint: int, t: float, append: bool) -> None:
    writers = life.writers
    if writers is None:
        life.writers = {peer: [1, t, t, hint, int(append)]}
        return
    entry = writers.get(peer)
    if entry is None:
        writers[peer] = [1, t, t, hint, int(append)]
    else:
        entry[0] += 1
        entry[2] = t
        entry[3] = hint
        if append:
            entry[4] += 1


def taker(st: FoldState, slot: Slot, peer: str, hint: int, t: float, args: list[bytes]) -> None:
    takers = slot.takers
    if takers is None:
        slot.takers = {peer: [1, t, hint, args]}
        return
    entry = takers.get(peer)
    if entry is None:
        takers[peer] = [1, t, hint, args]
    else:
        entry[0] += 1


_REMOVAL_EFFECT = {
    "del": "deleted", "unlink": "deleted (UNLINK)", "getdel": "taken and deleted (GETDEL)",
    "pop": "emptied by a pop: key removed", "rename": "renamed away", "move": "moved away", "flush": "flushed",
    "expired": "expired", "evicted": "evicted (maxmemory)",
}
_REMOVAL_FLAG = {"expired": "expired", "evicted": "evicted", "flush": "flushed", "rename": "renamed",
                 "move": "renamed"}

