"""`redisprobe run PATH...`: run scenario files, each on its own sandbox, and report which expectations held.

Exit codes: 0 every scenario passed (or was skipped), 1 an expectation failed, 2 a file is malformed or a
scenario could not be run at all (no server, connection refused...).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from redisprobe.errors import ExitCode, ProbeError
from redisprobe.render.escape import shown
from redisprobe.render.scenario_results import progress_bar, results_table, summary_line
from redisprobe.scenario.loader import load
from redisprobe.scenario.model import Scenario, ScenarioError, ScenarioResult
from redisprobe.scenario.runner import run_scenario

if TYPE_CHECKING:
    from rich.console import Console


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders become their `*.toml` files (sorted, not recursive). Missing paths are errors."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.glob("*.toml") if p.is_file())
            if not files:
                raise ProbeError(f"{path}: no *.toml scenario files in this folder")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise ProbeError(f"{path}: no such file or folder")
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def load_all(paths: list[Path]) -> tuple[list[Scenario], list[ScenarioError]]:
    scenarios: list[Scenario] = []
    errors: list[ScenarioError] = []
    for path in paths:
        try:
            scenarios.append(load(path))
        except ScenarioError as exc:
            errors.append(exc)
    names: dict[str, Path] = {}
    for scenario in scenarios:
        if scenario.name in names:
            errors.append(ScenarioError(scenario.path, None, "name",
                                        f"{scenario.name!r} is also the name of {names[scenario.name]}"))
        names.setdefault(scenario.name, scenario.path)
    return scenarios, errors


def run_scenarios(paths: list[Path], *, junit: Path | None = None, json: bool = False, url: str | None = None,
                  enable_events: bool | None = None, console: Console | None = None,
                  err: Console | None = None, allow_writes: bool = False) -> int:
    """Load every file first (one bad file stops the run before anything starts), run each, report."""
    from redisprobe.render.console import print_json, stderr_console, stdout_console
    from redisprobe.scenario.junit import write_junit

    console = console or stdout_console()
    err = err or stderr_console()
    files = expand(paths)
    scenarios, errors = load_all(files)
    if errors:
        for error in errors:
            err.print(f"redisprobe: error: {shown(str(error))}", markup=False)
        if junit is not None:
            write_junit([_malformed(error) for error in errors], junit)
        if json:
            print_json({"scenarios": [], "errors": [str(e) for e in errors], "passed": 0, "failed": 0,
                        "skipped": 0, "malformed": len(errors), "exit_code": int(ExitCode.USAGE)})
        return int(ExitCode.USAGE)
    results: list[ScenarioResult] = []
    started = time.monotonic()
    with progress_bar(err, len(scenarios)) as step:
        for scenario in scenarios:
            step.running(scenario.name)
            try:
                result = run_scenario(scenario, url=url, enable_events=enable_events, allow_writes=allow_writes)
            except KeyboardInterrupt:  # before or after its actors ran (starting a sandbox, judging)
                result = ScenarioResult(name=scenario.name, path=str(scenario.path), catalog_id=scenario.catalog_id,
                                        passed=False, failures=["interrupted (Ctrl-C)"], findings=[], seconds=0.0,
                                        status="interrupted")
            results.append(result)
            step.done()
            if result.status == "interrupted":  # the rest is not run; the report so far follows
                break
    code = exit_code(results)
    if junit is not None:
        write_junit(results, junit)
    if json:
        print_json(results_json(results, time.monotonic() - started, code))
    else:
        console.print(results_table(results))
        console.print(summary_line(results, time.monotonic() - started))
        if junit is not None:
            console.print(f"JUnit report: {junit}")
    return code


def exit_code(results: list[ScenarioResult]) -> int:
    if any(r.status == "interrupted" for r in results):
        return int(ExitCode.INTERRUPTED)
    if any(r.status == "error" for r in results):
        return int(ExitCode.USAGE)
    if any(r.status == "failed" for r in results):
        return int(ExitCode.FINDING)
    return int(ExitCode.HEALTHY)


def results_json(results: list[ScenarioResult], seconds: float, code: int) -> dict[str, object]:
    counts = {status: sum(r.status == status for r in results) for status in ("passed", "failed", "skipped",
                                                                                 "error", "interrupted")}
    return {"scenarios": [r.to_json() for r in results], **counts, "seconds": round(seconds, 3),
            "exit_code": code}


def _malformed(error: ScenarioError) -> ScenarioResult:
    return ScenarioResult(name=Path(error.path).stem, path=error.path, passed=False, failures=[str(error)],
                          findings=[], seconds=0.0, status="error")
