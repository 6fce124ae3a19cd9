"""Causes that exist only on a Redis Cluster: each key lives on the node that owns its hash slot.

`scan-one-node`: SCAN and KEYS answer for the node they are sent to. A plain client (or a cluster client's
`scan_iter` on one connection) that scans `batch:*` on one primary never sees the matching keys the other
primaries hold: the symptom is those keys, written and there, on nodes the scanner never asked.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING

from redisprobe.analysis import facts
from redisprobe.analysis.connection_roles import OBSERVER_PREFIX
from redisprobe.analysis.rules.base import Group, Groups, RuleInput, identity, who_text
from redisprobe.analysis.rules.refused import (
    HOW,
    _Client,
    _Refusal,
    counted,
    refusals_by_code,
    refused_servers,
    sureness,
)
from redisprobe.findings import Actor, Finding
from redisprobe.text import arg_text, clock

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife

MISSED_SHOWN = 6
"""Missed keys given as evidence (slot and node each); the rest are counted."""



def cluster_nodes(inp: RuleInput) -> set[str]:
    """The watched servers that said they are cluster nodes (INFO's redis_mode), primaries only."""
    return {name for name, state in inp.lifecycle.servers.items()
            if state.last_sample is not None and state.last_sample.server.redis_mode == "cluster"
            and state.primary is None}


def cluster_peers(inp: RuleInput, server: str) -> set[str]:
    """The primaries of the cluster `server` is a primary of (itself included; empty when it is none)."""
    return inp.shared("cluster-peers", lambda: _peers(inp)).get(server, set())


def _peers(inp: RuleInput) -> dict[str, set[str]]:
    """Primary -> the primaries of its cluster. A capture may watch two clusters that look alike (staging and
    production): each node's sample names its cluster; when one does not (an older trace, a node that would not
    say), every cluster node is taken as one cluster, as before."""
    nodes = cluster_nodes(inp)
    named = {node: inp.lifecycle.servers[node].last_sample.server.cluster_id for node in nodes}  # type: ignore[union-attr]
    if not all(named.values()):
        return {node: nodes for node in nodes}
    groups: dict[object, set[str]] = {}
    for node, cluster in named.items():
        groups.setdefault(cluster, set()).add(node)
    return {node: groups[named[node]] for node in nodes}


def same_cluster(inp: RuleInput, a: str, b: str) -> bool:
    """Two primaries of one cluster: one dataset, each key on the node of its slot."""
    return b in cluster_peers(inp, a)


def scan_one_node(inp: RuleInput) -> list[Finding]:
    """A SCAN/KEYS pattern sent to some primaries of a cluster only, while keys matching it live on the others."""
    nodes = cluster_nodes(inp)
    if len(nodes) < 2:
        return []
    # per cluster (named by its first primary: a capture may watch two clusters)
    scanned: dict[tuple[tuple[object, ...], bytes, int, str], dict[str, facts.Pattern]] = {}
    anonymous: dict[tuple[bytes, int, str], set[str]] = {}  # nodes scanned by connections of no known process
    anyone: dict[tuple[bytes, int, str], set[str]] = {}  # nodes scanned by anybody
    for used in facts.patterns(inp.lifecycle):
        if used.server in nodes and not _ours(inp, used):
            actor = inp.actor(used.who)
            cluster = min(cluster_peers(inp, used.server))
            scanned.setdefault((identity(actor), used.pattern, used.db, cluster), {})[used.server] = used
            anyone.setdefault((used.pattern, used.db, cluster), set()).add(used.server)
            if actor is None or actor.pid is None:
                anonymous.setdefault((used.pattern, used.db, cluster), set()).add(used.server)
    groups = Groups("scan-one-node")
    for (ident, pattern, db, cluster), by_server in scanned.items():
        # A node a connection of unknown process scanned may have been this scanner's own connection there; and a
        # scanner of unknown process may be any scanner's connection: it asked no fewer nodes than they did.
        excused = anyone if ident[0] != "pid" else anonymous
        unasked = cluster_peers(inp, cluster) - set(by_server) - excused.get((pattern, db, cluster), set())
        if not unasked:
            continue  # every node was scanned: a cluster-aware scan
        regex = re.compile(fnmatch.translate(pattern.decode("utf-8", "surrogateescape")), re.DOTALL)
        since = min(used.t for used in by_server.values())
        until = max(used.last for used in by_server.values())
        missed = [slot for slot, lives in inp.lived if slot.server in unasked and slot.db == db
                  and regex.match(slot.key.decode("utf-8", "surrogateescape"))
                  and any(_alive_between(life, since, until) for life in lives)]
        if not missed:
            continue
        first = min(by_server.values(), key=lambda used: used.t)
        server, count, t, who, args = first.server, first.scans, first.t, first.who, first.args
        actor = inp.actor(who)
        group = groups.get((ident, db, pattern), "error", actor, _summary)
        group.extra.update(actor=actor, pattern=arg_text(pattern), asked=sorted(by_server), unasked=sorted(unasked))
        for slot in missed:
            group.add_key(slot.key)
        group.add_evidence(inp.line(t, who, args, f"sent to {server} only ({count} scans there)", db))
        from redis.crc import key_slot  # redis-py's package import is slow: only when a finding needs it

        for slot in missed[:MISSED_SHOWN]:
            life = slot.all_lives()[0] if slot.all_lives() else None
            made = f", written {clock(life.created_at)}" if life is not None and life.created_at else ""
            group.add_evidence(f"{arg_text(slot.key)}: slot {key_slot(slot.key)}, on {slot.server}{made}: "
                               "the scan never asked that node")
    return groups.findings()


def _alive_between(life: KeyLife, since: float, until: float) -> bool:
    """The key was there while the scanner scanned (a key written after its last scan, or gone before its first,
    was never one it missed)."""
    return (life.created_at is None or life.created_at <= until) and \
        (life.removed_at is None or life.removed_at >= since)


def _ours(inp: RuleInput, used: facts.Pattern) -> bool:
    """A scan sent by one of redisprobe's own observers: its TTL sampler scans each primary for the run's pattern,
    one connection per node, and those scans are never the user's (a node sampled before it connected gives it no
    pid, so its scans there would not read as the same client's)."""
    actor = inp.actor(used.who)
    info = inp.lifecycle.attributor.client_info(used.server, actor.client_id) if actor is not None else None
    return info is not None and info.name.startswith(OBSERVER_PREFIX)


def _summary(group: Group) -> str:
    asked, unasked = group.texts("asked"), group.texts("unasked")
    return (f"{who_text(group.actor('actor'))} scanned for {group.extra['pattern']} on {len(asked)} of the cluster's "
            f"{len(asked) + len(unasked)} primaries ({', '.join(asked)}): {group.key_count} matching key(s) "
            f"on {', '.join(unasked)} were never seen; a cluster needs the scan on every primary "
            "(a cluster client's scan over all nodes)")


MIN_REDIRECTS = 2
"""MOVED/ASK replies on one node before a client that never reached another node is called cluster-unaware (one
or two are a cluster client learning a failover or a slot move)."""

CROSSSLOT_FIX = ("give the keys that belong together one hash tag, so they share a slot: "
                 "{user:42}:cart and {user:42}:orders")


def _senders(inp: RuleInput, refusal: _Refusal) -> list[_Client]:
    return sorted(refusal.clients.values(), key=lambda c: -c.count)


def _commands(refusal: _Refusal) -> str:
    return ", ".join(f"{cmd.upper()} x{n}" for cmd, n in sorted(refusal.commands.items(), key=lambda i: -i[1]))


def _sender_lines(clients: list[_Client]) -> list[str]:
    lines = []
    for client in clients[:4]:
        cmds = ", ".join(f"{cmd.upper()} x{round(n)}" for cmd, n in client.commands.items())
        strongest = next(how for how in HOW if how in client.how)
        lines.append(f"{who_text(client.actor)}: {cmds} refused ({sureness(client)}: {HOW[strongest]})")
    return lines + [line for client in clients[:4] for line in client.seen[:2]]


def cross_slot(inp: RuleInput) -> list[Finding]:
    """Multi-key commands, transactions or scripts over keys in different hash slots, refused with CROSSSLOT."""
    nodes = cluster_nodes(inp)
    findings = []
    for server, samples in refused_servers(inp).items():
        if server not in nodes:
            continue
        refusal = refusals_by_code(inp, server, samples, ("CROSSSLOT",)).get("CROSSSLOT")
        if refusal is None or refusal.count <= 0:
            continue
        clients = _senders(inp, refusal)
        commands = _commands(refusal)
        who = who_text(clients[0].actor) if clients else "a client"
        findings.append(Finding(
            rule="cross-slot", severity="error", culprit=clients[0].actor if clients else None,
            summary=f"{who} sent {refusal.count} command(s) over keys in different hash slots to {server}, refused "
                    f"with CROSSSLOT" + (f" ({commands})" if commands else "") + ": nothing they would have "
                    f"written exists; {CROSSSLOT_FIX}",
            evidence=[counted(refusal, server), *_sender_lines(clients)]))
    return findings


def cluster_unaware_client(inp: RuleInput) -> list[Finding]:
    """A client that sends keys to a node that does not own them and never follows the MOVED/ASK it gets."""
    nodes = cluster_nodes(inp)
    findings = []
    for server, samples in refused_servers(inp).items():
        if server not in nodes:
            continue
        by_code = refusals_by_code(inp, server, samples, ("MOVED", "ASK"))
        count = sum(r.count for r in by_code.values())
        if count < MIN_REDIRECTS:
            continue
        clients = [c for r in by_code.values() for c in _senders(inp, r)]
        unaware = [c for c in clients if len(_nodes_of(inp, c.actor, cluster_peers(inp, server))) <= 1]
        if clients and not unaware:
            continue  # every sender also talks to other nodes: a cluster client following redirects
        culprit = unaware[0].actor if unaware else None
        commands = ", ".join(filter(None, (_commands(r) for r in by_code.values())))
        who = who_text(culprit) if culprit is not None else "a client"
        findings.append(Finding(
            rule="cluster-unaware-client", severity="error", culprit=culprit,
            summary=f"{who} sent {count} command(s) to {server} for keys another node owns and did not follow the "
                    f"redirects (" + " and ".join(f"{code} x{r.count}" for code, r in by_code.items() if r.count)
                    + "): those writes never happened; use a cluster client (ioredis Cluster, redis-py "
                    "RedisCluster), which sends each key to the node of its slot",
            evidence=[*_counts(by_code, server, commands), *_sender_lines(unaware or clients),
                      *(f"{who_text(c.actor)} has connections to {server} only" for c in unaware[:2])]))
    return findings


def _counts(by_code: dict[str, _Refusal], server: str, commands: str) -> list[str]:
    """How many redirects, counted by the server (errorstat) or seen one by one on the wire."""
    if any(r.wire for r in by_code.values()):
        return [counted(r, server) for r in by_code.values() if r.count]
    return [f"{clock(min(r.first or 0 for r in by_code.values()))} {server}: errorstat "
            + ", ".join(f"{code} +{r.count}" for code, r in by_code.items() if r.count)
            + (f"; rejected_calls {commands}" if commands else "")]


def _nodes_of(inp: RuleInput, actor: Actor | None, nodes: set[str]) -> set[str]:
    """The cluster nodes a process (or, without a pid, a connection) was seen connected to."""
    if actor is None:
        return set()
    if actor.pid is None:
        return {server for (server, client_id) in inp.attributor.clients if client_id == actor.client_id} & nodes
    return {server for (server, _cid), info in inp.attributor.clients.items() if info.pid == actor.pid} & nodes
