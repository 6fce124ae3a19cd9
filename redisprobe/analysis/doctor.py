"""The doctor: fold a trace once, run every rule, return findings (pure: no I/O, no rendering).

`analyze` is the one entry point every command uses (monitor, report, run, ttl-race, isolation): it puts the
events in time order the same way for a live run and for a saved trace, folds them in one pass and runs every
registered rule, so the same trace gives the same findings however it is read. It gives both the folded
lifecycle (for the timeline) and the findings, which matters when the events are millions of MONITOR lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redisprobe import trace
from redisprobe.analysis.lifecycle import Lifecycle, fold
from redisprobe.analysis.rules.base import Context, RuleInput
from redisprobe.analysis.rules.registry import doctor_rules
from redisprobe.findings import Finding

RULES: dict[str, str] = {spec.id: spec.summary for spec in doctor_rules()}
"""Rule id -> one line, for every cause the doctor diagnoses (the rule registry's entries with a rule)."""

_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Analysis:
    lifecycle: Lifecycle
    findings: list[Finding]


def analyze(events: Iterable[trace.Event], context: Context | None = None, *,
            rules: Iterable[str] | None = None, ordered: bool = False) -> Analysis:
    """One streaming pass over `events`, then every rule (or only `rules`) over the result.

    Events may come nearly sorted, as observers' threads deliver them and as a trace file holds them: they are
    put in time order here (`trace.time_ordered`) unless the caller says they already are (`ordered`)."""
    context = context or Context()
    stream = events if ordered else trace.time_ordered(iter(events))
    lifecycle = fold(stream, watched=context.watched, intended_ttls=context.intended_ttls)
    return Analysis(lifecycle=lifecycle, findings=run_rules(lifecycle, context, rules))


def analyze_folded(lifecycle: Lifecycle, context: Context | None = None) -> Analysis:
    """The same, for a fold made another way (a `redis-cli monitor` log's rows go straight into the fold)."""
    return Analysis(lifecycle=lifecycle, findings=run_rules(lifecycle, context or Context()))


def run_rules(lifecycle: Lifecycle, context: Context | None = None,
              rules: Iterable[str] | None = None) -> list[Finding]:
    """The findings of a finished lifecycle, errors first."""
    specs = {spec.id: spec for spec in doctor_rules()}
    chosen = list(specs) if rules is None else list(rules)
    unknown = [rule for rule in chosen if rule not in specs]
    if unknown:
        raise ValueError(f"unknown rule(s): {', '.join(unknown)}")
    rule_input = RuleInput(lifecycle=lifecycle, context=context or Context())
    findings: list[Finding] = []
    for rule_id in chosen:
        check = specs[rule_id].check
        assert check is not None
        try:
            findings.extend(check(rule_input))
        except Exception as exc:  # one broken rule must not hide what the others found
            findings.append(Finding(rule="rule-failed", severity="warning",
                                    summary=f"the {rule_id} rule failed on this trace ({type(exc).__name__}: "
                                            f"{exc}); the other rules ran",
                                    evidence=[f"rule {rule_id}: {type(exc).__name__}: {exc}"]))
    findings.sort(key=lambda f: _ORDER.get(f.severity, 3))
    return findings


def diagnose(events: Iterable[trace.Event], context: Context | None = None, *,
             watched: dict[int, str] | None = None, intended_ttls: dict[str, float] | None = None) -> list[Finding]:
    """Findings for a trace: one per root cause and culprit (keys grouped by family), errors first.

    `watched`/`intended_ttls` are shorthands for the same fields of `context`.
    """
    return analyze(events, _context(context, watched, intended_ttls), ordered=True).findings


def diagnose_lives(lives: Lifecycle, context: Context | None = None, *, watched: dict[int, str] | None = None,
                   intended_ttls: dict[str, float] | None = None) -> list[Finding]:
    """Findings for an already folded trace (`lifecycle.fold`), so the events are read once."""
    return run_rules(lives, _context(context, watched, intended_ttls))


def _context(context: Context | None, watched: dict[int, str] | None,
             intended_ttls: dict[str, float] | None) -> Context:
    context = context or Context()
    if watched:
        context = Context(watched={**context.watched, **watched}, intended_ttls=context.intended_ttls)
    if intended_ttls:
        context = Context(watched=context.watched, intended_ttls={**context.intended_ttls, **intended_ttls})
    return context


__all__ = ["RULES", "Analysis", "Context", "analyze", "analyze_folded", "diagnose", "diagnose_lives", "run_rules"]
