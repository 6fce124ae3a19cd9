"""Steps that act on a sandbox cluster's replica: stall its replication, fail over to it.

`{"stall": "replica0", "seconds": 1.5}` sends CLIENT PAUSE <ms> WRITE to the replica: its link to the primary
applies no write meanwhile (reads are still answered), so the primary's next writes stay behind, as on a replica
whose link lags. `{"failover": "replica0", "mode": "force"}` sends CLUSTER FAILOVER (FORCE / TAKEOVER, or plain:
the replica first catches up with its primary) and waits until the replica says it is a primary and its former
primary says it is a replica: what the next command meets is the new shape. Each is said as a note in the trace.
The scenario runner adds the replica's `url`; these steps never run on a server redisprobe does not own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

from redisprobe import trace
from redisprobe.targets.url import parse_target

if TYPE_CHECKING:
    from redisprobe.producers.actors.steps import StepRunner

FAILOVER_WAIT = 10.0  # seconds, unless the step says `timeout`


class ReplicaStepError(RuntimeError):
    """A stall or failover that did not happen; the message says what the server did instead."""


def stall(runner: StepRunner, step: dict[str, Any]) -> None:
    _own_servers_only(runner, "stall")
    target = parse_target(str(step["url"]))
    seconds = float(step["seconds"])
    client = target.connect(name=f"redisprobe:{runner.role}:{runner.pid}")
    try:
        client.execute_command("CLIENT", "PAUSE", max(1, round(seconds * 1000)), "WRITE")
    finally:
        client.close()
    runner.emit(trace.Note(t=time.time(), level="info",
                           text=f"{runner.role} (pid {runner.pid}) stalled replication on {target.label} for "
                                f"{seconds:g}s (CLIENT PAUSE WRITE: its link applies no write meanwhile)"))


def failover(runner: StepRunner, step: dict[str, Any]) -> None:
    _own_servers_only(runner, "failover")
    target = parse_target(str(step["url"]))
    mode = str(step.get("mode", "coordinated"))
    timeout = float(step.get("timeout", FAILOVER_WAIT))
    name = f"redisprobe:{runner.role}:{runner.pid}"
    client = target.connect(name=name)
    former: redis.Redis | None = None
    try:
        info = client.info("replication")
        if info.get("role") != "slave":
            raise ReplicaStepError(f"{target.label} is not a replica (role {info.get('role')}): nothing to fail over")
        former = redis.Redis(host=str(info["master_host"]), port=int(info["master_port"]), socket_timeout=2,
                             client_name=name)
        args = ["CLUSTER", "FAILOVER", *([mode.upper()] if mode != "coordinated" else [])]
        client.execute_command(*args)
        deadline = time.monotonic() + timeout
        while not (_role(client) == "master" and _role(former) == "slave"):
            if time.monotonic() > deadline:
                raise ReplicaStepError(f"{' '.join(args)} on {target.label}: not a primary (or its former primary "
                                       f"not yet its replica) {timeout:g}s later")
            time.sleep(0.05)
    finally:
        client.close()
        if former is not None:
            former.close()
    runner.emit(trace.Note(t=time.time(), level="info",
                           text=f"{runner.role} (pid {runner.pid}) failed over to {target.label} "
                                f"({' '.join(args)}): it is a primary now"))


def _role(client: redis.Redis) -> str:
    try:
        return str(client.info("replication").get("role", ""))
    except (redis.ConnectionError, redis.TimeoutError):
        return ""


def _own_servers_only(runner: StepRunner, kind: str) -> None:
    if runner.gate is not None:
        from redisprobe.producers.actors.steps import GateRefusal

        raise GateRefusal(f"a {kind} step acts on a replica of the sandbox cluster only")
