"""The key commands: reads, writes, SET and its options, removals, pops, renames, moves, flushes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisprobe.analysis.lifecycle import expiry, lives, wirereplies
from redisprobe.analysis.lifecycle.limits import (
    BLOCKED_MISS_AFTER,
    INF,
    KS_MATCH_WINDOW,
    MAX_PENDING_CONFIRMS,
    MAX_RECORDS,
    RACE_WINDOW,
)
from redisprobe.analysis.lifecycle.records import FlushRecord, KeyLife, Slot, TtlSet
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C
from redisprobe.text import command_text, text

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Who


def cmd_read(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    keys = (args[1],) if spec.single and len(args) > 1 else spec.keys(args)
    slots = st.slots
    if spec.block_option and st.blocked and C.block_timeout(args, spec.block_option) is not None:
        waited_before(st, server, db, peer, hint, t, args, list(keys))
    for key in keys:
        slot = slots.get((server, db, key))
        life = slot.live if slot is not None else None
        if life is not None and life.expires_at is not None and t >= life.expires_at:
            life = lives.alive(st, slot, t)
        if life is None:
            if spec.block_option:  # XREAD BLOCK: served if the stream comes before its timeout
                timeout = C.block_timeout(args, spec.block_option)
                if timeout is not None:
                    wait(st, (server, peer, t, hint), db, args, key,
                         INF if timeout == 0 else t + timeout + KS_MATCH_WINDOW)
                    continue
            lives.miss(st, server, db, peer, hint, t, args, key, slot)
            continue
        life.reads += 1
        readers = life.readers
        if readers is None:
            life.readers = {peer: [1, t, hint]}
        else:
            entry = readers.get(peer)
            if entry is None:
                readers[peer] = [1, t, hint]
            else:
                entry[0] += 1
                entry[1] = t


def cmd_write(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
           spec: C.Command) -> None:
    if len(args) < 2:
        return
    key = args[1]
    slot = st.slots.get((server, db, key))
    life = lives.alive(st, slot, t)
    if life is None:
        if slot is None:
            slot = st.slot(server, db, key)
        life = lives.create(st, slot, t, (server, peer, t, hint), args, C.WRITE)
        pushed = C.push_count(args)
        if pushed is not None:
            life.length = pushed
    else:
        if life.length is not None:
            pushed = C.push_count(args)
            life.length = None if pushed is None else life.length + pushed
        life.note(t, (server, peer, t, hint), args, "written")
    life.writes += 1
    life.appends += 1
    life.last_write_at = t
    lives.writer(st, life, peer, hint, t, True)


def cmd_write_existing(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                    spec: C.Command) -> None:
    if len(args) < 2:
        return
    slot = st.slots.get((server, db, args[1]))
    if lives.alive(st, slot, t) is None:
        lives.miss(st, server, db, peer, hint, t, args, args[1], slot)
        return
    cmd_write(st, server, db, peer, hint, t, args, spec)


def cmd_set(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
         spec: C.Command) -> None:
    """SET and friends: overwrite (or create), then the TTL per options; NX/XX may make it a no-op."""
    if len(args) < 3:
        return
    if spec.ttl_form == C.TTL_SET_OPTIONS:
        cond, change = C.set_options(args, t) if len(args) > 3 else ("", C.CLEAR)
    elif spec.pairs:
        mset(st, server, db, peer, hint, t, args, spec.cond)
        return
    else:
        cond = spec.cond
        change = C.ttl_change(args, t)
    if change is None:
        return
    set_one(st, server, db, peer, hint, t, args, args[1], cond, change)


def mset(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], cond: str) -> None:
    keys = args[1::2]
    if cond == "NX" and any(lives.alive(st, st.slots.get((server, db, k)), t) for k in keys):
        return
    for key in keys:
        set_one(st, server, db, peer, hint, t, args, key, "", C.CLEAR)


def set_one(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
             cond: str, change: C.TtlChange) -> None:
    slot = st.slots.get((server, db, key))
    life = slot.live if slot is not None else None
    if life is not None and life.expires_at is not None and t >= life.expires_at:
        life = lives.alive(st, slot, t)
    if cond:
        if cond == "NX" and life is not None:
            life.reads += 1
            return
        if cond == "XX" and life is None:
            lives.miss(st, server, db, peer, hint, t, args, key, slot)
            return
    who = (server, peer, t, hint)
    if life is None:
        if slot is None:
            slot = st.slots[(server, db, key)] = Slot(server, db, key)
        life = lives.create(st, slot, t, who, args, C.SET)
    else:
        life.length = None
        life.note(t, who, args, "overwritten")
    life.writes += 1
    life.last_write_at = t
    writers = life.writers
    entry = writers.get(peer) if writers is not None else None
    if entry is None:
        lives.writer(st, life, peer, hint, t, False)
    else:
        entry[0] += 1
        entry[2] = t
        entry[3] = hint
    action = change.action
    if action == "set":
        units = st.units.get((server, peer))
        if units is None or (change.raw not in units if change.unit == "s" else change.unit not in units):
            expiry.note_units(st, server, peer, who, change)
    if action == "clear":
        if life.expires_at is not None:
            expiry.clear_ttl(st, slot, life, t, who, args)  # type: ignore[arg-type]
    elif action == "set":
        expiry.apply_ttl(st, slot, life, TtlSet(t, who, args, change), server, peer, quiet=True)  # type: ignore[arg-type]
    elif action == "past":
        lives.close_past_ttl(st, slot, life, t, who, args)  # type: ignore[arg-type]


def cmd_overwrite(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
               spec: C.Command) -> None:
    keys = spec.keys(args)
    if not keys:
        return
    if spec.source_first:  # SORT src ... STORE dest: the source is read
        cmd_read(st, server, db, peer, hint, t, [b"GET", keys[0]], C.COMMANDS[b"GET"])
        keys = keys[1:]
    else:
        keys = keys[:1]
    for key in keys:
        slot = st.slot(server, db, key)
        life = lives.alive(st, slot, t)
        who = (server, peer, t, hint)
        if life is None:
            life = lives.create(st, slot, t, who, args, C.SET)
        life.writes += 1
        life.last_write_at = t
        life.length = None
        lives.writer(st, life, peer, hint, t, False)
        expiry.clear_ttl(st, slot, life, t, who, args)
        if spec.ttl_form == C.TTL_RESTORE:  # its TTL argument
            change = C.ttl_change(args, t)
            if change is not None and change.action == "set":
                restored = TtlSet(t, who, args, change)
                expiry.apply_ttl(st, slot, life, restored, server, peer, quiet=True)
                restored.confirmed = True  # RESTORE sends no `expire` event: the key comes with its TTL or not at all
            elif change is not None and change.action == "past":
                lives.close_past_ttl(st, slot, life, t, who, args)
                continue
        lives.pend(st, slot, who, C.OVERWRITE, args, t + KS_MATCH_WINDOW)


def cmd_remove(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
            spec: C.Command) -> None:
    keys = spec.keys(args)
    how = spec.removes  # del, unlink or getdel: every REMOVE row names its removal
    for key in keys:
        slot = st.slots.get((server, db, key))
        life = lives.alive(st, slot, t)
        who = (server, peer, t, hint)
        if slot is None:
            slot = st.slot(server, db, key)
        if life is None:
            lives.miss(st, server, db, peer, hint, t, args, key, slot)  # nothing to delete (or unseen before)
            lives.pend(st, slot, who, C.REMOVE, args, t + KS_MATCH_WINDOW)
            continue
        lives.taker(st, slot, peer, hint, t, args)
        lives.close(st, slot, life, t, how, who, args)


def take(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
          count: int, deadline: float) -> bool:
    """One pop from `key`: True when the key was there (the list length decides if it is now gone)."""
    slot = st.slots.get((server, db, key))
    life = lives.alive(st, slot, t)
    who = (server, peer, t, hint)
    if slot is None:
        slot = st.slot(server, db, key)
    if life is None:
        lives.pend(st, slot, who, C.POP, args, deadline)
        return False
    life.takes += 1
    lives.taker(st, slot, peer, hint, t, args)
    if life.length is not None:
        life.length -= count
        if life.length <= 0:
            lives.close(st, slot, life, t, "pop", who, args)
            return True
    lives.pend(st, slot, who, C.POP, args, deadline)
    return True


def cmd_pop(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
         spec: C.Command) -> None:
    keys = spec.keys(args)
    blocking = spec.blocking != 0
    deadline = t + KS_MATCH_WINDOW
    if blocking:
        try:
            timeout = float(args[spec.blocking])
        except ValueError:
            timeout = 0.0
        deadline = INF if timeout <= 0 else t + timeout + KS_MATCH_WINDOW
    if blocking and st.blocked:
        waited_before(st, server, db, peer, hint, t, args, keys)
    if len(keys) == 1:
        if not take(st, server, db, peer, hint, t, args, keys[0], C.pop_count(args), deadline):
            if blocking:
                wait(st, (server, peer, t, hint), db, args, keys[0], deadline)
                return
            slot = st.slots.get((server, db, keys[0]))
            lives.miss(st, server, db, peer, hint, t, args, keys[0], slot)
            if slot is not None:
                raced(slot, (server, peer, t, hint), args)
        return
    for key in keys:  # the first non-empty key is served
        if lives.alive(st, st.slots.get((server, db, key)), t) is not None:
            take(st, server, db, peer, hint, t, args, key, 1, deadline)
            return
    for key in keys:
        lives.pend(st, st.slot(server, db, key), (server, peer, t, hint), C.POP, args, deadline)
        if blocking:
            wait(st, (server, peer, t, hint), db, args, key, deadline)


def wait(st: FoldState, who: Who, db: int, args: list[bytes], key: bytes, deadline: float) -> None:
    """A blocking pop on an absent key: served if the key appears before its timeout, else a miss (decided at the
    end of the fold, `settle_waits`)."""
    if len(st.waits) < MAX_PENDING_CONFIRMS:
        st.waits.append((who, db, args, key, deadline))


def waited_before(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                  keys: list[bytes]) -> None:
    """A connection CLIENT LIST showed blocked in this same command since before the capture sends it again: the
    wait MONITOR never showed has returned. A worker's loop waits on the same keys each time, so if none of them
    existed from the capture's start until now, it came back empty: a miss (a worker blocked on a misnamed key for
    longer than the capture shows its command only once, near the end, still waiting)."""
    client_id = st.attributor.client_at(server, peer, t)
    blocked = st.blocked.get((server, client_id)) if client_id is not None else None
    if blocked is None or blocked.served or blocked.returned or blocked.db != db \
            or blocked.cmd.encode() != args[0].lower():
        return
    blocked.returned = True
    for key in keys:
        slot = st.slots.get((server, db, key))
        if slot is not None and any(_there_between(life, blocked.first_t, t) for life in slot.all_lives()):
            return  # it may have been served
    for key in keys:
        lives.miss(st, server, db, peer, hint, t, args, key, st.slots.get((server, db, key)))


def settle_waits(st: FoldState, end: float) -> None:
    """Each blocking pop that waited on an absent key: a miss when its timeout ran out (or it was still blocked
    BLOCKED_MISS_AFTER seconds before the end) with no life of the key between its call and its timeout."""
    for who, db, args, key, deadline in st.waits:
        server, peer, t, hint = who
        until = min(deadline - KS_MATCH_WINDOW, end)
        if until - t < BLOCKED_MISS_AFTER and deadline - KS_MATCH_WINDOW > end:
            continue  # still blocked, not for long: it may yet be served
        slot = st.slots.get((server, db, key))
        if slot is not None and any(_there_between(life, t, until) for life in slot.all_lives()):
            continue
        certain = True if st.unserved and wirereplies.unserved(st, server, peer, t) else None
        lives.miss(st, server, db, peer, hint, t, args, key, slot, certain=certain)
    st.waits = []


def _there_between(life: KeyLife, start: float, end: float) -> bool:
    created = life.created_at
    if created is not None:
        return start <= created <= end + KS_MATCH_WINDOW
    return life.removed_at is None or start <= life.removed_at


def raced(slot: Slot, who: Who, args: list[bytes]) -> None:
    """A pop that came away empty just after another connection's pop emptied the key: two consumers raced."""
    last = slot.last_closed
    if last is None or last.removed_how != "pop" or last.removed_by is None or last.removed_at is None \
            or last.removed_by[1] == who[1] or who[2] - last.removed_at > RACE_WINDOW:
        return
    slot.raced_count += 1
    if slot.raced is None:
        slot.raced = (who[2], who, args, last)


