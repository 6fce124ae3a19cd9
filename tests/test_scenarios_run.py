"""The CI regression run: every scenario in scenarios/ runs on its own sandbox and meets its own expectations.

Plus `run_scenarios` end to end: exit codes, the JSON document and the JUnit XML CI systems read.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from redisprobe.analysis.rules.registry import FACT, REGISTRY
from redisprobe.commands.catalog import catalog_rows
from redisprobe.commands.run import run_scenarios
from redisprobe.scenario import load, run_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.toml"))
CAUSES = [spec.id for spec in REGISTRY.values() if spec.family != FACT]
ONE_MACHINE = set(CAUSES)  # scan-one-node too: the sandbox runs a cluster of three primaries


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    scenario = load(path)
    if scenario.pending:
        pytest.skip(f"pending: {scenario.pending}")
    result = run_scenario(scenario)
    detail = "\n".join([*result.failures, *(f"finding {f.rule}: {f.summary}" for f in result.findings),
                        *(f"note: {n}" for n in result.notes)])
    assert result.status == "passed", f"{path.name}:\n{detail}"


def test_every_reproducible_id_has_a_scenario_and_a_healthy_twin() -> None:
    stems = {path.stem for path in FILES}
    for rule in sorted(ONE_MACHINE):
        assert rule in stems, f"no scenarios/{rule}.toml"
        assert f"{rule}-healthy" in stems, f"no scenarios/{rule}-healthy.toml"
        assert load(SCENARIOS / f"{rule}.toml").catalog_id == rule
        twin = load(SCENARIOS / f"{rule}-healthy.toml")
        assert twin.catalog_id == "healthy" and twin.expect.clean and not twin.pending


def test_catalog_rows_cover_every_id() -> None:
    rows = catalog_rows(SCENARIOS)
    assert sorted(row[0] for row in rows) == sorted(CAUSES)
    by_id = {rule: (line, path) for rule, line, path in rows}
    assert all(line for line, _ in by_id.values())
    for rule in ONE_MACHINE:
        assert Path(by_id[rule][1]).name == f"{rule}.toml"


QUICK = """\
name = "{name}"
catalog_id = "healthy"
max_seconds = 10
{extra}
[[actors]]
role = "api"
steps = [{{ do = ["SET", "{{ns}}job", "v", "EX", "10"] }}]

[[actors]]
role = "processor"
steps = [{{ wait = [{{ name = "job", cmd = ["GET", "{{ns}}job"] }}], timeout = 2 }}]

[expect]
visible = true
{expect}
"""


def quick(tmp_path: Path, name: str, *, expect: str = "clean = true", extra: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(QUICK.format(name=name, expect=expect, extra=extra))
    return path


@pytest.mark.timeout(120)
def test_run_scenarios_junit_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    quick(folder, "visible-ok")
    quick(folder, "wrongly-expects-db", expect='findings = ["different-db"]')
    quick(folder, "not-yet", extra='pending = "waiting for a fork step"')
    report = tmp_path / "out" / "report.xml"
    code = run_scenarios([folder], junit=report, json=True, url=None)
    assert code == 1
    document = json.loads(capsys.readouterr().out)
    status = {s["name"]: s["status"] for s in document["scenarios"]}
    assert status == {"not-yet": "skipped", "visible-ok": "passed", "wrongly-expects-db": "failed"}
    assert (document["passed"], document["failed"], document["skipped"], document["exit_code"]) == (1, 1, 1, 1)
    failed = next(s for s in document["scenarios"] if s["name"] == "wrongly-expects-db")
    assert failed["failures"] == ["expected finding 'different-db', got: none"]

    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("3", "1", "1",
                                                                                                    "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"visible-ok", "wrongly-expects-db", "not-yet"}
    failure = cases["wrongly-expects-db"].find("failure")
    assert failure is not None and failure.get("message") == "expected finding 'different-db', got: none"
    skipped = cases["not-yet"].find("skipped")
    assert skipped is not None and "waiting for a fork step" in (skipped.get("message") or "")
    assert cases["visible-ok"].find("failure") is None and float(cases["visible-ok"].get("time") or 0) > 0
    assert cases["visible-ok"].get("file", "").endswith("visible-ok.toml")


@pytest.mark.timeout(120)
def test_run_scenarios_all_passed_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = quick(tmp_path, "table-ok")
    assert run_scenarios([path], junit=None, json=False, url=None) == 0
    out = capsys.readouterr().out
    assert "table-ok" in out and "passed" in out and "1 passed" in out


def test_malformed_file_stops_the_run_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = quick(tmp_path, "fine")
    bad = tmp_path / "broken.toml"
    bad.write_text(QUICK.format(name="broken", expect="clean = true", extra="").replace('"SET"', '"SET" "x"'))
    report = tmp_path / "report.xml"
    assert run_scenarios([good, bad], junit=report, json=False, url=None) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: TOML syntax error" in err
    assert "fine" not in capsys.readouterr().out  # nothing ran
    case = ET.parse(report).getroot().find("testsuite/testcase")
    assert case is not None and case.find("error") is not None


def test_missing_path_is_a_user_error(tmp_path: Path) -> None:
    from redisprobe.errors import ProbeError

    with pytest.raises(ProbeError, match="no such file or folder"):
        run_scenarios([tmp_path / "nope"], junit=None, json=False, url=None)


@pytest.mark.timeout(120)
def test_url_runs_on_the_given_server_and_skips_sandbox_only(tmp_path: Path, redis_url: str) -> None:
    """On a user's server: the scenario runs there; one that needs the sandbox is skipped, not failed."""
    result = run_scenario(load(quick(tmp_path, "on-url")), url=redis_url)
    assert result.status == "passed", result.failures
    result = run_scenario(load(SCENARIOS / "flushed.toml"), url=redis_url)
    assert result.status == "skipped" and "sandbox only" in (result.skipped or "")


def test_a_malformed_failover_step_is_one_line_from_the_cli(tmp_path: Path) -> None:
    from tests.clirun import run_cli

    path = tmp_path / "bad-failover.toml"
    path.write_text((SCENARIOS / "failover-lost-write.toml").read_text().replace('mode = "force"', 'mode = "now"'))
    result = run_cli("run", str(path))
    assert result.code == 2, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    assert "failover-lost-write" not in result.out
    assert f"{path}:" in lines[0] and "mode: unknown mode 'now': one of coordinated, force, takeover" in lines[0]
