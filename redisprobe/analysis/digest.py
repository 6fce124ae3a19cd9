"""What a capture amounts to: clients, each watched key's life, findings, gaps and counts.

Computed in one streaming pass over a trace (live capture, ttl-race, a saved file or a redis-cli log), so memory
grows with the number of keys and clients, not of lines.
"""

from __future__ import annotations

import base64
import fnmatch
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgspec

from redisprobe import trace
from redisprobe.analysis.connection_roles import OBSERVER_PREFIX, REPLICATION_LINK_FLAGS, ConnectionRoles
from redisprobe.findings import Finding
from redisprobe.gcpause import gc_paused

if TYPE_CHECKING:
    from redisprobe.analysis.doctor import Analysis
    from redisprobe.trace.cli_log import MonitorLog


@dataclass
class Summary:
    clients: list[dict[str, Any]]
    keys: list[dict[str, Any]]
    findings: list[Finding]
    gaps: list[trace.Gap]
    notes: list[trace.Note]
    stats: dict[str, int]
    ttl_curves: dict[str, list[int]] = field(default_factory=dict)
    cluster: bool = False  # a Redis Cluster was watched: the report says each key's node

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "keys": self.keys,
            "findings": self.findings,
            "gaps": [{"source": g.source, "target": g.target, "reason": g.reason, "from": g.t, "until": g.until,
                      "lost": g.lost}
                     for g in self.gaps],
            "notes": [{"level": n.level, "text": n.text} for n in self.notes],
            "stats": self.stats,
        }


class SummaryInterrupted(KeyboardInterrupt):
    """Ctrl-C while the summary was computed: `partial` has what was ready (clients, gaps, notes, counts so far;
    no key lives or findings)."""

    def __init__(self, partial: Summary) -> None:
        super().__init__()
        self.partial = partial


