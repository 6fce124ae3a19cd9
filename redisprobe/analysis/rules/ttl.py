"""Rules for TTLs that did not do what their owner meant: missed refreshes, cleared, shortened, wrong unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisprobe.analysis import facts
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
from redisprobe.analysis.rules.names import near_miss
from redisprobe.findings import Finding
from redisprobe.semantics import command_table as C
from redisprobe.text import clock, secs

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife, TtlSet

LATE_REFRESH_WINDOW = 5.0
"""ttl-refresh-missed: an EXPIRE on a key that had expired at most this many seconds earlier came too late."""

CLEAR_GRACE = 1.0
"""ttl-cleared-by-set: a TTL set again within this many seconds after the SET that dropped it is the usual
SET-then-EXPIRE pair, not a finding."""

_APPENDING = (C.WRITE, C.WRITE_EXISTING)

RECREATE_GRACE = 1.0
"""recreated-without-ttl: a key recreated after expiring that got no TTL within this many seconds (and none
later) is flagged; a shorter life or trace cannot tell."""


def _life_before(lives: list[KeyLife], t: float) -> KeyLife | None:
    before = [life for life in lives if life.removed_at is not None and life.removed_at <= t]
    return before[-1] if before else None


def ttl_refresh_missed(inp: RuleInput) -> list[Finding]:
    """An EXPIRE meant to keep a key alive did nothing: wrong name, too early, too late, or its condition."""
    groups = Groups("ttl-refresh-missed")
    for slot, lives in inp.lived:
        for life in lives:
            for record in life.ttl_missed or ():
                if record.reason.startswith("NX") or C.set_condition(record.args) == "NX":
                    continue  # EXPIRE ... NX on a key with a TTL, SET ... NX EX: the "set it once" idiom
                if life.removed_how == "expired":
                    outcome = f"the key then expired at {clock(life.removed_at)} on the TTL set before"
                elif life.removed_how is None and life.expires_at is None:
                    outcome = "the key has no TTL at all: it will never expire"
                else:
                    continue
                _add(inp, groups, slot.key, slot.db, record, f"did nothing ({record.reason})", outcome)
    for slot in inp.missed:
        lives = slot.all_lives() if slot.count else []
        for record in slot.absent_ttl or ():
            if record.effective:
                continue
            outcome = ""
            created = next((life for life in lives if life.ttl_before_create is record), None)
            previous = _life_before(lives, record.t)
            expired_at = previous.removed_at if previous is not None and previous.removed_how == "expired" else None
            if created is not None and created.ttl_first is None and created.created_at is not None:
                outcome = (f"it arrived {created.created_at - record.t:.3f}s before the key was created; "
                           "the key was then created without a TTL")
            elif expired_at is not None and record.t - expired_at <= LATE_REFRESH_WINDOW:
                outcome = f"too late: the key had expired {record.t - expired_at:.3f}s earlier"
            else:
                near = near_miss(inp, slot.server, slot.key)
                if near is not None and not (previous is not None and previous.removed_by is not None):
                    outcome = f"a near-miss name: {near[0]} exists ({near[1]})"
            if outcome:
                _add(inp, groups, slot.key, slot.db, record, "did nothing: no such key", outcome)
    return groups.findings()


def _add(inp: RuleInput, groups: Groups, key: bytes, db: int, record: TtlSet, effect: str, outcome: str) -> None:
    actor = inp.actor(record.who)
    group = groups.get((identity(actor), family(key)), "error", actor, _missed_summary)
    group.extra.update(family=family(key), actor=actor, outcome=outcome)
    group.add_key(key)
    group.add_evidence(inp.line(record.t, record.who, record.args, effect, db),
                       f"{clock(record.t)} {key.decode('utf-8', 'backslashreplace')}: {outcome}")


def _missed_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))}'s EXPIRE on {keys_phrase(group)} did not take effect: "
            f"{group.extra['outcome']}")


def ttl_cleared_by_set(inp: RuleInput) -> list[Finding]:
    """A plain SET (or GETSET, MSET) dropped the key's TTL: it now lives forever or until something else."""
    groups = Groups("ttl-cleared-by-set")
    end = inp.lifecycle.last_t
    for life in inp.lives:
        cleared = facts.cleared(life)
        if cleared is None:
            continue
        t, who, args, dropped = cleared
        restored = life.ttl_restored_at
        if restored is not None and restored - t <= CLEAR_GRACE:
            continue
        actor = inp.actor(who)
        if restored is not None:
            outcome, severity = f"a TTL came back only {restored - t:.1f}s later", "warning"
        elif life.removed_how is None:
            outcome, severity = "the key has had no TTL since: it will never expire", "error"
        else:
            outcome = f"it lived without a TTL until it was removed ({life.removed_how})"
            severity = "warning"
        group = groups.get((identity(actor), family(life.key), severity), severity, actor, _cleared_summary)
        group.extra.update(family=family(life.key), actor=actor, outcome=outcome)
        if not group.add_key(life.key):
            continue
        first = life.ttl_first if life.ttl_first is not None and life.ttl_first.t < t else None
        if first is not None:
            group.add_evidence(inp.line(first.t, first.who, first.args, f"TTL {secs(first.seconds)}", life.db))
        group.add_evidence(inp.line(t, who, args, f"TTL dropped ({secs(dropped)} were left): no EX/PX/KEEPTTL",
                                    life.db))
        if life.ttl_sample is not None and life.ttl_sample[1] == -1 and life.ttl_sample[0] >= t:
            group.add_evidence(f"{clock(life.ttl_sample[0])} TTL sample of {life.key_text}: -1 (no TTL)")
        elif restored is None and life.removed_how is None and end is not None:
            group.add_evidence(f"{clock(end)} end of the trace: {life.key_text} still has no TTL")
    return groups.findings()


