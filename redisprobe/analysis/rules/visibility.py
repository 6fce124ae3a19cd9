"""Rules for "A wrote it, B can't see it": another db, another server, an unexecuted MULTI, a shared socket."""

from __future__ import annotations

import fnmatch
import itertools
import re
from typing import TYPE_CHECKING

from redisprobe import trace
from redisprobe.analysis import facts
from redisprobe.analysis.attribution import ClientInfo, Who
from redisprobe.analysis.rules.base import (
    Group,
    Groups,
    RuleInput,
    family,
    identity,
    keys_phrase,
    same_process,
    who_text,
)
from redisprobe.analysis.rules.cluster import cluster_peers, same_cluster
from redisprobe.analysis.rules.fingerprints import different_server as fingerprint_different_server
from redisprobe.analysis.rules.fingerprints import same_replication_group
from redisprobe.findings import Actor, Finding, listed_keys
from redisprobe.semantics import command_table as C
from redisprobe.text import arg_text, clock, command_text

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife, Slot


def _missed_elsewhere(inp: RuleInput) -> dict[bytes, list[Slot]]:
    """For every key somebody missed: the places (server, db) where that key name did exist."""
    return inp.shared("elsewhere", lambda: _places_of_missed(inp))


def _places_of_missed(inp: RuleInput) -> dict[bytes, list[Slot]]:
    missed = {slot.key for slot in inp.missed if slot.miss_log}
    places: dict[bytes, list[Slot]] = {}
    if missed:
        for slot, _lives in inp.lived:
            if slot.key in missed:
                places.setdefault(slot.key, []).append(slot)
    return places


def _writer_life(slot: Slot, t: float) -> KeyLife | None:
    """The life of the key that was around at `t` (else the nearest one) and that someone created."""
    lives = [life for life in slot.all_lives() if life.created_by is not None]
    if not lives:
        return None
    for life in lives:
        start = life.created_at or 0.0
        if start <= t and (life.removed_at is None or life.removed_at >= t):
            return life
    return min(lives, key=lambda life: abs((life.created_at or 0.0) - t))


def different_db(inp: RuleInput) -> list[Finding]:
    """The key exists in db X; another client looked for it (GET, SCAN MATCH...) in db Y on the same server."""
    return _elsewhere(inp, same_server=True) + _patterns_elsewhere(inp, same_server=True) + _blocked_elsewhere(inp)


def _blocked_elsewhere(inp: RuleInput) -> list[Finding]:
    """A client blocked since before the capture (CLIENT LIST: flags=b, cmd=blmove, db=1) waits in one db while
    keys of the kind its command waits for are pushed in another db and nobody there takes them. CLIENT LIST does
    not name the key: a queue (no TTL) is preferred over other pushed keys, and one family is named."""
    findings = []
    lifecycle = inp.lifecycle
    for (server, client_id), blocked in lifecycle.blocked.items():
        feeds = C.BLOCKING_FEEDS.get(blocked.cmd)
        if not blocked.still or feeds is None:
            continue
        reader = inp.attributor.actor_for_client(server, client_id, blocked.addr)
        candidates: list[tuple[Slot, KeyLife]] = []
        for slot in lifecycle.slot_items():
            if slot.server != server or slot.db == blocked.db or slot.takers or not slot.count \
                    or (server, blocked.db, slot.key) in lifecycle.slots:
                continue
            life = next((life for life in slot.all_lives() if life.created_args is not None
                         and life.created_by is not None and life.created_args[0].upper() in feeds), None)
            if life is not None and not same_process(inp.actor(life.created_by), reader):
                candidates.append((slot, life))
        queues = [(slot, life) for slot, life in candidates if life.ttl_last is None and life.expires_at is None]
        candidates = queues or candidates
        if not candidates:
            continue
        fam = family(candidates[0][0].key)
        group = Groups("different-db").get((), "error", reader, _blocked_summary)
        writer = inp.actor(candidates[0][1].created_by)
        group.extra.update(family=fam, reader=reader, writer=writer, mine=blocked.db,
                           theirs=candidates[0][0].db, cmd=blocked.cmd.upper())
        still = f", still at {clock(blocked.last_t)}" if blocked.last_t > blocked.first_t else ""
        group.add_evidence(f"{clock(blocked.first_t)} CLIENT LIST: client id {client_id} ({blocked.addr}) blocked "
                           f"in {blocked.cmd.upper()} on db {blocked.db} since before the capture (flags=b){still}")
        for slot, life in candidates:
            if family(slot.key) == fam and group.add_key(slot.key):
                group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args,
                                            f"pushed in db {slot.db}; nobody there takes it", slot.db))
        findings.append(group.finding())
    return findings