def exact_key(data: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A key's JSON with its exact bytes when its name is not UTF-8.

    `key` is text: a byte that is not UTF-8 shows as `\\xHH` there, which four literal characters could spell too.
    `key_base64` (only on such keys) holds the exact bytes, so byte 0xff and the text `\\xff` never look alike.
    """
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        data["key_base64"] = base64.b64encode(key).decode("ascii")
    return data


class _Tap:
    """Counts and collects the small things while the big stream flows on to the lifecycle fold."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, int], trace.ClientSeen] = {}  # (server, client id): ids repeat across servers
        self.gaps: list[trace.Gap] = []
        self.notes: list[trace.Note] = []
        self.stats = {"commands": 0, "events": 0, "keyspace_events": 0, "ops": 0, "own_commands": 0}
        self.roles = ConnectionRoles()
        self.ttl: dict[bytes, list[int]] = {}
        self.cluster = False

    def through(self, events: Iterable[trace.Event]) -> Generator[trace.Event, None, None]:
        stats = self.stats
        monitor, keyspace, op = trace.Monitor, trace.Keyspace, trace.Op
        roles = self.roles
        own, links, replicas, scanning = roles.own, roles.links, roles.replicas, roles.scans
        commands = keyspace_events = ops = others = own_commands = replicated = 0
        try:
            for event in events:
                if type(event) is monitor:
                    line = cast(trace.Monitor, event)  # `type() is` is the fast test; mypy narrows on isinstance
                    commands += 1
                    if own and (line.target, line.peer) in own:
                        own_commands += 1
                        until = scanning.get((line.target, line.peer))
                        if until is not None and line.t <= until:
                            continue  # the baseline's own SCAN/TYPE/PTTL: not the application's reads
                    elif links and (line.target, line.peer) in links:
                        replicated += 1  # a replica repeating its primary's writes: counted once, on the primary
                    yield event
                    continue
                others += 1
                if isinstance(event, keyspace):
                    if not replicas or event.target not in replicas:
                        keyspace_events += 1  # a cluster replica's events echo its primary's
                elif isinstance(event, op):
                    ops += 1
                elif isinstance(event, trace.ClientSeen):
                    self.clients[(event.target, event.client_id)] = event
                    roles.learn(event)
                elif isinstance(event, trace.Topology):
                    self.cluster = True
                    roles.learn(event)
                elif isinstance(event, trace.Gap):
                    self.gaps.append(event)
                elif isinstance(event, trace.Note):
                    self.notes.append(event)
                elif isinstance(event, trace.TtlSample):
                    self.ttl.setdefault(event.key, []).append(event.pttl)
                elif isinstance(event, trace.Baseline):
                    roles.learn(event)
                yield event
        finally:  # counted in locals (this loop sees every line), published when the stream ends
            stats["events"] += commands + others
            stats["commands"] += commands - own_commands - replicated  # what clients sent, not redisprobe's polling
            if replicated:  # nor the replication stream cluster replicas repeat
                stats["replicated"] = stats.get("replicated", 0) + replicated
            stats["own_commands"] += own_commands
            stats["keyspace_events"] += keyspace_events
            stats["ops"] += ops


KEY_EVENTS_ALL = 1_000
"""`keys[].events` (each life's history lines, the costly part of the JSON) for every key when there are at most
this many lives; beyond, only for the keys the findings name (the others keep every other field)."""


def summarise(events: Iterable[trace.Event], *, watched: dict[int, str] | None = None,
              key_patterns: Iterable[str] = ()) -> Summary:
    with gc_paused():  # the fold, the rules and the key JSON
        return _summarise(events, watched=watched, key_patterns=key_patterns)


def _summarise(events: Iterable[trace.Event], *, watched: dict[int, str] | None,
               key_patterns: Iterable[str]) -> Summary:
    from redisprobe.analysis.doctor import Context, analyze

    tap = _Tap()
    stream = tap.through(trace.time_ordered(iter(events)))  # the tap counts what the doctor reads, in its order
    try:
        analysis = analyze(stream, Context(watched=watched or {}), ordered=True)
        return _conclude(analysis, tap, watched=watched, key_patterns=key_patterns)
    except KeyboardInterrupt:
        stream.close()  # publishes the counts so far
        counted = tap.stats if tap.stats["events"] else {}  # none yet: no counts, not zeros read as an empty capture
        raise SummaryInterrupted(Summary(clients=_clients(tap, watched), keys=[], findings=[], gaps=tap.gaps,
                                         notes=tap.notes, stats=counted)) from None


def summarise_monitor_log(log: MonitorLog, *, key_patterns: Iterable[str] = ()) -> Summary:
    """`summarise` for a redis-cli monitor log: its rows go straight into the fold, no event per line."""
    from redisprobe.analysis.doctor import Context, analyze_folded
    from redisprobe.analysis.lifecycle import Lifecycle

    with gc_paused():
        tap = _Tap()
        lives = Lifecycle(watched={}).run_rows(log.batches())
        tap.stats["commands"] = tap.stats["events"] = lives.events
        note = log.note()
        if note is not None:
            tap.notes.append(note)
        return _conclude(analyze_folded(lives, Context()), tap, watched={}, key_patterns=key_patterns)


def _conclude(analysis: Analysis, tap: _Tap, *, watched: dict[int, str] | None,
              key_patterns: Iterable[str]) -> Summary:
    lives, findings = analysis.lifecycle, analysis.findings
    patterns = list(key_patterns)
    chosen = [life for life in lives.lives()
              if not patterns or any(fnmatch.fnmatchcase(life.key_text, p) for p in patterns)]
    if patterns:  # the doctor saw everything: a cause outside the patterns is the one the user could not guess
        findings = [f if not f.keys or any(fnmatch.fnmatchcase(k, p) for k in f.keys for p in patterns)
                    else msgspec.structs.replace(f, summary=f"{f.summary} (outside --keys)") for f in findings]
    if len(chosen) <= KEY_EVENTS_ALL:
        keys = [exact_key(life.to_json(), life.key) for life in chosen]
    else:
        named = {key for f in findings for key in f.keys}
        keys = [exact_key(life.to_json(history=life.key_text in named), life.key) for life in chosen]
    clients = _clients(tap, watched)
    curves = {k.decode("utf-8", "backslashreplace"): v for k, v in tap.ttl.items()}
    return Summary(clients=clients, keys=keys, findings=findings, gaps=tap.gaps, notes=tap.notes,
                   stats=tap.stats, ttl_curves=curves, cluster=tap.cluster)


def _clients(tap: _Tap, watched: dict[int, str] | None) -> list[dict[str, Any]]:
    return [{"client_id": c.client_id, "addr": c.addr, "db": c.db, "name": c.name, "lib": c.lib,
             "pid": c.pid, "label": c.label or ("unlisted" if c.pid is None or c.pid not in (watched or {}) else ""),
             "process": c.process} for c in tap.clients.values()
            if not c.name.startswith(OBSERVER_PREFIX) and not REPLICATION_LINK_FLAGS & set(c.flags)]
