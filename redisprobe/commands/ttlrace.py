"""`redisprobe ttl-race`: the batching incident reproduced, each batch's life measured, the cause named.

An api appends bursts to batch keys (TTL set on the first message, refreshed on each later one); a processor
processes batches that went quiet. `--bug ID` bends one part as the rule registry's injection for ID says. It
is a plan like any scenario: actors + observers + doctor, through `pipeline.execute`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisprobe.analysis.rules.registry import Injection, injectable
from redisprobe.errors import ProbeError

if TYPE_CHECKING:  # the CLI reads this module's choices for --help: it must not import redis-py for that
    from redisprobe.producers.plan import Plan
    from redisprobe.targets.resolve import Targets

REFRESH = ("expire", "pexpire", "set-ex", "set-keepttl")


def bug_ids() -> tuple[str, ...]:
    """What --bug takes: every registered cause with an injection."""
    return tuple(injectable())



POLICIES = ("quiet", "read-only", "missing-is-ready")


@dataclass
class RaceOptions:
    ttl: float = 1.0
    messages: int = 8
    spacing: float = 0.25
    batches: int = 2
    refresh: str = "expire"
    processors: int = 1
    policy: str = "quiet"
    quiet: float = 0.5
    duration: float | None = None
    bug: str | None = None

    def validate(self) -> None:
        bugs = injectable()  # the defects --bug can inject: every registered cause with an injection
        if self.bug is not None and self.bug not in bugs:
            raise ProbeError(f"unknown --bug {self.bug!r}: one of {', '.join(bugs)}")
        if self.refresh not in REFRESH:
            raise ProbeError(f"unknown --refresh {self.refresh!r}: one of {', '.join(REFRESH)}")
        if self.policy not in POLICIES:
            raise ProbeError(f"unknown --policy {self.policy!r}: one of {', '.join(POLICIES)}")

    def check_topology(self, topology: str) -> None:
        """A defect that needs what a cluster does not have is one clear line, not a crashed actor."""
        if topology == "cluster" and self.bug == "different-db":
            raise ProbeError("--bug different-db needs a second logical db, and a Redis Cluster has db 0 only "
                             "(SELECT is refused): drop --topology cluster")

    @property
    def run_seconds(self) -> float:
        """Long enough for the last batch to be processed or to expire, plus a margin."""
        return self.duration or self.messages * self.spacing + self.ttl + self.quiet + 1.0


def server_args(options: RaceOptions) -> list[str]:
    injection = injectable().get(options.bug or "")
    return list(injection.server_args) if injection is not None else []


def check_allowed(options: RaceOptions, targets_owned: bool, allow_writes: bool) -> None:
    if targets_owned or options.bug is None:
        return
    if injectable()[options.bug].sandbox_only:  # it changes the server itself (CONFIG, FLUSHDB)
        raise ProbeError(f"--bug {options.bug} changes the whole server: it runs on the sandbox only (drop --url)")
    if not allow_writes:
        raise ProbeError(f"--bug {options.bug} on your server needs --allow-writes (it writes only under redisprobe:)")


def build_plan(targets: Targets, options: RaceOptions) -> Plan:
    from redisprobe.producers.actors.child import ActorSpec
    from redisprobe.producers.plan import Plan

    options.validate()
    injection = injectable().get(options.bug or "") or Injection(how="")
    if injection.min_ttl is not None:
        options.ttl = max(options.ttl, injection.min_ttl)  # room for the defect to show (a much shorter TTL)
    run_id = uuid.uuid4().hex[:8]
    ns = f"redisprobe:ttl-race:{run_id}:"
    api_url = targets.by_role["api"].url
    processor_url = targets.by_role["processor"].url
    api: dict[str, Any] = {"program": "batch-api", "ns": "{ns}", "ttl": options.ttl, "messages": options.messages,
                           "spacing": options.spacing, "batches": options.batches, "refresh": options.refresh,
                           "bug": "", **injection.api}
    processor: dict[str, Any] = {"program": "batch-processor", "ns": "{ns}", "quiet": options.quiet,
                                 "poll": min(0.05, options.spacing / 4), "duration": options.run_seconds,
                                 "policy": options.policy, **injection.processor}
    variables = {"ns": ns, "run": run_id}
    cluster = targets.cluster  # every actor a cluster client: its keys go to the primaries that own their slots
    actors = [ActorSpec(role="api", url=api_url, steps=[api], vars=variables, cluster=cluster)]
    actors += [ActorSpec(role="processor", url=processor_url, steps=[processor], vars=variables, cluster=cluster)
               for _ in range(options.processors)]
    if injection.stale_processor:
        # A second instance nobody listed: a stale worker from the last deploy, with an older, shorter quiet
        # threshold (still longer than the message spacing), so it reaches every batch first.
        stale = {**processor, "quiet": max(options.quiet * 0.6, options.spacing * 1.2)}
        actors.append(ActorSpec(role="processor", url=processor_url, steps=[stale], vars=variables, listed=False,
                                cluster=cluster))
    if injection.helper is not None:
        helper = dict(injection.helper)
        role = str(helper.pop("role"))
        delay = options.messages * options.spacing + 0.1 if injection.helper_after_api else options.spacing * 2
        actors.append(ActorSpec(role=role, url=api_url, vars=variables, cluster=cluster, steps=[
            {"ns": "{ns}", "delay": delay, **helper}]))
    return Plan(command="ttl-race", actors=actors, max_seconds=options.run_seconds + 15,
                ttl_pattern=f"{ns}batch:*", cleanup_patterns=[f"{ns}*"],
                options={"run_id": run_id, "ns": ns, **{k: v for k, v in options.__dict__.items()}})