def _cleared_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} overwrote {keys_phrase(group)} with a SET that dropped the TTL: "
            f"{group.extra['outcome']}")


def recreated_without_ttl(inp: RuleInput) -> list[Finding]:
    """The key expired and a write (INCR, HSET, LPUSH...) recreated it with no TTL: it never expires again."""
    groups = Groups("recreated-without-ttl")
    end = inp.lifecycle.last_t or 0.0
    for life in inp.lives:
        if life.prev_how not in ("expired", "evicted") or life.created_by is None or life.created_at is None:
            continue
        if life.ttl_first is not None or life.ttl_unknown:
            continue
        if life.created_args is None or C.lookup(life.created_args[0]).kind not in _APPENDING:
            continue  # a SET writes a fresh value with the TTL options it chose; INCR/RPUSH/HSET assume the old key
        until = life.removed_at if life.removed_at is not None else end
        if until - life.created_at < RECREATE_GRACE:
            continue
        actor = inp.actor(life.created_by)
        group = groups.get((identity(actor), family(life.key)), "error", actor, _recreated_summary)
        group.extra.update(family=family(life.key), actor=actor, how=life.prev_how)
        if not group.add_key(life.key):
            continue
        ttl = f" (its TTL was {secs(life.prev_ttl)})" if life.prev_ttl else ""
        group.add_evidence(f"{clock(life.prev_at)} the server: {life.key_text} {life.prev_how}{ttl}")
        group.add_evidence(inp.line(life.created_at, life.created_by, life.created_args, "recreated, no TTL",
                                    life.db))
        tail = f"until it was {life.removed_how}" if life.removed_at is not None else "until the end of the trace"
        group.add_evidence(f"{clock(until)} no EXPIRE followed for {until - life.created_at:.1f}s ({tail})")
    return groups.findings()


def _recreated_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} recreated {keys_phrase(group)} after {group.extra['how']} "
            "with no TTL: it will never expire")


def ttl_shortened(inp: RuleInput) -> list[Finding]:
    """Another process set a much shorter TTL than the key's owner did, and the key expired on it.

    A shorter TTL the key survives (a heartbeat refreshing a registration before it runs out) is bookkeeping,
    not a cause: without the early expiry there is nothing to explain."""
    groups = Groups("ttl-shortened")
    for life in inp.lives:
        if life.removed_how != "expired":
            continue
        for record, owner_seconds in life.shortened or ():
            owner = inp.actor(life.created_by)
            actor = inp.actor(record.who)
            if life.created_by is not None and same_process(owner, actor):
                continue
            group = groups.get((identity(actor), family(life.key)), "error", actor, _shortened_summary)
            group.extra.update(family=family(life.key), actor=actor, owner=owner, short=record.seconds,
                               long=owner_seconds)
            if not group.add_key(life.key):
                continue
            first = life.ttl_first
            if first is not None and first is not record:
                group.add_evidence(inp.line(first.t, first.who, first.args, f"owner's TTL {secs(owner_seconds)}",
                                            life.db))
            group.add_evidence(inp.line(record.t, record.who, record.args,
                                        f"TTL cut to {secs(record.seconds)} (owner: {secs(owner_seconds)})", life.db))
            group.add_evidence(f"{clock(life.removed_at)} the server: {life.key_text} expired, "
                               f"{life.lifetime or 0:.1f}s after it was created")
    return groups.findings()


def _shortened_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} set a {secs(group.number('short'))} TTL on {keys_phrase(group)} "
            f"whose owner {who_text(group.actor('owner'))} set {secs(group.number('long'))}")


MISS_WAVE = 3
"""ttl-unit-mismatch: read misses on keys just expired on a sub-second PX/PEXPIRE that make it a unit slip on
their own (a sub-second lock or lease nobody reads after it lapses stays silent)."""


