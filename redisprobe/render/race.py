"""ttl-race's report: each batch's intended vs actual lifetime, its TTL curve, who ended it, then findings."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.text import Text

from redisprobe import trace
from redisprobe.analysis.rules.registry import injectable
from redisprobe.commands.ttlrace import RaceOptions
from redisprobe.producers.plan import Execution
from redisprobe.render.escape import shown, shown_key
from redisprobe.render.layout import Records
from redisprobe.render.summary import sparkline, who
from redisprobe.render.verdicts import findings_block


def _batches(result: Execution) -> list[dict[str, Any]]:
    return [life.to_json() for life in result.lives if b":batch:" in life.key and not life.key.endswith(b":last")]


def _curves(result: Execution) -> dict[str, list[int]]:
    curves: dict[str, list[int]] = {}
    for event in result.events:
        if isinstance(event, trace.TtlSample):
            curves.setdefault(event.key.decode("utf-8", "backslashreplace"), []).append(event.pttl)
    return curves


def intended_lifetime(options: RaceOptions) -> float:
    """What the api meant: alive through its burst, then processed once quiet (before the TTL runs out)."""
    return (options.messages - 1) * options.spacing + min(options.quiet, options.ttl)


def print_race(console: Console, result: Execution, options: RaceOptions) -> None:
    title = (f"Batches (TTL {options.ttl:g}s refreshed by {options.refresh}, {options.messages} messages "
             f"{options.spacing:g}s apart" + (f"; injected bug: {options.bug}" if options.bug else "") + ")")
    rows = []
    curves = _curves(result)
    intended = intended_lifetime(options)
    for life in _batches(result):
        removed = life.get("removed") or {}
        lifetime = life.get("lifetime")
        early = lifetime is not None and lifetime < intended * 0.8
        rows.append((shown_key(str(life["key"]).rsplit(":", 2)[-2] + ":" + str(life["key"]).rsplit(":", 1)[-1]
                                if ":batch:" in str(life["key"]) else str(life["key"])),
                      f"~{intended:.2f}s", Text("-" if lifetime is None else f"{lifetime:.2f}s",
                                                style="bold red" if early else "green"),
                      who(removed.get("by")) if removed else "alive", removed.get("how", "") if removed else "",
                      sparkline(curves.get(str(life["key"]), []))))
    parts: list[Any] = [Records(("batch", "intended", "actual", "ended by", "how", "TTL curve"), rows, title=title,
                                foldable=("TTL curve",))]
    if options.bug:
        parts.append(Text(f"injected: {options.bug}: {injectable()[options.bug].how}", style="dim"))
    parts.append(findings_block(result.findings))
    for gap in result.gaps:
        parts.append(Text(f"GAP in {gap.source}: {shown(gap.reason)}", style="bold red"))
    if result.trace_path:
        parts.append(Text(f"trace written to {result.trace_path}", style="dim"))
    console.print(Group(*parts))


def race_json(result: Execution, options: RaceOptions) -> dict[str, Any]:
    curves = _curves(result)
    return {
        "options": {k: v for k, v in options.__dict__.items()},
        "intended_lifetime": intended_lifetime(options),
        "batches": [{**life, "ttl_curve": curves.get(str(life["key"]), [])} for life in _batches(result)],
        "findings": result.findings,
        "gaps": [{"source": g.source, "reason": g.reason, "from": g.t, "until": g.until, "lost": g.lost}
                 for g in result.gaps],
        "crashed": [{"role": c.role, "pid": c.pid, "detail": c.detail} for c in result.crashed],
        "trace": result.trace_path,
        "interrupted": result.interrupted,
    }
