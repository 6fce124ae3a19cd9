"""Read a scenario file (TOML) strictly: every mistake is one `ScenarioError` naming the file, line and field."""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path
from typing import Any

from redisprobe.scenario.locate import Locator
from redisprobe.scenario.model import (
    ActorDecl,
    Expect,
    LifetimeExpect,
    RemovedExpect,
    Scenario,
    ScenarioError,
)
from redisprobe.semantics.command_table import lookup
from redisprobe.targets.sandbox import CLUSTER_NODE_ROLES, CLUSTER_REPLICA_ROLES, SANDBOX_TOPOLOGIES

SERVERS = ("api", "processor")
STEP_KINDS = ("do", "sleep", "wait", "repeat", "inspect", "program", "fork", "cache", "stall", "failover")
FAILOVER_MODES = ("coordinated", "force", "takeover")  # CLUSTER FAILOVER, ... FORCE, ... TAKEOVER
MAX_STALL = 60.0
MAX_REPLICAS = 2
REMOVED_HOW = ("expired", "evicted", "del", "unlink", "getdel", "pop", "rename", "move", "flush")
RESERVED_VARS = ("ns", "run", "i", "prefix", "instance", "role")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
ROLE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
NAMESPACE = "redisprobe:"
SAMPLE_NS = "redisprobe:scenario:x:0:"  # what `{ns}` stands for when checking keys at load time

TOP_FIELDS = ("name", "description", "catalog_id", "topology", "server_args", "observe", "max_seconds",
              "ttl_pattern", "vars", "actors", "expect", "pending", "allow_scripts", "replicas")
ACTOR_FIELDS = ("role", "db", "prefix", "count", "server", "listed", "vars", "steps")
EXPECT_FIELDS = ("visible", "findings", "no_findings", "clean", "lifetime", "removed")

NAMESPACED_PARAMS = ("ns", "match")


def program_params(program: str) -> dict[str, tuple[str, tuple[str, ...] | None]] | None:
    """The parameters a built-in program reads, as the program declares them; None for an unknown program.

    batch-api's `bug` takes the defects the rule registry injects through it (`ttl-race --bug`)."""
    from redisprobe.producers.actors.programs import PARAMS

    params = PARAMS.get(program)
    if params is None:
        return None
    if program == "batch-api":
        from redisprobe.analysis.rules.registry import injectable

        bugs = tuple(str(i.api["bug"]) for i in injectable().values() if "bug" in i.api)
        params = {**params, "bug": (params["bug"][0], ("", *bugs))}
    return dict(params)

