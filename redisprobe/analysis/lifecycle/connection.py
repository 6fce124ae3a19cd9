"""Connection- and server-level facts: SELECT, SCAN patterns, scripts, MULTI/EXEC; clients, actors, server
samples and gaps."""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.lifecycle import lives
from redisprobe.analysis.lifecycle.limits import (
    FIRST_SAMPLE_SPAN,
    KS_MATCH_WINDOW,
    MAX_PATTERNS,
    MAX_RECORDS,
)
from redisprobe.analysis.lifecycle.records import BlockedClient, ServerState
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C


def on_peer(st: FoldState, event: trace.PeerSeen) -> None:
    st.attributor.peer_seen(event, st.server_of(event.target))


def on_client(st: FoldState, event: trace.ClientSeen) -> None:
    server = st.server_of(event.target)
    first = (server, event.client_id) not in st.attributor.clients
    st.attributor.client_seen(event, server)
    if "t" in event.flags:
        st.tracking.add((server, event.client_id))
    if "M" in event.flags:  # a replica's link to its primary: what it sends is the replication stream
        from redisprobe.analysis.lifecycle.replica_stream import on_link

        on_link(st, server, event.addr)
    st.clients_first_t.setdefault(server, event.t)
    blocked = st.blocked.get((server, event.client_id))
    if blocked is not None:
        blocked.still = "b" in event.flags and event.cmd == blocked.cmd
        blocked.last_t = event.t
    elif first and "b" in event.flags and event.cmd and len(st.blocked) < MAX_RECORDS \
            and event.t - st.clients_first_t[server] <= FIRST_SAMPLE_SPAN:
        # blocked in its first sample: the command was sent before the capture, MONITOR will never show it
        st.blocked[(server, event.client_id)] = BlockedClient(event.t, event.client_id, event.addr, event.db,
                                                              event.cmd)


def on_actor(st: FoldState, event: trace.ActorStarted) -> None:
    server = st.server_of(event.target)
    st.attributor.actor_started(event, server)
    if len(st.actors) < MAX_RECORDS:
        st.actors.append(event)
    state = st.server_state(server)
    run_id = event.server.run_id
    if run_id:
        note_run_id(st, state, event.t, run_id, f"actor {event.role} pid {event.pid}")


def note_run_id(st: FoldState, state: ServerState, t: float, run_id: str, source: str) -> None:
    if state.run_ids is None:
        state.run_ids = [(t, run_id, source)]
    elif state.run_ids[-1][1] != run_id and len(state.run_ids) < MAX_RECORDS:
        state.run_ids.append((t, run_id, source))


def on_server(st: FoldState, event: trace.ServerSeen) -> None:
    state = st.server_state(st.server_of(event.target))
    last = state.last_sample
    if event.server.run_id:
        note_run_id(st, state, event.t, event.server.run_id, "server sample")
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


def on_gap(st: FoldState, event: trace.Gap) -> None:
    state = st.server_state(st.server_of(event.target))
    if state.gaps is None:
        state.gaps = []
    if len(state.gaps) < MAX_RECORDS:
        state.gaps.append(event)


def on_ttl_sample(st: FoldState, event: trace.TtlSample) -> None:
    slot = st.slots.get((st.server_of(event.target), event.db, event.key))
    if slot is not None and slot.live is not None:
        slot.live.ttl_sample = (event.t, event.pttl)


def cmd_select(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
            spec: C.Command) -> None:
    try:
        chosen = int(args[1])
    except (IndexError, ValueError):
        return
    entry = st.selects.get((server, peer))
    if entry is None:
        st.selects[(server, peer)] = [1, t, hint, chosen]
    else:
        entry[0] += 1
        entry[1], entry[2], entry[3] = t, hint, chosen


def cmd_scan(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    pattern = C.scan_pattern(args)
    if pattern is None:
        return
    entry = st.patterns.get((server, db, pattern, peer))  # each scanner its own: the first is not everyone
    if entry is None:
        if len(st.patterns) < MAX_PATTERNS:
            st.patterns[(server, db, pattern, peer)] = [1, t, (server, peer, t, hint), args, t]
    else:
        entry[0] += 1
        entry[4] = t


def cmd_script(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
            spec: C.Command) -> None:
    state = st.servers[server]
    state.script_peer = peer
    state.script_hint = hint
    who = (server, peer, t, hint)
    for key in spec.keys(args):
        lives.pend(st, st.slot(server, db, key), who, C.SCRIPT, args, t + KS_MATCH_WINDOW)


def cmd_multi(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
           spec: C.Command) -> None:
    """A MULTI inside an open MULTI is refused by the server ("MULTI calls can not be nested") yet shows in
    MONITOR: the first transaction stays open, so a stuck connection is one record, however many follow."""
    if (server, peer) in st.open_multi:
        st.nested_multi[(server, peer)] = st.nested_multi.get((server, peer), 0) + 1
        return
    st.open_multi[(server, peer)] = (t, (server, peer, t, hint), args)


def cmd_exec(st: FoldState, server: str, db: int, peer: str, hint: int, t: float, args: list[bytes],
          spec: C.Command) -> None:
    st.open_multi.pop((server, peer), None)
    st.nested_multi.pop((server, peer), None)
    st.last_exec[(server, peer)] = t
