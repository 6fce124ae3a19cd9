"""What every doctor rule gets (the folded trace, who is who) and the helpers that keep findings short.

A rule is a plain function `(RuleInput) -> list[Finding]`. Findings are grouped per culprit and key family
(`batch:*`), so ten thousand deleted batches make one finding listing a few keys and a count, not ten thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from redisprobe.analysis.attribution import Attributor, Who, describe
from redisprobe.findings import Actor, Finding, listed_keys
from redisprobe.text import clock, command_text, evidence_line

if TYPE_CHECKING:
    from redisprobe.analysis.lifecycle import KeyLife, Lifecycle, Slot

KEYS_LISTED = 10
"""Keys named in one finding; the rest are counted."""

T = TypeVar("T")

EVIDENCE_PER_FINDING = 12
"""Evidence lines kept per finding (the first examples; each names time, pid, client id and command)."""


@dataclass
class Context:
    """What the user told us: which pids are whose (`--pids api=123`), and the TTLs keys are meant to have."""

    watched: dict[int, str] = field(default_factory=dict)
    intended_ttls: dict[str, float] = field(default_factory=dict)  # key or glob pattern -> seconds


@dataclass
class RuleInput:
    """What a rule reads: the finished fold (typed records of it in `redisprobe.analysis.facts`) and the context."""

    lifecycle: Lifecycle
    context: Context
    cache: dict[str, object] = field(default_factory=dict)  # shared lookups built once (the near-miss index)
    _lived: list[tuple[Slot, list[KeyLife]]] | None = field(default=None, init=False, repr=False)
    _lives: list[KeyLife] | None = field(default=None, init=False, repr=False)
    _missed: list[Slot] | None = field(default=None, init=False, repr=False)

    @property
    def lived(self) -> list[tuple[Slot, list[KeyLife]]]:
        """Every key that existed during the trace with its kept lives (built once, shared by the rules)."""
        if self._lived is None:
            self._lived = [(slot, slot.all_lives()) for slot in self.lifecycle.slot_items() if slot.count]
        return self._lived

    @property
    def lives(self) -> list[KeyLife]:
        if self._lives is None:
            self._lives = [life for _slot, lives in self.lived for life in lives]
        return self._lives

    @property
    def missed(self) -> list[Slot]:
        """Keys somebody read (or expired, deleted) while they did not exist."""
        if self._missed is None:
            self._missed = [slot for slot in self.lifecycle.slot_items() if slot.miss_log or slot.absent_ttl]
        return self._missed

    def shared(self, name: str, build: Callable[[], T]) -> T:
        """A lookup several rules need (an index of names, of places), built by the first that asks."""
        if name not in self.cache:
            self.cache[name] = build()
        return cast(T, self.cache[name])

    @property
    def attributor(self) -> Attributor:
        return self.lifecycle.attributor

    def actor(self, who: Who | None) -> Actor | None:
        return self.lifecycle.attributor.resolve(who)

    def line(self, t: float | None, who: Who | None, args: list[bytes] | None, effect: str = "",
             db: int | None = None) -> str:
        return evidence_line(t, self.actor(who), args, effect, db)


Rule = Callable[[RuleInput], list[Finding]]


def identity(actor: Actor | None) -> tuple[object, ...]:
    """Same process -> same identity; without a pid, the connection (client id, else address) stands for it."""
    if actor is None:
        return ("server",)
    if actor.pid is not None:
        return ("pid", actor.pid)
    if actor.client_id is not None:
        return ("client", actor.client_id)
    return ("addr", actor.addr)


def same_process(a: Actor | None, b: Actor | None) -> bool:
    return identity(a) == identity(b)


def same_actor(attributor: Attributor, a: Actor | None, b: Actor | None) -> bool:
    """One process, or a forked child and the listed process it belongs to (the child carries its label: rq's
    work horse finishing its worker's bookkeeping). Two listed pids are never one actor, even under one label
    (PM2 cluster instances)."""
    if same_process(a, b):
        return True
    if a is None or b is None or a.pid is None or b.pid is None:
        return False
    children = attributor.children
    child, other = (a, b) if a.pid in children else (b, a)
    if child.pid not in children or other.pid is None:
        return False
    return children[child.pid] == (attributor.watched.get(other.pid) or children.get(other.pid))


def family(key: bytes | str) -> str:
    """`batch:1234:items` -> `batch:*:items`: keys that differ only by ids are one family."""
    text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
    if ":" in text:
        parts = text.split(":")
        return ":".join("*" if any(c.isdigit() for c in part) and len(parts) > 1 else part for part in parts)
    out = []
    digits = False
    for char in text:
        if char.isdigit():
            if not digits:
                out.append("*")
            digits = True
        else:
            out.append(char)
            digits = False
    return "".join(out)


@dataclass
class Group:
    """One finding in the making: a culprit, a key family, evidence and keys."""

    rule: str
    severity: str
    culprit: Actor | None
    summary: Callable[[Group], str]
    keys: list[bytes] = field(default_factory=list)  # exact bytes; text (and base64 when needed) in the finding
    key_count: int = 0
    evidence: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    seen: set[bytes] = field(default_factory=set, repr=False)  # every key counted, listed or not

    def add_key(self, key: bytes | str) -> bool:
        """Count a key once (however many of its lives the rule flags); True when it is new to this group."""
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogateescape")
        if key in self.seen:
            return False
        self.seen.add(key)
        self.key_count += 1
        if len(self.keys) < KEYS_LISTED:
            self.keys.append(key)
        return True

    def actor(self, name: str) -> Actor | None:
        """A process the rule put in `extra` (None when it put none there)."""
        value = self.extra.get(name)
        return value if isinstance(value, Actor) else None

    def number(self, name: str) -> float:
        """A number the rule put in `extra` (seconds, a count)."""
        value = self.extra.get(name)
        assert isinstance(value, int | float), f"{self.rule}: extra[{name!r}] is not a number"
        return value

    def texts(self, name: str) -> list[str]:
        """A list of names the rule put in `extra` (servers, pids as text)."""
        value = self.extra.get(name)
        assert isinstance(value, list), f"{self.rule}: extra[{name!r}] is not a list"
        return [str(item) for item in value]

    @property
    def first_key(self) -> str:
        """The first listed key as text (for a summary line)."""
        return self.keys[0].decode("utf-8", "backslashreplace")

    @property
    def evidence_full(self) -> bool:
        """No more evidence lines will be kept (rules may skip formatting them)."""
        return len(self.evidence) >= EVIDENCE_PER_FINDING

    def add_evidence(self, *lines: str) -> None:
        for line in lines:
            if line and line not in self.evidence and len(self.evidence) < EVIDENCE_PER_FINDING:
                self.evidence.append(line)

    def finding(self) -> Finding:
        keys, exact = listed_keys(self.keys)
        if self.key_count > len(keys):
            keys.append(f"... and {self.key_count - len(keys)} more")
            if isinstance(exact, list):
                exact.append(None)
        return Finding(rule=self.rule, severity=self.severity, summary=self.summary(self), evidence=self.evidence,
                       keys=keys, culprit=self.culprit, keys_base64=exact)


class Groups:
    """Findings of one rule, grouped by (culprit, family, anything else that must not be merged)."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self._groups: dict[tuple[object, ...], Group] = {}

    def get(self, key: tuple[object, ...], severity: str, culprit: Actor | None,
            summary: Callable[[Group], str]) -> Group:
        group = self._groups.get(key)
        if group is None:
            group = Group(self.rule, severity, culprit, summary)
            self._groups[key] = group
        elif _rank(severity) < _rank(group.severity):
            group.severity = severity
        return group

    def findings(self) -> list[Finding]:
        return [group.finding() for group in self._groups.values()]


def _rank(severity: str) -> int:
    return {"error": 0, "warning": 1, "info": 2}.get(severity, 3)


def who_text(actor: Actor | None) -> str:
    return describe(actor)


def keys_phrase(group: Group) -> str:
    """`key batch:1` / `3 keys like batch:*`."""
    if group.key_count == 1:
        return f"key {group.first_key}"
    fam = group.extra.get("family")
    return f"{group.key_count} keys" + (f" like {fam}" if fam else "")


def life_key(life: KeyLife) -> str:
    return life.key_text


__all__ = [
    "EVIDENCE_PER_FINDING", "KEYS_LISTED", "Context", "Group", "Groups", "Rule", "RuleInput", "clock",
    "command_text", "evidence_line", "family", "identity", "keys_phrase", "life_key", "same_actor", "same_process",
    "who_text",
]
