"""Rules for keys that vanished because something removed them: a client, another consumer, the server."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from redisprobe.analysis import facts
from redisprobe.analysis.rules.base import (
    Group,
    Groups,
    RuleInput,
    family,
    identity,
    keys_phrase,
    same_actor,
    same_process,
    who_text,
)
from redisprobe.findings import Actor, Finding, listed_keys
from redisprobe.semantics import command_table as C
from redisprobe.text import clock, secs

if TYPE_CHECKING:
    from redisprobe.analysis.attribution import Who
    from redisprobe.analysis.lifecycle import KeyLife, Slot

EARLY_FRACTION = 0.5
"""deleted-by-client: removed before this fraction of the TTL (counted from the last TTL set) had run."""

STILL_WRITING_FACTOR = 2.0
"""deleted-by-client: another process was "still writing" when its last append came less than this many of its
own average gaps between appends before the removal (a batch that went quiet for longer is a finished batch)."""

STILL_WRITING_MAX = 5.0
"""deleted-by-client: ...and at most this many seconds (and a quarter of the TTL) before it."""

CAME_BACK_WINDOW = 5.0
"""deleted-by-client / renamed-away: the writer came back to the key (append, EXPIRE) within this many seconds
(and within the TTL) after it was removed: it did not know the key was gone."""

_CLIENT_REMOVALS = ("del", "unlink", "getdel", "pop")
_APPENDS = (C.WRITE, C.WRITE_EXISTING, C.TTL)


def _writers(inp: RuleInput, life: KeyLife) -> list[tuple[Actor | None, facts.Writer]]:
    return [(inp.actor(writer.who), writer) for writer in facts.writers(life)]


def deleted_by_client(inp: RuleInput) -> list[Finding]:
    """A client removed a key long before its TTL while another process was still writing it, and that process
    came back to it (recreated it, or its EXPIRE hit nothing): the symptom. A removal right after another
    process's last write that nobody then missed is a hand-over (a job flushing a finished batch)."""
    groups = Groups("deleted-by-client")
    for _slot, lives in inp.lived:
        for index, life in enumerate(lives):
            if life.removed_how not in _CLIENT_REMOVALS or life.removed_by is None or life.removed_at is None:
                continue
            if life.removed_by_past_ttl:
                continue  # expire-in-past owns it
            last = life.ttl_last
            ttl = last.seconds if last is not None else life.owner_ttl
            start = last.t if last is not None else life.created_at
            if not ttl or start is None or life.removed_at - start >= EARLY_FRACTION * ttl:
                continue
            remover = inp.actor(life.removed_by)
            others = [(actor, entry) for actor, entry in _writers(inp, life)
                      if not same_actor(inp.attributor, actor, remover)]
            if not others:
                continue
            active = [(actor, writer) for actor, writer in others
                      if life.removed_at - writer.last_t <= _still_writing_window(writer, ttl)]
            back_window = min(CAME_BACK_WINDOW, ttl)
            came_back = []
            for later in facts.after(life):
                if later.who is None or later.kind not in _APPENDS or later.t - life.removed_at > back_window:
                    continue
                actor = inp.actor(later.who)
                if any(same_actor(inp.attributor, actor, other) for other, _ in others):
                    came_back.append((later, actor))
            if life.removed_how == "pop":
                # Emptying a queue is normal; it is this bug only when the writer's follow-up then failed.
                following = lives[index + 1] if index + 1 < len(lives) else None
                came_back = [(later, actor) for later, actor in came_back if later.what == "ttl-missed"
                             or (later.what == "recreated" and following is not None
                                 and following.ttl_first is None)]
                active = []
            if not came_back:
                continue  # the symptom: the writer came back to a key it did not know was gone
            writer = (active[0][0] if active else came_back[0][1])
            group = groups.get((identity(remover), family(life.key)), "error", remover, _deleted_summary)
            age = life.removed_at - (life.created_at if life.created_at is not None else start)
            left = ttl - (life.removed_at - start)
            group.extra.update(family=family(life.key), remover=remover, writer=writer, ttl=ttl, age=age, left=left)
            if not group.add_key(life.key) or group.evidence_full:
                continue  # (a full group would drop these lines: not formatted at all)
            lines: list[tuple[float, str]] = []
            if last is not None:
                lines.append((last.t, inp.line(last.t, last.who, last.args, f"TTL {secs(ttl)}", life.db)))
            for actor, still in active[:1]:
                lines.append((still.last_t, _last_write(inp, life, actor, still, life.removed_at)))
            lines.append((life.removed_at, inp.line(life.removed_at, life.removed_by, life.removed_args,
                                                    f"removed {age:.3f}s after creation, {left:.3f}s before its "
                                                    "TTL ran out", life.db)))
            for later, _actor in came_back[:2]:
                effect = {"recreated": "recreated the key it did not know was gone",
                          "ttl-missed": "EXPIRE hit nothing: the key was gone"}.get(later.what, later.what)
                lines.append((later.t, inp.line(later.t, later.who, later.args, effect, life.db)))
            group.add_evidence(*(line for _t, line in sorted(lines, key=lambda item: item[0])))
    return groups.findings()


