"""The fold's state: every key slot, every server, what rules read once the fold is done."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from redisprobe import trace
from redisprobe.analysis.attribution import Attributor, Who
from redisprobe.analysis.lifecycle.limits import (
    TIMELINE_LIMIT,
)
from redisprobe.analysis.lifecycle.records import (
    BlockedClient,
    FlushRecord,
    KeyLife,
    ServerState,
    Slot,
    Timeline,
    TimelineRow,
    TtlSet,
)
from redisprobe.text import command_text, text


class FoldState:
    """Everything the fold knows; the handler modules change it, rules read it once the fold is done."""

    def __init__(self, *, watched: dict[int, str] | None = None, intended_ttls: dict[str, float] | None = None,
                 timeline_limit: int = TIMELINE_LIMIT) -> None:
        self.attributor = Attributor(watched)
        self.intended_ttls = dict(intended_ttls or {})
        self.slots: dict[tuple[str, int, bytes], Slot] = {}
        self.servers: dict[str, ServerState] = {}
        self.flushes: list[FlushRecord] = []
        self.open_multi: dict[tuple[str, str], tuple[float, Who, list[bytes]]] = {}
        self.abandoned_multi: list[tuple[float, Who, str]] = []  # (t, who, why)
        self.nested_multi: dict[tuple[str, str], int] = {}  # MULTIs refused inside an open one, per connection
        self.last_exec: dict[tuple[str, str], float] = {}  # (server, peer) -> its last EXEC or DISCARD (INF: a
        # MULTI opened just before the end of the trace, whose EXEC may come after it)
        self.selects: dict[tuple[str, str], list[Any]] = {}  # (server, peer) -> [count, t, hint, db]
        # (server, db, pattern, peer) -> [count, t, who, args, last t]: each connection's first use of a SCAN/KEYS
        # pattern, and its last
        self.patterns: dict[tuple[str, int, bytes, str], list[Any]] = {}
        self.units: dict[tuple[str, str], set[str | int]] = {}  # (server, peer) -> "ms" and the seconds it wrote
        self.unit_users: dict[tuple[str, str], Who] = {}
        self.checks: list[trace.Check] = []
        self.op_errors: list[trace.Op] = []
        self.refusals: dict[str, list[trace.Refusals]] = {}  # server -> what it said it refused, in time order
        self.actors: list[trace.ActorStarted] = []
        self.untracked_misses = 0
        self.events = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.miss_only = 0
        self.rows: list[tuple[float, Who | None, int, list[bytes] | None, bytes, str, str]] = []
        self.rows_dropped = 0
        self.timeline_limit = timeline_limit
        self.target_servers: dict[str, str] = {}
        self.monitored_targets: dict[str, tuple[str, ServerState]] = {}
        self.confirm_q: deque[tuple[float, TtlSet]] = deque()  # EXPIREs waiting for their keyspace event
        self.stale_q: deque[tuple[float, tuple[Any, ...]]] = deque()  # tracking clients' reads, to check
        self.held: list[tuple[float, int, trace.Event]] = []  # non-MONITOR events waiting for MONITOR time
        self.seq = 0
        self.monitor_seen = False
        self.undecided: list[TtlSet] = []
        self.keyspace_seen = False
        self.op_replies: dict[tuple[str, int, bytes], list[tuple[float, int, list[bytes], int]]] = {}
        self.tracking: set[tuple[str, int]] = set()  # connections with CLIENT TRACKING on
        self.blocked: dict[tuple[str, int], BlockedClient] = {}  # blocked since before the capture
        self.clients_first_t: dict[str, float] = {}  # server -> its first CLIENT LIST sample
        self.waits: list[tuple[Who, int, list[bytes], bytes, float]] = []  # blocking pops on absent keys
        self.stale_reads: list[tuple[str, str, bytes, int, trace.Op, float, Who, list[bytes] | None]] = []
        self.queued_by_client: dict[tuple[str, int], list[trace.Op]] = {}
        self.op_multi: set[tuple[str, int]] = set()
        self.finished = False
        self.pairing = True  # TTL commands are remembered per key for keyspace events and replies to pair with
        self.baselines: dict[str, dict[int, trace.Baseline]] = {}  # server -> db -> what existed at capture start
        self.topology: list[trace.Topology] = []  # cluster roles and their changes, in time order
        self.promotions: list[tuple[float, float, str, str]] = []  # (t, since, replica promoted, former primary)
        self.failover_lost: list[tuple[float, float, str, str, Any, Any]] = []  # (t, since, former, promoted, slot,
        # life): lives a failover ended, their writes never replicated
        self.arrivals: dict[tuple[str, int, bytes], list[float]] = {}  # (replica, db, key) -> replicated writes' times
        self.replica_reads: list[tuple[float, Any, int, bytes, str, list[bytes]]] = []  # (t, who, db, key, primary,
        # args): clients' reads on a cluster replica
        self.replication: dict[str, list[trace.Replication]] = {}  # primary -> its offsets sampled
        self.migrated_out: dict[tuple[str, int, bytes], float] = {}  # (source, db, key) -> when MIGRATE moved it
        self.wire_servers: set[str] = set()  # servers whose replies the wire captured
        self.unserved: dict[tuple[str, str], list[float]] = {}  # (server, peer) -> when it sent a blocking pop the
        # wire saw never served
        self.wire_refused: dict[tuple[str, str, str, str], Any] = {}  # (server, error code, peer, command) -> the
        # refused commands the wire saw (a `wirereplies.WireRefused`)

    def server_of(self, target: str) -> str:
        server = self.target_servers.get(target)
        if server is None:
            server = normalize_target(target)
            self.target_servers[target] = server
        return server

    def server_state(self, server: str) -> ServerState:
        state = self.servers.get(server)
        if state is None:
            state = ServerState(server)
            self.servers[server] = state
        return state

    def slot(self, server: str, db: int, key: bytes) -> Slot:
        slot = self.slots.get((server, db, key))
        if slot is None:
            slot = Slot(server, db, key)
            self.slots[(server, db, key)] = slot
        return slot

    def server_for_pid(self, pid: int) -> str:
        return self.attributor.actor_server.get(pid, "")

    def server_for(self, event: trace.Op | trace.Check) -> str:
        """The server an actor's op or check went to: the node it names (a cluster actor), else the actor's."""
        return self.server_of(event.target) if event.target else self.server_for_pid(event.pid)

    def queued_ops(self, who: Who) -> list[trace.Op]:
        """An actor's ops queued in a MULTI that never ran (ops-sourced traces only)."""
        if not who[1].startswith("id:"):
            return []
        return self.queued_by_client.get((who[0], int(who[1][3:])), [])

    def row(self, t: float, who: Who | None, db: int, args: list[bytes] | None, key: bytes, effect: str,
             flag: str) -> None:
        if len(self.rows) < self.timeline_limit:
            self.rows.append((t, who, db, args, key, effect, flag))
        else:
            self.rows_dropped += 1

    def timeline(self, keys: Iterable[str] | None = None) -> Timeline:
        """The notable rows (creations, TTL changes, misses, removals), actors resolved; optionally some keys."""
        wanted = {k.encode() for k in keys} if keys is not None else None
        rows = []
        resolve = self.attributor.resolve
        for t, who, db, args, key, effect, flag in self.rows:
            if wanted is not None and key not in wanted:
                continue
            actor = resolve(who)
            rows.append(TimelineRow(t=t, actor=actor, client_id=actor.client_id if actor else None, db=db,
                                    command=command_text(args) if args else "", key=text(key), effect=effect,
                                    flag=flag))
        return Timeline(rows=rows, truncated=self.rows_dropped)

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

    def slot_items(self) -> Iterator[Slot]:
        return iter(self.slots.values())

    def lives_of(self, key: str | bytes, db: int | None = None) -> list[KeyLife]:
        raw = key.encode() if isinstance(key, str) else key
        return [life for slot in self.slots.values() if slot.key == raw and (db is None or slot.db == db)
                for life in slot.all_lives()]


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