def _blocked_summary(group: Group) -> str:
    return (f"{who_text(group.actor('reader'))} has been blocked in {group.extra['cmd']} on db "
            f"{group.extra['mine']} since before the capture, but {who_text(group.actor('writer'))} pushes "
            f"{keys_phrase(group)} in db {group.extra['theirs']}, where nobody takes "
            + ("it" if group.key_count == 1 else "them"))


def different_server(inp: RuleInput) -> list[Finding]:
    """The key exists on one server and another client looked for it on another (or actors' run_ids differ)."""
    findings = _elsewhere(inp, same_server=False) + _patterns_elsewhere(inp, same_server=False)
    if not findings:
        findings = _actor_servers(inp)
    return findings


MAX_KEYS_PER_DB = 100_000
"""Written keys per (server, db) that SCAN/KEYS patterns are tried against."""


def _keys_by_place(inp: RuleInput) -> dict[tuple[str, int], list[Slot]]:
    return inp.shared("places", lambda: _slots_by_place(inp))


def _slots_by_place(inp: RuleInput) -> dict[tuple[str, int], list[Slot]]:
    places: dict[tuple[str, int], list[Slot]] = {}
    for slot, _lives in inp.lived:
        here = places.setdefault((slot.server, slot.db), [])
        if len(here) < MAX_KEYS_PER_DB:
            here.append(slot)
    return places


def _patterns_elsewhere(inp: RuleInput, *, same_server: bool) -> list[Finding]:
    """A SCAN/KEYS pattern that matches nothing where it ran but matches keys in another db (or server)."""
    rule = "different-db" if same_server else "different-server"
    groups = Groups(rule)
    if not inp.lifecycle.patterns:
        return []
    places = _keys_by_place(inp)
    for server, db, pattern, count, t, who, args, _last in facts.patterns(inp.lifecycle):
        regex = re.compile(fnmatch.translate(pattern.decode("utf-8", "backslashreplace")), re.DOTALL)
        if any(regex.match(slot.key.decode("utf-8", "backslashreplace"))
               for peer in cluster_peers(inp, server) or {server} for slot in places.get((peer, db), ())):
            continue  # it matches there (or on a node of its cluster: scan-one-node's business)
        for (other_server, other_db), slots in places.items():
            if (other_server == server) != same_server or (other_server, other_db) == (server, db):
                continue
            if not same_server and (_one_dataset(inp, server, other_server)
                                    or same_cluster(inp, server, other_server)):
                continue  # a replica of it, or another node of its cluster (scan-one-node's business)
            hits = [slot for slot in slots if regex.match(slot.key.decode("utf-8", "backslashreplace"))]
            if not hits:
                continue
            life = _writer_life(hits[0], t)
            reader = inp.actor(who)
            writer = inp.actor(life.created_by) if life is not None else None
            mine, theirs, clusters = _places(inp, server, other_server)
            where = (db, other_db) if same_server else (mine, theirs)
            group = groups.get((identity(reader), where, pattern), "error", reader,
                               _db_summary if same_server else _server_summary)
            group.extra.update(reader=group.extra.get("reader", reader), writer=group.extra.get("writer", writer),
                               mine=where[0], theirs=where[1], pattern=True, clusters=not same_server and clusters)
            group.add_key(pattern)
            here = f"db {db}" if same_server else server
            group.add_evidence(inp.line(t, who, args, f"matched nothing in {here} ({count} scans)", db))
            if life is not None:
                there = f"db {other_db}" if same_server else other_server
                group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args,
                                            f"written in {there} ({len(hits)} key(s) match)", other_db))
            if same_server:
                group.add_evidence(*_db_reasons(inp, server, who, db))
            else:
                group.add_evidence(*_run_ids(inp, (other_server, server)))
            break
    return groups.findings()