def _still_writing_window(writer: facts.Writer, ttl: float) -> float:
    """How recent the writer's last append must be to call it "still writing" (0 without a rhythm to judge)."""
    if writer.appends < 2 or writer.writes < 2:
        return 0.0
    cadence = (writer.last_t - writer.first_t) / (writer.writes - 1)
    return min(STILL_WRITING_FACTOR * cadence, STILL_WRITING_MAX, 0.25 * ttl)


def _last_write(inp: RuleInput, life: KeyLife, actor: Actor | None, writer: facts.Writer, removed_at: float) -> str:
    """The writer's last command on the key before the removal, from the life's kept history."""
    gap = f"{removed_at - writer.last_t:.3f}s before the removal"
    for line in reversed(facts.history(life)):
        if line.who is not None and line.who[1] == writer.peer and line.args \
                and line.effect in ("written", "created", "overwritten"):
            return inp.line(line.t, line.who, line.args, f"still writing: {gap} ({writer.writes} writes)", life.db)
    return f"{clock(writer.last_t)} {who_text(actor)} db {life.db}: last wrote {life.key_text} {gap}"


def _deleted_summary(group: Group) -> str:
    remover, writer = group.actor("remover"), group.actor("writer")
    timing = (f" {group.number('age'):.3f}s after it was created (TTL {secs(group.number('ttl'))})"
              if group.key_count == 1 else " long before their TTL")
    return (f"{who_text(remover)} removed {keys_phrase(group)}{timing} while {who_text(writer)} "
            f"was still writing {'it' if group.key_count == 1 else 'them'}")


class _Consumer:
    """One process taking keys of one family: how many, and the first few takes as evidence."""

    __slots__ = ("actor", "count", "examples")

    def __init__(self, actor: Actor | None) -> None:
        self.actor = actor
        self.count = 0
        self.examples: list[tuple[float, Who, list[bytes], Slot]] = []


