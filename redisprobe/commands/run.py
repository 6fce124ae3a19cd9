"""`redisprobe run PATH...`: run scenario files, each on its own sandbox, and report which expectations held.

Exit codes: 0 every scenario passed (or was skipped), 1 an expectation failed, 2 a file is malformed or a
scenario could not be run at all (no server, connection refused...).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape as markup_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from redisprobe.errors import ExitCode, ProbeError
from redisprobe.render.escape import shown, shown_key
from redisprobe.render.layout import Records
from redisprobe.scenario.loader import load
from redisprobe.scenario.model import Scenario, ScenarioError, ScenarioResult
from redisprobe.scenario.runner import run_scenario

_STYLE = {"passed": "bold green", "failed": "bold red", "skipped": "yellow", "error": "bold magenta",
          "interrupted": "bold yellow"}


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
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=True, disable=not err.is_terminal)
    with progress:
        task = progress.add_task("scenarios", total=len(scenarios))
        for scenario in scenarios:
            progress.update(task, description=f"running {markup_escape(shown_key(scenario.name))}")
            try:
                result = run_scenario(scenario, url=url, enable_events=enable_events, allow_writes=allow_writes)
            except KeyboardInterrupt:  # before or after its actors ran (starting a sandbox, judging)
                result = ScenarioResult(name=scenario.name, path=str(scenario.path), catalog_id=scenario.catalog_id,
                                        passed=False, failures=["interrupted (Ctrl-C)"], findings=[], seconds=0.0,
                                        status="interrupted")
            results.append(result)
            progress.advance(task)
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


def results_table(results: list[ScenarioResult]) -> Records:
    """One row per scenario; a list of records where a table would not fit (80 columns, CI logs)."""
    rows = []
    for result in results:
        why = "\n".join(map(shown, result.failures)) if result.failures else shown(_brief(result.skipped or ""))
        rows.append((shown_key(result.name), shown_key(result.catalog_id or "-"),
                     Text(result.status, style=_STYLE[result.status]), ", ".join(map(shown, result.rules)) or "-",
                     f"{result.seconds:.1f}s", why))
    return Records(("scenario", "catalog id", "result", "findings", "time", "why"), rows, title="Scenarios",
                   column_options={"time": {"justify": "right", "no_wrap": True}, "why": {"ratio": 1},
                                   "result": {"no_wrap": True}})


def _brief(reason: str) -> str:
    """A skip reason's first clause (the JSON and JUnit reports carry it whole)."""
    head, _, rest = reason.partition(": ")
    first = rest.split(":")[0].split(";")[0].strip() if rest else head
    return f"{head}: {first}" if rest else first


def summary_line(results: list[ScenarioResult], seconds: float) -> Text:
    parts = []
    for status in ("passed", "failed", "skipped", "error", "interrupted"):
        count = sum(r.status == status for r in results)
        if count:
            parts.append((f"{count} {status}", _STYLE[status]))
    text = Text()
    for index, (label, style) in enumerate(parts):
        if index:
            text.append(", ")
        text.append(label, style=style)
    text.append(f" in {seconds:.1f}s")
    return text


def _malformed(error: ScenarioError) -> ScenarioResult:
    return ScenarioResult(name=Path(error.path).stem, path=error.path, passed=False, failures=[str(error)],
                          findings=[], seconds=0.0, status="error")
