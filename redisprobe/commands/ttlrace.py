"""`redisprobe ttl-race`: the batching incident reproduced, each batch's life measured, the cause named.

An api appends bursts to batch keys (TTL set on the first message, refreshed on each later one); a processor
processes batches that went quiet. `--bug ID` bends one part the way BUGS.md describes. It is a plan like any
scenario: actors + observers + doctor, through `pipeline.execute`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisprobe.errors import ProbeError

if TYPE_CHECKING:  # the CLI reads this module's choices for --help: it must not import redis-py for that
    from redisprobe.pipeline import Plan
    from redisprobe.session import Targets

# Defects `--bug` can inject, with how each is produced.
BUGS: dict[str, str] = {
    "deleted-by-client": "the processor treats a batch with no last-message time as ready at once",
    "consumed-by-other": "a second processor instance takes batches too",
    "ttl-refresh-missed": "the api refreshes the TTL of a near-miss key name, so the batch expires on its first TTL",
    "ttl-cleared-by-set": "the api updates the last-message time with a plain SET, dropping its TTL",
    "recreated-without-ttl": "the api sets the TTL on the first message only; an expired batch is recreated without "
                             "one, and the processor leaves cleanup to the TTL",
    "ttl-shortened": "a janitor process sets a much shorter TTL on the batches",
    "ttl-unit-mismatch": "the api passes seconds to PEXPIRE (milliseconds)",
    "expire-in-past": "the api's EXPIREAT uses a skewed clock, an hour in the past",
    "evicted": "a small maxmemory with volatile-ttl evicts the short-TTL batches",
    "flushed": "a fixture process runs FLUSHDB mid-run",
    "renamed-away": "a janitor process RENAMEs the batches away",
    "different-db": "the processor looks in db 1",
    "key-prefix-mismatch": "the processor scans batch_* while the api writes batch:*",
}
# Bugs that would change the server itself (CONFIG, FLUSHDB): sandbox only, never a user's server.
SANDBOX_ONLY = {"evicted", "flushed"}
REFRESH = ("expire", "pexpire", "set-ex", "set-keepttl")
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
        if self.bug is not None and self.bug not in BUGS:
            raise ProbeError(f"unknown --bug {self.bug!r}: one of {', '.join(BUGS)}")
        if self.refresh not in REFRESH:
            raise ProbeError(f"unknown --refresh {self.refresh!r}: one of {', '.join(REFRESH)}")
        if self.policy not in POLICIES:
            raise ProbeError(f"unknown --policy {self.policy!r}: one of {', '.join(POLICIES)}")

    @property
    def run_seconds(self) -> float:
        """Long enough for the last batch to be processed or to expire, plus a margin."""
        return self.duration or self.messages * self.spacing + self.ttl + self.quiet + 1.0


def server_args(options: RaceOptions) -> list[str]:
    if options.bug == "evicted":
        return ["--maxmemory", "3mb", "--maxmemory-policy", "volatile-ttl"]
    return []


# A recreated key without a TTL only does harm where the TTL is the cleanup: the processor reads, never deletes.
_POLICY_FOR_BUG = {"deleted-by-client": "missing-is-ready", "recreated-without-ttl": "read-only"}


def check_allowed(options: RaceOptions, targets_owned: bool, allow_writes: bool) -> None:
    if targets_owned or options.bug is None:
        return
    if options.bug in SANDBOX_ONLY:
        raise ProbeError(f"--bug {options.bug} changes the whole server: it runs on the sandbox only (drop --url)")
    if not allow_writes:
        raise ProbeError(f"--bug {options.bug} on your server needs --allow-writes (it writes only under redisprobe:)")


def build_plan(targets: Targets, options: RaceOptions) -> Plan:
    from redisprobe.actors.child import ActorSpec
    from redisprobe.pipeline import Plan

    options.validate()
    if options.bug == "ttl-shortened":
        options.ttl = max(options.ttl, 3.0)  # room for another writer's 1 s TTL to be "much shorter"
    run_id = uuid.uuid4().hex[:8]
    ns = f"redisprobe:ttl-race:{run_id}:"
    bug = options.bug or ""
    api_url = targets.by_role["api"].url
    processor_url = targets.by_role["processor"].url
    api: dict[str, Any] = {"program": "batch-api", "ns": "{ns}", "ttl": options.ttl, "messages": options.messages,
                           "spacing": options.spacing, "batches": options.batches, "refresh": options.refresh,
                           "bug": bug}
    processor: dict[str, Any] = {"program": "batch-processor", "ns": "{ns}", "quiet": options.quiet,
                                 "poll": min(0.05, options.spacing / 4), "duration": options.run_seconds,
                                 "policy": _POLICY_FOR_BUG.get(bug, options.policy)}
    if bug == "different-db":
        processor["db"] = 1
    if bug == "key-prefix-mismatch":
        processor["match"] = "{ns}batch_*"
    variables = {"ns": ns, "run": run_id}
    actors = [ActorSpec(role="api", url=api_url, steps=[api], vars=variables)]
    actors += [ActorSpec(role="processor", url=processor_url, steps=[processor], vars=variables)
               for _ in range(options.processors)]
    if bug == "consumed-by-other":
        # A second instance nobody listed: a stale worker from the last deploy, with an older, shorter quiet
        # threshold (still longer than the message spacing), so it reaches every batch first.
        stale = {**processor, "quiet": max(options.quiet * 0.6, options.spacing * 1.2)}
        actors.append(ActorSpec(role="processor", url=processor_url, steps=[stale], vars=variables, listed=False))
    if bug in {"ttl-shortened", "renamed-away", "flushed"}:
        action = {"ttl-shortened": "shorten", "renamed-away": "rename", "flushed": "flush"}[bug]
        actors.append(ActorSpec(role="janitor", url=api_url, vars=variables, steps=[
            {"program": "janitor", "ns": "{ns}", "action": action, "delay": options.spacing * 2, "ttl": 1}]))
    if bug == "evicted":
        actors.append(ActorSpec(role="filler", url=api_url, vars=variables, steps=[
            {"program": "filler", "ns": "{ns}", "delay": options.spacing * 2, "size": 65536, "count": 96}]))
    return Plan(command="ttl-race", actors=actors, max_seconds=options.run_seconds + 15,
                ttl_pattern=f"{ns}batch:*", cleanup_patterns=[f"{ns}*"],
                options={"run_id": run_id, "ns": ns, **{k: v for k, v in options.__dict__.items()}})
