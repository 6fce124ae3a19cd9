"""The actor process: connect, introduce itself, run its steps, and stream each operation as a trace event.

Run as `python -m redisprobe.producers.actors.child` with a JSON spec on stdin (stdin, not argv: the URL may hold a
password). Every event is written to stdout and flushed at once, so a crash still leaves the history.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from redisprobe import trace
from redisprobe.producers.actors.cluster_client import ClusterRouter, NodeConnection
from redisprobe.producers.actors.replica_steps import ReplicaStepError
from redisprobe.producers.actors.steps import GateRefusal, StepRunner
from redisprobe.targets.gate import Gate
from redisprobe.targets.topology import cluster_identity
from redisprobe.targets.url import Target, describe_redis_error, parse_target


class ActorSpec(msgspec.Struct, kw_only=True):
    """What one actor does; sent from the parent as JSON."""

    role: str
    url: str
    steps: list[dict[str, Any]] = []
    vars: dict[str, Any] = {}
    prefix: str = ""
    listed: bool = True  # False: a process the user did not expect (a stale worker, a second instance)
    guarded: bool = False  # a server redisprobe does not own: every command passes the gate (redisprobe.targets.gate)
    allow_scripts: bool = False  # the scenario opted in to scripts and the user passed --allow-writes
    cluster: bool = False  # a cluster client: connects to every primary, sends each key where its slot lives


def server_fingerprint(client: redis.Redis, host: str, port: int) -> trace.ServerFingerprint:
    """Identify the server behind a connection; `run_id` is the identity, the rest is what people compare."""
    server = client.info("server")
    replication = client.info("replication")
    return trace.ServerFingerprint(
        run_id=str(server.get("run_id", "")),
        host=host,
        port=int(server.get("tcp_port", port) or port),
        version=str(server.get("redis_version", "")),
        role=str(replication.get("role", "")),
        uptime=int(server.get("uptime_in_seconds", 0)),
        master_repl_offset=int(replication.get("master_repl_offset", 0) or 0),
        master_host=str(replication.get("master_host", "")),
        master_port=int(replication.get("master_port", 0) or 0),
        master_replid=str(replication.get("master_replid", "")),
        redis_mode=str(server["redis_mode"]) if "redis_mode" in server else msgspec.UNSET,
        cluster_id=(cluster_identity(client) or msgspec.UNSET) if server.get("redis_mode") == "cluster"
        else msgspec.UNSET,
    )


class _Emitter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def __call__(self, event: trace.Event) -> None:
        self._out.write(trace.encode(event))
        self._out.flush()


def _connect_node(spec: ActorSpec, target: Target, emit: Callable[[trace.Event], None]) -> NodeConnection:
    """Connect to one server and announce the connection (pid, role, its client id there, the server's identity);
    a cluster actor does this once per primary."""
    pid = os.getpid()
    name = f"redisprobe:{spec.role}:{pid}"
    # Like an application's pool, an actor reconnects after a dropped connection (a restart takes a moment to come
    # back: backoff up to a few seconds); a server that does not answer is not asked again (every wait is bounded
    # by --connect-timeout).
    reconnect = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 10, supported_errors=(redis.ConnectionError,))
    client = target.connect(name=name, retry=reconnect)
    client_id = int(client.client_id())
    info = client.client_info()
    fingerprint = server_fingerprint(client, target.host or target.address, target.port or 0)
    emit(trace.ActorStarted(
        t=time.time(), pid=pid, role=spec.role, target=target.label, client_id=client_id, client_name=name,
        db=int(info.get("db", target.db)), addr=str(info.get("addr", "")), laddr=str(info.get("laddr", "")),
        prefix=spec.prefix, server=fingerprint,
    ))
    return NodeConnection(target=target, client=client, client_id=client_id)


def run(spec: ActorSpec, emit: _Emitter, wait_for_go: Callable[[], object] | None = None) -> int:
    target = parse_target(spec.url)
    pid = os.getpid()
    router: ClusterRouter | None = None
    connected: list[trace.Event] = []  # said once every connection is up: the start line waits for all of them
    try:
        seed = _connect_node(spec, target, connected.append)
        if spec.cluster:
            router = ClusterRouter(seed, lambda node: _connect_node(spec, node, emit if router else connected.append))
    except (redis.RedisError, OSError) as exc:
        for event in connected:
            emit(event)
        emit(trace.ActorExited(t=time.time(), pid=pid, role=spec.role, returncode=3, crashed=True,
                               detail=describe_redis_error(exc, target)))
        return 3
    for event in connected:
        emit(event)
    if wait_for_go is not None:
        wait_for_go()  # every actor connects first, then all start together: no head start on a slow machine
    gate = Gate(scripts=spec.allow_scripts) if spec.guarded else None
    runner = StepRunner(seed.client, emit=emit, pid=pid, role=spec.role, client_id=seed.client_id, db=target.db,
                        variables=dict(spec.vars), gate=gate, router=router)
    try:
        runner.run(spec.steps)
    except GateRefusal as exc:
        emit(trace.ActorExited(t=time.time(), pid=pid, role=spec.role, returncode=4, crashed=True,
                               detail=f"refused to send to your server: {exc}"))
        return 4
    except ReplicaStepError as exc:
        emit(trace.ActorExited(t=time.time(), pid=pid, role=spec.role, returncode=1, crashed=True, detail=str(exc)))
        return 1
    emit(trace.ActorExited(t=time.time(), pid=pid, role=spec.role, returncode=0))
    return 0


def main() -> int:
    emit = _Emitter(sys.stdout.buffer)
    raw = sys.stdin.buffer.readline()
    spec = msgspec.json.decode(raw, type=ActorSpec)
    try:
        return run(spec, emit, sys.stdin.buffer.readline)
    except KeyboardInterrupt:
        emit(trace.ActorExited(t=time.time(), pid=os.getpid(), role=spec.role, returncode=130,
                               crashed=True, detail="interrupted"))
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