def consumed_by_other(inp: RuleInput) -> list[Finding]:
    """Keys taken by a process nobody expected: an unlisted client, or a second instance of a listed one."""
    attributor = inp.attributor
    families: dict[str, dict[tuple[object, ...], _Consumer]] = {}
    for slot in inp.lifecycle.slot_items():
        if not slot.takers:
            continue
        fam = family(slot.key)
        consumers = families.setdefault(fam, {})
        for taker in facts.takers(slot):
            actor = inp.actor(taker.who)
            consumer = consumers.get(identity(actor))
            if consumer is None:
                consumer = consumers[identity(actor)] = _Consumer(actor)
            consumer.count += taker.takes
            if len(consumer.examples) < 3:
                consumer.examples.append((taker.first_t, taker.who, taker.args, slot))
    groups = Groups("consumed-by-other")
    expectations = attributor.has_expectations
    for fam, consumers in families.items():
        listed = [c for c in consumers.values() if attributor.is_listed(c.actor)]
        for consumer in consumers.values():
            actor = consumer.actor
            if attributor.is_listed(actor):
                continue
            if expectations:
                if not listed and not _family_written_by_listed(inp, fam):
                    continue
            elif actor is None or actor.pid is not None \
                    or not any(c.actor is not None and c.actor.pid is not None for c in consumers.values()):
                continue  # nobody said who is expected: only a client from no local process stands out
            twin = _same_program(inp, actor, listed) if actor is not None else None
            group = groups.get((identity(actor), fam), "error", actor, _consumed_summary)
            group.extra.update(family=fam, actor=actor, twin=twin, count=consumer.count)
            for t, who, args, slot in consumer.examples:
                group.add_key(slot.key)
                group.add_evidence(inp.line(t, who, args, "took it", slot.db))
            for other in listed[:2]:
                t, who, args, slot = other.examples[0]
                group.add_evidence(inp.line(t, who, args, f"expected consumer ({other.count} takes of {fam})",
                                            slot.db))
    _instances_raced(inp, groups)
    return groups.findings()


def _instances_raced(inp: RuleInput, groups: Groups) -> None:
    """Two listed instances of one program (PM2 cluster mode: one name, several pids) pop the same key and one
    comes away empty right after the other emptied it: each instance gets only part of what it expects."""
    for slot in inp.lifecycle.slot_items():
        race = facts.raced(slot)
        if race is None:
            _batch_takers(inp, groups, slot)
            continue
        emptied = race.emptied
        loser, taker = inp.actor(race.who), inp.actor(emptied.removed_by)
        if taker is None or loser is None or not _instances_of_one_program(inp, taker, loser):
            continue
        fam = family(slot.key)
        group = groups.get((taker.label, fam, "instances"), "error", taker, _raced_summary)
        pids = group.extra.setdefault("pids", set())
        assert isinstance(pids, set)
        pids.update({taker.pid, loser.pid})
        group.extra.update(family=fam, actor=taker, loser=loser)
        group.extra["races"] = group.number("races") + race.races if "races" in group.extra else race.races
        if group.add_key(slot.key):
            group.add_evidence(
                inp.line(emptied.removed_at, emptied.removed_by, emptied.removed_args, "took it: the key is empty",
                         slot.db),
                inp.line(race.t, race.who, race.args, f"came away empty {race.t - (emptied.removed_at or race.t):.3f}s "
                                                      f"later ({race.races} such race(s))", slot.db))


def _batch_takers(inp: RuleInput, groups: Groups, slot: Slot) -> None:
    """Two listed instances of one program both take batches (LPOP key 50) from one key: each drains what the
    other expected, whether or not one came away empty in this capture."""
    if not slot.takers or len(slot.takers) < 2:
        return
    batches = [(inp.actor(taker.who), taker) for taker in facts.takers(slot) if C.pop_count(taker.args) > 1]
    for (first, _), (second, _) in itertools.pairwise(batches):
        if first is None or second is None or not _instances_of_one_program(inp, first, second):
            continue
        fam = family(slot.key)
        group = groups.get((first.label, fam, "instances"), "error", first, _batches_summary)
        pids = group.extra.setdefault("pids", set())
        assert isinstance(pids, set)
        pids.update({first.pid, second.pid})
        group.extra.update(family=fam, actor=first)
        if group.add_key(slot.key):
            for actor, taker in batches:
                if actor is not None and actor.label == first.label:
                    group.add_evidence(inp.line(taker.first_t, taker.who, taker.args,
                                                f"took a batch ({taker.takes} pops of this key)", slot.db))
        return


def _pids(group: Group) -> list[int]:
    pids = group.extra["pids"]
    assert isinstance(pids, set)
    return sorted(pids)


def _batches_summary(group: Group) -> str:
    actor = group.actor("actor")
    pids = _pids(group)
    label = actor.label if actor is not None else ""
    return (f"{len(pids)} instances of {label} ({', '.join(f'pid {pid}' for pid in pids)}) each take batches from "
            f"{keys_phrase(group)}: each gets only part of what it is meant to process")


