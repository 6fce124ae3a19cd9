"""Which connections of a trace are not the application's: redisprobe's own (its observers, the baseline scan)
and a cluster replica's link to its primary.

The summary's counts and the live timeline must skip the same lines (our polling is no client's command, and a
replica repeating its primary's writes is the same write again), so both learn it here, from the ClientSeen,
Topology and Baseline events as they pass.
"""

from __future__ import annotations

from redisprobe import trace

OBSERVER_PREFIX = "redisprobe:observer"
"""The CLIENT SETNAME prefix of every connection redisprobe's observers open."""

REPLICATION_LINK_FLAGS = frozenset("MS")
"""CLIENT LIST flags of a replication link: M on the replica (its primary's link), S on the primary."""


class ConnectionRoles:
    """What the trace has said so far about who each (target, peer) is. The sets are public so a hot loop can
    bind them to locals and test membership without a call."""

    def __init__(self) -> None:
        self.own: set[tuple[str, str]] = set()  # (target, addr) of redisprobe's observer and baseline connections
        self.links: set[tuple[str, str]] = set()  # (target, addr) of a cluster replica's link to its primary
        self.replicas: set[str] = set()  # targets that are cluster replicas now
        self.scans: dict[tuple[str, str], float] = {}  # (target, peer) of a baseline scan -> when it ended

    def learn(self, event: trace.Event) -> None:
        """Take in what `event` says about a connection (events of other kinds say nothing and are ignored)."""
        if isinstance(event, trace.ClientSeen):
            if event.name.startswith(OBSERVER_PREFIX):
                self.own.add((event.target, event.addr))
            elif "M" in event.flags:  # a replica's link to its primary (its writes are the primary's again)
                self.links.add((event.target, event.addr))
        elif isinstance(event, trace.Topology):
            if event.role == "replica" and event.primary:
                self.links.add((event.target, event.primary))
                self.replicas.add(event.target)
            else:  # promoted, or gone: its lines from now on are its own clients'
                self.replicas.discard(event.target)
        elif isinstance(event, trace.Baseline) and event.peer:
            self.own.add((event.target, event.peer))
            self.scans[(event.target, event.peer)] = event.until

    def is_link(self, target: str, peer: str) -> bool:
        """A cluster replica's replication stream: its primary's writes, counted and shown once, on the primary."""
        return (target, peer) in self.links

    def in_baseline_scan(self, target: str, peer: str, t: float) -> bool:
        """The baseline's own SCAN/TYPE/PTTL: not the application's reads."""
        until = self.scans.get((target, peer))
        return until is not None and t <= until
