"""`redisprobe isolation`: can the processor see what the api wrote, and if not, why?"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from redisprobe.analysis.verdict import VisibilityReport, analyse
from redisprobe.producers.actors.child import ActorSpec
from redisprobe.producers.plan import Execution, Plan, execute
from redisprobe.targets.resolve import Targets
from redisprobe.targets.url import Target

DATA_KEYS = ("string", "hash", "list")


@dataclass
class IsolationOptions:
    ttl: int = 60
    timeout: float = 5.0
    api_prefix: str = ""
    processor_prefix: str = ""


def namespace(prefix: str, run_id: str) -> str:
    """Every key lives under `redisprobe:`; a user's client-side prefix goes right after it."""
    return f"redisprobe:{prefix}isolation:{run_id}:"


def actor_specs(targets: Targets, options: IsolationOptions, run_id: str) -> list[ActorSpec]:
    """The isolation scenario: the api writes three kinds of marker, the processor must see each and ack."""
    ttl = str(options.ttl)
    api_steps = [
        {"do": ["SET", "{ns}string", "marker:{run}", "EX", ttl]},
        {"do": ["HSET", "{ns}hash", "writer", "api", "run", "{run}"]},
        {"do": ["EXPIRE", "{ns}hash", ttl]},
        {"do": ["RPUSH", "{ns}list", "m1", "m2", "m3"]},
        {"do": ["EXPIRE", "{ns}list", ttl]},
        {"wait": [{"name": "ack", "cmd": ["GET", "{ns}ack"]}], "timeout": options.timeout},
    ]
    processor_steps = [
        {"wait": [{"name": "string", "cmd": ["GET", "{ns}string"]},
                  {"name": "hash", "cmd": ["HGETALL", "{ns}hash"]},
                  {"name": "list", "cmd": ["LRANGE", "{ns}list", "0", "-1"]}],
         "timeout": options.timeout},
        {"do": ["SET", "{ns}ack", "seen", "EX", ttl], "when": "checks-ok"},
    ]
    return [
        ActorSpec(role="api", url=targets.by_role["api"].url, steps=api_steps, prefix=options.api_prefix,
                  vars={"ns": namespace(options.api_prefix, run_id), "run": run_id}, cluster=targets.cluster),
        ActorSpec(role="processor", url=targets.by_role["processor"].url, steps=processor_steps,
                  prefix=options.processor_prefix,
                  vars={"ns": namespace(options.processor_prefix, run_id), "run": run_id}, cluster=targets.cluster),
    ]


class ReplicationGapSampler:
    """Samples primary vs replica offsets while the actors run, when the reader's server is a replica."""

    def __init__(self, primary: Target, replica: Target) -> None:
        self.primary = primary.connect()
        self.replica = replica.connect()
        self.largest: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplicationGapSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.primary.close()
        self.replica.close()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                head = int(self.primary.info("replication").get("master_repl_offset", 0))
                seen = int(self.replica.info("replication").get("slave_repl_offset", 0))
                gap = max(0, head - seen)
                self.largest = gap if self.largest is None else max(self.largest, gap)
            if self._stop.wait(0.01):
                return


def _is_replica(target: Target) -> bool:
    client = target.connect()
    try:
        return client.info("replication").get("role") == "slave"
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def run_isolation(targets: Targets, options: IsolationOptions, out: Path | None) -> tuple[VisibilityReport,
                                                                                          Execution]:
    """The isolation scenario, run like any plan (no observers: the actors' own logs tell it all)."""
    run_id = uuid.uuid4().hex[:10]
    specs = actor_specs(targets, options, run_id)
    plan = Plan(command="isolation", actors=specs, max_seconds=options.timeout * 2 + 30, observe=False,
                cleanup_patterns=sorted({namespace(p, run_id) + "*" for p in (options.api_prefix,
                                                                           options.processor_prefix)}),
                options={"ttl": options.ttl, "timeout": options.timeout, "api_prefix": options.api_prefix,
                         "processor_prefix": options.processor_prefix, "run_id": run_id,
                         "topology": targets.sandbox.topology if targets.sandbox else "url"})
    sampler: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if _is_replica(targets.by_role["processor"]):
        sampler = ReplicationGapSampler(targets.by_role["api"], targets.by_role["processor"])
    with sampler:
        execution = execute(plan, targets, out)
    gap = sampler.largest if isinstance(sampler, ReplicationGapSampler) else None
    report = analyse(execution.events, doctor=execution.findings, replication_gap=gap)
    if execution.interrupted:  # no verdict on waits that were cut short; causes already named stand
        report.verdict = "interrupted"
        report.crashed = []
        report.findings = [f for f in report.findings if f.rule != "not-visible-unexplained"]
    return report, execution