def _elsewhere(inp: RuleInput, *, same_server: bool) -> list[Finding]:
    rule = "different-db" if same_server else "different-server"
    groups = Groups(rule)
    places = _missed_elsewhere(inp)
    for slot in inp.missed:
        miss = facts.first_miss(slot)
        if slot.count or miss is None:
            continue
        for other in places.get(slot.key, ()):
            if (other.server == slot.server) != same_server or (same_server and other.db == slot.db):
                continue
            if not same_server and (_one_dataset(inp, slot.server, other.server)
                                    or same_cluster(inp, slot.server, other.server)):
                continue  # a primary and its replica, or nodes of one cluster: one dataset
            t, who, args, _certain = miss
            life = _writer_life(other, t)
            if life is None:
                continue
            reader = inp.actor(who)
            writer = inp.actor(life.created_by)
            mine, theirs, clusters = _places(inp, slot.server, other.server)
            where = (slot.db, other.db) if same_server else (mine, theirs)
            group = groups.get((identity(reader), where, family(slot.key)), "error", reader,
                               _db_summary if same_server else _server_summary)
            group.extra.update(family=family(slot.key), reader=group.extra.get("reader", reader),  # the culprit's
                               writer=group.extra.get("writer", writer), mine=where[0], theirs=where[1],
                               clusters=not same_server and clusters)
            if not group.add_key(life.key):
                continue
            suffix = "" if same_server else f" on {other.server or 'its server'}"
            group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args, f"written{suffix}",
                                        other.db))
            suffix = "" if same_server else f" on {slot.server or 'its server'}"
            group.add_evidence(inp.line(t, who, args, f"missed{suffix} ({slot.misses}x): no such key here", slot.db))
            if same_server:
                group.add_evidence(*_db_reasons(inp, slot.server, who, slot.db))
            else:
                group.add_evidence(*_run_ids(inp, (other.server, slot.server)))
            break
    return groups.findings()


def _fingerprints(inp: RuleInput, server: str) -> list[trace.ServerFingerprint]:
    """What the trace knows of a server's identity: its samples and the actors connected to it."""
    found = []
    state = inp.lifecycle.servers.get(server)
    if state is not None and state.last_sample is not None:
        found.append(state.last_sample.server)
    actor_server = inp.lifecycle.attributor.actor_server
    found += [actor.server for actor in inp.lifecycle.actors if actor_server.get(actor.pid) == server]
    return found


def _one_dataset(inp: RuleInput, a: str, b: str) -> bool:
    """A primary and its replica (one `master_replid`) hold one dataset: not two different servers."""
    return any(same_replication_group(x, y) for x in _fingerprints(inp, a) for y in _fingerprints(inp, b))


def _db_reasons(inp: RuleInput, server: str, who: Who, db: int) -> list[str]:
    """A stray SELECT by the reader, or CLIENT LIST showing its connection on another db."""
    lines = []
    select = facts.select_of(inp.lifecycle, server, who[1])
    if select is not None:
        lines.append(inp.line(select.t, select.who, [b"SELECT", str(select.db).encode()],
                              f"this connection switched to db {select.db} ({select.selects} SELECT)"))
    actor = inp.actor(who)
    info = inp.attributor.client_info(server, actor.client_id if actor else None)
    if info is not None and info.samples:
        lines.append(f"{clock(info.last_seen)} CLIENT LIST: client id {info.client_id} ({info.addr}) "
                     f"is on db {info.db}")
    return lines


def _run_ids(inp: RuleInput, servers: tuple[str, ...]) -> list[str]:
    lines = []
    for server in servers:
        state = inp.lifecycle.servers.get(server)
        if state is not None and state.run_ids:
            t, run_id, source = state.run_ids[-1]
            lines.append(f"{clock(t)} {server or 'server'}: run_id {run_id[:12]} ({source})")
    return lines


def _looked_for(group: Group) -> str:
    if group.extra.get("pattern"):
        return f"keys matching {group.first_key}"
    return keys_phrase(group)


def _db_summary(group: Group) -> str:
    return (f"{who_text(group.actor('reader'))} looked for {_looked_for(group)} in db {group.extra['mine']}, but "
            f"{who_text(group.actor('writer'))} wrote it in db {group.extra['theirs']}")


def _server_summary(group: Group) -> str:
    if group.extra.get("clusters"):
        return (f"{who_text(group.actor('reader'))} looked for {_looked_for(group)} on {group.extra['mine']}, but "
                f"{who_text(group.actor('writer'))} wrote {'it' if group.key_count == 1 else 'them'} on another "
                f"cluster, {group.extra['theirs']}: two clusters that look alike, told apart by their node ids")
    return (f"{who_text(group.actor('reader'))} looked for {_looked_for(group)} on {group.extra['mine']}, but "
            f"{who_text(group.actor('writer'))} wrote it on another server, {group.extra['theirs']}")


