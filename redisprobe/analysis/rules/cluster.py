"""Causes that exist only on a Redis Cluster: each key lives on the node that owns its hash slot.

`scan-one-node`: SCAN and KEYS answer for the node they are sent to. A plain client (or a cluster client's
`scan_iter` on one connection) that scans `batch:*` on one primary never sees the matching keys the other
primaries hold: the symptom is those keys, written and there, on nodes the scanner never asked.
"""

from __future__ import annotations

import fnmatch
import re

from redis.crc import key_slot

from redisprobe.analysis.rules.base import Group, Groups, RuleInput, identity, who_text
from redisprobe.findings import Finding
from redisprobe.text import arg_text, clock

MISSED_SHOWN = 6
"""Missed keys given as evidence (slot and node each); the rest are counted."""


def cluster_nodes(inp: RuleInput) -> set[str]:
    """The watched servers that said they are cluster nodes (INFO's redis_mode)."""
    return {name for name, state in inp.lifecycle.servers.items()
            if state.last_sample is not None and state.last_sample.server.redis_mode == "cluster"}


def scan_one_node(inp: RuleInput) -> list[Finding]:
    """A SCAN/KEYS pattern sent to some primaries of a cluster only, while keys matching it live on the others."""
    nodes = cluster_nodes(inp)
    if len(nodes) < 2:
        return []
    scanned: dict[tuple[object, ...], dict[str, tuple[int, float, object, list[bytes]]]] = {}
    for (server, db, pattern), (count, t, who, args) in inp.lifecycle.patterns.items():
        if server in nodes:
            key = (identity(inp.actor(who)), db, pattern)  # type: ignore[arg-type]
            scanned.setdefault(key, {})[server] = (count, t, who, args)
    groups = Groups("scan-one-node")
    for (ident, db, pattern), by_server in scanned.items():
        unasked = nodes - set(by_server)
        if not unasked:
            continue  # every node was scanned: a cluster-aware scan
        regex = re.compile(fnmatch.translate(pattern.decode("utf-8", "surrogateescape")), re.DOTALL)
        missed = [slot for slot, _lives in inp.lived if slot.server in unasked and slot.db == db
                  and regex.match(slot.key.decode("utf-8", "surrogateescape"))]
        if not missed:
            continue
        server, (count, t, who, args) = min(by_server.items(), key=lambda item: item[1][1])
        actor = inp.actor(who)  # type: ignore[arg-type]
        group = groups.get((ident, db, pattern), "error", actor, _summary)
        group.extra.update(actor=actor, pattern=arg_text(pattern), asked=sorted(by_server), unasked=sorted(unasked))
        for slot in missed:
            group.add_key(slot.key)
        group.add_evidence(inp.line(t, who, args, f"sent to {server} only ({count} scans there)", db))  # type: ignore[arg-type]
        for slot in missed[:MISSED_SHOWN]:
            life = slot.all_lives()[0] if slot.all_lives() else None
            made = f", written {clock(life.created_at)}" if life is not None and life.created_at else ""
            group.add_evidence(f"{arg_text(slot.key)}: slot {key_slot(slot.key)}, on {slot.server}{made}: "
                               "the scan never asked that node")
    return groups.findings()


def _summary(group: Group) -> str:
    extra = group.extra
    asked, unasked = extra["asked"], extra["unasked"]
    return (f"{who_text(extra['actor'])} scanned for {extra['pattern']} on {len(asked)} of the cluster's "  # type: ignore[arg-type]
            f"{len(asked) + len(unasked)} primaries ({', '.join(asked)}): {group.key_count} matching key(s) "  # type: ignore[arg-type]
            f"on {', '.join(unasked)} were never seen; a cluster needs the scan on every primary "  # type: ignore[arg-type]
            "(a cluster client's scan over all nodes)")
