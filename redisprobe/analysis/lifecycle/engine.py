"""The fold's engine: events in time order (a small re-order window), each dispatched to its handler."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from redisprobe import trace
from redisprobe.analysis.lifecycle import connection, expiry, keys, lives, migration, pairing, replies, wirereplies
from redisprobe.analysis.lifecycle import preexisting as baseline
from redisprobe.analysis.lifecycle import refusal_samples as refused
from redisprobe.analysis.lifecycle import replica_stream as replicas
from redisprobe.analysis.lifecycle.dispatch import HANDLERS
from redisprobe.analysis.lifecycle.limits import (
    INF,
    MAX_RECORDS,
    PREFETCH_EVENTS,
    PREFETCH_SECONDS,
    REORDER_WINDOW,
    REORDER_WINDOW_UNMONITORED,
    TX_GRACE,
)
from redisprobe.analysis.lifecycle.records import ServerState
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.gcpause import gc_paused
from redisprobe.semantics import command_table as C
from redisprobe.text import ARG_KEPT

MonitorRow = tuple[float, int, str, list[bytes]]
_COMMANDS = C.COMMANDS  # a static here: no module attribute lookup per line

EVENT_HANDLERS: dict[type, Callable[[Any, Any], None]] = {
    trace.Keyspace: migration.on_keyspace, trace.KeyspaceMark: pairing.on_mark, trace.Op: replies.on_op,
    trace.ClientSeen: connection.on_client, trace.PeerSeen: connection.on_peer,
    trace.ActorStarted: connection.on_actor, trace.ServerSeen: connection.on_server, trace.Gap: connection.on_gap,
    trace.TtlSample: connection.on_ttl_sample, trace.Check: replies.on_check,
    trace.Refusals: refused.on_refusals,
    trace.Baseline: baseline.on_baseline, trace.WireReply: wirereplies.on_wire_reply,
    trace.Topology: replicas.on_topology, trace.Replication: replicas.on_replication,
}
"""Every event but MONITOR lines (those go straight to `_on_line`), by type."""


class Lifecycle(FoldState):
    """Feed events in time order (`feed` or `run`), then `finish()`; read `lives()`, `timeline()`, state."""

    def run(self, events: Iterable[trace.Event]) -> Lifecycle:
        """Fold a whole stream: look ahead a little to learn which servers are monitored, then stream."""
        stream = iter(events)
        buffered: list[trace.Event] = []
        start: float | None = None
        for event in stream:
            buffered.append(event)
            kind = type(event)
            if kind is trace.Monitor:
                self.server_state(self.server_of(event.target)).monitored = True  # type: ignore[union-attr]
                self.monitor_seen = True
            elif kind is trace.Keyspace:
                self.server_state(self.server_of(event.target)).keyspace = True  # type: ignore[union-attr]
                self.keyspace_seen = True
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
        held = self.held
        push = heapq.heappush
        stale = self.stale_q
        count = 0
        seq = self.seq
        newest = self.last_t if self.last_t is not None else -INF
        oldest = self.first_t if self.first_t is not None else INF
        window = REORDER_WINDOW if self.monitor_seen else REORDER_WINDOW_UNMONITORED
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
                    replies.settle_stale(self, t)
                self._on_monitor(event)
            else:
                seq += 1
                push(held, (t, seq, event))
                if held[0][0] < newest - window:
                    self._release(newest - window)
                    window = REORDER_WINDOW if self.monitor_seen else REORDER_WINDOW_UNMONITORED
        self.seq = seq
        if count:
            self.events += count
            self.first_t = oldest if oldest != INF else None
            self.last_t = newest if newest != -INF else None

    def _release(self, upto: float) -> None:
        """Fold the held (non-MONITOR) events up to time `upto`, oldest first."""
        held = self.held
        pop = heapq.heappop
        while held and held[0][0] <= upto:
            event = pop(held)[2]
            handler = EVENT_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def feed(self, event: trace.Event) -> None:
        """Fold one event (nearly time-ordered, like a trace file; `finish()` once at the end)."""
        self._feed_all((event,))

    def finish(self) -> None:
        """Close what the end of the trace decides: keys past their TTL expired, pending checks settle."""
        if self.finished:
            return
        self.finished = True
        self._release(INF)
        keys.settle_waits(self, self.last_t if self.last_t is not None else 0.0)
        replies.settle_stale(self, INF)
        expiry.settle(self, INF)
        for record in self.undecided:
            self.confirm_q.append((0.0, record))
        self.undecided = []
        expiry.settle(self, INF)
        end = self.last_t if self.last_t is not None else 0.0
        for slot in list(self.slots.values()):
            life = slot.live
            if life is not None and life.expires_at is not None and life.expires_at <= end:
                lives.close(self, slot, life, life.expires_at, "expired", None, None)
        for place, (t, who, _args) in list(self.open_multi.items()):
            if end - t < TX_GRACE:
                self.last_exec[place] = INF  # opened just before the end: its EXEC may simply come after
                continue
            if len(self.abandoned_multi) < MAX_RECORDS:
                why = "no EXEC or DISCARD by the end of the trace"
                nested = self.nested_multi.get(place, 0)
                if nested:
                    why += f"; {nested} later MULTI on this connection refused (already inside MULTI)"
                self.abandoned_multi.append((t, who, why))
        self.open_multi.clear()

    def _on_monitor(self, event: trace.Monitor) -> None:
        known = self.monitored_targets.get(event.target)
        if known is None:
            known = self._monitor_target(event.target)
        offset = known[1].clock_offset  # a cluster node's clock, measured: its lines are put on the capture's clock
        self._on_line(known, event.t - offset if offset else event.t, event.db, event.peer, event.args)

    def run_rows(self, batches: Iterable[list[MonitorRow]], target: str = "") -> Lifecycle:
        """Fold one server's MONITOR lines given as (t, db, peer, args) rows, in the order the server ran them.

        A monitor log needs nothing else (no re-ordering, no other events), so `report` feeds it here: no event
        object per line.
        """
        self.pairing = False  # MONITOR lines only: no keyspace event or reply will ever need a TTL command
        with gc_paused():
            known = self._monitor_target(target)
            count = 0
            newest = self.last_t if self.last_t is not None else -INF
            oldest = self.first_t if self.first_t is not None else INF
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
        if state.primary is not None and replicas.on_replica_line(self, server, state, t, db, peer, args, spec):
            return
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
            keys.cmd_set(self, server, db, peer, hint, t, args, spec)
        elif kind == C.TTL:
            expiry.cmd_ttl(self, server, db, peer, hint, t, args, spec)
        elif kind == C.READ:
            keys.cmd_read(self, server, db, peer, hint, t, args, spec)
        elif kind == C.REMOVE:
            keys.cmd_remove(self, server, db, peer, hint, t, args, spec)
        elif kind == C.WRITE:
            keys.cmd_write(self, server, db, peer, hint, t, args, spec)
        else:
            HANDLERS[kind](self, server, db, peer, hint, t, args, spec)

    def _monitor_target(self, target: str) -> tuple[str, ServerState]:
        server = self.server_of(target)
        state = self.server_state(server)
        state.monitored = True
        state.ops_commands = False
        self.monitored_targets[target] = (server, state)
        self.monitor_seen = True
        return server, state


def fold(events: Iterable[trace.Event], *, watched: dict[int, str] | None = None,
         intended_ttls: dict[str, float] | None = None) -> Lifecycle:
    """Fold a whole trace; the result iterates over every kept KeyLife and answers the doctor."""
    return Lifecycle(watched=watched, intended_ttls=intended_ttls).run(events)


def _trimmed(args: list[bytes], spec: C.Command) -> list[bytes]:
    """`args` with every long non-key argument cut to ARG_KEPT bytes (commands without plain key positions, such
    as EVAL with numkeys or SCAN with a pattern, stay whole)."""
    if spec.keys_fn is not None or not spec.first:
        return args
    keys = spec.key_positions(len(args))
    return [arg if index == 0 or len(arg) <= ARG_KEPT or index in keys else arg[:ARG_KEPT]
            for index, arg in enumerate(args)]

