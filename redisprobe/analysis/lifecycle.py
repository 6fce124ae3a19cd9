"""Fold a trace into each key's lives: created by whom, TTL set or missed by whom, read, removed how and by whom.

The fold is a single pass over a time-ordered stream (millions of MONITOR lines), so per-line work is a dict
lookup or two; memory grows with keys and clients, never with lines (histories and logs are capped, a key's
old unremarkable lives are counted and dropped).

Commands come from MONITOR (exact args, server time, peer) or, for a server nobody monitored, from our actors'
own ops. Keyspace events say what really happened: each is paired with the command that caused it (same key,
same db, nearest preceding command that can produce it); `expired`/`evicted` have no client cause. Who sent a
command is kept as a `Who` token and turned into an `Actor` at the end, once every CLIENT LIST sample is known.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import re
import time as _time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from redisprobe import trace
from redisprobe.analysis import commands as C
from redisprobe.analysis.attribution import Attributor, Who
from redisprobe.findings import Actor
from redisprobe.gcpause import gc_paused

KS_MATCH_WINDOW: Final = 0.5
"""Seconds within which a keyspace event is paired with the command that caused it (receipt lag)."""

POST_TOUCH_WINDOW: Final = 5.0
"""Seconds after a removal during which touches of the same key are remembered on the removed life."""

CREATE_AFTER_MISS_WINDOW: Final = 1.0
"""An EXPIRE that missed this many seconds or less before the key was created "arrived before the key"."""

ON_TIME_TOLERANCE: Final = 0.25
"""Seconds of slack when judging that a key expired at the TTL set on it (the server's sweep is lazy)."""

TX_GRACE: Final = 0.5
"""A MULTI this close to the end of the trace may still get its EXEC: not called abandoned."""

LIVES_KEPT: Final = 2
"""Closed lives kept per key (the most recent); older ones are kept only if remarkable, else counted."""

REMARKABLE_KEPT: Final = 2
"""Older remarkable lives kept per key (removed early by a client, TTL missed or cleared...)."""

COMPACT_HEAD: Final = 2
COMPACT_TAIL: Final = 2
"""History lines an unremarkable life keeps once it is over (its start and its end)."""

HISTORY_HEAD: Final = 3
HISTORY_TAIL: Final = 4
"""History lines kept per life: the first HISTORY_HEAD and the last HISTORY_TAIL."""

LOG_CAP: Final = 4
"""Entries kept per key for misses, missed EXPIREs and touches after removal."""

MAX_MISS_ONLY_KEYS: Final = 200_000
"""Keys that were only ever read while missing are tracked up to this many (cache misses can be endless)."""

MAX_PENDING_CONFIRMS: Final = 100_000
"""EXPIREs waiting for their keyspace event at once (more means the keyspace stream stalled)."""

MAX_SECOND_VALUES: Final = 32
"""Distinct TTL values (in seconds) remembered per connection, to spot the same number sent as milliseconds."""

MAX_PATTERNS: Final = 1_000
MAX_RECORDS: Final = 1_000
"""Caps on SCAN/KEYS patterns, flushes, abandoned MULTIs and server samples remembered."""

TIMELINE_LIMIT: Final = 10_000
"""Notable rows kept for the renderer; the rest are counted (a truncation notice, never a silent cut)."""

REORDER_WINDOW: Final = 5.0
"""Seconds a non-MONITOR event may wait for MONITOR time to catch up (a lagging MONITOR reader's batches)."""

REORDER_WINDOW_UNMONITORED: Final = 1.0
"""The same wait when no server is monitored: events only need sorting among themselves."""

PREFETCH_SECONDS: Final = 2.0
PREFETCH_EVENTS: Final = 50_000
"""How far `run` looks ahead to learn which servers were monitored (their actors' ops are then only replies)."""

_INF: Final = float("inf")
_COMMANDS: Final = C.COMMANDS  # a static here: no module attribute lookup per line
MonitorRow = tuple[float, int, str, list[bytes]]
_GENERIC = C.GENERIC_EVENTS


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
    after: list[tuple[float, Who | None, list[bytes] | None, str, int]] | None = None
    head: list[tuple[float, Who | None, list[bytes] | None, str]] | None = None
    tail: list[tuple[float, Who | None, list[bytes] | None, str]] | None = None  # rolling, HISTORY_TAIL long
    tail_at = 0  # where the oldest tail entry is, once the tail is full
    n_events = 0
    resolver: Attributor | None = None

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
            or (self.removed_how == "del" and self.removed_args and self.removed_args[0].upper() != b"DEL")
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
                return f"expired on time ({_secs(self.ttl_last.seconds)} TTL)"
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
                       "by": _actor_json(self.actor(self.removed_by)),
                       "command": _command_text(self.removed_args) if self.removed_args else None,
                       "detail": self.removed_detail or None, "confirmed": self.removed_confirmed}
        ttl_first = self.ttl_first
        data = {
            "key": self.key_text,
            "db": self.db,
            "server": self.server,
            "created_at": self.created_at,
            "created_by": _actor_json(self.actor(self.created_by)),
            "created_with": _command_text(self.created_args) if self.created_args else None,
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


class _Slot:
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
    ks_last_t: float = -_INF  # the latest keyspace event seen from this server
    live: dict[int, dict[bytes, _Slot]] = field(default_factory=dict)  # db -> key -> slot with a live life


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


@dataclass
class FlushRecord:
    t: float
    who: Who
    server: str
    db: int | None  # None: FLUSHALL
    args: list[bytes]
    removed: list[KeyLife]
    removed_count: int = 0


# -- the fold -------------------------------------------------------------------------------------------------

class Lifecycle:
    """Feed events in time order (`feed` or `run`), then `finish()`; read `lives()`, `timeline()`, state."""

    def __init__(self, *, watched: dict[int, str] | None = None, intended_ttls: dict[str, float] | None = None,
                 timeline_limit: int = TIMELINE_LIMIT) -> None:
        self.attributor = Attributor(watched)
        self.intended_ttls = dict(intended_ttls or {})
        self.slots: dict[tuple[str, int, bytes], _Slot] = {}
        self.servers: dict[str, ServerState] = {}
        self.flushes: list[FlushRecord] = []
        self.open_multi: dict[tuple[str, str], tuple[float, Who, list[bytes]]] = {}
        self.abandoned_multi: list[tuple[float, Who, str]] = []  # (t, who, why)
        self.selects: dict[tuple[str, str], list[Any]] = {}  # (server, peer) -> [count, t, hint, db]
        self.patterns: dict[tuple[str, int, bytes], list[Any]] = {}  # -> [count, t, who]
        self.units: dict[tuple[str, str], set[str | int]] = {}  # (server, peer) -> "ms" and the seconds it wrote
        self.unit_users: dict[tuple[str, str], Who] = {}
        self.checks: list[trace.Check] = []
        self.op_errors: list[trace.Op] = []
        self.actors: list[trace.ActorStarted] = []
        self.untracked_misses = 0
        self.events = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._miss_only = 0
        self._rows: list[tuple[float, Who | None, int, list[bytes] | None, bytes, str, str]] = []
        self._rows_dropped = 0
        self._timeline_limit = timeline_limit
        self._targets: dict[str, str] = {}
        self._monitored: dict[str, tuple[str, ServerState]] = {}
        self._confirm_q: deque[tuple[float, TtlSet]] = deque()  # EXPIREs waiting for their keyspace event
        self._stale_q: deque[tuple[float, tuple[Any, ...]]] = deque()  # tracking clients' reads, to check
        self._held: list[tuple[float, int, trace.Event]] = []  # non-MONITOR events waiting for MONITOR time
        self._seq = 0
        self._monitor_seen = False
        self._undecided: list[TtlSet] = []
        self._keyspace_seen = False
        self._op_replies: dict[tuple[str, int, bytes], list[tuple[float, int, list[bytes], int]]] = {}
        self.tracking: set[tuple[str, int]] = set()  # connections with CLIENT TRACKING on
        self.stale_reads: list[tuple[str, str, bytes, int, trace.Op, float, Who, list[bytes] | None]] = []
        self._queued_ops: dict[tuple[str, int], list[trace.Op]] = {}
        self._op_multi: set[tuple[str, int]] = set()
        self._finished = False
        self._pairing = True  # TTL commands are remembered per key for keyspace events and replies to pair with
        self._dispatch = {
            trace.Monitor: self._on_monitor, trace.Keyspace: self._on_keyspace, trace.Op: self._on_op,
            trace.ClientSeen: self._on_client, trace.ActorStarted: self._on_actor, trace.ServerSeen: self._on_server,
            trace.Gap: self._on_gap, trace.TtlSample: self._on_ttl_sample, trace.Check: self._on_check,
        }
        self._handlers = {
            C.READ: self._read, C.WRITE: self._write, C.WRITE_EXISTING: self._write_existing, C.SET: self._set,
            C.OVERWRITE: self._overwrite, C.REMOVE: self._remove, C.POP: self._pop, C.TRIM: self._trim,
            C.MOVE_ELEMENT: self._move_element, C.TTL: self._ttl, C.RENAME: self._rename, C.MOVE: self._move,
            C.COPY: self._copy, C.FLUSH: self._flush, C.SWAPDB: self._swapdb, C.SELECT: self._select,
            C.SCAN: self._scan, C.SCRIPT: self._script, C.MULTI: self._multi, C.EXEC: self._exec,
            C.DISCARD: self._exec,
        }

    # -- driving -----------------------------------------------------------------------------------------------

    def run(self, events: Iterable[trace.Event]) -> Lifecycle:
        """Fold a whole stream: look ahead a little to learn which servers are monitored, then stream."""
        stream = iter(events)
        buffered: list[trace.Event] = []
        start: float | None = None
        for event in stream:
            buffered.append(event)
            kind = type(event)
            if kind is trace.Monitor:
                self._state(self._server_of(event.target)).monitored = True  # type: ignore[union-attr]
                self._monitor_seen = True
            elif kind is trace.Keyspace:
                self._state(self._server_of(event.target)).keyspace = True  # type: ignore[union-attr]
                self._keyspace_seen = True
            if start is None:
                start = event.t
            if len(buffered) >= PREFETCH_EVENTS or event.t - start > PREFETCH_SECONDS:
                break
        with gc_paused():
            self._feed_all(itertools.chain(buffered, stream))
            del buffered
            self.finish()
        return self

    def _feed_all(self, events: Iterable[trace.Event]) -> None:
        """`feed` for a whole stream, with the per-event work inlined (this loop sees every MONITOR line).

        Observers write from their own threads, so a saved trace is only nearly sorted: MONITOR lines often
        come in batches after the keyspace events they caused. MONITOR lines (one ordered stream per server)
        go straight through; every other event waits in a small heap until MONITOR time has passed it (or
        it is REORDER_WINDOW old), so each keyspace event meets the command that caused it first.
        """
        monitor_type = trace.Monitor
        held = self._held
        push = heapq.heappush
        stale = self._stale_q
        count = 0
        seq = self._seq
        newest = self.last_t if self.last_t is not None else -_INF
        oldest = self.first_t if self.first_t is not None else _INF
        window = REORDER_WINDOW if self._monitor_seen else REORDER_WINDOW_UNMONITORED
        for event in events:
            count += 1
            t = event.t
            if t > newest:
                newest = t
            if t < oldest:
                oldest = t
            if type(event) is monitor_type:
                if held and held[0][0] <= t:
                    self._release(t)
                if stale and stale[0][0] < t:
                    self._settle_stale(t)
                self._on_monitor(event)  # type: ignore[arg-type]
            else:
                seq += 1
                push(held, (t, seq, event))
                if held[0][0] < newest - window:
                    self._release(newest - window)
                    window = REORDER_WINDOW if self._monitor_seen else REORDER_WINDOW_UNMONITORED
        self._seq = seq
        if count:
            self.events += count
            self.first_t = oldest if oldest != _INF else None
            self.last_t = newest if newest != -_INF else None

    def _release(self, upto: float) -> None:
        """Fold the held (non-MONITOR) events up to time `upto`, oldest first."""
        held = self._held
        pop = heapq.heappop
        dispatch = self._dispatch
        while held and held[0][0] <= upto:
            event = pop(held)[2]
            handler = dispatch.get(type(event))
            if handler is not None:
                handler(event)  # type: ignore[operator]

    def feed(self, event: trace.Event) -> None:
        """Fold one event (nearly time-ordered, like a trace file; `finish()` once at the end)."""
        self._feed_all((event,))

    def finish(self) -> None:
        """Close what the end of the trace decides: keys past their TTL expired, pending checks settle."""
        if self._finished:
            return
        self._finished = True
        self._release(_INF)
        self._settle_stale(_INF)
        self._settle(_INF)
        for record in self._undecided:
            self._confirm_q.append((0.0, record))
        self._undecided = []
        self._settle(_INF)
        end = self.last_t if self.last_t is not None else 0.0
        for slot in list(self.slots.values()):
            life = slot.live
            if life is not None and life.expires_at is not None and life.expires_at <= end:
                self._close(slot, life, life.expires_at, "expired", None, None)
        for t, who, _args in list(self.open_multi.values()):
            if end - t >= TX_GRACE and len(self.abandoned_multi) < MAX_RECORDS:
                self.abandoned_multi.append((t, who, "no EXEC or DISCARD by the end of the trace"))
        self.open_multi.clear()

    # -- identities ---------------------------------------------------------------------------------------------

    def _server_of(self, target: str) -> str:
        server = self._targets.get(target)
        if server is None:
            server = normalize_target(target)
            self._targets[target] = server
        return server

    def _state(self, server: str) -> ServerState:
        state = self.servers.get(server)
        if state is None:
            state = ServerState(server)
            self.servers[server] = state
        return state

    def _slot(self, server: str, db: int, key: bytes) -> _Slot:
        slot = self.slots.get((server, db, key))
        if slot is None:
            slot = _Slot(server, db, key)
            self.slots[(server, db, key)] = slot
        return slot

    def server_for_pid(self, pid: int) -> str:
        return self.attributor.actor_server.get(pid, "")

    # -- event handlers -----------------------------------------------------------------------------------------

    def _on_monitor(self, event: trace.Monitor) -> None:
        known = self._monitored.get(event.target)
        if known is None:
            known = self._monitor_target(event.target)
        self._on_line(known, event.t, event.db, event.peer, event.args)

    def run_rows(self, batches: Iterable[list[MonitorRow]], target: str = "") -> Lifecycle:
        """Fold one server's MONITOR lines given as (t, db, peer, args) rows, in the order the server ran them.

        A monitor log needs nothing else (no re-ordering, no other events), so `report` feeds it here: no event
        object per line.
        """
        self._pairing = False  # MONITOR lines only: no keyspace event or reply will ever need a TTL command
        with gc_paused():
            known = self._monitor_target(target)
            count = 0
            newest = self.last_t if self.last_t is not None else -_INF
            oldest = self.first_t if self.first_t is not None else _INF
            for rows in batches:
                count += len(rows)
                for t, db, peer, args in rows:
                    if t > newest:
                        newest = t
                    if t < oldest:
                        oldest = t
                    self._on_line(known, t, db, peer, args)
            if count:
                self.events += count
                self.first_t = oldest
                self.last_t = newest
            self.finish()
        return self

    def _on_line(self, known: tuple[str, ServerState], t: float, db: int, peer: str, args: list[bytes]) -> None:
        if not args:
            return
        spec = _COMMANDS.get(args[0]) or C.lookup(args[0])
        kind = spec.kind
        if kind == 0:  # C.OTHER
            return
        server, state = known
        if peer == "lua":
            peer, hint = state.script_peer, state.script_hint
        elif peer[0] == "u":
            hint = hash(tuple(args))  # unix socket: matched against actors' ops at the end
        else:
            hint = 0
        for arg in args:
            if len(arg) > ARG_KEPT:  # a big value: what the fold keeps is cut, so memory follows keys, not values
                args = _trimmed(args, spec)
                break
        if kind == 1 and spec.single and len(args) > 1:  # C.READ of one key: the commonest line, inlined
            index = state.live.get(db)  # live keys only: a key with no live life takes the general path
            slot = index.get(args[1]) if index is not None else None
            life = slot.live if slot is not None else None
            if life is not None and (life.expires_at is None or t < life.expires_at):
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
                return
        # the common kinds as direct calls (compiled, a call through the handler table costs far more)
        if kind == C.SET:
            self._set(server, db, peer, hint, t, args, spec)
        elif kind == C.TTL:
            self._ttl(server, db, peer, hint, t, args, spec)
        elif kind == C.READ:
            self._read(server, db, peer, hint, t, args, spec)
        elif kind == C.REMOVE:
            self._remove(server, db, peer, hint, t, args, spec)
        elif kind == C.WRITE:
            self._write(server, db, peer, hint, t, args, spec)
        else:
            self._handlers[kind](server, db, peer, hint, t, args, spec)

    def _monitor_target(self, target: str) -> tuple[str, ServerState]:
        server = self._server_of(target)
        state = self._state(server)
        state.monitored = True
        state.ops_commands = False
        self._monitored[target] = (server, state)
        self._monitor_seen = True
        return server, state

    def _on_op(self, event: trace.Op) -> None:
        server = self.attributor.actor_server.get(event.pid)
        if server is None:
            server = self.attributor.server_of(event.pid, event.client_id)
        state = self._state(server)
        args = event.args
        spec = C.lookup(args[0]) if args else C.lookup(b"")
        hint = hash(tuple(args)) if args else 0
        self.attributor.op_seen(event, server, hint)
        if event.error and len(self.op_errors) < MAX_RECORDS:
            self.op_errors.append(event)
        if not args:
            return
        if state.monitored:
            self._annotate(server, event, spec)
            return
        state.ops_commands = True
        peer = f"id:{event.client_id}"
        client = (server, event.client_id)
        kind = spec.kind
        if kind == C.MULTI:
            self._op_multi.add(client)
            self._queued_ops[client] = []
            self._multi(server, event.db, peer, 0, event.t, args, spec)
            return
        if client in self._op_multi and kind not in (C.EXEC, C.DISCARD):
            queued = self._queued_ops[client]
            if len(queued) < MAX_RECORDS:
                queued.append(event)
            return
        if kind in (C.EXEC, C.DISCARD):
            self._op_multi.discard(client)
            queued = self._queued_ops.pop(client, [])
            if kind == C.EXEC and event.reply is not None and not event.error:
                for op in queued:
                    self._apply_op(server, peer, event.t, op)
            self._exec(server, event.db, peer, 0, event.t, args, spec)
            return
        self._apply_op(server, peer, event.t, event)

    def _apply_op(self, server: str, peer: str, t: float, op: trace.Op) -> None:
        """An actor's op as a command (nobody monitored its server); its reply corrects the fold."""
        if op.error:
            return
        args = op.args
        spec = C.lookup(args[0])
        if spec.kind == C.OTHER:
            return
        self._handlers[spec.kind](server, op.db, peer, 0, t, args, spec)
        self._reply_correction(server, op, spec, peer, t)

    def _reply_correction(self, server: str, op: trace.Op, spec: C.Command, peer: str, t: float) -> None:
        """Replies say what the fold could only guess: EXPIRE 0/1, a GET that found nothing."""
        name = op.args[0].upper()
        if len(op.args) < 2:
            return
        slot = self.slots.get((server, op.db, op.args[1]))
        if slot is None:
            return
        if spec.kind == C.TTL and name != b"PERSIST" and name != b"GETEX" and slot.ttl_recent:
            record = slot.ttl_recent[-1]
            if record.t == t and isinstance(op.reply, int):
                self._ttl_verdict(slot, record, bool(op.reply), "the command replied 0")
        elif spec.kind == C.READ and name == b"GET" and op.reply is not None and slot.live is None:
            # the key existed: the trace started after it was made
            life = self._create(slot, t, None, None, 0, preexisting=True)
            life.reads += 1
            if slot.miss_log and slot.miss_log[-1][0] == t:
                slot.miss_log.pop()
                slot.misses -= 1

    def _annotate(self, server: str, op: trace.Op, spec: C.Command) -> None:
        """On a monitored server an op only adds its reply: EXPIRE's 0/1 settles whether it took effect."""
        name = op.args[0].upper()
        if name == b"CLIENT" and len(op.args) > 2 and op.args[1].upper() == b"TRACKING":
            (self.tracking.add if op.args[2].upper() == b"ON" else self.tracking.discard)((server, op.client_id))
            return
        if spec.kind == C.READ and (server, op.client_id) in self.tracking and len(op.args) > 1:
            self._stale_candidate(server, op)
            return
        if spec.kind != C.TTL or len(op.args) < 2 or not isinstance(op.reply, int):
            return
        name = op.args[0].upper()
        if name == b"PERSIST" or name == b"GETEX":
            return
        slot = self.slots.get((server, op.db, op.args[1]))
        for record in reversed(slot.ttl_recent) if slot is not None and slot.ttl_recent else ():
            if abs(record.t - op.t) > KS_MATCH_WINDOW:
                continue
            client = self.attributor.client_at(server, record.who[1], record.t)
            if client == op.client_id and record.args == op.args:
                self._ttl_verdict(slot, record, bool(op.reply), "the command replied 0")  # type: ignore[arg-type]
                record.confirmed = True
                return
        waiting = self._op_replies.setdefault((server, op.db, op.args[1]), [])
        if len(waiting) < LOG_CAP:
            waiting.append((op.t, op.client_id, op.args, op.reply))  # its MONITOR line has not come yet

    def _reply_for(self, slot: _Slot, record: TtlSet) -> int | None:
        """An actor's reply to this very command, recorded before its MONITOR line arrived."""
        waiting = self._op_replies.get((slot.server, slot.db, slot.key))
        if not waiting:
            return None
        for index, (t, client_id, args, reply) in enumerate(waiting):
            if abs(record.t - t) <= KS_MATCH_WINDOW and args == record.args \
                    and self.attributor.client_at(slot.server, record.who[1], record.t) == client_id:
                del waiting[index]
                if not waiting:
                    del self._op_replies[(slot.server, slot.db, slot.key)]
                return reply
        return None

    def _stale_candidate(self, server: str, op: trace.Op) -> None:
        """A tracking client's read: if no GET reaches MONITOR for it, its local cache answered."""
        slot = self.slots.get((server, op.db, op.args[1]))
        life = slot.live if slot is not None else None
        info = self.attributor.clients.get((server, op.client_id))
        if life is None or info is None or not info.addr:
            return
        mine = (life.readers or {}).get(info.addr)
        self._stale_q.append((op.t + KS_MATCH_WINDOW, (server, info.addr, life, op,
                                                          mine[0] if mine else 0, mine[1] if mine else None)))

    def _check_stale(self, candidate: tuple[Any, ...]) -> None:
        server, peer, life, op, reads_before, last_read = candidate
        mine = (life.readers or {}).get(peer)
        if mine is not None and mine[0] > reads_before:
            return  # the read reached the server
        changed = [(entry[2], p, entry[3]) for p, entry in (life.writers or {}).items()
                   if p != peer and entry[2] < op.t and (last_read is None or entry[2] > last_read)]
        if not changed or len(self.stale_reads) >= MAX_RECORDS:
            return
        write_t, writer, hint = max(changed)
        args = next((a for t, w, a, _e in reversed(life.history()) if w is not None and w[1] == writer and a), None)
        self.stale_reads.append((server, peer, life.key, life.db, op, write_t, (server, writer, write_t, hint), args))

    def queued_ops(self, who: Who) -> list[trace.Op]:
        """An actor's ops queued in a MULTI that never ran (ops-sourced traces only)."""
        if not who[1].startswith("id:"):
            return []
        return self._queued_ops.get((who[0], int(who[1][3:])), [])

    def _on_client(self, event: trace.ClientSeen) -> None:
        server = self._server_of(event.target)
        self.attributor.client_seen(event, server)
        if "t" in event.flags:
            self.tracking.add((server, event.client_id))

    def _on_actor(self, event: trace.ActorStarted) -> None:
        server = self._server_of(event.target)
        self.attributor.actor_started(event, server)
        if len(self.actors) < MAX_RECORDS:
            self.actors.append(event)
        state = self._state(server)
        run_id = event.server.run_id
        if run_id:
            self._run_id(state, event.t, run_id, f"actor {event.role} pid {event.pid}")

    def _run_id(self, state: ServerState, t: float, run_id: str, source: str) -> None:
        if state.run_ids is None:
            state.run_ids = [(t, run_id, source)]
        elif state.run_ids[-1][1] != run_id and len(state.run_ids) < MAX_RECORDS:
            state.run_ids.append((t, run_id, source))

    def _on_server(self, event: trace.ServerSeen) -> None:
        state = self._state(self._server_of(event.target))
        last = state.last_sample
        if event.server.run_id:
            self._run_id(state, event.t, event.server.run_id, "server sample")
        if last is not None:
            restarted = bool(event.server.run_id and last.server.run_id and event.server.run_id != last.server.run_id) \
                or event.server.uptime < last.server.uptime
            evictions = event.stats.get("evicted_keys", 0) > last.stats.get("evicted_keys", 0)
            if restarted or evictions:
                if state.changes is None:
                    state.changes = []
                if len(state.changes) < MAX_RECORDS:
                    state.changes.append((last, event))
        state.last_sample = event

    def _on_gap(self, event: trace.Gap) -> None:
        state = self._state(self._server_of(event.target))
        if state.gaps is None:
            state.gaps = []
        if len(state.gaps) < MAX_RECORDS:
            state.gaps.append(event)

    def _on_ttl_sample(self, event: trace.TtlSample) -> None:
        slot = self.slots.get((self._server_of(event.target), event.db, event.key))
        if slot is not None and slot.live is not None:
            slot.live.ttl_sample = (event.t, event.pttl)

    def _on_check(self, event: trace.Check) -> None:
        """An actor waited for a key and never saw it: a certain miss, from that pid's server and db."""
        if len(self.checks) < MAX_RECORDS:
            self.checks.append(event)
        if event.ok and not event.first_miss:
            return
        started = self.attributor.actor_pids.get(event.pid)
        server = self.server_for_pid(event.pid)
        db = started.db if started is not None else 0
        key = event.key.encode()
        slot = self.slots.get((server, db, key))
        if slot is not None and slot.live is not None:
            return
        peer = f"id:{started.client_id}" if started is not None and started.client_id else f"pid:{event.pid}"
        self._miss(server, db, peer, 0, event.t, [b"(check)", key], key, slot, certain=not event.ok)

    # -- keyspace events ------------------------------------------------------------------------------------------

    def _on_keyspace(self, event: trace.Keyspace) -> None:
        server = self._server_of(event.target)
        state = self._state(server)
        state.keyspace = True
        self._keyspace_seen = True
        t = event.t
        if t > state.ks_last_t:
            state.ks_last_t = t
        name = event.event
        if name in _GENERIC:
            state.ks_generic = True
        key = (server, event.db, event.key)
        slot = self.slots.get(key)
        if name == "expired" or name == "evicted":
            self._ks_server_removal(server, event.db, event.key, slot, t, name)
        elif name == "del":
            self._ks_del(server, event.db, event.key, slot, t)
        elif name == "expire":
            self._ks_expire(server, event.db, event.key, slot, t)
        elif name in ("rename_from", "move_from"):
            self._ks_gone(server, event.db, event.key, slot, t, "rename" if name == "rename_from" else "move")
        elif (name in ("rename_to", "move_to", "copy_to", "new") or not state.monitored) \
                and (slot is None or slot.live is None):
            slot = slot or self._slot(server, event.db, event.key)
            cause = self._cause(slot, t, name)
            who = cause[1] if cause is not None else None
            args = cause[3] if cause is not None else [f"({name})".encode(), event.key]
            self._create(slot, t, who, args, C.WRITE)
        # other type events (set, lpush, hset...) confirm what MONITOR already showed
        if self._confirm_q and self._confirm_q[0][0] < t:
            self._settle(t)

    def _cause(self, slot: _Slot, t: float, event: str) -> tuple[float, Who, int, list[bytes]] | None:
        """The nearest preceding unexplained command on this key that can produce `event`."""
        pending = slot.pending
        if not pending:
            return None
        kinds = C.EVENT_CAUSES.get(event, frozenset())
        for index in range(len(pending) - 1, -1, -1):
            deadline, who, kind, _args = pending[index]
            if (kind in kinds or not kinds) and who[2] <= t + KS_MATCH_WINDOW and t <= deadline:
                return pending.pop(index)
        return None

    def _ks_server_removal(self, server: str, db: int, key: bytes, slot: _Slot | None, t: float, how: str) -> None:
        if slot is None:
            slot = self._slot(server, db, key)
        life = slot.live
        last = slot.last_closed
        if how == "expired" and last is not None and last.removed_how == "expired" and not last.removed_confirmed \
                and (life is None or (life.created_at is not None and last.removed_at is not None
                                      and life.created_at >= last.removed_at)):
            last.removed_confirmed = True  # the fold already expired it on access
            return
        if life is None:
            life = self._create(slot, t, None, None, 0, preexisting=True)
        at = t
        if how == "expired" and life.expires_at is not None and life.expires_at <= t:
            at = life.expires_at
        self._close(slot, life, at, how, None, None, confirmed=True)

    def _ks_del(self, server: str, db: int, key: bytes, slot: _Slot | None, t: float) -> None:
        if slot is None:
            slot = self._slot(server, db, key)
        life = slot.live
        last = slot.last_closed
        if life is None and last is not None and last.removed_by is not None and not last.removed_confirmed \
                and last.removed_at is not None and t - last.removed_at <= KS_MATCH_WINDOW:
            last.removed_confirmed = True
            return
        cause = self._cause(slot, t, "del")
        if life is None:
            life = self._create(slot, t, None, None, 0, preexisting=True)
            if cause is not None and slot.miss_log and slot.miss_log[-1][1] == cause[1]:
                slot.miss_log.pop()  # the key was there after all: the trace began after it was made
                slot.misses -= 1
        if cause is None:
            self._close(slot, life, t, "del", None, None, detail="no command seen for it (a gap in MONITOR?)",
                        confirmed=True)
            return
        _, who, kind, args = cause
        how = C.removal_how(kind, args[0])
        if kind == C.TTL:
            how = "del"
        self._close(slot, life, who[2], how, who, args, confirmed=True)

    def _ks_expire(self, server: str, db: int, key: bytes, slot: _Slot | None, t: float) -> None:
        if slot is None:
            slot = self._slot(server, db, key)
        if slot.ttl_recent:
            for record in reversed(slot.ttl_recent):
                if record.t <= t + KS_MATCH_WINDOW and t - record.t <= KS_MATCH_WINDOW and not record.confirmed:
                    record.confirmed = True
                    if not record.effective:
                        self._ttl_verdict(slot, record, True, "")
                    return
        if slot.live is None:
            self._create(slot, t, None, None, 0, preexisting=True)
        cause = self._cause(slot, t, "expire")
        if slot.live is not None and cause is None:
            slot.live.ttl_unknown = True

    def _ks_gone(self, server: str, db: int, key: bytes, slot: _Slot | None, t: float, how: str) -> None:
        if slot is None:
            slot = self._slot(server, db, key)
        last = slot.last_closed
        if slot.live is None and last is not None and last.removed_how == how and not last.removed_confirmed:
            last.removed_confirmed = True
            return
        cause = self._cause(slot, t, "rename_from" if how == "rename" else "move_from")
        life = slot.live or self._create(slot, t, None, None, 0, preexisting=True)
        who = cause[1] if cause is not None else None
        self._close(slot, life, who[2] if who else t, how, who, cause[3] if cause else None, confirmed=True)

    # -- life transitions -------------------------------------------------------------------------------------------

    def _create(self, slot: _Slot, t: float, who: Who | None, args: list[bytes] | None, kind: int, *,
                preexisting: bool = False) -> KeyLife:
        life = KeyLife(slot.server, slot.db, slot.key)
        life.resolver = self.attributor
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
                self._touch_after(prev, t, who, args, "recreated", kind)
        absent = slot.absent_ttl
        if absent and not preexisting and t - absent[-1].t <= CREATE_AFTER_MISS_WINDOW and not absent[-1].effective:
            life.ttl_before_create = absent[-1]
        if self.intended_ttls:
            life.owner_ttl = _intended(self.intended_ttls, slot.key)
        slot.live = life
        slot.count += 1
        live = self._state(slot.server).live
        index = live.get(slot.db)
        if index is None:
            index = live[slot.db] = {}
        index[slot.key] = slot
        if not preexisting:
            life.note(t, who, args, "created")
            self._row(t, who, slot.db, args, slot.key, "created", "created")
        return life

    def _close(self, slot: _Slot, life: KeyLife, at: float, how: str, who: Who | None, args: list[bytes] | None,
               *, detail: str = "", confirmed: bool = False) -> None:
        life.removed_how = how
        life.removed_at = at
        life.removed_by = who
        life.removed_args = args
        life.removed_detail = detail
        life.removed_confirmed = confirmed
        slot.live = None
        slot.last_closed = life
        index = self._state(slot.server).live.get(slot.db)
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
        self._row(at, who, slot.db, args, slot.key, effect, _REMOVAL_FLAG.get(how, "removed"))
        if not life.remarkable:
            life.compact()

    def _touch_after(self, life: KeyLife, t: float, who: Who | None, args: list[bytes] | None, what: str,
                     kind: int) -> None:
        """Remember who came back to a key soon after it was removed (the writer that didn't know)."""
        if life.removed_at is None or t - life.removed_at > POST_TOUCH_WINDOW:
            return
        if life.after is None:
            life.after = []
        if len(life.after) < LOG_CAP:
            life.after.append((t, who, args, what, kind))

    def _alive(self, slot: _Slot | None, t: float) -> KeyLife | None:
        """The live life, expiring it first if its TTL ran out (the server does the same, lazily)."""
        if slot is None:
            return None
        life = slot.live
        if life is not None and life.expires_at is not None and t >= life.expires_at:
            self._close(slot, life, life.expires_at, "expired", None, None)
            return None
        return life

    def _miss(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
              slot: _Slot | None, *, certain: bool | None = None) -> None:
        if slot is None:
            if self._miss_only >= MAX_MISS_ONLY_KEYS:
                self.untracked_misses += 1
                return
            self._miss_only += 1
            slot = self._slot(server, db, key)
        slot.misses += 1
        who = (server, peer, t, hint)
        if certain is None:
            certain = slot.count > 0
        if slot.miss_log is None:
            slot.miss_log = []
        if len(slot.miss_log) < LOG_CAP:
            slot.miss_log.append((t, who, args, certain))
            self._row(t, who, db, args, key, "missed: no such key", "missed")
        if slot.last_closed is not None:
            self._touch_after(slot.last_closed, t, who, args, "missed", C.READ)

    def _pend(self, slot: _Slot, who: Who, kind: int, args: list[bytes], deadline: float) -> None:
        pending = slot.pending
        if pending is None:
            slot.pending = [(deadline, who, kind, args)]
            return
        if len(pending) >= LOG_CAP:
            del pending[0]
        pending.append((deadline, who, kind, args))

    def _writer(self, life: KeyLife, peer: str, hint: int, t: float, append: bool) -> None:
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

    def _taker(self, slot: _Slot, peer: str, hint: int, t: float, args: list[bytes]) -> None:
        takers = slot.takers
        if takers is None:
            slot.takers = {peer: [1, t, hint, args]}
            return
        entry = takers.get(peer)
        if entry is None:
            takers[peer] = [1, t, hint, args]
        else:
            entry[0] += 1

    # -- command handlers (server, db, peer, hint, t, args, spec) -----------------------------------------------------

    def _read(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        keys = (args[1],) if spec.single and len(args) > 1 else spec.keys(args)
        slots = self.slots
        for key in keys:
            slot = slots.get((server, db, key))
            life = slot.live if slot is not None else None
            if life is not None and life.expires_at is not None and t >= life.expires_at:
                life = self._alive(slot, t)
            if life is None:
                self._miss(server, db, peer, hint, t, args, key, slot)
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

    def _write(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
               spec: C.Command) -> None:
        if len(args) < 2:
            return
        key = args[1]
        slot = self.slots.get((server, db, key))
        life = self._alive(slot, t)
        if life is None:
            if slot is None:
                slot = self._slot(server, db, key)
            life = self._create(slot, t, (server, peer, t, hint), args, C.WRITE)
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
        self._writer(life, peer, hint, t, True)

    def _write_existing(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                        spec: C.Command) -> None:
        if len(args) < 2:
            return
        slot = self.slots.get((server, db, args[1]))
        if self._alive(slot, t) is None:
            self._miss(server, db, peer, hint, t, args, args[1], slot)
            return
        self._write(server, db, peer, hint, t, args, spec)

    def _set(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
             spec: C.Command) -> None:
        """SET and friends: overwrite (or create), then the TTL per options; NX/XX may make it a no-op."""
        if len(args) < 3:
            return
        name = spec.name
        if name == "SET":
            cond, change = C.set_options(args, t) if len(args) > 3 else ("", C.CLEAR)
        elif name == "MSET" or name == "MSETNX":
            self._mset(server, db, peer, hint, t, args, "NX" if name == "MSETNX" else "")
            return
        else:
            cond = "NX" if name == "SETNX" else ""
            change = C.ttl_change(args, t)  # type: ignore[assignment]
        if change is None:
            return
        self._set_one(server, db, peer, hint, t, args, args[1], cond, change)

    def _mset(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], cond: str) -> None:
        keys = args[1::2]
        if cond == "NX" and any(self._alive(self.slots.get((server, db, k)), t) for k in keys):
            return
        for key in keys:
            self._set_one(server, db, peer, hint, t, args, key, "", C.CLEAR)

    def _set_one(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
                 cond: str, change: C.TtlChange) -> None:
        slot = self.slots.get((server, db, key))
        life = slot.live if slot is not None else None
        if life is not None and life.expires_at is not None and t >= life.expires_at:
            life = self._alive(slot, t)
        if cond:
            if cond == "NX" and life is not None:
                life.reads += 1
                return
            if cond == "XX" and life is None:
                self._miss(server, db, peer, hint, t, args, key, slot)
                return
        who = (server, peer, t, hint)
        if life is None:
            if slot is None:
                slot = self.slots[(server, db, key)] = _Slot(server, db, key)
            life = self._create(slot, t, who, args, C.SET)
        else:
            life.length = None
            life.note(t, who, args, "overwritten")
        life.writes += 1
        life.last_write_at = t
        writers = life.writers
        entry = writers.get(peer) if writers is not None else None
        if entry is None:
            self._writer(life, peer, hint, t, False)
        else:
            entry[0] += 1
            entry[2] = t
            entry[3] = hint
        action = change.action
        if action == "set":
            units = self.units.get((server, peer))
            if units is None or (change.raw not in units if change.unit == "s" else change.unit not in units):
                self._note_units(server, peer, who, change)
        if action == "clear":
            if life.expires_at is not None:
                self._clear_ttl(slot, life, t, who, args)  # type: ignore[arg-type]
        elif action == "set":
            self._apply_ttl(slot, life, TtlSet(t, who, args, change), server, peer, quiet=True)  # type: ignore[arg-type]
        elif action == "past":
            self._close(slot, life, t, "del", who, args, detail="expire time in the past")  # type: ignore[arg-type]

    def _clear_ttl(self, slot: _Slot, life: KeyLife, t: float, who: Who, args: list[bytes]) -> None:
        if life.expires_at is None:
            return
        dropped = life.expires_at - t
        life.expires_at = None
        if life.ttl_cleared is None:
            life.ttl_cleared = (t, who, args, dropped)
        life.note(t, who, args, "TTL cleared (set without EX/PX/KEEPTTL)")
        self._row(t, who, slot.db, args, slot.key, "TTL cleared", "ttl")

    def _overwrite(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                   spec: C.Command) -> None:
        keys = spec.keys(args)
        if not keys:
            return
        if spec.name == "SORT":
            self._read(server, db, peer, hint, t, [b"GET", keys[0]], C.COMMANDS[b"GET"])
            keys = keys[1:]
        else:
            keys = keys[:1]
        for key in keys:
            slot = self._slot(server, db, key)
            life = self._alive(slot, t)
            who = (server, peer, t, hint)
            if life is None:
                life = self._create(slot, t, who, args, C.SET)
            life.writes += 1
            life.last_write_at = t
            life.length = None
            self._writer(life, peer, hint, t, False)
            self._clear_ttl(slot, life, t, who, args)
            self._pend(slot, who, C.OVERWRITE, args, t + KS_MATCH_WINDOW)

    def _remove(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
        keys = spec.keys(args)
        how = C.removal_how(C.REMOVE, args[0])
        for key in keys:
            slot = self.slots.get((server, db, key))
            life = self._alive(slot, t)
            who = (server, peer, t, hint)
            if slot is None:
                slot = self._slot(server, db, key)
            if life is None:
                self._miss(server, db, peer, hint, t, args, key, slot)  # nothing to delete (or unseen before)
                self._pend(slot, who, C.REMOVE, args, t + KS_MATCH_WINDOW)
                continue
            self._taker(slot, peer, hint, t, args)
            self._close(slot, life, t, how, who, args)

    def _take(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes], key: bytes,
              count: int, deadline: float) -> bool:
        """One pop from `key`: True when the key was there (the list length decides if it is now gone)."""
        slot = self.slots.get((server, db, key))
        life = self._alive(slot, t)
        who = (server, peer, t, hint)
        if slot is None:
            slot = self._slot(server, db, key)
        if life is None:
            self._pend(slot, who, C.POP, args, deadline)
            return False
        life.takes += 1
        self._taker(slot, peer, hint, t, args)
        if life.length is not None:
            life.length -= count
            if life.length <= 0:
                self._close(slot, life, t, "pop", who, args)
                return True
        self._pend(slot, who, C.POP, args, deadline)
        return True

    def _pop(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
             spec: C.Command) -> None:
        keys = spec.keys(args)
        blocking = args[0][:1] in (b"B", b"b")
        deadline = t + KS_MATCH_WINDOW
        if blocking:
            try:
                timeout = float(args[-1] if spec.keys_fn is None else args[1])
            except ValueError:
                timeout = 0.0
            deadline = _INF if timeout <= 0 else t + timeout + KS_MATCH_WINDOW
        if len(keys) == 1:
            if not self._take(server, db, peer, hint, t, args, keys[0], C.pop_count(args), deadline) \
                    and not blocking:
                self._miss(server, db, peer, hint, t, args, keys[0], self.slots.get((server, db, keys[0])))
            return
        for key in keys:  # the first non-empty key is served
            if self._alive(self.slots.get((server, db, key)), t) is not None:
                self._take(server, db, peer, hint, t, args, key, 1, deadline)
                return
        for key in keys:
            self._pend(self._slot(server, db, key), (server, peer, t, hint), C.POP, args, deadline)

    def _trim(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        if len(args) < 2:
            return
        slot = self.slots.get((server, db, args[1]))
        life = self._alive(slot, t)
        if slot is None or life is None:
            return
        life.length = None
        self._pend(slot, (server, peer, t, hint), C.TRIM, args, t + KS_MATCH_WINDOW)

    def _move_element(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                      spec: C.Command) -> None:
        if len(args) < 3:
            return
        blocking = args[0][:1] in (b"B", b"b")
        deadline = _INF if blocking else t + KS_MATCH_WINDOW
        if self._take(server, db, peer, hint, t, args, args[1], 1, deadline):
            self._write(server, db, peer, hint, t, [b"RPUSH", args[2], b""], C.COMMANDS[b"RPUSH"])
            dest = self.slots[(server, db, args[2])].live
            if dest is not None and dest.created_args is not None and dest.created_at == t:
                dest.created_args = args

    def _ttl(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
             spec: C.Command) -> None:
        if len(args) < 2:
            return
        key = args[1]
        name = args[0]
        if (name == b"EXPIRE" or name == b"expire") and len(args) == 3:
            try:
                value = int(args[2])
            except ValueError:
                return
            change = C.TtlChange("set" if value > 0 else "past", t + value, float(value), "s", value)
        else:
            name = name.upper()
            change = C.ttl_change(args, t)  # type: ignore[assignment]
            if change is None:
                return
        slot = self.slots.get((server, db, key))
        life = self._alive(slot, t)
        who = (server, peer, t, hint)
        if name == b"GETEX":
            if life is None:
                self._miss(server, db, peer, hint, t, args, key, slot)
                return
            life.reads += 1
        if change.action == "set" or change.action == "past":
            self._note_units(server, peer, who, change)
        if life is None:
            if name == b"GETEX" or name == b"PERSIST":
                return
            if slot is None:
                if self._miss_only >= MAX_MISS_ONLY_KEYS:
                    return
                self._miss_only += 1
                slot = self._slot(server, db, key)
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
            self._recent_ttl(slot, record)
            self._pend(slot, who, C.TTL, args, t + KS_MATCH_WINDOW)
            self._row(t, who, db, args, key, "TTL not set: no such key", "ttl-missed")
            if slot.last_closed is not None:
                self._touch_after(slot.last_closed, t, who, args, "ttl-missed", C.TTL)
            return
        if change.action == "clear":
            if life.expires_at is not None:
                life.expires_at = None
                life.note(t, who, args, "TTL removed (PERSIST)")
                self._row(t, who, db, args, key, "TTL removed", "ttl")
            return
        if change.action == "keep":
            return
        if change.action == "past":
            self._close(slot, life, t, "del", who, args, detail="expire time in the past")  # type: ignore[arg-type]
            return
        self._apply_ttl(slot, life, TtlSet(t, who, args, change), server, peer)  # type: ignore[arg-type]

    def _note_units(self, server: str, peer: str, who: Who, change: C.TtlChange) -> None:
        """Which TTL numbers a connection writes in seconds: `PEXPIRE k 30` from one that says `EX 30` elsewhere
        is a unit slip."""
        units = self.units.get((server, peer))
        if units is None:
            units = self.units[(server, peer)] = set()
            self.unit_users[(server, peer)] = who
        if change.unit == "s" and change.raw is not None and not change.absolute:
            if len(units) < MAX_SECOND_VALUES:
                units.add(change.raw)  # type: ignore[arg-type]
        elif change.unit not in units:
            units.add(change.unit)

    def _apply_ttl(self, slot: _Slot, life: KeyLife, record: TtlSet, server: str, peer: str, *,
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
        self._recent_ttl(slot, record)
        if self._op_replies and not reason and self._reply_for(slot, record) == 0:
            reason = "the command replied 0"
            record.confirmed = True
        raw = record.raw
        unit_issue = _unit_issue(record) if raw is not None and (raw > EX_MS_SUSPECT or (
            raw < PX_SECONDS_SUSPECT and record.unit == "ms")) else ""
        if unit_issue:
            if life.unit_suspects is None:
                life.unit_suspects = []
            if len(life.unit_suspects) < LOG_CAP:
                life.unit_suspects.append((record, unit_issue))
        if reason:
            record.effective = False
            record.reason = reason
            self._missed_ttl(life, record)
            life.note(record.t, record.who, record.args, f"TTL not changed ({reason})")
            self._row(record.t, record.who, slot.db, record.args, slot.key, f"TTL not changed: {reason}",
                      "ttl-missed")
            return
        record.effective = True
        self._set_ttl(slot, life, record, quiet)
        if self._keyspace_seen:
            state = self.servers.get(slot.server)
            if state is not None and state.keyspace:
                queue = self._confirm_q
                if len(queue) >= MAX_PENDING_CONFIRMS:
                    queue.popleft()  # keyspace stream stalled without a gap marker: that one stays unjudged
                queue.append((record.t + KS_MATCH_WINDOW, record))

    def _set_ttl(self, slot: _Slot, life: KeyLife, record: TtlSet, quiet: bool = False) -> None:
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
            if len(self._rows) < self._timeline_limit:
                self._row(record.t, record.who, slot.db, record.args, slot.key, f"TTL {_secs(record.seconds)}", "ttl")
            else:
                self._rows_dropped += 1

    def _missed_ttl(self, life: KeyLife, record: TtlSet) -> None:
        life.ttl_missed_count += 1
        if life.ttl_missed is None:
            life.ttl_missed = []
        if len(life.ttl_missed) < LOG_CAP:
            life.ttl_missed.append(record)

    def _recent_ttl(self, slot: _Slot, record: TtlSet) -> None:
        if not self._pairing:
            return
        if slot.ttl_recent is None:
            slot.ttl_recent = [record]
        else:
            slot.ttl_recent.append(record)
            if len(slot.ttl_recent) > LOG_CAP:
                del slot.ttl_recent[0]

    def _ttl_verdict(self, slot: _Slot, record: TtlSet, effective: bool, reason: str) -> None:
        """Correct the fold's guess about one TTL command (a keyspace event or a reply said otherwise)."""
        if bool(record.effective) == effective:
            return
        if effective:
            life = record.life or slot.live
            if life is None:
                life = self._create(slot, record.t, None, None, 0, preexisting=True)
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
                self._set_ttl(slot, life, record)
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
        self._missed_ttl(life, record)
        life.note(record.t, record.who, record.args, f"TTL not changed ({reason})")

    def _settle_stale(self, now: float) -> None:
        queue = self._stale_q
        while queue and queue[0][0] < now:
            self._check_stale(queue.popleft()[1])

    def _settle(self, now: float) -> None:
        """EXPIREs the fold called effective but that no keyspace `expire` event confirmed did not happen.

        Judged on the keyspace stream's own clock (`ks_last_t`): only once that server's notifications have
        gone past the deadline is a missing `expire` a fact, however late the subscriber's events arrive.
        """
        queue = self._confirm_q
        while queue and queue[0][0] < now:
            deadline, record = queue[0]
            state = self.servers.get(record.who[0])
            if now != _INF and state is not None and state.ks_last_t < deadline:
                break  # that server's keyspace stream has not reached the deadline yet
            queue.popleft()
            if record.confirmed or not record.effective:
                continue
            if state is None or _in_gap(state, record.t):
                continue
            if not state.ks_generic:
                if now != _INF and state.keyspace and len(self._undecided) < MAX_MISS_ONLY_KEYS:
                    self._undecided.append(record)  # decided at the end: do generic events ever come?
                continue
            life = record.life
            if life is not None and life.removed_how is not None and life.removed_at is not None \
                    and life.removed_at <= record.t + KS_MATCH_WINDOW:
                continue  # removed right after: its event may never have been needed
            slot = self.slots.get((life.server, life.db, life.key)) if life is not None else None
            if slot is not None:
                self._ttl_verdict(slot, record, False, "no keyspace `expire` event followed")

    def _rename(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
        if len(args) < 3:
            return
        src, dst = args[1], args[2]
        who = (server, peer, t, hint)
        src_slot = self._slot(server, db, src)
        life = self._alive(src_slot, t)
        if life is None:
            self._pend(src_slot, who, C.RENAME, args, t + KS_MATCH_WINDOW)
            self._pend(self._slot(server, db, dst), who, C.RENAME, args, t + KS_MATCH_WINDOW)
            self._miss(server, db, peer, hint, t, args, src, src_slot)
            return
        if src == dst:
            return
        dst_slot = self._slot(server, db, dst)
        old = self._alive(dst_slot, t)
        if old is not None:
            if spec.name == "RENAMENX":
                return
            self._close(dst_slot, old, t, "rename", who, args, detail=f"overwritten by RENAME {_text(src)}")
        self._close(src_slot, life, t, "rename", who, args, detail=f"renamed to {_text(dst)}")
        self._carry(dst_slot, life, t, who, args)

    def _carry(self, slot: _Slot, source: KeyLife, t: float, who: Who, args: list[bytes]) -> KeyLife:
        """A key moved under a new name or db keeps its TTL."""
        life = self._create(slot, t, who, args, C.SET)
        life.expires_at = source.expires_at
        life.ttl_first = source.ttl_last
        life.ttl_last = source.ttl_last
        life.owner_ttl = source.owner_ttl
        return life

    def _move(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        target_db = C.move_target_db(args)
        if target_db is None or len(args) < 3:
            return
        who = (server, peer, t, hint)
        slot = self._slot(server, db, args[1])
        life = self._alive(slot, t)
        if life is None:
            self._pend(slot, who, C.MOVE, args, t + KS_MATCH_WINDOW)
            return
        dst = self._slot(server, target_db, args[1])
        if self._alive(dst, t) is not None:
            return
        self._close(slot, life, t, "move", who, args, detail=f"moved to db {target_db}")
        self._carry(dst, life, t, who, args)

    def _copy(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        if len(args) < 3:
            return
        who = (server, peer, t, hint)
        source = self._alive(self.slots.get((server, db, args[1])), t)
        if source is None:
            self._miss(server, db, peer, hint, t, args, args[1], self.slots.get((server, db, args[1])))
            return
        source.reads += 1
        target_db = C.move_target_db(args)
        dst = self._slot(server, db if target_db is None else target_db, args[2])
        old = self._alive(dst, t)
        if old is not None:
            if not C.copy_replaces(args):
                return
            self._close(dst, old, t, "del", who, args, detail=f"replaced by COPY {_text(args[1])}")
        self._carry(dst, source, t, who, args)

    def _flush(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
               spec: C.Command) -> None:
        who = (server, peer, t, hint)
        everything = C.flush_all_dbs(args)
        removed: list[KeyLife] = []
        count = 0
        for live_db, index in list(self._state(server).live.items()):
            if not everything and live_db != db:
                continue
            for slot in list(index.values()):
                life = self._alive(slot, t)
                if life is None:
                    continue
                count += 1
                if len(removed) < MAX_RECORDS:
                    removed.append(life)
                self._close(slot, life, t, "flush", who, args, detail=_command_text(args))
        if len(self.flushes) < MAX_RECORDS:
            self.flushes.append(FlushRecord(t, who, server, None if everything else db, args, removed, count))
        self._row(t, who, db, args, b"*", f"{count} live key(s) flushed", "flushed")

    def _swapdb(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
        try:
            first, second = int(args[1]), int(args[2])
        except (IndexError, ValueError):
            return
        who = (server, peer, t, hint)
        moving: list[tuple[int, KeyLife]] = []
        for source, target in ((first, second), (second, first)):
            for slot in list(self._state(server).live.get(source, {}).values()):
                life = self._alive(slot, t)
                if life is not None:
                    self._close(slot, life, t, "move", who, args, detail=f"SWAPDB to db {target}")
                    moving.append((target, life))
        for target, life in moving:
            self._carry(self._slot(server, target, life.key), life, t, who, args)
        self._row(t, who, db, args, b"*", f"db {first} and db {second} swapped", "renamed")

    def _select(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
        try:
            chosen = int(args[1])
        except (IndexError, ValueError):
            return
        entry = self.selects.get((server, peer))
        if entry is None:
            self.selects[(server, peer)] = [1, t, hint, chosen]
        else:
            entry[0] += 1
            entry[1], entry[2], entry[3] = t, hint, chosen

    def _scan(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        pattern = C.scan_pattern(args)
        if pattern is None:
            return
        entry = self.patterns.get((server, db, pattern))
        if entry is None:
            if len(self.patterns) < MAX_PATTERNS:
                self.patterns[(server, db, pattern)] = [1, t, (server, peer, t, hint), args]
        else:
            entry[0] += 1

    def _script(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
                spec: C.Command) -> None:
        state = self.servers[server]
        state.script_peer = peer
        state.script_hint = hint
        who = (server, peer, t, hint)
        for key in spec.keys(args):
            self._pend(self._slot(server, db, key), who, C.SCRIPT, args, t + KS_MATCH_WINDOW)

    def _multi(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
               spec: C.Command) -> None:
        previous = self.open_multi.get((server, peer))
        if previous is not None and len(self.abandoned_multi) < MAX_RECORDS:
            self.abandoned_multi.append((previous[0], previous[1], "a new MULTI came on the same connection "
                                         "without EXEC or DISCARD (the connection was closed or reused)"))
        self.open_multi[(server, peer)] = (t, (server, peer, t, hint), args)

    def _exec(self, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
              spec: C.Command) -> None:
        self.open_multi.pop((server, peer), None)

    # -- timeline ------------------------------------------------------------------------------------------------

    def _row(self, t: float, who: Who | None, db: int, args: list[bytes] | None, key: bytes, effect: str,
             flag: str) -> None:
        if len(self._rows) < self._timeline_limit:
            self._rows.append((t, who, db, args, key, effect, flag))
        else:
            self._rows_dropped += 1

    def timeline(self, keys: Iterable[str] | None = None) -> Timeline:
        """The notable rows (creations, TTL changes, misses, removals), actors resolved; optionally some keys."""
        wanted = {k.encode() for k in keys} if keys is not None else None
        rows = []
        resolve = self.attributor.resolve
        for t, who, db, args, key, effect, flag in self._rows:
            if wanted is not None and key not in wanted:
                continue
            actor = resolve(who)
            rows.append(TimelineRow(t=t, actor=actor, client_id=actor.client_id if actor else None, db=db,
                                    command=_command_text(args) if args else "", key=_text(key), effect=effect,
                                    flag=flag))
        return Timeline(rows=rows, truncated=self._rows_dropped)

    # -- reading the result --------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[KeyLife]:
        return self.lives()

    def __len__(self) -> int:
        return sum(len(slot.all_lives()) for slot in self.slots.values() if slot.count)

    def keys(self) -> list[KeyLife]:
        """Every kept life (callers list keys through their lives: `life.key_text`, `life.to_json()`)."""
        return list(self.lives())

    def lives(self) -> Iterator[KeyLife]:
        """Every kept life of every key (old unremarkable lives of busy keys were counted, not kept)."""
        for slot in self.slots.values():
            if slot.count:
                yield from slot.all_lives()

    def slot_items(self) -> Iterator[_Slot]:
        return iter(self.slots.values())

    def lives_of(self, key: str | bytes, db: int | None = None) -> list[KeyLife]:
        raw = key.encode() if isinstance(key, str) else key
        return [life for slot in self.slots.values() if slot.key == raw and (db is None or slot.db == db)
                for life in slot.all_lives()]


def fold(events: Iterable[trace.Event], *, watched: dict[int, str] | None = None,
         intended_ttls: dict[str, float] | None = None) -> Lifecycle:
    """Fold a whole trace; the result iterates over every kept KeyLife and answers the doctor."""
    return Lifecycle(watched=watched, intended_ttls=intended_ttls).run(events)


SHORTER_FRACTION: Final = 0.5
"""Another client's TTL below this fraction of the owner's counts as shortening it (ttl-shortened)."""

PX_SECONDS_SUSPECT: Final = 1000
"""PEXPIRE/PX/PSETEX below this many ms look like seconds written as milliseconds (ttl-unit-mismatch)."""

EX_MS_SUSPECT: Final = 1_000_000
"""EXPIRE/EX/SETEX above this many seconds (11.6 days) look like milliseconds written as seconds."""


def _unit_issue(record: TtlSet) -> str:
    raw = record.raw
    if raw is None or record.expires_at is None:
        return ""
    if record.unit == "ms" and raw < PX_SECONDS_SUSPECT and not _absolute(record.args):
        return f"{raw} ms is under a second"
    if record.unit == "s" and raw > EX_MS_SUSPECT and not _absolute(record.args):
        return f"{raw} s is {raw / 86400:.0f} days"
    return ""


def _absolute(args: list[bytes]) -> bool:
    name = args[0].upper()
    return name.endswith(b"AT") or any(a.upper() in (b"EXAT", b"PXAT") for a in args[3:])


def _in_gap(state: ServerState, t: float) -> bool:
    for gap in state.gaps or ():
        if gap.source == "keyspace" and gap.t <= t + KS_MATCH_WINDOW and (gap.until is None or t <= gap.until):
            return True
    return False


def _intended(intended: dict[str, float], key: bytes) -> float | None:
    text = key.decode("utf-8", "backslashreplace")
    if text in intended:
        return intended[text]
    for pattern, seconds in intended.items():
        if fnmatch.fnmatchcase(text, pattern):
            return seconds
    return None


_REMOVAL_EFFECT = {
    "del": "deleted", "unlink": "deleted (UNLINK)", "getdel": "taken and deleted (GETDEL)",
    "pop": "emptied by a pop: key removed", "rename": "renamed away", "move": "moved away", "flush": "flushed",
    "expired": "expired", "evicted": "evicted (maxmemory)",
}
_REMOVAL_FLAG = {"expired": "expired", "evicted": "evicted", "flush": "flushed", "rename": "renamed",
                 "move": "renamed"}


# -- text helpers shared with the doctor ---------------------------------------------------------------------

ARG_MAX: Final = 48
ARGS_SHOWN: Final = 8
"""Evidence shows at most ARGS_SHOWN arguments of a command, each cut to ARG_MAX characters (scripts, blobs)."""

ARG_KEPT: Final = 4 * ARG_MAX + 4
"""Bytes kept of a longer value argument: enough for ARG_MAX characters however they are encoded, so evidence
reads exactly as from the whole value (keys and command names are never cut)."""


def _trimmed(args: list[bytes], spec: C.Command) -> list[bytes]:
    """`args` with every long non-key argument cut to ARG_KEPT bytes (commands without plain key positions, such
    as EVAL with numkeys or SCAN with a pattern, stay whole)."""
    if spec.keys_fn is not None or not spec.first:
        return args
    keys = spec.key_positions(len(args))
    return [arg if index == 0 or len(arg) <= ARG_KEPT or index in keys else arg[:ARG_KEPT]
            for index, arg in enumerate(args)]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


_NEEDS_QUOTES = re.compile('[ "\n\r\t]').search


def _arg(raw: bytes) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    if len(text) > ARG_MAX:
        text = text[:ARG_MAX - 3] + "..."
    if not text or _NEEDS_QUOTES(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
            .replace("\t", "\\t") + '"'
    return text


def _command_text(args: list[bytes] | None) -> str:
    """The exact command, quoted where needed, long values and long argument lists shortened."""
    if not args:
        return ""
    words = [args[0].decode("utf-8", "backslashreplace").upper()] + [_arg(a) for a in args[1:ARGS_SHOWN]]
    if len(args) > ARGS_SHOWN:
        words.append(f"... (+{len(args) - ARGS_SHOWN} args)")
    return " ".join(words)


command_text = _command_text


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.3g}s"


secs = _secs


def clock(t: float | None) -> str:
    """Wall-clock time with milliseconds (local time, as a user's logs show it)."""
    if t is None:
        return "--:--:--.---"
    second = int(t) if t >= 0 else None
    if second is None or second != _clock_last[0]:
        _clock_last[0] = second
        _clock_last[1] = _time.strftime("%H:%M:%S", _time.localtime(t))
    return _clock_last[1] + f".{int((t % 1) * 1000):03d}"


_clock_last: list[Any] = [None, ""]  # the last whole second formatted (history lines come in time order)


def evidence_line(t: float | None, actor: Actor | None, args: list[bytes] | None, effect: str = "",
                  db: int | None = None) -> str:
    """`12:00:01.234 pid 4242 (api) client 7 db 0: RPUSH batch:1 x -> created`."""
    from redisprobe.analysis.attribution import describe

    where = f" db {db}" if db is not None else ""
    command = _command_text(args) if args else ""
    text = f"{clock(t)} {describe(actor)}{where}"
    if command:
        text += f": {command}"
        if effect:
            text += f" -> {effect}"
    elif effect:
        text += f": {effect}"
    return text


def _actor_json(actor: Actor | None) -> dict[str, Any] | None:
    if actor is None:
        return None
    return {"pid": actor.pid, "label": actor.label, "client_id": actor.client_id, "addr": actor.addr}


def normalize_target(target: str) -> str:
    """`redis://:***@localhost:6379/2` -> `127.0.0.1:6379`: one server whatever db or spelling a client used."""
    if not target:
        return ""
    text = target
    scheme, sep, rest = text.partition("://")
    if not sep:
        rest, scheme = text, ""
    if scheme.startswith("unix"):
        path = rest.split("?", 1)[0]
        return path if path.startswith("/") else "/" + path
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        host, port = rest, "6379"
    host = host.strip("[]").lower()
    if host in ("localhost", "::1", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"