def _places(inp: RuleInput, mine: str, theirs: str) -> tuple[str, str, bool]:
    """Where a finding says the reader looked and the writer wrote: each server, or all the primaries of its
    cluster (a cluster's keys spread over its primaries by slot: a reader on the wrong cluster is one finding,
    not one per pair of nodes); and whether both are clusters (the summary then says so)."""
    mine_peers, their_peers = cluster_peers(inp, mine), cluster_peers(inp, theirs)
    return (f"the cluster of {', '.join(sorted(mine_peers))}" if mine_peers else mine,
            f"the cluster of {', '.join(sorted(their_peers))}" if their_peers else theirs,
            bool(mine_peers and their_peers))


def _actor_servers(inp: RuleInput) -> list[Finding]:
    """Our actors were meant to share a server; their fingerprints say they did not (same port or version, other
    run_id). Actors on servers that do not even look alike are apps with two servers on purpose."""
    by_run: dict[str, list[trace.ActorStarted]] = {}
    for actor in inp.lifecycle.actors:
        if actor.server.run_id:
            by_run.setdefault(actor.server.run_id, []).append(actor)
    runs = list(by_run.values())
    findings = []
    for others in runs[1:]:
        first, other = runs[0][0], others[0]
        if first.server.port != other.server.port and first.server.version != other.server.version:
            continue
        finding = fingerprint_different_server(first, other)
        if finding is not None:
            findings.append(finding)
    return findings


def transaction_not_executed(inp: RuleInput) -> list[Finding]:
    """A MULTI never followed by EXEC or DISCARD: everything queued after it was silently dropped. A CLIENT LIST
    sample that caught a connection inside MULTI (flags=x) counts only if no EXEC or DISCARD came from it after."""
    lifecycle = inp.lifecycle
    findings = []
    seen: set[tuple[object, ...]] = set()
    for t, who, why in facts.abandoned_multis(lifecycle):
        actor = inp.actor(who)
        evidence = [inp.line(t, who, [b"MULTI"], why)]
        queued = lifecycle.queued_ops(who)
        if queued:
            evidence += [f"{clock(op.t)} pid {op.pid} ({op.role}) client id {op.client_id}: {command_text(op.args)} "
                         f"-> {op.reply} (never executed)" for op in queued[:5]]
        info = inp.attributor.client_info(who[0], actor.client_id if actor else None)
        if info is not None and info.multi:
            evidence.append(f"{clock(info.last_seen)} CLIENT LIST: client id {info.client_id} flags=x "
                            "(still inside MULTI)")
        seen.add((who[0], actor.client_id if actor else None))
        findings.append(Finding(
            rule="transaction-not-executed", severity="error",
            summary=f"{who_text(actor)} opened a MULTI that was never executed: its queued commands were dropped",
            evidence=evidence, culprit=actor))
    for (server, client_id), info in inp.attributor.clients.items():
        if info.multi and (server, client_id) not in seen \
                and lifecycle.last_exec.get((server, info.addr), -1.0) < info.last_seen:
            actor = inp.attributor.actor_for_client(server, client_id, info.addr)
            findings.append(Finding(
                rule="transaction-not-executed", severity="error",
                summary=f"{who_text(actor)} was left inside MULTI (a pooled connection?): nothing it queues runs",
                evidence=[f"{clock(info.last_seen)} CLIENT LIST: client id {client_id} ({info.addr}) flags=x"],
                culprit=actor))
    return findings


def shared_connection(inp: RuleInput) -> list[Finding]:
    """One connection (client id) used by two processes: a forked child writing on its parent's socket."""
    findings = []
    for server, client_id, pids in inp.attributor.shared_clients():
        info = inp.attributor.clients.get((server, client_id))
        owner = info.pid if info is not None else None
        others = sorted(pid for pid in pids if pid != owner) or sorted(pids)[1:]
        labels = {pid: inp.attributor.label_of(_pid_info(inp, server, client_id, pid)) for pid in pids}
        culprit = Actor(pid=others[0], label=labels.get(others[0], ""), client_id=client_id,
                        addr=info.addr if info else "")
        held = any(pid in inp.attributor.holders for pid in pids)
        evidence = [f"client id {client_id} ({info.addr if info else '?'}) "
                    + ("is one socket held by " if held else "carried commands from ")
                    + ", ".join(f"pid {pid}" + (f" ({labels[pid]})" if labels[pid] else "") for pid in sorted(pids))
                    + (" (the kernel's file descriptors: a forked process kept its parent's connection)" if held
                       else "")]
        for op in inp.lifecycle.op_errors:
            if op.client_id == client_id and op.pid in pids:
                evidence.append(f"{clock(op.t)} pid {op.pid} ({op.role}) client id {client_id}: "
                                f"{command_text(op.args)} -> error {op.error}")
                if len(evidence) > 6:
                    break
        findings.append(Finding(
            rule="shared-connection", severity="error",
            summary=f"{len(pids)} processes share one connection (client id {client_id}): replies can cross",
            evidence=evidence, culprit=culprit))
    return findings