def ttl_unit_mismatch(inp: RuleInput) -> list[Finding]:
    """Seconds written as milliseconds (PEXPIRE 30 from code that says EX 30 elsewhere, or whose keys are then
    looked for again and missed, wave after wave) or the reverse."""
    lifecycle = inp.lifecycle
    seconds_used: dict[tuple[object, ...], set[object]] = {}
    for place, used in lifecycle.units.items():
        actor = inp.actor(lifecycle.unit_users[place])
        seconds_used.setdefault(identity(actor), set()).update(used)
    groups = Groups("ttl-unit-mismatch")
    waves: dict[tuple[object, ...], list[tuple[KeyLife, TtlSet, list[facts.After]]]] = {}
    for life in inp.lives:
        for record, issue in life.unit_suspects or ():
            actor = inp.actor(record.who)
            if record.unit == "ms":
                first = life.ttl_first
                in_seconds = first if first is not None and first is not record and first.unit == "s" else None
                same_number_in_seconds = record.raw in seconds_used.get(identity(actor), set())
                if in_seconds is None and not same_number_in_seconds:
                    missed = _missed_after_expiry(life, record)
                    if missed:
                        waves.setdefault((identity(actor), family(life.key)), []).append((life, record, missed))
                    continue  # sub-second TTLs on purpose (locks, short leases) look just like this
                severity = "error"
                why = (f"this key had a TTL in seconds ({secs(in_seconds.seconds)})" if in_seconds is not None
                       else f"the same process sets {record.raw}s TTLs elsewhere")
                hint = f"did you mean {record.raw} seconds? {why}"
            else:
                severity = "warning"
                hint = f"did you mean {record.raw} milliseconds ({(record.raw or 0) / 1000:g}s)?"
            _unit_evidence(inp, groups, life, record, issue, severity, hint)
    for wave in waves.values():
        total = sum(len(missed) for _life, _record, missed in wave)
        if total < MISS_WAVE:
            continue
        for life, record, missed in wave:
            hint = (f"did you mean {record.raw} seconds? {total} reads missed these keys after they expired")
            group = _unit_evidence(inp, groups, life, record, _issue_of(life, record), "error", hint)
            if group is not None:
                miss = missed[0]
                group.add_evidence(inp.line(miss.t, miss.who, miss.args, "missed: it had expired", life.db))
    return groups.findings()


def _issue_of(life: KeyLife, record: TtlSet) -> str:
    return next(issue for suspect, issue in life.unit_suspects or () if suspect is record)


def _missed_after_expiry(life: KeyLife, record: TtlSet) -> list[facts.After]:
    """Reads that missed this key after it expired on `record` (the key was looked for again: the TTL was short
    for its readers)."""
    if life.removed_how != "expired" or life.ttl_last is not record:
        return []
    return [later for later in facts.after(life) if later.what == "missed"]


def _unit_evidence(inp: RuleInput, groups: Groups, life: KeyLife, record: TtlSet, issue: str, severity: str,
                   hint: str) -> Group | None:
    """The TTL command (and the key's expiry) as evidence of a unit slip; None when the group is full."""
    actor = inp.actor(record.who)
    group = groups.get((identity(actor), family(life.key), record.unit), severity, actor, _unit_summary)
    group.extra.update(family=family(life.key), actor=actor, issue=issue, hint=hint)
    if not group.add_key(life.key):
        return None
    group.add_evidence(inp.line(record.t, record.who, record.args, f"{issue}: {hint}", life.db))
    if life.removed_how == "expired" and life.lifetime is not None:
        group.add_evidence(f"{clock(life.removed_at)} the server: {life.key_text} expired after "
                           f"{life.lifetime:.3f}s")
    return group


def _unit_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} set a TTL in the wrong unit on {keys_phrase(group)}: "
            f"{group.extra['issue']}; {group.extra['hint']}")


def expire_in_past(inp: RuleInput) -> list[Finding]:
    """A TTL <= 0 or an EXPIREAT in the past (clock skew) deleted the key at once, with a `del` event."""
    groups = Groups("expire-in-past")
    for life in inp.lives:
        if not life.removed_by_past_ttl or life.removed_args is None:
            continue
        at = life.removed_at or 0.0
        change = C.ttl_change(life.removed_args, at)
        if change is not None and change.absolute and change.expires_at is not None:
            why = f"{change.raw} is {at - change.expires_at:.1f}s before the server's clock: deleted at once"
        else:
            why = f"TTL {change.raw if change else '?'} <= 0: deleted at once"
        actor = inp.actor(life.removed_by)
        group = groups.get((identity(actor), family(life.key)), "error", actor, _past_summary)
        group.extra.update(family=family(life.key), actor=actor)
        if group.add_key(life.key):
            group.add_evidence(inp.line(life.removed_at, life.removed_by, life.removed_args, why, life.db))
    return groups.findings()


def _past_summary(group: Group) -> str:
    return (f"{who_text(group.actor('actor'))} set an expire time in the past on {keys_phrase(group)}: "
            "the server deleted it at once")
