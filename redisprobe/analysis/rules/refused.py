"""write-rejected: the server refused the writer's commands (OOM, READONLY, MISCONF, NOPERM), so nobody can see them.

MONITOR never shows a refused command; the server's own counters do (`trace.Refusals`, sampled during the
capture). The symptom is a count: commands refused with one of these errors between the first and the last sample
of the capture. Who sent them, as surely as the evidence allows:
- the server says: an ACL LOG entry names the client (NOPERM); sure.
- the client says: one of our actors recorded the error as its reply; sure.
- CLIENT LIST says: when the refusals of a command grew, the connections whose last command (`cmd=`) was that
  command; likely when one connection alone had it, possibly when several did (the count is shared out).
- the wire says (`monitor --source wire|both`): each refused command with its error reply, its connection and so
  its pid; sure, and counted exactly. The server's counters then only add what the wire did not see.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass, field

from redisprobe import trace
from redisprobe.analysis.rules.base import EVIDENCE_PER_FINDING, RuleInput, identity, who_text
from redisprobe.findings import Actor, Finding
from redisprobe.semantics import command_table as C
from redisprobe.text import clock, command_text

REFUSALS = {
    "OOM": "out of memory",
    "READONLY": "a read-only replica",
    "MISCONF": "writes stopped after a failed save",
    "NOPERM": "no ACL permission",
    "NOREPLICAS": "not enough replicas to write",
    "BUSY": "the server was busy running a script or function",
}
"""The errors that refuse a command before it runs, and what each means, in the order findings are listed."""

WIRE_ONLY = frozenset({"BUSY"})
"""Refusals counted from error replies only: the server's BUSY count mixes reads, pings and writes alike."""

EXAMPLES = 4
"""Refused ops of our own actors kept per client."""

CLIENTS_LISTED = 4
"""Senders named in the evidence, the most refused first (the rest are counted)."""


@dataclass
class _Client:
    actor: Actor | None
    count: float = 0.0
    commands: dict[str, float] = field(default_factory=dict)
    how: set[str] = field(default_factory=set)  # "wire", "acl", "reply", "sole", "shared"
    ops: list[trace.Op] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # refused commands read off the wire, as evidence lines

    def add(self, command: str, count: float, how: str) -> None:
        self.count += count
        self.commands[command] = self.commands.get(command, 0.0) + count
        self.how.add(how)


@dataclass
class _Refusal:
    code: str
    count: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    clients: dict[tuple[object, ...], _Client] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    acl: list[dict[str, str]] = field(default_factory=list)
    wire: bool = False  # counted from the error replies read off the wire
    sampled: int | None = None  # with `wire`: what the server's own counters said over the capture

    def client(self, actor: Actor | None) -> _Client:
        key = identity(actor)
        found = self.clients.get(key)
        if found is None:
            found = self.clients[key] = _Client(actor)
        return found


def write_rejected(inp: RuleInput) -> list[Finding]:
    """Commands the server refused during the capture, with the setting behind it and who sent them."""
    findings: list[Finding] = []
    for server, samples in refused_servers(inp).items():
        refusals = refusals_by_code(inp, server, samples)
        settings = _settings(samples)
        for code in REFUSALS:
            refusal = refusals.get(code)
            if refusal is not None and refusal.count > 0:
                findings.append(_finding(refusal, server, settings, _missed_meanwhile(inp, server, refusal)))
    return findings


def refused_servers(inp: RuleInput) -> dict[str, list[trace.Refusals]]:
    """Every server the capture knows refusals of: by its sampled counters, or by error replies off the wire."""
    servers = dict(inp.lifecycle.refusals)
    for server, *_rest in inp.lifecycle.wire_refused:
        servers.setdefault(server, [])
    return servers


def refusals_by_code(inp: RuleInput, server: str, samples: list[trace.Refusals],
                     codes: Collection[str] = tuple(REFUSALS)) -> dict[str, _Refusal]:
    """Per error code (of `codes`): how many commands one server refused, and by whom. Error replies read off the
    wire count each one and name its sender; without them, the server's counters between consecutive samples of
    one server run, put down to senders as surely as ACL LOG, our actors' replies and CLIENT LIST allow."""
    out = _sampled(inp, server, samples, [code for code in codes if code not in WIRE_ONLY])
    for code, refusal in _wire(inp, server, codes).items():
        sampled = out.get(code)
        refusal.sampled = sampled.count if sampled is not None else None
        out[code] = refusal
    return out


