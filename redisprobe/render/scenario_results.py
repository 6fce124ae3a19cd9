"""`run`'s report: a progress bar while scenarios run, then one row per scenario and a coloured total."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape as markup_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from redisprobe.render.escape import shown, shown_key
from redisprobe.render.layout import Records
from redisprobe.scenario.model import ScenarioResult

_STYLE = {"passed": "bold green", "failed": "bold red", "skipped": "yellow", "error": "bold magenta",
          "interrupted": "bold yellow"}


class ProgressStep:
    """What the runner tells the bar: which scenario runs now, and that one is done."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def running(self, name: str) -> None:
        self._progress.update(self._task, description=f"running {markup_escape(shown_key(name))}")

    def done(self) -> None:
        self._progress.advance(self._task)


@contextmanager
def progress_bar(err: Console, total: int) -> Iterator[ProgressStep]:
    """A transient bar on a terminal's stderr; nothing at all when stderr is piped (CI logs stay clean)."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=True, disable=not err.is_terminal)
    with progress:
        yield ProgressStep(progress, progress.add_task("scenarios", total=total))


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
