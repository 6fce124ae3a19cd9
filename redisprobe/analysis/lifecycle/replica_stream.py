"""A cluster replica's MONITOR, read for what it is: the replication stream and replica reads.

A replica's MONITOR repeats every write of its primary as it arrives over the replication link (the link's
address is the primary's; CLIENT LIST flags it `M`): those lines are the replica catching up, never a client's
commands, so they only say when each key reached the replica. Other clients there are READONLY readers: their
reads are kept to be checked against the primary's key lives (`replica-read`). `Topology` events say which node
is a replica of which; a client's write on a node still taken for a replica means it was promoted meanwhile.
"""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.lifecycle import lives
from redisprobe.analysis.lifecycle.limits import MAX_RECORDS
from redisprobe.analysis.lifecycle.records import ServerState
from redisprobe.analysis.lifecycle.state import FoldState, normalize_target
from redisprobe.semantics import command_table as C
from redisprobe.text import clock

ARRIVALS_KEPT = 8
"""Times a key's replicated writes reached one replica, kept per key (the latest)."""

_NOT_WRITES = frozenset({C.OTHER, C.READ, C.SCAN, C.SCRIPT, C.SELECT, C.MULTI, C.EXEC, C.DISCARD})


def on_topology(st: FoldState, event: trace.Topology) -> None:
    server = st.server_of(event.target)
    state = st.server_state(server)
    if len(st.topology) < MAX_RECORDS:
        st.topology.append(event)
    if event.clock_offset or event.clock_uncertainty:
        # An offset within its own uncertainty is no offset measured (nodes on one host share a clock): shifting by
        # it would only add that error to every line.
        offset = event.clock_offset if abs(event.clock_offset) > event.clock_uncertainty else 0.0
        state.clock_offset, state.clock_uncertainty = offset, event.clock_uncertainty
    if event.role == "replica" and event.primary:
        state.primary = normalize_target(event.primary)
        state.links = (state.links or set()) | {state.primary}
    elif event.role == "primary" and state.primary is not None:
        promote(st, state, event.t, event.since)


def on_link(st: FoldState, server: str, addr: str) -> None:
    """CLIENT LIST showed the replication link (flag M) on `server`."""
    state = st.server_state(server)
    if state.links is None:
        state.links = set()
    state.links.add(addr)
    state.link_listed = True


def promote(st: FoldState, state: ServerState, t: float, since: float | None = None) -> None:
    """The replica became a primary (between `since` and `t`): from now on its lines are clients' commands, and the
    keys its former primary held are followed here, each life that had reached it going on, each that had not
    ended by the failover (its writes were never replicated: the new primary does not have them)."""
    former = state.primary or ""
    if len(st.promotions) < MAX_RECORDS:
        st.promotions.append((t, since if since is not None else t, state.server, former))
    state.primary = None
    if not former or former not in st.servers:
        return
    for db, index in list(st.server_state(former).live.items()):
        for key, slot in list(index.items()):
            life = slot.live
            moved = st.slot(state.server, db, key)
            if life is None or moved.live is not None:
                continue  # (the new primary has a life of its own for the key already: it was a primary before)
            index.pop(key, None)
            slot.live = None
            slot.count -= 1
            moved.live = life
            moved.count += 1
            life.server = state.server  # listed under the node that owns the key now
            life.moved_from = former
            st.server_state(state.server).live.setdefault(db, {})[key] = moved
            made = life.created_at
            if made is not None:  # the write's time is the former primary's clock, the arrival this node's
                made -= st.server_state(former).clock_uncertainty + state.clock_uncertainty
            if made is None or any(a >= made for a in st.arrivals.get((state.server, db, key), ())):
                life.note(t, None, None, f"followed on {state.server}: it took over from {former} (failover)")
                continue  # it had reached the new primary: the same life goes on there
            window = f"between {clock(since)} and {clock(t)}" if since is not None and since < t else f"at {clock(t)}"
            lives.close(st, moved, life, t, "failover", None, None,
                        detail=f"written on {former} and not yet replicated to {state.server} when it took over as "
                               f"primary ({window}): the write was lost")
            if len(st.failover_lost) < MAX_RECORDS:
                st.failover_lost.append((t, since if since is not None else t, former, state.server, moved, life))


def on_replica_line(st: FoldState, server: str, state: ServerState, t: float, db: int, peer: str,
                    args: list[bytes], spec: C.Command) -> bool:
    """True when the line was the replica's own business (the replication stream, a replica read); False when the
    node is a primary already: a client's write ran there, and writes are refused on a replica."""
    links = state.links
    kind = spec.kind
    if not state.link_listed and kind not in _NOT_WRITES and not (links and peer in links):
        # A write from an address the topology did not give, before CLIENT LIST has shown the link (flag M): the
        # link seen under another address (NAT, a container's), not a promotion.
        state.links = (links or set()) | {peer}
        links = state.links
    if links is not None and peer in links:
        arrivals = st.arrivals
        for key in spec.keys(args):
            seen = arrivals.get((server, db, key))
            if seen is None:
                arrivals[(server, db, key)] = [t]
            else:
                seen.append(t)
                if len(seen) > ARRIVALS_KEPT:
                    del seen[0]
        return True
    if kind == C.READ:
        if len(st.replica_reads) < MAX_RECORDS:
            for key in spec.keys(args):
                st.replica_reads.append((t, (server, peer, t, 0), db, key, state.primary or "", args))
        return True
    if kind in _NOT_WRITES:
        return True
    promote(st, state, t)
    return False


def on_replication(st: FoldState, event: trace.Replication) -> None:
    samples = st.replication.setdefault(st.server_of(event.target), [])
    if len(samples) < MAX_RECORDS:
        samples.append(event)