def _wire(inp: RuleInput, server: str, codes: Collection[str]) -> dict[str, _Refusal]:
    """The refused commands read off the wire, per error code: each one's connection, command and key."""
    out: dict[str, _Refusal] = {}
    for (where, code, peer, command), seen in inp.lifecycle.wire_refused.items():
        if where != server or code not in codes or not _on_data(command):
            continue
        if code in WIRE_ONLY and C.lookup(command.encode()).kind in (C.READ, C.SCAN, C.OTHER):
            continue  # a read refused while a script ran hides nothing anybody wrote
        refusal = out.setdefault(code, _Refusal(code, wire=True))
        refusal.count += seen.count
        refusal.first = seen.first if refusal.first is None else min(refusal.first, seen.first)
        refusal.last = seen.last if refusal.last is None else max(refusal.last, seen.last)
        refusal.commands[command] = refusal.commands.get(command, 0) + seen.count
        client = refusal.client(inp.actor((server, peer, seen.first, 0)))
        client.add(command, float(seen.count), "wire")
        for t, args, error in seen.examples:
            if len(client.seen) < EXAMPLES:
                client.seen.append(inp.line(t, (server, peer, t, 0), args, f"refused: {error}", seen.db))
    return out


def _sampled(inp: RuleInput, server: str, samples: list[trace.Refusals],
             codes: Collection[str]) -> dict[str, _Refusal]:
    out: dict[str, _Refusal] = {}
    ops = _refused_ops(inp, server, codes)
    for before, after in itertools.pairwise(samples):
        if before.run_id != after.run_id:
            continue  # a restart reset the counts: the next pair starts over
        errors = {code: after.errors.get(code, 0) - before.errors.get(code, 0) for code in codes}
        errors = {code: n for code, n in errors.items() if n > 0}
        if not errors:
            continue
        commands = {cmd: n - before.rejected.get(cmd, 0) for cmd, n in after.rejected.items()}
        commands = {cmd: n for cmd, n in commands.items() if n > 0}
        acl = [entry for entry in after.acl if entry.get("reason") in ("key", "channel")
               or (entry.get("reason") == "command" and _on_data(entry.get("object", "")))]
        denied = {entry.get("object", "").lower() for entry in after.acl if entry.get("reason") == "command"}
        for code, n in errors.items():
            if code == "NOPERM":  # a denied CLIENT SETINFO or HELLO at connect hides nobody's data: not counted
                mine = {cmd: k for cmd, k in commands.items() if cmd in denied} or \
                    (commands if len(errors) == 1 else {})
                mine = {cmd: k for cmd, k in mine.items() if _on_data(cmd)}
                n = sum(mine.values()) or sum(_count(entry.get("new")) for entry in acl)
                if not n:
                    continue
            else:
                mine = {cmd: k for cmd, k in commands.items() if cmd not in denied} if len(errors) > 1 else commands
            refusal = out.setdefault(code, _Refusal(code))
            refusal.count += n
            refusal.first = before.t if refusal.first is None else refusal.first
            refusal.last = after.t
            for cmd, k in mine.items():
                refusal.commands[cmd] = refusal.commands.get(cmd, 0) + k
            if code == "NOPERM":
                refusal.acl += acl
                _from_acl(inp, server, refusal, acl)
            window = [op for op in ops if before.t < op.t <= after.t and _code(op) == code]
            _share(inp, server, refusal, mine, window, after.suspects)
    return out


def _on_data(command: str) -> bool:
    """A command on keys or the keyspace (SET, GET, EVALSHA, FLUSHDB...), not connection housekeeping (CLIENT,
    HELLO, PING, INFO...): only refusing the former can hide what someone wrote."""
    spec = C.lookup(command.split("|", 1)[0].encode())
    return spec.kind != C.OTHER or bool(spec.first) or spec.keys_fn is not None