def _pid_info(inp: RuleInput, server: str, client_id: int, pid: int) -> ClientInfo:

    info = inp.attributor.clients.get((server, client_id))
    role = info.role if info is not None and info.pid == pid else inp.attributor.pid_roles.get(pid, "")
    label = info.label if info is not None and info.pid == pid else inp.attributor.holders.get(pid, "")
    return ClientInfo(client_id=client_id, pid=pid, role=role, label=label)


def server_restarted(inp: RuleInput) -> list[Finding]:
    """The server's run_id changed or its uptime went back mid-trace: every key it held is gone."""
    findings = []
    for state in inp.lifecycle.servers.values():
        restarts = [(a, b) for a, b in state.changes or ()
                    if (a.server.run_id and b.server.run_id and a.server.run_id != b.server.run_id)
                    or b.server.uptime < a.server.uptime]
        evidence = [f"{clock(a.t)} {state.server or 'server'}: run_id {a.server.run_id[:12]} uptime "
                    f"{a.server.uptime}s -> {clock(b.t)} run_id {b.server.run_id[:12]} uptime {b.server.uptime}s"
                    for a, b in restarts[:4]]
        evidence += _actor_restarts(inp, state.server)
        if not evidence:
            continue
        lost = _lost_at_restart(inp, state.server, restarts[0][1].t if restarts else None)
        keys, exact = listed_keys(lost[:10])
        findings.append(Finding(
            rule="server-restarted", severity="error",
            summary=f"the server {state.server or ''} restarted during the trace".replace("  ", " ")
                    + (f": {len(lost)} key(s) written before it were looked for after" if lost else
                       ": keys it held without persistence are gone"),
            evidence=evidence + [f"{arg_text(k)} was missed after the restart" for k in lost[:5]], keys=keys,
            keys_base64=exact))
    return findings


def _actor_restarts(inp: RuleInput, server: str) -> list[str]:
    """Two actors on one address saw different run_ids, the later one with less uptime: a restart."""
    actors = [a for a in inp.lifecycle.actors if inp.lifecycle.attributor.actor_server.get(a.pid) == server
              and a.server.run_id]
    lines = []
    for before, after in itertools.pairwise(actors):
        same_place = (before.server.host, before.server.port) == (after.server.host, after.server.port)
        if same_place and before.server.run_id != after.server.run_id \
                and after.server.uptime < before.server.uptime + (after.t - before.t):
            lines.append(f"{clock(before.t)} pid {before.pid} ({before.role}) saw run_id {before.server.run_id[:12]} "
                         f"uptime {before.server.uptime}s; {clock(after.t)} pid {after.pid} ({after.role}) saw run_id "
                         f"{after.server.run_id[:12]} uptime {after.server.uptime}s")
    return lines


def _lost_at_restart(inp: RuleInput, server: str, at: float | None) -> list[bytes]:
    if at is None:
        return []
    lost = []
    for slot in inp.missed:
        if slot.server != server or not slot.miss_log or not slot.count:
            continue
        if any(miss.t > at for miss in facts.misses(slot)) \
                and any((life.created_at or 0) < at for life in slot.all_lives()):
            lost.append(slot.key)
    return lost


def stale_client_cache(inp: RuleInput) -> list[Finding]:
    """A client with CLIENT TRACKING read a key from its local cache after another client changed it."""
    groups = Groups("stale-client-cache")
    for server, peer, key, db, op, write_t, write_who, write_args in facts.stale_reads(inp.lifecycle):
        reader = inp.actor((server, peer, op.t, 0))
        group = groups.get((identity(reader), family(key)), "warning", reader, _stale_summary)
        group.extra.update(actor=reader, family=family(key))
        if group.add_key(key):
            group.add_evidence(inp.line(write_t, write_who, write_args, "changed it", db),
                               f"{clock(op.t)} pid {op.pid} ({op.role}) client id {op.client_id}: "
                               f"{command_text(op.args)} -> {op.reply!r} served from its client-side cache "
                               "(no GET reached the server)")
    return groups.findings()


def _stale_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} uses client-side caching (CLIENT TRACKING) and read "
            f"{keys_phrase(group)} from its cache after another client had changed it")
