"""The one list of root causes redisprobe knows: each id with its family, its line, its rule and how to inject it.

Everything that names a cause reads this registry: the doctor (which rules run), `redisprobe catalog` and
docs/catalog.md, the scenario loader (which ids an expectation may name), `ttl-race --bug` (which defects it
can inject, and how) and the tests. A new cause is one rule function and one `register(...)` entry in
rules/__init__.py (an entry without a function for a cause the doctor cannot see yet); nothing else lists ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redisprobe.analysis.rules.base import Rule

VISIBILITY = "visibility"  # A writes, B doesn't see it
TTL = "ttl"  # the key dies early, or lives forever
CLUSTER = "cluster"  # causes that live in a sharded cluster
FACT = "fact"  # ids a run reports that are not root causes (a plain life fact, an unexplained miss)
FAMILIES = {VISIBILITY: "A writes, B doesn't see it", TTL: "the key dies early, or lives forever",
            CLUSTER: "in a cluster", FACT: "not a root cause"}


@dataclass(frozen=True)
class Injection:
    """How `ttl-race --bug ID` produces a cause: changes to the race's plan, declared as data.

    The race is an api (the `batch-api` program) appending to batches and a processor (`batch-processor`)
    processing those that went quiet; an injection sets program parameters and may add one helper actor.
    """

    how: str  # one line: what the injected defect does
    api: dict[str, Any] = field(default_factory=dict)  # batch-api parameters (e.g. {"bug": "ttl-unit-mismatch"})
    processor: dict[str, Any] = field(default_factory=dict)  # batch-processor parameters (db, match, policy)
    stale_processor: bool = False  # a second processor nobody listed, reaching every batch first
    helper: dict[str, Any] | None = None  # one more actor: {"role": ..., "program": ..., its parameters}
    helper_after_api: bool = False  # the helper acts once the api has sent its last message (else early on)
    server_args: tuple[str, ...] = ()  # redis-server arguments for the sandbox
    sandbox_only: bool = False  # it changes the server itself (FLUSHDB, maxmemory): never on a user's server
    min_ttl: float | None = None  # the batches' TTL is raised to at least this (room for the defect to show)


@dataclass(frozen=True)
class RuleSpec:
    """One root cause: `check` is the doctor's rule (None for a cause known but not diagnosed here yet)."""

    id: str
    family: str
    summary: str
    check: Rule | None = None
    inject: Injection | None = None
    named_by: str = ""  # without a doctor rule: what names it instead (e.g. `isolation`)


REGISTRY: dict[str, RuleSpec] = {}
"""Every cause, in the order the doctor runs the rules (rules/__init__.py fills it)."""


def register(rule_id: str, family: str, summary: str, check: Rule | None = None, *,
             inject: Injection | None = None, named_by: str = "") -> RuleSpec:
    """Add one cause; `check` is its doctor rule (None: known, and named elsewhere or not yet)."""
    if rule_id in REGISTRY:
        raise ValueError(f"rule id {rule_id!r} registered twice")
    if family not in FAMILIES:
        raise ValueError(f"rule {rule_id!r}: unknown family {family!r}")
    spec = REGISTRY[rule_id] = RuleSpec(id=rule_id, family=family, summary=summary, check=check, inject=inject,
                                           named_by=named_by)
    return spec


def doctor_rules() -> list[RuleSpec]:
    """The causes the doctor diagnoses, in order."""
    return [spec for spec in REGISTRY.values() if spec.check is not None]


def injectable() -> dict[str, Injection]:
    """id -> how `ttl-race --bug id` produces it."""
    return {spec.id: spec.inject for spec in REGISTRY.values() if spec.inject is not None}
