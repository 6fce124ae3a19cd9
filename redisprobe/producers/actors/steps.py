"""The step language actors speak: commands, sleeps, waits, loops, inspections.

Steps are plain dicts (they come from JSON or a TOML scenario), e.g.
`{"do": ["SET", "{ns}k", "v", "EX", "{ttl}"]}`, `{"sleep": 0.1}`,
`{"wait": [{"name": "k", "cmd": ["GET", "{ns}k"], "until": "present"}], "timeout": 5}`,
`{"repeat": 3, "steps": [...]}` (with `{i}` counting from 0), `{"inspect": true}`,
`{"fork": true, "steps": [...]}` (a forked child runs the steps on this very connection: shared-connection),
`{"cache": true}` (CLIENT TRACKING on, and later GETs answered from a local cache that misses invalidations:
stale-client-cache), `{"stall": "replica0", "seconds": 1.5}` and `{"failover": "replica0", "mode": "force"}` (a
sandbox cluster's replica: see replica_steps).
A step with `"when": "checks-ok"` runs only if every wait so far succeeded.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from redisprobe import trace

if TYPE_CHECKING:
    from redisprobe.producers.actors.cluster_client import ClusterRouter, NodeConnection
    from redisprobe.targets.gate import Gate

CONFIG_KEYS = ("maxmemory", "maxmemory-policy", "notify-keyspace-events", "databases", "timeout")
INFO_SECTIONS = ("server", "replication", "keyspace", "memory")


class StepError(ValueError):
    """A step the runner does not understand."""


class GateRefusal(Exception):
    """A command the gate would not send to a server redisprobe does not own; the message says why."""


_REFUSED = 4  # a forked child's exit status when the gate refused one of its commands


class _Vars(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        raise StepError(f"unknown variable {{{key}}}")


def render(value: Any, variables: dict[str, Any]) -> bytes:
    """One command argument with `{var}` filled in, as bytes."""
    if isinstance(value, bytes):
        return value
    text = str(value)
    if "{" in text:
        text = string.Formatter().vformat(text, (), _Vars(variables))
    return text.encode()


def satisfied(reply: Any, until: Any) -> bool:
    """Whether a polled reply means what the wait is waiting for."""
    present = reply not in (None, 0, b"", [], {}, set())
    if until == "present":
        return present
    if until == "absent":
        return not present
    expected = until.encode() if isinstance(until, str) else until
    return reply == expected


class StepRunner:
    """Runs steps on one connection, emitting an `Op` per command (and a `Check` per wait)."""

    def __init__(self, client: redis.Redis, *, emit: Callable[[trace.Event], None], pid: int, role: str,
                 client_id: int, db: int, variables: dict[str, Any], gate: Gate | None = None,
                 router: ClusterRouter | None = None) -> None:
        self.client = client
        self.router = router  # a cluster client: each command goes to the node of its slot
        self.gate = gate
        self.emit = emit
        self.pid = pid
        self.role = role
        self.client_id = client_id
        self.db = db
        self.vars = variables
        self.checks_ok = True
        self._execute = client.execute_command
        self.cache: dict[bytes, Any] | None = None  # a client-side cache, once a `cache` step turned it on

    def run(self, steps: list[dict[str, Any]]) -> None:
        for step in steps:
            if step.get("when") == "checks-ok" and not self.checks_ok:
                continue
            self.run_step(step)

    def run_step(self, step: dict[str, Any]) -> None:
        if "do" in step:
            reply, _ = self.command([render(arg, self.vars) for arg in step["do"]])
            if "as" in step:
                self.vars[step["as"]] = reply
        elif "sleep" in step:
            time.sleep(float(step["sleep"]))
        elif "wait" in step:
            self.wait(step["wait"], float(step.get("timeout", 5)), float(step.get("interval", 0.05)))
        elif "repeat" in step:
            for index in range(int(step["repeat"])):
                self.vars["i"] = index
                self.run(step.get("steps", []))
        elif "inspect" in step:
            self.inspect()
        elif "fork" in step:
            self.fork(step.get("steps", []))
        elif "cache" in step:
            self.command([b"CLIENT", b"TRACKING", b"ON"])
            self.cache = {}
        elif "stall" in step or "failover" in step:
            from redisprobe.producers.actors import replica_steps

            (replica_steps.stall if "stall" in step else replica_steps.failover)(self, step)
        elif "program" in step:
            from redisprobe.producers.actors.programs import PROGRAMS

            program = PROGRAMS.get(str(step["program"]))
            if program is None:
                raise StepError(f"unknown program {step['program']!r}: one of {', '.join(PROGRAMS)}")
            params = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in step.items() if k != "program"}
            params = {k: render(v, self.vars).decode() if isinstance(v, str) else v for k, v in params.items()}
            program(self, params)
        else:
            raise StepError(f"unknown step {sorted(step)}")

    def _from_cache(self, args: list[bytes]) -> tuple[Any] | None:
        """A GET answered locally, never sent: the stale-client-cache defect (a cache that missed invalidation)."""
        if self.cache is None or len(args) != 2 or args[0].upper() != b"GET" or args[1] not in self.cache:
            return None
        return (self.cache[args[1]],)

    def _remember(self, args: list[bytes], reply: Any, error: str | None) -> None:
        if self.cache is None or not args:
            return
        if args[0].upper() == b"GET" and len(args) == 2 and error is None and reply is not None:
            self.cache[args[1]] = reply
        else:
            for key in args[1:]:  # our own writes drop our own entries; other clients' writes do not
                self.cache.pop(key, None)

    def fork(self, steps: list[dict[str, Any]]) -> None:
        """The shared-connection defect: a forked child runs `steps` on this process's very socket.

        redis-py gives a forked child fresh connections, so the child writes on the parent's `Connection`
        object directly; the parent waits for the child, then goes on on the same connection (same client id).
        """
        import os

        connection = self.client.connection_pool.get_connection()
        try:
            child = os.fork()
            if child == 0:  # the child: same socket, new pid
                code = 0
                try:
                    self.pid = os.getpid()

                    def on_shared_socket(*args: Any) -> Any:
                        connection.send_command(*args)
                        return connection.read_response()

                    self._execute = on_shared_socket
                    self.run(steps)
                except GateRefusal:
                    code = _REFUSED
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            _, status = os.waitpid(child, 0)
            if os.waitstatus_to_exitcode(status) == _REFUSED:
                raise GateRefusal("the forked child was refused a command (see the note before this)")
        finally:
            self.client.connection_pool.release(connection)

    def command(self, args: list[bytes], *, record: bool = True,
                node: NodeConnection | None = None) -> tuple[Any, str | None]:
        """Send one command; the reply or the error is recorded either way.

        On a server redisprobe does not own, the gate sees every command first: a refused one is never sent. A
        cluster actor sends it to the node of its keys' slot (or `node`), split per slot where a cluster client
        splits it (DEL of keys in several slots), each part recorded with the connection that ran it.
        """
        if self.gate is not None:
            refusal = self.gate.refusal(args)
            if refusal is not None:
                self.emit(trace.Note(t=time.time(), level="warning",
                                     text=f"{self.role} (pid {self.pid}) did not send it: {refusal}"))
                raise GateRefusal(refusal)
        if self.router is not None and node is None:
            parts = self.router.split(args)
            if parts is not None:
                replies = [self.command(part, record=record) for part in parts]
                errors = [error for _, error in replies if error]
                return sum(int(reply or 0) for reply, _ in replies), errors[0] if errors else None
        if args and args[0].upper() == b"SELECT" and len(args) > 1:
            self.db = int(args[1])
        started_wall, started = time.time(), time.monotonic()
        reply: Any = None
        error: str | None = None
        cached = self._from_cache(args)
        client_id, target = self.client_id, ""
        try:
            if cached:
                reply = cached[0]
            elif self.router is not None:
                reply, node = self.router.execute(args, node)
            else:
                reply = self._execute(*args)
        except redis.ResponseError as exc:
            error = error_text(exc)
            node = self.router.last if self.router is not None else None
        if node is not None:
            client_id, target = node.client_id, node.label
        self._remember(args, reply, error)
        latency = time.monotonic() - started
        if record:
            self.emit(trace.Op(t=started_wall, mono=started, pid=self.pid, role=self.role,
                               client_id=client_id, db=self.db, args=args,
                               reply=trace.jsonable_reply(reply), error=error, latency=latency, target=target))
        return reply, error

    def wait(self, items: list[dict[str, Any]], timeout: float, interval: float) -> None:
        """Poll each item until it holds or the shared timeout passes; the first and last poll are recorded."""
        started = time.monotonic()
        deadline = started + timeout
        pending = {index: item for index, item in enumerate(items)}
        attempts = dict.fromkeys(pending, 0)
        first_miss = dict.fromkeys(pending, False)
        while True:
            for index, item in list(pending.items()):
                args = [render(arg, self.vars) for arg in item["cmd"]]
                attempts[index] += 1
                reply, _ = self.command(args, record=attempts[index] == 1)
                if satisfied(reply, item.get("until", "present")):
                    if attempts[index] > 1:
                        self.command(args)  # record the poll that finally saw it
                    self._checked(item, args, True, started, attempts[index], first_miss[index])
                    del pending[index]
                elif attempts[index] == 1:
                    first_miss[index] = True
            if not pending:
                return
            if time.monotonic() >= deadline:
                for index, item in pending.items():
                    args = [render(arg, self.vars) for arg in item["cmd"]]
                    self._checked(item, args, False, started, attempts[index], first_miss[index])
                self.checks_ok = False
                return
            time.sleep(interval)

    def _checked(self, item: dict[str, Any], args: list[bytes], ok: bool, started: float, attempts: int,
                 first_miss: bool) -> None:
        key = args[1].decode("utf-8", "backslashreplace") if len(args) > 1 else ""
        target = self.router.node_for(args).label if self.router is not None else ""
        self.emit(trace.Check(t=time.time(), pid=self.pid, role=self.role, name=str(item.get("name", key)),
                              key=key, ok=ok, waited=time.monotonic() - started, attempts=attempts,
                              first_miss=first_miss, target=target))

    def inspect(self) -> None:
        """What this connection sees: INFO sections, CLIENT INFO and the CONFIG values that matter here."""
        sections: dict[str, dict[str, str]] = {}
        for section in INFO_SECTIONS:
            try:
                sections[section] = {k: _flat(v) for k, v in self.client.info(section).items()}
            except redis.RedisError as exc:
                sections[section] = {"error": str(exc)}
        try:
            sections["client"] = {k: _flat(v) for k, v in self.client.client_info().items()}
        except redis.RedisError as exc:
            sections["client"] = {"error": str(exc)}
        config: dict[str, str] = {}
        for key in CONFIG_KEYS:
            try:
                config[key] = _flat(self.client.config_get(key).get(key, ""))
            except redis.RedisError as exc:
                config[key] = "not permitted" if _refused(exc) else f"error: {exc}"
        sections["config"] = config
        self.emit(trace.Inspect(t=time.time(), pid=self.pid, role=self.role, sections=sections))


# redis-py strips the error code from these replies; we keep what the server said.
_ERROR_CODES: tuple[tuple[type[redis.ResponseError], str], ...] = (
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
)


def error_text(exc: redis.ResponseError) -> str:
    """The error reply as the server sent it, code included."""
    text = str(exc)
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind) and not text.startswith(code):
            return f"{code} {text}"
    return text


def _refused(exc: redis.RedisError) -> bool:
    text = str(exc)
    return "NOPERM" in text or "unknown command" in text or isinstance(exc, redis.exceptions.NoPermissionError)


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
