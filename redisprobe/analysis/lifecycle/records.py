"""What the fold keeps: each key's lives, TTL commands, per-key slots, per-server state, timeline rows."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redisprobe import trace
from redisprobe.analysis.lifecycle.limits import (
    COMPACT_HEAD,
    COMPACT_TAIL,
    HISTORY_HEAD,
    HISTORY_TAIL,
    INF,
    ON_TIME_TOLERANCE,
)
from redisprobe.semantics import command_table as C
from redisprobe.text import actor_json, command_text, evidence_line, secs

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Attributor, Who
    from redisprobe.findings import Actor



# -- small records --------------------------------------------------------------------------------------------


class TtlSet:
    """One TTL-changing command and whether it took effect (fold's verdict, corrected by events or replies)."""

    __slots__ = (
        "args",
        "cond",
        "confirmed",
        "effective",
        "expires_at",
        "life",
        "prev_expires_at",
        "raw",
        "reason",
        "seconds",
        "t",
        "unit",
        "who",
    )

    def __init__(self, t: float, who: Who, args: list[bytes], change: C.TtlChange) -> None:
        self.t = t
        self.who = who
        self.args = args
        self.expires_at = change.expires_at
        self.seconds = change.seconds
        self.unit = change.unit
        self.raw = change.raw
        self.cond = change.cond
        self.effective: bool | None = None
        self.reason = ""
        self.prev_expires_at: float | None = None
        self.confirmed = False
        self.life: KeyLife | None = None


class KeyLife:
    """One life of one key on one server and db: from creation (or first sight) to removal (or trace end).

    Plain class with class-level defaults: a new key costs one small instance dict, which matters when every
    MONITOR line creates a key.
    """

    created_at: float | None = None
    created_by: Who | None = None
    created_args: list[bytes] | None = None
    preexisting = False  # first seen by a read/TTL/removal event: it existed before the trace
    baseline: tuple[float, str] | None = None  # (when, type): the capture's baseline saw it exist at its start
    writes = 0
    appends = 0
    reads = 0
    takes = 0
    last_write_at: float | None = None
    writers: dict[str, list[Any]] | None = None  # peer -> [count, first_t, last_t, hint, appends]
    readers: dict[str, list[Any]] | None = None  # peer -> [count, last_t, hint]
    length: int | None = None  # list length when every push and pop was seen
    expires_at: float | None = None
    ttl_first: TtlSet | None = None
    ttl_last: TtlSet | None = None
    owner_ttl: float | None = None
    ttl_sets = 0
    ttl_unknown = False  # an `expire` event with no command seen
    ttl_missed: list[TtlSet] | None = None
    ttl_missed_count = 0
    ttl_cleared: tuple[float, Who, list[bytes], float] | None = None  # (t, who, args, the TTL it dropped)
    ttl_restored_at: float | None = None
    shortened: list[tuple[TtlSet, float]] | None = None  # (the shorter set, the owner's seconds)
    unit_suspects: list[tuple[TtlSet, str]] | None = None
    ttl_before_create: TtlSet | None = None
    ttl_sample: tuple[float, int] | None = None
    prev_how: str | None = None
    prev_at: float | None = None
    prev_by: Who | None = None
    prev_ttl: float | None = None
    removed_how: str | None = None
    removed_at: float | None = None
    removed_by: Who | None = None
    removed_args: list[bytes] | None = None
    removed_detail = ""
    removed_confirmed = False
    removed_by_past_ttl = False  # a TTL <= 0 or an absolute time already gone deleted it at once
    after: list[tuple[float, Who | None, list[bytes] | None, str, int]] | None = None
    head: list[tuple[float, Who | None, list[bytes] | None, str]] | None = None
    tail: list[tuple[float, Who | None, list[bytes] | None, str]] | None = None  # rolling, HISTORY_TAIL long
    tail_at = 0  # where the oldest tail entry is, once the tail is full
    n_events = 0
    resolver: Attributor | None = None
    moved_from = ""  # the node a migration (MIGRATE) or a failover moved this life from

    def __init__(self, server: str, db: int, key: bytes) -> None:
        self.server = server
        self.db = db
        self.key = key

    # -- history -----------------------------------------------------------------------------------------------

    def note(self, t: float, who: Who | None, args: list[bytes] | None, effect: str) -> None:
        """Append one history line (first HISTORY_HEAD kept, then a rolling tail)."""
        entry = (t, who, args, effect)
        self.n_events += 1
        head = self.head
        if head is None:
            self.head = [entry]
        elif len(head) < HISTORY_HEAD:
            head.append(entry)
        else:
            tail = self.tail
            if tail is None:
                self.tail = [entry]
            elif len(tail) < HISTORY_TAIL:
                tail.append(entry)
            else:  # a ring: the oldest entry is at tail_at
                at = self.tail_at
                tail[at] = entry
                self.tail_at = (at + 1) % HISTORY_TAIL

    def release(self) -> None:
        """Break the life <-> TTL record cycles of a life being dropped, so refcounting frees it at once
        (the fold runs with the cyclic collector off)."""
        for record in (self.ttl_first, self.ttl_last, *(self.ttl_missed or ()),
                       *(r for r, _ in self.unit_suspects or ()), *(r for r, _ in self.shortened or ())):
            if record is not None:
                record.life = None

    def compact(self) -> None:
        """Forget what no rule needs once an unremarkable life is over (per-client tallies, most history)."""
        self.readers = None
        self.writers = None
        if self.head is not None and len(self.head) > COMPACT_HEAD:
            self.head = self.head[:COMPACT_HEAD]
        if self.tail is not None:
            self.tail = self.tail_in_order()[-COMPACT_TAIL:]
            self.tail_at = 0

    def tail_in_order(self) -> list[tuple[float, Who | None, list[bytes] | None, str]]:
        tail = self.tail
        if tail is None:
            return []
        at = self.tail_at
        return tail[at:] + tail[:at] if at else list(tail)

    def history(self) -> list[tuple[float, Who | None, list[bytes] | None, str]]:
        """The kept history lines, in order (a gap between head and tail is marked by `n_events`)."""
        return list(self.head or ()) + self.tail_in_order()

    # -- facts -------------------------------------------------------------------------------------------------

    @property
    def key_text(self) -> str:
        return self.key.decode("utf-8", "backslashreplace")

    @property
    def lifetime(self) -> float | None:
        if self.created_at is None or self.removed_at is None:
            return None
        return max(self.removed_at - self.created_at, 0.0)

    @property
    def ttl_set(self) -> float | None:
        """Seconds of the last effective TTL set in this life (None when none was)."""
        last = self.ttl_last
        return last.seconds if last is not None else None

    @property
    def expired_on_time(self) -> bool:
        """Expired at (about) the TTL that was set on it: not a problem, a life fact."""
        if self.removed_how != "expired" or self.expires_at is None or self.removed_at is None:
            return False
        return self.removed_at >= self.expires_at - ON_TIME_TOLERANCE

    @property
    def removed_early_by_client(self) -> bool:
        """Removed by a client's DEL/UNLINK/GETDEL/pop before half its TTL ran (cheap pre-filter for rules)."""
        if self.removed_by is None or self.removed_how not in ("del", "unlink", "getdel", "pop"):
            return False
        start = self.ttl_first.t if self.ttl_first is not None else self.created_at
        ttl = self.ttl_set
        if ttl is None or start is None or self.removed_at is None:
            return False
        return (self.removed_at - start) < 0.5 * ttl

    @property
    def remarkable(self) -> bool:
        """Worth keeping after newer lives pushed it out: anything a doctor rule might flag."""
        return bool(
            self.removed_early_by_client or self.ttl_missed or self.ttl_cleared or self.shortened
            or self.unit_suspects or self.ttl_before_create or self.removed_how in ("evicted", "flush", "rename",
                                                                                   "move")
            or (self.removed_how == "expired" and not self.expired_on_time)
            or (self.removed_how == "del" and self.removed_args and C.lookup(self.removed_args[0]).removes != "del")
            or self.prev_how in ("expired", "evicted")
        )

    def actor(self, who: Who | None) -> Actor | None:
        return self.resolver.resolve(who) if self.resolver is not None and who is not None else None

    @property
    def verdict(self) -> str:
        """One plain line on how this life ended (the `expired on time` info fact lives here)."""
        how = self.removed_how
        if how is None:
            return "still there at the end of the trace"
        if how == "expired":
            if self.expired_on_time and self.ttl_last is not None:
                return f"expired on time ({secs(self.ttl_last.seconds)} TTL)"
            if self.expired_on_time and self.baseline is not None:
                return "expired on time (on the TTL it had when the capture began)"
            return "expired (TTL not seen)" if self.expires_at is None else "expired before the TTL set on it"
        if how == "evicted":
            return "evicted by the server (maxmemory)"
        return f"removed by {how}" + (f" ({self.removed_detail})" if self.removed_detail else "")

    def to_json(self, history: bool = True) -> dict[str, Any]:
        """Plain JSON data; actors resolved (pid, label, client id); `events` (the history lines, the costly
        part) only with `history`."""
        removed = None
        if self.removed_how is not None:
            removed = {"how": self.removed_how, "at": self.removed_at,
                       "by": actor_json(self.actor(self.removed_by)),
                       "command": command_text(self.removed_args) if self.removed_args else None,
                       "detail": self.removed_detail or None, "confirmed": self.removed_confirmed}
        ttl_first = self.ttl_first
        data = {
            "key": self.key_text,
            "db": self.db,
            "server": self.server,
            "created_at": self.created_at,
            "created_by": actor_json(self.actor(self.created_by)),
            "created_with": command_text(self.created_args) if self.created_args else None,
            "preexisting": self.preexisting,
            "writes": self.writes,
            "reads": self.reads,
            "ttl_set": self.ttl_set,
            "ttl_first": ttl_first.seconds if ttl_first is not None else None,
            "ttl_sets": self.ttl_sets,
            "ttl_missed": self.ttl_missed_count,
            "removed": removed,
            "lifetime": self.lifetime,
            "expired_on_time": self.expired_on_time,
            "verdict": self.verdict,
        }
        if self.baseline is not None:
            data["before_capture"] = {"seen_at": self.baseline[0], "type": self.baseline[1]}
        if history:
            data["events"] = self.history_lines()
        return data

    def history_lines(self) -> list[str]:
        lines = []
        for index, (t, who, args, effect) in enumerate(self.history()):
            if index == len(self.head or ()) and self.n_events > len(self.head or ()) + len(self.tail or ()):
                lines.append(f"... {self.n_events - len(self.head or ()) - len(self.tail or ())} more ...")
            lines.append(evidence_line(t, self.actor(who), args, effect, self.db))
        return lines


class Slot:
    """Everything about one (server, db, key): the live life, kept past lives, misses, takers, pending causes.

    Class-level defaults, like KeyLife: most keys only ever use `live`, so a new key costs three assignments.
    """

    live: KeyLife | None = None
    lives: list[KeyLife] | None = None  # the LIVES_KEPT most recent closed lives
    kept: list[KeyLife] | None = None
    dropped = 0
    count = 0
    last_closed: KeyLife | None = None
    misses = 0
    miss_log: list[tuple[float, Who, list[bytes], bool]] | None = None
    absent_ttl: list[TtlSet] | None = None
    absent_ttl_count = 0
    pending: list[tuple[float, Who, int, list[bytes]]] | None = None  # (deadline, who, kind, args)
    takers: dict[str, list[Any]] | None = None  # peer -> [count, first_t, hint, args]
    ttl_recent: list[TtlSet] | None = None  # the last LOG_CAP TTL commands, for pairing events and replies
    raced: tuple[float, Who, list[bytes], KeyLife] | None = None  # the first pop that came away empty just after
    raced_count = 0  # another connection's pop emptied the key (the emptied life), and how many did
    ks_last = 0.0  # when the last keyspace event on this key arrived

    def __init__(self, server: str, db: int, key: bytes) -> None:
        self.server = server
        self.db = db
        self.key = key

    def all_lives(self) -> list[KeyLife]:
        if self.lives is None:
            return [self.live] if self.live is not None else []
        lives = list(self.kept or ()) + list(self.lives)
        if self.live is not None:
            lives.append(self.live)
        return lives


@dataclass


class ServerState:
    """What we know about one server (a target address) over the trace."""

    server: str
    monitored: bool = False
    ops_commands: bool = False  # our actors' ops are the command source here (nobody monitored it)
    keyspace: bool = False
    ks_generic: bool = False
    script_peer: str = "lua"
    script_hint: int = 0
    first_t: float | None = None
    last_t: float | None = None
    run_ids: list[tuple[float, str, str]] | None = None  # (t, run_id, source) changes only
    changes: list[tuple[trace.ServerSeen, trace.ServerSeen]] | None = None  # (before, after): restart/evictions
    last_sample: trace.ServerSeen | None = None
    gaps: list[trace.Gap] | None = None
    dbs: set[int] | None = None
    ks_last_t: float = -INF  # the latest keyspace event seen from this server
    ks_first_t: float = INF  # the first one
    ks_marked: bool = False  # the keyspace link's marks are in the trace: its lag is measured
    ks_mark_sent: float = -INF  # the sending time of the latest mark answered: every event before it has been read
    live: dict[int, dict[bytes, Slot]] = field(default_factory=dict)  # db -> key -> slot with a live life
    primary: str | None = None  # a cluster replica's primary (host:port): its MONITOR repeats that one's writes
    links: set[str] | None = None  # the replication link's addresses as this server's MONITOR names them
    link_listed: bool = False  # CLIENT LIST has shown the link (flag M): its address is known for sure
    clock_offset: float = 0.0  # this server's clock minus the capture's (a cluster node's, measured with TIME)
    clock_uncertainty: float = 0.0  # how far off that may be: events closer than this have no sure order


@dataclass(frozen=True)


class TimelineRow:
    """One notable line for the renderer: deletions, expiries and evictions carry `flag`."""

    t: float
    actor: Actor | None
    client_id: int | None
    db: int
    command: str
    key: str
    effect: str
    flag: str  # "" / created / ttl / ttl-missed / removed / expired / evicted / flushed / missed / renamed


@dataclass(frozen=True)


class Timeline:
    rows: list[TimelineRow]
    truncated: int = 0  # rows past the limit, counted not kept


class BlockedClient:
    """A connection CLIENT LIST showed blocked (flags=b) from its first sample: its BLPOP/BLMOVE/XREAD... was sent
    before the capture, so CLIENT LIST (`cmd=`, `db=`) is the only evidence of what it waits for and where."""

    __slots__ = ("addr", "client_id", "cmd", "db", "first_t", "last_t", "returned", "served", "still")

    def __init__(self, t: float, client_id: int, addr: str, db: int, cmd: str) -> None:
        self.first_t = t
        self.last_t = t
        self.client_id = client_id
        self.addr = addr
        self.db = db
        self.cmd = cmd
        self.still = True  # still blocked in the same command at the last sample
        self.served = False  # a keyspace event with no command seen was put down to it
        self.returned = False  # MONITOR showed the connection's next command: this wait was over by then


@dataclass


class FlushRecord:
    t: float
    who: Who
    server: str
    db: int | None  # None: FLUSHALL
    args: list[bytes]
    removed: list[KeyLife]
    removed_count: int = 0


def intended(intended: dict[str, float], key: bytes) -> float | None:
    text = key.decode("utf-8", "backslashreplace")
    if text in intended:
        return intended[text]
    for pattern, seconds in intended.items():
        if fnmatch.fnmatchcase(text, pattern):
            return seconds
    return None