def _instances_of_one_program(inp: RuleInput, a: Actor | None, b: Actor | None) -> bool:
    """Two listed pids under one name (the same --pids label): instances of one app, not a forked child."""
    watched = inp.attributor.watched
    if a is None or b is None or a.pid is None or b.pid is None or a.pid == b.pid:
        return False
    return a.pid in watched and b.pid in watched and bool(a.label) and a.label == b.label


def _raced_summary(group: Group) -> str:
    taker, loser = group.actor("actor"), group.actor("loser")
    assert taker is not None and loser is not None
    pids = _pids(group)
    count = len(pids)
    return (f"{count} instances of {taker.label} ({', '.join(f'pid {pid}' for pid in pids)}) "
            f"{'both' if count == 2 else 'all'} take {keys_phrase(group)}: pid {loser.pid} came away empty right "
            f"after pid {taker.pid} took it ({group.extra['races']} time(s)); each instance gets only part of it")


def _family_written_by_listed(inp: RuleInput, fam: str) -> bool:
    """Whether a listed process created keys of this family (one pass over keys, shared by all families)."""
    return fam in inp.shared("listed-families", lambda: _families_written_by_listed(inp))


def _families_written_by_listed(inp: RuleInput) -> set[str]:
    return {family(slot.key) for slot, lives in inp.lived
            if any(life.created_by is not None and inp.attributor.is_listed(inp.actor(life.created_by))
                   for life in lives)}


def _same_program(inp: RuleInput, actor: Actor, listed: list[_Consumer]) -> Actor | None:
    """A listed consumer this unlisted pid looks like (same label or process name): a second instance."""
    if actor.pid is None:
        return None
    mine = {actor.label, inp.attributor.process_of(actor.pid)} - {""}
    for other in listed:
        other_actor = other.actor
        if other_actor is None or other_actor.pid is None:
            continue
        theirs = {other_actor.label, inp.attributor.process_of(other_actor.pid)} - {""}
        if mine & theirs:
            return other_actor
    return None


def _consumed_summary(group: Group) -> str:
    actor, twin = group.actor("actor"), group.actor("twin")
    fam = group.extra["family"]
    what = keys_phrase(group) + ("" if group.key_count == 1 and fam == group.first_key else f" of {fam}")
    if twin is not None:
        return (f"a second instance of {twin.label or 'a listed process'} ({who_text(actor)}, not one of the "
                f"expected processes) took {what}")
    return f"{who_text(actor)}, not one of the expected processes, took {what}"


def evicted(inp: RuleInput) -> list[Finding]:
    """The server evicted keys (maxmemory): it looks like early expiry, but no client did it."""
    groups = Groups("evicted")
    for life in inp.lives:
        if life.removed_how != "evicted":
            continue
        fam = family(life.key)
        group = groups.get((fam,), "error", None, _evicted_summary)
        group.extra["family"] = fam
        if group.add_key(life.key):
            ttl = f" (TTL {secs(life.ttl_set)} left unused)" if life.ttl_set else ""
            group.add_evidence(inp.line(life.removed_at, None, None, f"evicted {life.key_text}{ttl}", life.db))
    findings = groups.findings()
    for state in inp.lifecycle.servers.values():
        rises = [(a, b) for a, b in state.changes or ()
                 if b.stats.get("evicted_keys", 0) > a.stats.get("evicted_keys", 0)]
        if not rises:
            continue
        lines = [f"{clock(b.t)} server {state.server}: evicted_keys {a.stats.get('evicted_keys', 0)} -> "
                 f"{b.stats.get('evicted_keys', 0)}" + _memory(b.stats) for a, b in rises[:4]]
        if findings:
            findings = [_with_evidence(f, lines) for f in findings]
        else:
            total = sum(b.stats.get("evicted_keys", 0) - a.stats.get("evicted_keys", 0) for a, b in rises)
            findings.append(Finding(rule="evicted", severity="error",
                                    summary=f"the server {state.server} evicted {total} key(s) (maxmemory); "
                                            "no keyspace event named them", evidence=lines))
    return findings


