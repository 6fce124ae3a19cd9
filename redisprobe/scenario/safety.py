"""Whether a scenario may run on a user's server (`run --url`): the gate's rules, applied to the file before it runs.

Every command of every step kind, at any nesting depth (`do`, `wait` items, `repeat`, `fork`, and whatever step
kind holds `steps`), is rendered with the values known at load time and put to the same `Gate` the actors use
while they run. A scenario that would be refused is skipped with the reason, never half run; the actors' own
gate still checks every command with its real values at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from redisprobe.targets.gate import SCRIPT_COMMANDS, Gate

if TYPE_CHECKING:
    from redisprobe.scenario.model import ActorDecl, Scenario

_SAMPLE_KEY = "redisprobe:?"  # a value only the run knows (a reply captured with `as`): the runtime gate checks it


def url_refusal(scenario: Scenario, *, allow_writes: bool) -> str | None:
    """Why `scenario` must not run on a server redisprobe does not own, or None when it may."""
    if scenario.topology != "single":
        return f"needs the sandbox's {scenario.topology} topology"
    if scenario.server_args:
        return "changes the server's configuration (server_args)"
    for actor in scenario.actors:
        gate = Gate(scripts=scenario.allow_scripts and allow_writes)
        for args in _commands(actor.steps, _names(scenario, actor)):
            reason = gate.refusal(args)
            if reason is None:
                continue
            if args[0].upper() in SCRIPT_COMMANDS and scenario.allow_scripts and not allow_writes:
                return f"runs {args[0].decode(errors='replace').upper()}: scripts run on your server only with " \
                       "--allow-writes"
            return reason
        for step in _all_steps(actor.steps):
            program = step.get("program")
            if program == "janitor" and step.get("action") == "flush":
                return "runs FLUSHDB (janitor action = \"flush\")"
            if program == "filler":
                return "fills the server's memory (filler)"
    return None


def _names(scenario: Scenario, actor: ActorDecl) -> dict[str, Any]:
    from redisprobe.scenario.loader import SAMPLE_NS

    return {**scenario.vars, **actor.vars, "ns": SAMPLE_NS, "run": "0", "i": "0", "prefix": actor.prefix,
            "instance": 0, "role": actor.role}


def _all_steps(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield step
        inner = step.get("steps")
        if isinstance(inner, list):
            yield from _all_steps(inner)


def _commands(steps: list[dict[str, Any]], names: dict[str, Any]) -> Iterator[list[bytes]]:
    """Every command line the steps send, in order, rendered with what is known before the run."""
    for step in _all_steps(steps):
        if isinstance(step.get("do"), list):
            yield _rendered(step["do"], names)
        for item in step.get("wait", []) if isinstance(step.get("wait"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("cmd"), list):
                yield _rendered(item["cmd"], names)
        if step.get("cache") is True:
            yield [b"CLIENT", b"TRACKING", b"ON"]


def _rendered(args: list[Any], names: dict[str, Any]) -> list[bytes]:
    from redisprobe.scenario.loader import _render

    out = []
    for arg in args:
        text = _render(arg, names) if isinstance(arg, str) else str(arg)
        out.append((_SAMPLE_KEY if text is None or "\0" in text else text).encode())
    return out
