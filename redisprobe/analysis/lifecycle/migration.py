"""MIGRATE folded as a move: a key one node hands to another (a cluster's resharding) goes on living there, the
same life, never a delete nobody made.

The source's MONITOR shows `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH..] [KEYS k..]`, after the
target's shows the RESTORE-ASKING each key arrived with (MONITOR times are taken once a command ran); the source's
keyspace then says `del` for each key it handed over. Whichever line comes first moves the key's live life to the
target (listed there from then on); the other only adds who ran it. The source's `del` event of a moved key is the
move's. Outside a cluster the target gets a plain RESTORE instead: the life it made is the same key arriving.
MIGRATE ... COPY leaves the source its key and gives the target a life of its own.
"""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.lifecycle import lives, pairing
from redisprobe.analysis.lifecycle.limits import KS_MATCH_WINDOW, MAX_RECORDS
from redisprobe.analysis.lifecycle.records import KeyLife, Slot
from redisprobe.analysis.lifecycle.state import FoldState, normalize_target
from redisprobe.semantics import command_table as C

_SECRET_AFTER = {b"AUTH": 1, b"AUTH2": 2}  # MIGRATE's credentials for the target: never kept


def on_keyspace(st: FoldState, event: trace.Keyspace) -> None:
    """A `del` the source node says for a key it just migrated is the move's; every other event is paired as
    usual."""
    moved = st.migrated_out
    if moved and event.event == "del":
        at = moved.pop((st.server_of(event.target), event.db, event.key), None)
        if at is not None and abs(event.t - at) <= KS_MATCH_WINDOW:
            return
    pairing.on_keyspace(st, event)


def cmd_migrate(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
    """The source's MIGRATE: each key's life moves to the target (unless its RESTORE-ASKING moved it already)."""
    if len(args) < 6:
        return
    target = normalize_target(f"{args[1].decode('utf-8', 'replace')}:{args[2].decode('utf-8', 'replace')}")
    try:
        to_db = int(args[4])
    except ValueError:
        return
    copy = any(arg.upper() == b"COPY" for arg in args[6:])
    shown = _without_secrets(args)
    who = (server, peer, t, hint)
    for key in spec.keys(args):
        there = st.slot(target, to_db, key)
        arrived = there.live
        if arrived is not None and arrived.moved_from == server and not copy:
            arrived.note(t, who, shown, f"migrated from {server} to {target}")  # its RESTORE-ASKING came first
            continue
        slot = st.slots.get((server, db, key))
        life = slot.live if slot is not None else None
        if copy:
            if arrived is not None and arrived.moved_from == server and slot is not None:
                _move(st, there, arrived, server, db, t)  # RESTORE-ASKING took it for a move: it stays here
                st.migrated_out.pop((target, to_db, key), None)
                arrived = None
            if arrived is not None and not _restored(arrived, t):  # COPY REPLACE over a key the target had
                lives.close(st, there, arrived, t, "del", None, None, confirmed=True,
                            detail=f"replaced by the same key copied from {server}")
                arrived = None
            if arrived is None:
                arrived = lives.create(st, there, t, who, shown, C.WRITE)
            else:  # the RESTORE the source sent: made by whoever ran the MIGRATE
                arrived.created_by, arrived.created_args = who, shown
            arrived.note(t, who, shown, f"copied from {server} to {target} (MIGRATE ... COPY)")
            continue
        if slot is None or life is None:
            continue
        if arrived is not None and _restored(arrived, t):  # the RESTORE that carried it (a server not in a
            _forget(st, there)                             # cluster): the same key arriving, not another life
        _move(st, slot, life, target, to_db, t)
        life.note(t, who, shown, f"migrated from {server} to {target}")


def _restored(life: KeyLife, t: float) -> bool:
    """A life a RESTORE made just now: what a MIGRATE outside a cluster sends the target."""
    made = life.created_args
    return bool(made) and made is not None and made[0].upper() == b"RESTORE" and life.created_at is not None \
        and t - life.created_at <= KS_MATCH_WINDOW


def _forget(st: FoldState, slot: Slot) -> None:
    index = st.server_state(slot.server).live.get(slot.db)
    if index is not None:
        index.pop(slot.key, None)
    slot.live = None
    slot.count -= 1


def cmd_restore_asking(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                       spec: C.Command) -> None:
    """A key arriving on the target of a migration: the live life it has on another node moves here."""
    if len(args) < 2:
        return
    key = args[1]
    here = st.slot(server, db, key)
    if here.live is not None:
        return  # its MIGRATE line came first and moved it already (or REPLACE over a life of its own)
    for other in list(st.servers):
        slot = st.slots.get((other, db, key)) if other != server else None
        life = slot.live if slot is not None else None
        if slot is not None and life is not None:
            _move(st, slot, life, server, db, t)
            life.note(t, None, args[:2], f"migrated from {other} to {server}")  # the source node's own link
            return
    # the key was made before the capture, on a node not watched or before it was
    arrived = lives.create(st, here, t, None, None, 0, preexisting=True)
    arrived.note(t, None, args[:2], f"migrated to {server} from a node not watched then")


def _move(st: FoldState, slot: Slot, life: KeyLife, target: str, to_db: int, t: float) -> None:
    """The same life, from `slot` to the target's slot for the key; the source's `del` to come is the move's."""
    _forget(st, slot)
    there = st.slot(target, to_db, slot.key)
    if there.live is not None:  # MIGRATE ... REPLACE over a key the target had
        lives.close(st, there, there.live, t, "del", None, None, confirmed=True,
                    detail=f"replaced by the same key migrated from {slot.server}")
    there.live = life
    there.count += 1
    live = st.server_state(target).live
    live.setdefault(to_db, {})[slot.key] = there
    life.moved_from = slot.server
    life.server = target
    life.db = to_db
    if len(st.migrated_out) < MAX_RECORDS:
        st.migrated_out[(slot.server, slot.db, slot.key)] = t


def _without_secrets(args: list[bytes]) -> list[bytes]:
    out = list(args)
    index = 6
    while index < len(out):
        hidden = _SECRET_AFTER.get(out[index].upper(), 0)
        for offset in range(1, hidden + 1):
            if index + offset < len(out):
                out[index + offset] = b"***"
        if out[index].upper() == b"KEYS":
            break
        index += 1 + hidden
    return out