def _count(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _refused_ops(inp: RuleInput, server: str, codes: Collection[str]) -> list[trace.Op]:
    """Our actors' own commands whose reply was one of the refusals (they know they were refused)."""
    return [op for op in inp.lifecycle.op_errors
            if _code(op) in codes and inp.lifecycle.server_for(op) in ("", server)]


def _code(op: trace.Op) -> str:
    return (op.error or "").split(" ", 1)[0].upper()


def _from_acl(inp: RuleInput, server: str, refusal: _Refusal, acl: list[dict[str, str]]) -> None:
    for entry in acl:
        actor = _actor(inp, server, entry.get("client-id", ""), entry.get("client-addr", ""))
        command = entry.get("object", "?") if entry.get("reason") == "command" else entry.get("client-cmd", "?")
        refusal.client(actor).add(command.lower(), float(_count(entry.get("new"))), "acl")


def _share(inp: RuleInput, server: str, refusal: _Refusal, commands: dict[str, int], ops: list[trace.Op],
           suspects: list[dict[str, str]]) -> None:
    """Give each refused command's count to who sent it: ops first (exact), the rest shared among the connections
    CLIENT LIST showed with that last command. ACL LOG has already said who, for NOPERM."""
    for cmd, count in commands.items():
        exact: dict[tuple[object, ...], int] = {}
        for op in ops:
            if op.args and op.args[0].decode("latin-1").lower() == cmd:
                actor = inp.attributor.actor_for_client(server, op.client_id) if op.client_id else \
                    Actor(pid=op.pid, label=op.role)
                client = refusal.client(actor)
                if len(client.ops) < EXAMPLES:
                    client.ops.append(op)
                exact[identity(actor)] = exact.get(identity(actor), 0) + 1
        for key, n in exact.items():
            refusal.clients[key].add(cmd, n, "reply")
        if refusal.code == "NOPERM" and refusal.acl:
            continue
        rest = count - sum(exact.values())
        others = [s for s in suspects if s.get("cmd") == cmd]
        others = [s for s in others
                  if identity(_actor(inp, server, s.get("id", ""), s.get("addr", ""))) not in exact]
        if rest <= 0 or not others:
            continue
        how = "sole" if len(others) == 1 else "shared"
        for suspect in others:
            actor = _actor(inp, server, suspect.get("id", ""), suspect.get("addr", ""))
            refusal.client(actor).add(cmd, rest / len(others), how)


def _actor(inp: RuleInput, server: str, client_id: str, addr: str) -> Actor:
    if client_id.isdigit():
        return inp.attributor.actor_for_client(server, int(client_id), addr)
    return Actor(addr=addr)


def _settings(samples: list[trace.Refusals]) -> dict[str, str]:
    """The latest settings read (a sample that read none leaves the earlier ones standing)."""
    settings: dict[str, str] = {}
    for sample in samples:
        settings.update(sample.settings)
    return settings


def _why(code: str, s: dict[str, str], refusal: _Refusal) -> str:
    """The server setting behind the refusal, in the server's own words."""
    if code == "OOM":
        policy = s.get("config:maxmemory-policy") or s.get("maxmemory_policy") or "?"
        used, limit = _mb(s.get("used_memory")), _mb(s.get("config:maxmemory") or s.get("maxmemory"))
        memory = f"used_memory {used} of maxmemory {limit}" if used and limit else "memory is at maxmemory"
        if policy == "noeviction":
            return f"{memory} with maxmemory-policy noeviction: nothing may be evicted, so every write is refused"
        return f"{memory}; maxmemory-policy {policy} found nothing it may evict"
    if code == "READONLY":
        master = f" of {s['master_host']}:{s.get('master_port', '?')}" if s.get("master_host") else ""
        ro = s.get("config:replica-read-only", "yes")
        return f"the server is a replica{master} (role {s.get('role', 'slave')}, replica-read-only {ro}): " \
               "writes go to its primary"
    if code == "MISCONF":
        status = s.get("rdb_last_bgsave_status", "err")
        stop = s.get("config:stop-writes-on-bgsave-error", "yes")
        return f"the last background save failed (rdb_last_bgsave_status {status}) and " \
               f"stop-writes-on-bgsave-error is {stop}: writes stay refused until a save succeeds"
    if code == "NOPERM":
        lacks = sorted({(e.get("username", "?"), e.get("reason", "?"), e.get("object", "?")) for e in refusal.acl})
        if lacks:
            return "; ".join(f"ACL user {user} lacks the permission for {reason} {obj}"
                             for user, reason, obj in lacks[:3])
        return "an ACL user lacks the permission (ACL LOG could not be read to say which)"
    if code == "NOREPLICAS":
        return f"min-replicas-to-write {s.get('config:min-replicas-to-write', '?')} is not met"
    return REFUSALS.get(code, code)


def _mb(value: str | None) -> str:
    try:
        return f"{int(value or '') / 1048576:.1f} MB"
    except ValueError:
        return ""


HOW = {"wire": "the server's error replies to it, read off the wire",
       "acl": "the server's ACL LOG names it", "reply": "its own replies were the error",
       "sole": "CLIENT LIST showed its last command was the refused one, and no other connection's was",
       "shared": "CLIENT LIST showed its last command was the refused one (as for other connections: the count "
                 "is shared out)"}


def sureness(client: _Client) -> str:
    if client.how & {"wire", "acl", "reply"}:
        return "sure"
    return "likely" if "sole" in client.how else "possibly"


MISSES_QUOTED = 3
"""Reads that missed while the refusals went on, quoted per finding (the symptom side: B can't see)."""


def _missed_meanwhile(inp: RuleInput, server: str, refusal: _Refusal) -> list[str]:
    """Reads during the refusals of keys no accepted write ever created in the capture: what B could not see."""
    first, last = refusal.first or 0.0, refusal.last or 0.0
    misses = sorted((t, who, args) for slot in inp.missed if slot.server == server and not slot.count
                    for t, who, args, _certain in slot.miss_log or () if first <= t <= last)
    if not misses:
        return []
    lines = [f"meanwhile {len(misses)} read(s) missed keys that no accepted write created, e.g.:"]
    return lines + [inp.line(t, who, args, "missed: no such key") for t, who, args in misses[:MISSES_QUOTED]]


def counted(refusal: _Refusal, where: str) -> str:
    """How many were refused and who counted them: the wire (each reply seen) or the server's counters."""
    commands = ", ".join(f"{cmd.upper()} x{n}" for cmd, n in sorted(refusal.commands.items(), key=lambda i: -i[1]))
    span = f"{clock(refusal.first)}-{clock(refusal.last)} {where}"
    if refusal.wire:
        text = f"{span}: {refusal.count} {refusal.code} error repl{'y' if refusal.count == 1 else 'ies'} read off " \
               f"the wire ({commands})"
        if refusal.sampled is not None:
            text += f"; the server's errorstat {refusal.code} +{refusal.sampled} over its samples"
        return text
    return f"{span}: errorstat {refusal.code} +{refusal.count}" + (f"; rejected_calls {commands}" if commands else "")


def _finding(refusal: _Refusal, server: str, settings: dict[str, str], missed: list[str]) -> Finding:
    code = refusal.code
    clients = sorted(refusal.clients.values(), key=lambda c: -c.count)
    culprit = clients[0] if clients else None
    commands = ", ".join(f"{cmd.upper()} x{n}" for cmd, n in sorted(refusal.commands.items(), key=lambda i: -i[1]))
    where = server or "the server"
    summary = f"{where} refused {refusal.count} command(s) with {code} ({REFUSALS[code]}) during the capture" + \
              (f": {commands}" if commands else "") + "; MONITOR never shows them, so nobody could read what they wrote"
    if culprit is not None:
        summary += f". {'Refused most' if len(clients) > 1 else 'Sent by'}: {who_text(culprit.actor)} " \
                   f"({sureness(culprit)})"
        if code == "OOM" and len(clients) > 1:
            summary += ", the writer that keeps writing into the full server"
    evidence = [counted(refusal, where), f"why: {_why(code, settings, refusal)}"]
    for client in clients[:CLIENTS_LISTED]:
        cmds = ", ".join(f"{cmd.upper()} x{round(n)}" for cmd, n in client.commands.items())
        strongest = next(how for how in HOW if how in client.how)
        evidence.append(f"{who_text(client.actor)}: {cmds} refused ({sureness(client)}: {HOW[strongest]})")
    if len(clients) > CLIENTS_LISTED:
        evidence.append(f"... and {len(clients) - CLIENTS_LISTED} more client(s)")
    if not clients:
        evidence.append("who sent them is unknown: no ACL LOG entry, and CLIENT LIST showed no connection whose last "
                        "command was a refused one")
    evidence += [line for client in clients[:CLIENTS_LISTED] for line in client.seen[:2]]
    evidence += missed
    for op in [op for client in clients[:CLIENTS_LISTED] for op in client.ops[:2]]:
        evidence.append(f"{clock(op.t)} pid {op.pid} ({op.role}) client id {op.client_id}: "
                        f"{command_text(op.args)} -> error {op.error}")
    return Finding(rule="write-rejected", severity="error", summary=summary, evidence=evidence[:EVIDENCE_PER_FINDING],
                   culprit=culprit.actor if culprit is not None else None)
