"""What a scenario file says, once validated: actors with steps, the sandbox it needs, and what must come out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redisprobe.errors import ProbeError


class ScenarioError(ProbeError):
    """A scenario file that cannot be used; the message is one line: `file:line: field: what is wrong`."""

    def __init__(self, path: Path | str, line: int | None, where: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.where = where
        self.reason = message
        location = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{location}: {where}: {message}" if where else f"{location}: {message}")


@dataclass
class ActorDecl:
    """One `[[actors]]` entry: `count` instances of the same process."""

    role: str
    steps: list[dict[str, Any]]
    db: int | None = None
    prefix: str = ""
    count: int = 1
    server: str = "api"  # whose server it talks to: the api's or the processor's (they differ in split/replica)
    vars: dict[str, Any] = field(default_factory=dict)
    listed: bool = True  # False: the doctor is not told about this process (a stale worker nobody knows of)


@dataclass
class LifetimeExpect:
    key: str  # glob; `{ns}` is the run's namespace
    min: float | None = None
    max: float | None = None
    life: int | None = None  # which life of each matching key (1 = first, -1 = last); None: every life


@dataclass
class RemovedExpect:
    key: str
    how: str


@dataclass
class Expect:
    visible: bool | None = None
    findings: list[str] = field(default_factory=list)
    no_findings: list[str] = field(default_factory=list)
    clean: bool = False
    lifetime: list[LifetimeExpect] = field(default_factory=list)
    removed: list[RemovedExpect] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    path: Path
    actors: list[ActorDecl]
    expect: Expect
    description: str = ""
    catalog_id: str = ""
    topology: str = "single"
    server_args: list[str] = field(default_factory=list)
    observe: bool = True
    max_seconds: float = 20.0
    ttl_pattern: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    pending: str | None = None
    allow_scripts: bool = False  # scripts may run on a user's server (with --allow-writes too)
    replicas: int = 0  # a sandbox cluster's replicas per primary (roles replica0..), for stall and failover steps

    def sandbox_only(self, *, allow_writes: bool = False) -> str | None:
        """Why this scenario must not run on a user's server (`--url`), or None when it may."""
        from redisprobe.scenario.safety import url_refusal

        return url_refusal(self, allow_writes=allow_writes)


@dataclass
class ScenarioResult:
    """The outcome of one scenario: `status` is passed / failed / skipped / error / interrupted."""

    name: str
    path: str
    passed: bool
    failures: list[str]
    findings: list[Any]  # redisprobe.findings.Finding
    seconds: float
    catalog_id: str = ""
    status: str = ""
    skipped: str | None = None  # the reason, when skipped (pending, or sandbox-only with --url)
    lives: list[dict[str, Any]] = field(default_factory=list)
    visible: bool | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "skipped" if self.skipped else ("passed" if self.passed else "failed")

    @property
    def rules(self) -> list[str]:
        seen: list[str] = []
        for finding in self.findings:
            if finding.rule not in seen:
                seen.append(finding.rule)
        return seen

    def to_json(self) -> dict[str, Any]:
        from redisprobe.findings import to_builtins

        return {
            "name": self.name, "path": self.path, "catalog_id": self.catalog_id, "status": self.status,
            "passed": self.passed, "skipped": self.skipped, "failures": list(self.failures),
            "seconds": round(self.seconds, 3), "visible": self.visible, "rules": self.rules,
            "findings": to_builtins(self.findings), "notes": list(self.notes),
        }