def _memory(stats: dict[str, int]) -> str:
    used, limit = stats.get("used_memory"), stats.get("maxmemory")
    return f", used_memory {used} of maxmemory {limit}" if used and limit else ""


def _with_evidence(finding: Finding, lines: list[str]) -> Finding:
    import msgspec

    return msgspec.structs.replace(finding, evidence=[*finding.evidence, *lines])


def _evicted_summary(group: Group) -> str:
    return f"the server evicted {keys_phrase(group)} to stay under maxmemory: no client deleted them"


def flushed(inp: RuleInput) -> list[Finding]:
    """FLUSHDB/FLUSHALL removed keys other processes were using (no per-key event: only MONITOR shows it)."""
    findings = []
    for record in inp.lifecycle.flushes:
        flusher = inp.actor(record.who)
        victims = []
        owners: list[Actor | None] = []
        for life in record.removed:
            creator = inp.actor(life.created_by) if life.created_by is not None else None
            others = [inp.actor(writer.who) for writer in facts.writers(life)]
            foreign = [a for a in [creator, *others] if a is not None and not same_process(a, flusher)]
            if foreign or life.preexisting:
                victims.append(life)
                owners.extend(foreign[:1])
        if not victims:
            continue
        scope = "every db" if record.db is None else f"db {record.db}"
        owner_text = ", ".join(sorted({who_text(a) for a in owners[:3]})) or "other clients"
        evidence = [inp.line(record.t, record.who, record.args, f"{record.removed_count} live key(s) gone, "
                                                                f"no per-key event")]
        for life in victims[:5]:
            evidence.append(inp.line(life.created_at, life.created_by, life.created_args,
                                     f"{life.key_text} was created here", life.db))
        keys, exact = listed_keys([life.key for life in victims[:10]])
        if len(victims) > 10:
            keys.append(f"... and {len(victims) - 10} more")
            if isinstance(exact, list):
                exact.append(None)
        findings.append(Finding(
            rule="flushed", severity="error",
            summary=f"{who_text(flusher)} flushed {scope} on {record.server or 'the server'}, removing "
                    f"{len(victims)} key(s) written by {owner_text}",
            evidence=evidence, keys=keys, keys_base64=exact, culprit=flusher))
    return findings


def renamed_away(inp: RuleInput) -> list[Finding]:
    """RENAME/MOVE took a key (with its TTL) from under a process that still looked for the old name."""
    groups = Groups("renamed-away")
    for slot, lives in inp.lived:
        for life in lives:
            if life.removed_how not in ("rename", "move") or life.removed_by is None or life.removed_at is None:
                continue
            mover = inp.actor(life.removed_by)
            later = [(t, who, args, what) for t, who, args, what, _kind in facts.after(life)]
            later += [(miss.t, miss.who, miss.args, "missed") for miss in facts.misses(slot)
                      if miss.t > life.removed_at and not any(miss.t == x[0] for x in later)]
            lookers = [(t, who, args, what) for t, who, args, what in later
                       if who is not None and not same_process(inp.actor(who), mover)]
            if not lookers:
                continue
            group = groups.get((identity(mover), family(life.key)), "warning", mover, _renamed_summary)
            group.extra.update(family=family(life.key), mover=mover, looker=inp.actor(lookers[0][1]))
            if group.add_key(life.key):
                group.add_evidence(inp.line(life.removed_at, life.removed_by, life.removed_args,
                                            life.removed_detail or life.removed_how, life.db))
                t, who, args, what = lookers[0]
                group.add_evidence(inp.line(t, who, args, f"{what}: the key had been moved away", life.db))
    return groups.findings()


def _renamed_summary(group: Group) -> str:
    return (f"{who_text(group.actor('mover'))} renamed or moved {keys_phrase(group)} away while "
            f"{who_text(group.actor('looker'))} still used the old name")
