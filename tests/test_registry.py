"""The rule registry is the one list of causes: catalog, docs, scenario loader, ttl-race and the doctor read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from redisprobe.analysis import analyze, facts
from redisprobe.analysis.rules.registry import FACT, REGISTRY, Injection, doctor_rules, injectable, register
from redisprobe.commands.catalog import catalog_markdown, catalog_rows
from redisprobe.commands.ttlrace import RaceOptions, build_plan
from redisprobe.errors import ProbeError
from redisprobe.scenario.loader import loads, program_params
from redisprobe.targets.resolve import Targets
from redisprobe.targets.url import parse_target
from tests.tracebuild import TraceBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_docs_catalog_is_generated_from_the_registry() -> None:
    assert (ROOT / "docs" / "catalog.md").read_text() == catalog_markdown(), \
        "run `redisprobe catalog --markdown > docs/catalog.md`"


def test_every_doctor_rule_has_a_scenario_and_a_healthy_twin() -> None:
    for spec in doctor_rules():
        assert (ROOT / "scenarios" / f"{spec.id}.toml").is_file(), spec.id
        assert (ROOT / "scenarios" / f"{spec.id}-healthy.toml").is_file(), spec.id


def test_every_injection_the_api_plays_is_a_value_its_program_accepts() -> None:
    params = program_params("batch-api")
    assert params is not None
    allowed = params["bug"][1] or ()
    for rule_id, injection in injectable().items():
        if "bug" in injection.api:
            assert injection.api["bug"] in allowed, rule_id


def _targets() -> Targets:
    target = parse_target("redis://127.0.0.1:6379/0")
    return Targets(by_role={"api": target, "processor": target}, sandbox=None)


@pytest.fixture
def new_cause() -> Iterator[str]:
    """A cause registered the way a contributor adds one: a function and its registration, nothing else."""

    def sees_nothing(inp: object) -> list:
        return []

    register("test-new-cause", "ttl", "a cause added by a test", sees_nothing,
             inject=Injection(how="the processor looks in db 2", processor={"db": 2}))
    yield "test-new-cause"
    del REGISTRY["test-new-cause"]


def test_a_new_registration_shows_everywhere_without_other_edits(new_cause: str) -> None:
    assert new_cause in {row[0] for row in catalog_rows(None)}
    assert f"`{new_cause}`" in catalog_markdown()
    scenario = loads(f'[[actors]]\nrole = "api"\nsteps = [{{ do = ["GET", "{{ns}}k"] }}]\n'
                     f'[expect]\nfindings = ["{new_cause}"]\n', "new.toml")
    assert scenario.expect.findings == [new_cause]
    plan = build_plan(_targets(), RaceOptions(bug=new_cause))
    processors = [a for a in plan.actors if a.role == "processor"]
    assert processors[0].steps[0]["db"] == 2
    assert any(spec.id == new_cause for spec in doctor_rules())


def test_an_unknown_id_is_refused_by_the_loader_and_ttl_race() -> None:
    with pytest.raises(ProbeError, match="unknown finding id 'no-such-cause'"):
        loads('[[actors]]\nrole = "api"\nsteps = [{ do = ["GET", "{ns}k"] }]\n'
              '[expect]\nfindings = ["no-such-cause"]\n', "bad.toml")
    with pytest.raises(ProbeError, match="unknown --bug"):
        RaceOptions(bug="no-such-cause").validate()


def test_ids_are_unique_and_causes_have_families() -> None:
    with pytest.raises(ValueError, match="twice"):
        register("flushed", "ttl", "again")
    assert {spec.family for spec in REGISTRY.values()} <= {"visibility", "ttl", "cluster", FACT}


def test_a_rule_that_fails_is_reported_and_the_others_still_run() -> None:
    def broken(inp: object) -> list:
        raise KeyError("boom")

    register("test-broken", "ttl", "a rule with a bug", broken)
    try:
        tb = TraceBuilder()
        api = tb.client("api", pid=100, client_id=7, port=5001)
        other = tb.client("cleanup", pid=200, client_id=8, port=5002)
        api("RPUSH", "batch:1", "a")
        api("EXPIRE", "batch:1", "60")
        tb.ks("expire", "batch:1")
        other("DEL", "batch:1")
        tb.ks("del", "batch:1")
        api("RPUSH", "batch:1", "b")
        findings = analyze(tb.events).findings
    finally:
        del REGISTRY["test-broken"]
    rules = {f.rule for f in findings}
    assert "rule-failed" in rules and "deleted-by-client" in rules
    failed = next(f for f in findings if f.rule == "rule-failed")
    assert "test-broken" in failed.summary and "KeyError" in failed.summary


def test_contributing_shows_the_registration_as_it_is() -> None:
    """CONTRIBUTING.md's worked example of a rule is the real registration of write-rejected, and the fold's
    records it names exist."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    spec = REGISTRY["write-rejected"]
    assert f'register("write-rejected", VISIBILITY, "{spec.summary}",' in text
    assert spec.inject is not None and f'how="{spec.inject.how[:40]}' in text
    for name in ("writers", "takers", "misses", "patterns"):
        assert f"facts.{name}(" in text and callable(getattr(facts, name))
    assert {"who", "last_t"} <= set(facts.Writer._fields)