def load(path: Path | str) -> Scenario:
    """Parse and validate one scenario file; raise `ScenarioError` (one line) if anything is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(path, None, "", f"cannot read the file: {exc}") from None
    return loads(text, path)


def loads(text: str, path: Path | str = "<scenario>") -> Scenario:
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(match.group(1)) if match else None
        reason = message[:match.start()].strip() if match else message
        raise ScenarioError(path, line, "", f"TOML syntax error: {reason}"
                            + (f" (column {match.group(2)})" if match else "")) from None
    return _Validator(path, text).scenario(data)


def looks_like_scenario(text: str) -> bool:
    """The collection rule: a TOML document with an `[[actors]]` table and an `[expect]` table."""
    return bool(re.search(r"(?m)^\s*\[\[\s*actors\s*\]\]", text)
                and re.search(r"(?m)^\s*\[\[?\s*expect\s*[\].]", text))


def _fmt(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.locator = Locator(text)
        self.replica_roles: tuple[str, ...] = ()  # what stall and failover steps may name

    # -- reporting ----------------------------------------------------------------------------------------------

    def fail(self, at: tuple[str | int, ...], message: str,
             where: tuple[str | int, ...] | None = None) -> ScenarioError:
        """`at` finds the line; `where` (default `at`) is the field named in the message."""
        line = self.locator.line(at) if at else None
        return ScenarioError(self.path, line or (1 if not at else None), _fmt(at if where is None else where), message)

    def fields(self, table: dict[str, Any], allowed: tuple[str, ...], at: tuple[str | int, ...], what: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*at, key), f"unknown field {key!r} in {what} (allowed: {', '.join(allowed)})",
                                where=at or (key,))

    def typed(self, value: Any, want: str, at: tuple[str | int, ...]) -> Any:
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "array": isinstance(value, list),
            "table": isinstance(value, dict),
        }[want]
        if not ok:
            raise self.fail(at, f"expected {'a' if want[0] not in 'aeiou' else 'an'} {want}, got "
                                f"{_kind(value)} {_short(value)}")
        return value

    def strings(self, value: Any, at: tuple[str | int, ...]) -> list[str]:
        self.typed(value, "array", at)
        for index, item in enumerate(value):
            self.typed(item, "string", (*at, index))
        return list(value)

    # -- the document -------------------------------------------------------------------------------------------

    def scenario(self, data: dict[str, Any]) -> Scenario:
        self.fields(data, TOP_FIELDS, (), "a scenario")
        stem = self.path.name.removesuffix(".toml").removesuffix(".scenario")
        name = self.typed(data.get("name", stem), "string", ("name",))
        if not NAME_RE.match(name):
            raise self.fail(("name",), f"{name!r} is not a usable name: letters, digits, '.', '_' and '-' only")
        description = self.typed(data.get("description", ""), "string", ("description",))
        catalog_id = self.typed(data.get("catalog_id", ""), "string", ("catalog_id",))
        if catalog_id and not ID_RE.match(catalog_id):
            raise self.fail(("catalog_id",), f"{catalog_id!r} is not an id (lower-case words joined by '-')")
        topology = self.typed(data.get("topology", "single"), "string", ("topology",))
        if topology not in SANDBOX_TOPOLOGIES:
            raise self.fail(("topology",), f"unknown topology {topology!r}: one of {', '.join(SANDBOX_TOPOLOGIES)}")
        server_args = self.strings(data.get("server_args", []), ("server_args",))
        replicas = self.typed(data.get("replicas", 0), "integer", ("replicas",))
        if replicas and topology != "cluster":
            raise self.fail(("replicas",), "replicas go with topology = \"cluster\" (each primary's replicas)")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise self.fail(("replicas",), f"replicas {replicas} is out of range 0..{MAX_REPLICAS}")
        self.replica_roles = CLUSTER_REPLICA_ROLES if replicas else ()
        observe = self.typed(data.get("observe", True), "boolean", ("observe",))
        allow_scripts = self.typed(data.get("allow_scripts", False), "boolean", ("allow_scripts",))
        max_seconds = float(self.typed(data.get("max_seconds", 20.0), "number", ("max_seconds",)))
        if not 0 < max_seconds <= 3600:
            raise self.fail(("max_seconds",), f"must be between 0 and 3600 seconds, got {max_seconds:g}")
        pending = data.get("pending")
        if pending is not None:
            self.typed(pending, "string", ("pending",))
            if not pending.strip():
                raise self.fail(("pending",), "give the reason the scenario is pending")
        variables = self.variables(data.get("vars", {}), ("vars",))
        ttl_pattern = data.get("ttl_pattern")
        if ttl_pattern is not None:
            self.typed(ttl_pattern, "string", ("ttl_pattern",))
            self.namespaced(ttl_pattern, ("ttl_pattern",), dict(variables), "the pattern")
        if "actors" not in data:
            raise self.fail((), "no [[actors]]: a scenario needs at least one actor", where=("actors",))
        actors_raw = self.typed(data["actors"], "array", ("actors",))
        if not actors_raw:
            raise self.fail(("actors",), "no actors: a scenario needs at least one")
        servers = SERVERS + (CLUSTER_NODE_ROLES if topology == "cluster" else ())
        actors = [self.actor(raw, ("actors", index), variables, servers) for index, raw in enumerate(actors_raw)]
        listed: dict[str, bool] = {}
        for index, actor in enumerate(actors):
            if listed.setdefault(actor.role, actor.listed) != actor.listed:
                raise self.fail(("actors", index, "listed"), f"actors with role {actor.role!r} disagree on "
                                                             "`listed`: give the unlisted one its own role")
        if "expect" not in data:
            raise self.fail((), "no [expect] table: say what the run must show", where=("expect",))
        expect = self.expect(self.typed(data["expect"], "table", ("expect",)))
        return Scenario(name=name, path=self.path, actors=actors, expect=expect, description=description,
                        catalog_id=catalog_id, topology=topology, server_args=server_args, observe=observe,
                        max_seconds=max_seconds, ttl_pattern=ttl_pattern, vars=variables, pending=pending,
                        allow_scripts=allow_scripts, replicas=replicas)

    def variables(self, raw: Any, at: tuple[str | int, ...]) -> dict[str, Any]:
        self.typed(raw, "table", at)
        for key, value in raw.items():
            if key in RESERVED_VARS:
                raise self.fail((*at, key), f"{{{key}}} is set by the runner; pick another name")
            if not isinstance(value, str | int | float | bool):
                raise self.fail((*at, key), f"a variable is a string or a number, got {_kind(value)}")
        return dict(raw)

    def actor(self, raw: Any, at: tuple[str | int, ...], scenario_vars: dict[str, Any],
              servers: tuple[str, ...] = SERVERS) -> ActorDecl:
        self.typed(raw, "table", at)
        self.fields(raw, ACTOR_FIELDS, at, "an actor")
        if "role" not in raw:
            raise self.fail(at, "missing field 'role' (api, processor, or any name)")
        role = self.typed(raw["role"], "string", (*at, "role"))
        if not ROLE_RE.match(role):
            raise self.fail((*at, "role"), f"{role!r} is not a usable role: lower-case letters, digits, '-', '_'")
        db = raw.get("db")
        if db is not None:
            self.typed(db, "integer", (*at, "db"))
            if not 0 <= db <= 15:
                raise self.fail((*at, "db"), f"db {db} is out of range 0..15")
        prefix = self.typed(raw.get("prefix", ""), "string", (*at, "prefix"))
        if prefix and ("{" in prefix or "}" in prefix):
            raise self.fail((*at, "prefix"), "a prefix is plain text, without {placeholders}")
        count = self.typed(raw.get("count", 1), "integer", (*at, "count"))
        if not 1 <= count <= 32:
            raise self.fail((*at, "count"), f"count {count} is out of range 1..32")
        server = self.typed(raw.get("server", role if role in SERVERS else "api"), "string", (*at, "server"))
        if server not in servers:
            raise self.fail((*at, "server"), f"unknown server {server!r}: the api's or the processor's "
                                              f"({', '.join(servers)})")
        listed = self.typed(raw.get("listed", True), "boolean", (*at, "listed"))
        actor_vars = self.variables(raw.get("vars", {}), (*at, "vars"))
        if "steps" not in raw:
            raise self.fail(at, "missing field 'steps'")
        steps = self.typed(raw["steps"], "array", (*at, "steps"))
        if not steps:
            raise self.fail((*at, "steps"), "no steps: an actor must do something")
        names = {**scenario_vars, **actor_vars, "prefix": prefix, "instance": 0, "role": role}
        for name in _as_names(steps):
            names.setdefault(name, None)
        self.steps(steps, (*at, "steps"), names, in_repeat=False)
        return ActorDecl(role=role, steps=steps, db=db, prefix=prefix, count=count, server=server,
                         vars=actor_vars, listed=listed)

    # -- steps ----------------------------------------------------------------------------------------------

    def steps(self, steps: list[Any], at: tuple[str | int, ...], names: dict[str, Any], *, in_repeat: bool) -> None:
        for index, step in enumerate(steps):
            self.step(step, (*at, index), names, in_repeat=in_repeat)

    def step(self, step: Any, at: tuple[str | int, ...], names: dict[str, Any], *, in_repeat: bool) -> None:
        if not isinstance(step, dict):
            raise self.fail(at, f"a step is a table like {{ do = [\"GET\", \"{{ns}}k\"] }}, got {_kind(step)}")
        kinds = [key for key in step if key in STEP_KINDS]
        if not kinds:
            first = next(iter(step), "")
            unknown = first if first and first not in ("when", "as", "timeout", "interval", "steps") else ""
            raise self.fail(at, f"unknown step {unknown!r}: one of {', '.join(STEP_KINDS)}" if unknown
                            else f"a step needs one of {', '.join(STEP_KINDS)}")
        if len(kinds) > 1:
            raise self.fail(at, f"one kind per step, got {' and '.join(kinds)}")
        kind = kinds[0]
        if "when" in step:
            self.typed(step["when"], "string", (*at, "when"))
            if step["when"] != "checks-ok":
                raise self.fail((*at, "when"), f"unknown condition {step['when']!r}: only \"checks-ok\"")
        if kind == "do":
            self.fields(step, ("do", "as", "when"), at, "a do step")
            args = self.typed(step["do"], "array", (*at, "do"))
            if not args:
                raise self.fail((*at, "do"), "an empty command")
            for pos, arg in enumerate(args):
                if not isinstance(arg, str | int | float) or isinstance(arg, bool):
                    raise self.fail((*at, "do", pos), f"a command argument is a string or a number, got "
                                                      f"{_kind(arg)}")
                if isinstance(arg, str):
                    self.placeholders(arg, (*at, "do", pos), names, in_repeat)
            if "as" in step:
                self.typed(step["as"], "string", (*at, "as"))
            self.command_keys(args, (*at, "do"), names)
        elif kind == "sleep":
            self.fields(step, ("sleep", "when"), at, "a sleep step")
            seconds = self.typed(step["sleep"], "number", (*at, "sleep"))
            if seconds < 0:
                raise self.fail((*at, "sleep"), "a negative sleep")
        elif kind == "wait":
            self.fields(step, ("wait", "timeout", "interval", "when"), at, "a wait step")
            items = self.typed(step["wait"], "array", (*at, "wait"))
            if not items:
                raise self.fail((*at, "wait"), "nothing to wait for")
            for index, item in enumerate(items):
                item_at = (*at, "wait", index)
                self.typed(item, "table", item_at)
                self.fields(item, ("name", "cmd", "until"), item_at, "a wait item")
                if "cmd" not in item:
                    raise self.fail(item_at, "missing field 'cmd' (the command to poll, e.g. [\"GET\", \"{ns}k\"])")
                cmd = self.typed(item["cmd"], "array", (*item_at, "cmd"))
                if not cmd:
                    raise self.fail((*item_at, "cmd"), "an empty command")
                for pos, arg in enumerate(cmd):
                    if not isinstance(arg, str | int | float) or isinstance(arg, bool):
                        raise self.fail((*item_at, "cmd", pos), f"a command argument is a string or a number, "
                                                                f"got {_kind(arg)}")
                    if isinstance(arg, str):
                        self.placeholders(arg, (*item_at, "cmd", pos), names, in_repeat)
                self.command_keys(cmd, (*item_at, "cmd"), names)
                if "name" in item:
                    self.typed(item["name"], "string", (*item_at, "name"))
                if "until" in item:
                    until = item["until"]
                    if not isinstance(until, str | int) or isinstance(until, bool):
                        raise self.fail((*item_at, "until"), "\"present\", \"absent\" or the value to wait for")
                    if isinstance(until, str) and "{" in until:
                        raise self.fail((*item_at, "until"), "the value is compared as written: {placeholders} "
                                                             "are not filled in here")
            for field in ("timeout", "interval"):
                if field in step and self.typed(step[field], "number", (*at, field)) <= 0:
                    raise self.fail((*at, field), f"{field} must be above 0")
        elif kind == "repeat":
            self.fields(step, ("repeat", "steps", "when"), at, "a repeat step")
            times = self.typed(step["repeat"], "integer", (*at, "repeat"))
            if not 0 <= times <= 100_000:
                raise self.fail((*at, "repeat"), f"repeat {times} is out of range 0..100000")
            if "steps" not in step:
                raise self.fail(at, "missing field 'steps' (what to repeat)")
            inner = self.typed(step["steps"], "array", (*at, "steps"))
            self.steps(inner, (*at, "steps"), names, in_repeat=True)
        elif kind == "inspect":
            self.fields(step, ("inspect", "when"), at, "an inspect step")
            self.typed(step["inspect"], "boolean", (*at, "inspect"))
        elif kind == "cache":
            self.fields(step, ("cache", "when"), at, "a cache step")
            self.typed(step["cache"], "boolean", (*at, "cache"))
        elif kind in ("stall", "failover"):
            self.replica_step(step, at, kind)
        elif kind == "fork":
            self.fields(step, ("fork", "steps", "when"), at, "a fork step")
            self.typed(step["fork"], "boolean", (*at, "fork"))
            if "steps" not in step:
                raise self.fail(at, "missing field 'steps' (what the forked child runs)")
            inner = self.typed(step["steps"], "array", (*at, "steps"))
            self.steps(inner, (*at, "steps"), names, in_repeat=in_repeat)
        else:
            program = self.typed(step["program"], "string", (*at, "program"))
            params = program_params(program)
            if params is None:
                from redisprobe.producers.actors.programs import PROGRAMS

                raise self.fail((*at, "program"), f"unknown program {program!r}: one of {', '.join(PROGRAMS)}")
            self.fields(step, ("program", "when", *params), at, f"the {program} program")
            for key, (want, allowed) in params.items():
                if key not in step:
                    continue
                value = step[key]
                if want == "any":
                    if not isinstance(value, str | int | float) or isinstance(value, bool):
                        raise self.fail((*at, key), f"a parameter is a string or a number, got {_kind(value)}")
                else:
                    self.typed(value, want, (*at, key))
                if allowed is not None and value not in allowed:
                    raise self.fail((*at, key), f"unknown {key} {value!r}: one of "
                                                f"{', '.join(repr(a) for a in allowed)}")
                if isinstance(value, str):
                    self.placeholders(value, (*at, key), names, in_repeat)
                if key in NAMESPACED_PARAMS:
                    self.namespaced(value, (*at, key), names, "it")
                if isinstance(value, int | float) and value < 0:
                    raise self.fail((*at, key), f"{key} must not be negative")

    def replica_step(self, step: dict[str, Any], at: tuple[str | int, ...], kind: str) -> None:
        """`stall = "replica0", seconds = 1.5` and `failover = "replica0"` (`mode`, `timeout`): on the sandbox
        cluster's replicas, so the scenario needs `replicas = 1`."""
        if kind == "stall":
            self.fields(step, ("stall", "seconds", "when"), at, "a stall step")
        else:
            self.fields(step, ("failover", "mode", "timeout", "when"), at, "a failover step")
        name = self.typed(step[kind], "string", (*at, kind))
        if not self.replica_roles:
            raise self.fail((*at, kind), f"a {kind} step needs the sandbox cluster's replicas: set "
                                         "topology = \"cluster\" and replicas = 1")
        if name not in self.replica_roles:
            raise self.fail((*at, kind), f"unknown replica {name!r}: one of {', '.join(self.replica_roles)}")
        if kind == "stall":
            if "seconds" not in step:
                raise self.fail(at, "missing field 'seconds' (how long the replica applies no write)")
            seconds = self.typed(step["seconds"], "number", (*at, "seconds"))
            if not 0 < seconds <= MAX_STALL:
                raise self.fail((*at, "seconds"), f"must be above 0 and at most {MAX_STALL:g}, got {seconds:g}")
            return
        mode = self.typed(step.get("mode", "coordinated"), "string", (*at, "mode"))
        if mode not in FAILOVER_MODES:
            raise self.fail((*at, "mode"), f"unknown mode {mode!r}: one of {', '.join(FAILOVER_MODES)}")
        if "timeout" in step and not 0 < self.typed(step["timeout"], "number", (*at, "timeout")) <= 600:
            raise self.fail((*at, "timeout"), "timeout must be above 0 and at most 600 seconds")

    def placeholders(self, text: str, at: tuple[str | int, ...], names: dict[str, Any], in_repeat: bool) -> None:
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
        except ValueError as exc:
            raise self.fail(at, f"bad placeholder in {text!r}: {exc} (write {{{{ and }}}} for literal braces)") \
                from None
        for field in fields:
            if field == "i" and not in_repeat:
                raise self.fail(at, "{i} is only set inside a repeat step")
            if field not in names and field not in ("ns", "run", "i"):
                raise self.fail(at, f"unknown variable {{{field}}} (defined: "
                                    f"{', '.join(sorted({'ns', 'run', *names}))})")

    def command_keys(self, args: list[Any], at: tuple[str | int, ...], names: dict[str, Any]) -> None:
        """Every key argument (and SCAN/KEYS pattern) must be written `{ns}...` (or `redisprobe:...`): scenarios
        touch nothing else. Where the keys and patterns are comes from the command table."""
        raw = [str(arg) for arg in args]
        for pos in _key_positions(raw):
            self.namespaced(raw[pos], (*at, pos), names, f"key {raw[pos]!r}")
        pos = _pattern_position(raw)
        if pos is not None:
            self.namespaced(raw[pos], (*at, pos), names, f"pattern {raw[pos]!r}")

    def namespaced(self, text: str, at: tuple[str | int, ...], names: dict[str, Any], what: str) -> None:
        rendered = _render(text, names)
        if rendered is None or not rendered.startswith(NAMESPACE):
            raise self.fail(at, f"{what} is outside the scenario's namespace: start it with {{ns}} "
                                f"(or {NAMESPACE})")

    # -- expectations -------------------------------------------------------------------------------------------

    def expect(self, raw: dict[str, Any]) -> Expect:
        at: tuple[str | int, ...] = ("expect",)
        self.fields(raw, EXPECT_FIELDS, at, "[expect]")
        from redisprobe.analysis.rules.registry import REGISTRY

        known = set(REGISTRY)
        visible = raw.get("visible")
        if visible is not None:
            self.typed(visible, "boolean", (*at, "visible"))
        lists: dict[str, list[str]] = {}
        for field in ("findings", "no_findings"):
            lists[field] = self.strings(raw.get(field, []), (*at, field))
            for index, rule in enumerate(lists[field]):
                if rule not in known:
                    raise self.fail((*at, field, index), f"unknown finding id {rule!r} (see `redisprobe catalog`; "
                                                         f"known: {', '.join(sorted(known))})")
        clean = self.typed(raw.get("clean", False), "boolean", (*at, "clean"))
        if clean and lists["findings"]:
            raise self.fail((*at, "clean"), "clean = true means no finding at all, yet findings are expected")
        both = set(lists["findings"]) & set(lists["no_findings"])
        if both:
            raise self.fail((*at, "no_findings"), f"{', '.join(sorted(both))} both expected and forbidden")
        lifetime = []
        for index, item in enumerate(self.typed(raw.get("lifetime", []), "array", (*at, "lifetime"))):
            item_at = (*at, "lifetime", index)
            self.typed(item, "table", item_at)
            self.fields(item, ("key", "min", "max", "life"), item_at, "[[expect.lifetime]]")
            key = self.expect_key(item, item_at)
            low = item.get("min")
            high = item.get("max")
            if low is None and high is None:
                raise self.fail(item_at, "give min and/or max (seconds)")
            if low is not None:
                self.typed(low, "number", (*item_at, "min"))
            if high is not None:
                self.typed(high, "number", (*item_at, "max"))
            if low is not None and high is not None and low > high:
                raise self.fail((*item_at, "max"), f"max {high} is below min {low}")
            life = item.get("life")
            if life is not None and (self.typed(life, "integer", (*item_at, "life")) == 0):
                raise self.fail((*item_at, "life"), "lives count from 1 (the first) or from -1 (the last)")
            lifetime.append(LifetimeExpect(key=key, min=low, max=high, life=life))
        removed = []
        for index, item in enumerate(self.typed(raw.get("removed", []), "array", (*at, "removed"))):
            item_at = (*at, "removed", index)
            self.typed(item, "table", item_at)
            self.fields(item, ("key", "how"), item_at, "[[expect.removed]]")
            key = self.expect_key(item, item_at)
            if "how" not in item:
                raise self.fail(item_at, f"missing field 'how' (one of {', '.join(REMOVED_HOW)})")
            how = self.typed(item["how"], "string", (*item_at, "how"))
            if how not in REMOVED_HOW:
                raise self.fail((*item_at, "how"), f"unknown removal {how!r}: one of {', '.join(REMOVED_HOW)}")
            removed.append(RemovedExpect(key=key, how=how))
        if not (visible is not None or lists["findings"] or lists["no_findings"] or clean or lifetime or removed):
            raise self.fail(at, "expects nothing: set visible, findings, no_findings, clean, lifetime or removed")
        return Expect(visible=visible, findings=lists["findings"], no_findings=lists["no_findings"], clean=clean,
                      lifetime=lifetime, removed=removed)

    def expect_key(self, item: dict[str, Any], at: tuple[str | int, ...]) -> str:
        if "key" not in item:
            raise self.fail(at, "missing field 'key' (a glob such as \"{ns}batch:?\")")
        key = self.typed(item["key"], "string", (*at, "key"))
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(key) if f is not None]
        except ValueError as exc:
            raise self.fail((*at, "key"), f"bad placeholder in {key!r}: {exc}") from None
        if any(field not in ("ns", "run") for field in fields):
            raise self.fail((*at, "key"), "only {ns} and {run} may appear in an expected key")
        return key


