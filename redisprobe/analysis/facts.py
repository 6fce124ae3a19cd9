"""A typed, read-only view of the fold for the doctor's rules.

The fold keeps its per-key tallies as small lists and tuples (`life.writers[peer] = [count, first_t, last_t,
hint, appends]`): cheap to update on every MONITOR line. Rules should not know those positions. They read these
named records instead, made on demand from the fold's own data (a record per entry a rule asks for, never a copy
of the fold), so the hot path keeps its plain lists and a rule reads `writer.last_t`, not `entry[2]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from redisprobe import trace
    from redisprobe.analysis.attribution import Who
    from redisprobe.analysis.lifecycle import KeyLife, Lifecycle, Slot


class Writer(NamedTuple):
    """One connection that wrote a life: how often, when first and last, how many appends."""

    peer: str
    who: Who  # its last write (the token that resolves to its process)
    writes: int
    first_t: float
    last_t: float
    appends: int


class Taker(NamedTuple):
    """One connection that took (popped, GETDEL'd) a key: how often, its first take."""

    peer: str
    who: Who  # its first take
    takes: int
    first_t: float
    args: list[bytes]


class Miss(NamedTuple):
    """A read (or TTL, removal) of a key that did not exist at that moment."""

    t: float
    who: Who
    args: list[bytes]
    certain: bool  # the reply (or the fold's own state) said the key was absent


class After(NamedTuple):
    """Something a client did to a key after a life ended (recreated it, its EXPIRE missed, a read missed)."""

    t: float
    who: Who | None
    args: list[bytes] | None
    what: str
    kind: int  # the command's kind (redisprobe.semantics.command_table)


class Line(NamedTuple):
    """One kept history line of a life."""

    t: float
    who: Who | None
    args: list[bytes] | None
    effect: str


class Race(NamedTuple):
    """The first pop that came away empty just after another connection emptied the key."""

    t: float
    who: Who
    args: list[bytes]
    emptied: KeyLife  # the life that other pop ended
    races: int  # how many pops came away empty like it


class Cleared(NamedTuple):
    """A write that dropped a life's TTL."""

    t: float
    who: Who
    args: list[bytes]
    dropped: float  # the seconds of TTL it dropped


class Pattern(NamedTuple):
    """A SCAN/KEYS pattern one connection used on one server and db (its first use, and when it last used it)."""

    server: str
    db: int
    pattern: bytes
    scans: int
    t: float
    who: Who
    args: list[bytes]
    last: float


class Select(NamedTuple):
    """The last SELECT one connection made."""

    selects: int
    t: float
    who: Who
    db: int


class StaleRead(NamedTuple):
    """A read served from a client-side cache after another client changed the key."""

    server: str
    peer: str
    key: bytes
    db: int
    op: trace.Op
    write_t: float
    write_who: Who
    write_args: list[bytes] | None


class AbandonedMulti(NamedTuple):
    t: float
    who: Who
    why: str


def writers(life: KeyLife) -> list[Writer]:
    return [Writer(peer, (life.server, peer, entry[2], entry[3]), entry[0], entry[1], entry[2], entry[4])
            for peer, entry in (life.writers or {}).items()]


def takers(slot: Slot) -> list[Taker]:
    return [Taker(peer, (slot.server, peer, first_t, hint), count, first_t, args)
            for peer, (count, first_t, hint, args) in (slot.takers or {}).items()]


def misses(slot: Slot) -> list[Miss]:
    return [Miss(*entry) for entry in slot.miss_log or ()]


def first_miss(slot: Slot) -> Miss | None:
    return Miss(*slot.miss_log[0]) if slot.miss_log else None


def after(life: KeyLife) -> list[After]:
    return [After(*entry) for entry in life.after or ()]


def history(life: KeyLife) -> list[Line]:
    return [Line(*entry) for entry in life.history()]


def raced(slot: Slot) -> Race | None:
    if slot.raced is None:
        return None
    t, who, args, emptied = slot.raced
    return Race(t, who, args, emptied, slot.raced_count)


def cleared(life: KeyLife) -> Cleared | None:
    return Cleared(*life.ttl_cleared) if life.ttl_cleared is not None else None


def patterns(lifecycle: Lifecycle) -> list[Pattern]:
    return [Pattern(server, db, pattern, count, t, who, args, last)
            for (server, db, pattern, _peer), (count, t, who, args, last) in lifecycle.patterns.items()]


def select_of(lifecycle: Lifecycle, server: str, peer: str) -> Select | None:
    entry = lifecycle.selects.get((server, peer))
    if entry is None:
        return None
    count, t, hint, db = entry
    return Select(count, t, (server, peer, t, hint), db)


def stale_reads(lifecycle: Lifecycle) -> list[StaleRead]:
    return [StaleRead(*entry) for entry in lifecycle.stale_reads]


def abandoned_multis(lifecycle: Lifecycle) -> list[AbandonedMulti]:
    return [AbandonedMulti(*entry) for entry in lifecycle.abandoned_multi]


__all__ = [
    "AbandonedMulti", "After", "Cleared", "Line", "Miss", "Pattern", "Race", "Select", "StaleRead", "Taker",
    "Writer", "abandoned_multis", "after", "cleared", "first_miss", "history", "misses", "patterns", "raced",
    "select_of", "stale_reads", "takers", "writers",
]
