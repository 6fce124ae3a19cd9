"""The thin Typer layer: parse options, build targets, run producers, hand the trace to consumers.

`main()` is the one place that maps exceptions to exit codes (0 healthy, 1 a finding, 2 usage or
connection error, 130 interrupted) and keeps tracebacks away from users unless `--traceback` is given.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from redisprobe import __version__
from redisprobe.errors import ExitCode, ProbeError
from redisprobe.procs import sigterm_as_interrupt
from redisprobe.render.console import print_json, stderr_console, stdout_console
from redisprobe.sandbox import TOPOLOGIES
from redisprobe.target import redact

app = typer.Typer(
    name="redisprobe",
    help="Find out why one process can't see another's Redis keys, and who deleted or expired them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

UrlOpt = Annotated[str | None, typer.Option("--url", help="Server URL for every role (default: $REDIS_URL, "
                                            "else a disposable sandbox).", show_default=False)]
ApiUrlOpt = Annotated[str | None, typer.Option("--api-url", help="Server URL the api role uses.")]
ProcUrlOpt = Annotated[str | None, typer.Option("--processor-url", help="Server URL the processor role uses.")]
TopologyOpt = Annotated[str, typer.Option("--topology", help=f"Sandbox topology: {', '.join(TOPOLOGIES)}.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of the report.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Write the trace (JSON lines) to this file.")]


_DEBUG = {"traceback": bool(os.environ.get("REDISPROBE_TRACEBACK"))}
F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """The one place that maps exceptions to exit codes: a user error is one line on stderr and exit 2,
    Ctrl-C is exit 130, and tracebacks appear only with --traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        err = stderr_console()
        try:
            with sigterm_as_interrupt():
                return func(*args, **kwargs)
        except typer.Exit:
            raise
        except ProbeError as exc:
            if _DEBUG["traceback"]:
                raise
            err.print(f"redisprobe: error: {redact(str(exc))}", markup=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err.print("redisprobe: interrupted", markup=False)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            if _DEBUG["traceback"]:
                raise
            err.print(f"redisprobe: internal error: {redact(f'{type(exc).__name__}: {exc}')} "
                      "(run again with --traceback for details)", markup=False)
            raise typer.Exit(int(ExitCode.USAGE)) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"redisprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show Python tracebacks (debugging).")] = False,
) -> None:
    """Find out why one process can't see another's Redis keys, and who deleted or expired them."""
    _DEBUG["traceback"] = _DEBUG["traceback"] or traceback


def _exit_for(findings: int) -> None:
    raise typer.Exit(ExitCode.FINDING if findings else ExitCode.HEALTHY)


@app.command()
@handled
def isolation(
    url: UrlOpt = None,
    api_url: ApiUrlOpt = None,
    processor_url: ProcUrlOpt = None,
    topology: TopologyOpt = "single",
    ttl: Annotated[int, typer.Option(min=1, help="TTL (s) of the marker keys.")] = 60,
    timeout: Annotated[float, typer.Option(min=0.1, help="How long each side waits to see the other (s).")] = 5.0,
    api_prefix: Annotated[str, typer.Option(help="Client-side key prefix the api adds (after `redisprobe:`).")] = "",
    processor_prefix: Annotated[str, typer.Option(help="Client-side key prefix the processor adds.")] = "",
    json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Can the processor see what the api wrote? If not, say why (different server, db, prefix, replica)."""
    from redisprobe.commands.isolation import IsolationOptions, run_isolation
    from redisprobe.render.isolation import isolation_json, print_isolation
    from redisprobe.session import open_targets

    options = IsolationOptions(ttl=ttl, timeout=timeout, api_prefix=api_prefix, processor_prefix=processor_prefix)
    with open_targets(url, api_url, processor_url, topology) as targets:
        report, _writer = run_isolation(targets, options, out)
    trace_path = str(out) if out else None
    if json:
        print_json(isolation_json(report, trace_path))
    else:
        print_isolation(stdout_console(), report, trace_path)
    if report.crashed:
        stderr_console().print(f"redisprobe: an actor crashed: {report.crashed[0].detail}", markup=False)
        raise typer.Exit(ExitCode.USAGE)
    _exit_for(len(report.findings) or report.verdict != "visible")


@app.command()
@handled
def info(
    url: UrlOpt = None,
    api_url: ApiUrlOpt = None,
    processor_url: ProcUrlOpt = None,
    topology: TopologyOpt = "single",
    pids: Annotated[list[str] | None, typer.Option("--pids", help="Live processes to inspect: PID or LABEL=PID, "
                                                   "comma-separated, repeatable.")] = None,
    json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """What each actor (or each live process) sees of its server, side by side, differences highlighted."""
    if pids:
        from redisprobe.commands.livepids import run_live_info

        findings = run_live_info(pids, url, json=json)
        _exit_for(findings)
        return
    from redisprobe.commands.info import run_info
    from redisprobe.render.info import info_json, print_info
    from redisprobe.session import open_targets

    with open_targets(url, api_url, processor_url, topology) as targets:
        report = run_info(targets, out)
    if json:
        print_json(info_json(report))
    else:
        print_info(stdout_console(), report, str(out) if out else None)
    if report.crashed:
        raise typer.Exit(ExitCode.USAGE)
    _exit_for(len(report.findings))


@app.command()
@handled
def sandbox(topology: TopologyOpt = "single") -> None:
    """Start a disposable sandbox for your own experiments; prints its URLs and stops it on Ctrl-C."""
    import time

    from redisprobe.sandbox import sandbox as start_sandbox

    with start_sandbox(topology) as box:
        console = stdout_console()
        for role, role_url in box.role_urls.items():
            console.print(f"{role}: {role_url}")
        console.print(f"sandbox ({topology}) running; Ctrl-C to stop")
        sys.stdout.flush()
        while True:
            time.sleep(3600)


@app.command()
@handled
def report(
    file: Annotated[Path, typer.Argument(help="A trace written with --out (or a redis-cli monitor log).")],
    json: JsonOpt = False,
) -> None:
    """Re-render a saved trace, offline."""
    from redisprobe.commands.report import run_report

    _exit_for(run_report(file, json=json))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    try:
        app(args=argv, prog_name="redisprobe", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