def cmd_trim(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    if len(args) < 2:
        return
    slot = st.slots.get((server, db, args[1]))
    life = lives.alive(st, slot, t)
    if slot is None or life is None:
        return
    life.length = None
    lives.pend(st, slot, (server, peer, t, hint), C.TRIM, args, t + KS_MATCH_WINDOW)


def cmd_move_element(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                  spec: C.Command) -> None:
    if len(args) < 3:
        return
    deadline = INF if spec.blocking else t + KS_MATCH_WINDOW
    if spec.blocking:
        try:
            timeout = float(args[spec.blocking])
        except (IndexError, ValueError):
            timeout = 0.0
        deadline = INF if timeout <= 0 else t + timeout + KS_MATCH_WINDOW
    if not take(st, server, db, peer, hint, t, args, args[1], 1, deadline):
        if spec.blocking:
            wait(st, (server, peer, t, hint), db, args, args[1], deadline)
    else:
        cmd_write(st, server, db, peer, hint, t, [b"RPUSH", args[2], b""], C.COMMANDS[b"RPUSH"])
        dest = st.slots[(server, db, args[2])].live
        if dest is not None and dest.created_args is not None and dest.created_at == t:
            dest.created_args = args


def cmd_rename(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
            spec: C.Command) -> None:
    if len(args) < 3:
        return
    src, dst = args[1], args[2]
    who = (server, peer, t, hint)
    src_slot = st.slot(server, db, src)
    life = lives.alive(st, src_slot, t)
    if life is None:
        lives.pend(st, src_slot, who, C.RENAME, args, t + KS_MATCH_WINDOW)
        lives.pend(st, st.slot(server, db, dst), who, C.RENAME, args, t + KS_MATCH_WINDOW)
        lives.miss(st, server, db, peer, hint, t, args, src, src_slot)
        return
    if src == dst:
        return
    dst_slot = st.slot(server, db, dst)
    old = lives.alive(st, dst_slot, t)
    if old is not None:
        if spec.cond == "NX":
            return
        lives.close(st, dst_slot, old, t, "rename", who, args, detail=f"overwritten by RENAME {text(src)}")
    lives.close(st, src_slot, life, t, "rename", who, args, detail=f"renamed to {text(dst)}")
    carry(st, dst_slot, life, t, who, args)


def carry(st: FoldState, slot: Slot, source: KeyLife, t: float, who: Who, args: list[bytes]) -> KeyLife:
    """A key moved under a new name or db keeps its TTL."""
    life = lives.create(st, slot, t, who, args, C.SET)
    life.expires_at = source.expires_at
    life.ttl_first = source.ttl_last
    life.ttl_last = source.ttl_last
    life.owner_ttl = source.owner_ttl
    return life


def cmd_move(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    target_db = C.move_target_db(args)
    if target_db is None or len(args) < 3:
        return
    who = (server, peer, t, hint)
    slot = st.slot(server, db, args[1])
    life = lives.alive(st, slot, t)
    if life is None:
        lives.pend(st, slot, who, C.MOVE, args, t + KS_MATCH_WINDOW)
        return
    dst = st.slot(server, target_db, args[1])
    if lives.alive(st, dst, t) is not None:
        return
    lives.close(st, slot, life, t, "move", who, args, detail=f"moved to db {target_db}")
    carry(st, dst, life, t, who, args)


def cmd_copy(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    if len(args) < 3:
        return
    who = (server, peer, t, hint)
    source = lives.alive(st, st.slots.get((server, db, args[1])), t)
    if source is None:
        lives.miss(st, server, db, peer, hint, t, args, args[1], st.slots.get((server, db, args[1])))
        return
    source.reads += 1
    target_db = C.move_target_db(args)
    dst = st.slot(server, db if target_db is None else target_db, args[2])
    old = lives.alive(st, dst, t)
    if old is not None:
        if not C.copy_replaces(args):
            return
        lives.close(st, dst, old, t, "del", who, args, detail=f"replaced by COPY {text(args[1])}")
    carry(st, dst, source, t, who, args)


def cmd_flush(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
           spec: C.Command) -> None:
    who = (server, peer, t, hint)
    everything = C.flush_all_dbs(args)
    removed: list[KeyLife] = []
    count = 0
    for live_db, index in list(st.server_state(server).live.items()):
        if not everything and live_db != db:
            continue
        for slot in list(index.values()):
            life = lives.alive(st, slot, t)
            if life is None:
                continue
            count += 1
            if len(removed) < MAX_RECORDS:
                removed.append(life)
            lives.close(st, slot, life, t, "flush", who, args, detail=command_text(args))
    if len(st.flushes) < MAX_RECORDS:
        st.flushes.append(FlushRecord(t, who, server, None if everything else db, args, removed, count))
    st.row(t, who, db, args, b"*", f"{count} live key(s) flushed", "flushed")


def cmd_swapdb(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
            spec: C.Command) -> None:
    try:
        first, second = int(args[1]), int(args[2])
    except (IndexError, ValueError):
        return
    who = (server, peer, t, hint)
    moving: list[tuple[int, KeyLife]] = []
    for source, target in ((first, second), (second, first)):
        for slot in list(st.server_state(server).live.get(source, {}).values()):
            life = lives.alive(st, slot, t)
            if life is not None:
                lives.close(st, slot, life, t, "move", who, args, detail=f"SWAPDB to db {target}")
                moving.append((target, life))
    for target, life in moving:
        carry(st, st.slot(server, target, life.key), life, t, who, args)
    st.row(t, who, db, args, b"*", f"db {first} and db {second} swapped", "renamed")