def _as_names(steps: list[Any]) -> list[str]:
    names = []
    for step in steps:
        if isinstance(step, dict):
            if isinstance(step.get("as"), str):
                names.append(step["as"])
            if isinstance(step.get("steps"), list):
                names += _as_names(step["steps"])
    return names


def _render(text: str, names: dict[str, Any]) -> str | None:
    """`text` with what is known at load time filled in; None when it starts with a runtime-only value."""
    values: dict[str, Any] = {"ns": SAMPLE_NS, "run": "0", "i": "0"}
    for key, value in names.items():
        if value is None:  # a reply captured with `as`: unknown until the run
            values[key] = "\0"
        elif isinstance(value, str) and "{" in value:
            values[key] = _render(value, {k: v for k, v in names.items() if k != key}) or "\0"
        else:
            values[key] = value
    try:
        return string.Formatter().vformat(text, (), values)
    except (KeyError, ValueError, IndexError):
        return None


def _key_positions(args: list[str]) -> list[int]:
    """Indexes of the key arguments in a command line (args[0] is the command name)."""
    raw = [arg.encode() for arg in args]
    positions: list[int] = []
    start = 1
    for key in lookup(raw[0]).keys(raw):
        for index in range(start, len(raw)):
            if raw[index] is key or raw[index] == key:
                positions.append(index)
                start = index + 1
                break
    return positions


def _pattern_position(args: list[str]) -> int | None:
    """Where the key pattern of SCAN ... MATCH / KEYS is, if the command has one."""
    at = lookup(args[0].encode()).pattern_at
    if at > 0:
        return at if len(args) > at else None
    if at < 0:
        upper = [arg.upper() for arg in args]
        if "MATCH" in upper[1:] and upper.index("MATCH", 1) + 1 < len(args):
            return upper.index("MATCH", 1) + 1
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
