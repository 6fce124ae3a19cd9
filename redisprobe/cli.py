"""The thin Typer layer: parse options, build targets, run producers, hand the trace to consumers.

`main()` is the one place that maps exceptions to exit codes (0 healthy, 1 a finding, 2 usage or
connection error, 130 interrupted) and keeps tracebacks away from users unless `--traceback` is given.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from redisprobe import __version__
from redisprobe.commands.ttlrace import POLICIES, REFRESH, bug_ids
from redisprobe.errors import ExitCode, ProbeError
from redisprobe.outputs import check_output
from redisprobe.producers.procs import sigterm_as_interrupt
from redisprobe.render.console import print_json, save_svg, stderr_console, stdout_console
from redisprobe.render.escape import shown
from redisprobe.targets.sandbox import SANDBOX_TOPOLOGIES, TOPOLOGIES
from redisprobe.targets.url import given_url, redact, set_connect_timeout

if TYPE_CHECKING:
    from redisprobe import trace

app = typer.Typer(
    name="redisprobe",
    help="Find out why one process can't see another's Redis keys, and who deleted or expired them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

UrlOpt = Annotated[str | None, typer.Option("--url", metavar="URL",
                                            help="Server URL for every role (default: $REDIS_URL, "
                                            "else a disposable sandbox).", show_default=False)]
ApiUrlOpt = Annotated[str | None, typer.Option("--api-url", metavar="URL", help="Server URL the api role uses.")]
ProcUrlOpt = Annotated[str | None, typer.Option("--processor-url", metavar="URL",
                                                help="Server URL the processor role uses.")]


def _complete(values: Any) -> Callable[[str], list[str]]:
    """Shell completion for an option with a fixed set of values."""
    return lambda incomplete: [value for value in values if value.startswith(incomplete)]


TopologyOpt = Annotated[str, typer.Option("--topology", metavar="|".join(TOPOLOGIES), help="Sandbox topology.",
                                          autocompletion=_complete(TOPOLOGIES))]
ActorTopologyOpt = Annotated[str, typer.Option(
    "--topology", metavar="|".join(SANDBOX_TOPOLOGIES), autocompletion=_complete(SANDBOX_TOPOLOGIES),
    help="Sandbox topology (cluster: three primaries, the actors cluster clients). With --url, cluster says your "
         "server is a Redis Cluster node: the actors reach every primary through its slot map.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of the report.")]
OutOpt = Annotated[Path | None, typer.Option("--out", metavar="FILE",
                                             help="Write the trace (JSON lines) to this file.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--connect-timeout", min=0.1, metavar="SECONDS", show_default=False,
    help="How long to wait for a server, to connect and for each reply; never retried (default 3, or "
         "$REDISPROBE_CONNECT_TIMEOUT).")]


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
                _remove_leftovers()
                return func(*args, **kwargs)
        except typer.Exit:
            raise
        except ProbeError as exc:
            _traceback()
            err.print(f"redisprobe: error: {shown(redact(str(exc)))}", markup=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err.print("redisprobe: interrupted", markup=False)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            _traceback()
            err.print(f"redisprobe: internal error: {shown(redact(f'{type(exc).__name__}: {exc}'))}"
                      + ("" if _DEBUG["traceback"] else " (run again with --traceback for details)"), markup=False)
            raise typer.Exit(int(ExitCode.USAGE)) from None

    return wrapper  # type: ignore[return-value]


def _traceback() -> None:
    """With --traceback, the Python traceback of the exception being handled, passwords hidden; the exit code
    stays the one the error maps to."""
    if _DEBUG["traceback"]:
        import traceback

        sys.stderr.write(redact(traceback.format_exc()))


def _remove_leftovers() -> None:
    """What runs killed with -9 left in the temp folder (traces, spools, sandbox folders) goes, and is said."""
    from redisprobe.leftovers import sweep

    removed = sweep()
    if removed:
        stderr_console().print(f"redisprobe: removed {len(removed)} temp file(s) left by redisprobe runs that no "
                               f"longer exist: {', '.join(shown(name) for name in removed[:3])}"
                               + (", ..." if len(removed) > 3 else ""), markup=False)


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


def _say_gave_up(notes: list[trace.Note]) -> None:
    """What a run gave up on (a hung server's drain, CONFIG restore, key clean-up), on stderr, one line each."""
    for note in notes:
        if note.text.startswith("gave up "):
            stderr_console().print(f"redisprobe: {shown(note.text)}", markup=False)


def _interrupted(interrupted: bool) -> None:
    """After Ctrl-C, the report printed is what was seen until then: say so and exit 130."""
    if interrupted:
        stderr_console().print("redisprobe: interrupted: the report above is what was seen until then",
                               markup=False)
        raise typer.Exit(ExitCode.INTERRUPTED)


def _exit_for(findings: int) -> None:
    raise typer.Exit(ExitCode.FINDING if findings else ExitCode.HEALTHY)


PIDS_HELP = ("PID, pm2:APP (every instance), cmd:REGEX (full command line), systemd:UNIT or container:NAME|ID, "
             "each optionally LABEL=...; comma-separated, repeatable. Processes that start later and match join.")
Pm2Opt = Annotated[bool, typer.Option("--pm2", help="Watch every app of every PM2 running here (pm2 jlist, or "
                                                    "PM2's own files under $PM2_HOME or ~/.pm2).")]

@app.command()
@handled
def isolation(
    url: UrlOpt = None,
    api_url: ApiUrlOpt = None,
    processor_url: ProcUrlOpt = None,
    topology: ActorTopologyOpt = "single",
    ttl: Annotated[int, typer.Option(min=1, metavar="SECONDS", help="TTL of the marker keys.")] = 60,
    timeout: Annotated[float, typer.Option(min=0.1, metavar="SECONDS",
                                           help="How long each side waits to see the other.")] = 5.0,
    api_prefix: Annotated[str, typer.Option(metavar="PREFIX", help="Client-side key prefix the api adds (after "
                                            "`redisprobe:`).")] = "",
    processor_prefix: Annotated[str, typer.Option(metavar="PREFIX",
                                                  help="Client-side key prefix the processor adds.")] = "",
    connect_timeout: TimeoutOpt = None,
    json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Can the processor see what the api wrote? If not, say why (different server, db, prefix, replica)."""
    set_connect_timeout(connect_timeout)
    check_output(out, "--out", regular=True)
    from redisprobe.commands.isolation import IsolationOptions, run_isolation
    from redisprobe.render.isolation_report import isolation_json, print_isolation
    from redisprobe.targets.resolve import open_targets

    options = IsolationOptions(ttl=ttl, timeout=timeout, api_prefix=api_prefix, processor_prefix=processor_prefix)
    with open_targets(url, api_url, processor_url, topology) as targets:
        report, execution = run_isolation(targets, options, out)
    trace_path = str(out) if out else None
    if json:
        print_json(isolation_json(report, trace_path))
    else:
        print_isolation(stdout_console(), report, trace_path)
    _say_gave_up(execution.notes)
    _interrupted(execution.interrupted)
    if report.crashed:
        stderr_console().print(f"redisprobe: an actor crashed: {shown(report.crashed[0].detail)}", markup=False)
        raise typer.Exit(ExitCode.USAGE)
    _exit_for(len(report.findings) or report.verdict != "visible")


@app.command()
@handled
def info(
    url: UrlOpt = None,
    api_url: ApiUrlOpt = None,
    processor_url: ProcUrlOpt = None,
    topology: TopologyOpt = "single",
    pids: Annotated[list[str] | None, typer.Option("--pids", metavar="PID|SELECTOR",
                                                   help="Live processes to inspect: " + PIDS_HELP)] = None,
    pm2: Pm2Opt = False,
    connect_timeout: TimeoutOpt = None,
    json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """What each actor (or each live process) sees of its server, side by side, differences highlighted."""
    set_connect_timeout(connect_timeout)
    check_output(out, "--out", regular=True)
    if pids or pm2:
        from redisprobe.commands.livepids import run_live_info

        findings = run_live_info(pids or [], given_url(url), json=json, pm2=pm2)
        _exit_for(findings)
        return
    from redisprobe.commands.info import run_info
    from redisprobe.render.info_table import info_json, print_info
    from redisprobe.targets.resolve import open_targets

    with open_targets(url, api_url, processor_url, topology) as targets:
        report = run_info(targets, out)
    if json:
        print_json(info_json(report))
    else:
        print_info(stdout_console(), report, str(out) if out else None)
    if report.crashed:
        raise typer.Exit(ExitCode.USAGE)
    _exit_for(len(report.findings))


EventsOpt = Annotated[bool | None, typer.Option(
    "--enable-events/--no-enable-events",
    help="May redisprobe turn on notify-keyspace-events (restored afterwards)? Default: yes on the sandbox; on "
         "--url, only if you say so.", show_default=False)]
SvgOpt = Annotated[Path | None, typer.Option("--svg", metavar="FILE",
                                             help="Save the timeline and summary as an SVG image.")]


@app.command()
@handled
def monitor(
    url: Annotated[list[str] | None, typer.Option("--url", metavar="URL",
                                                  help="Server to watch (repeatable: watch several "
                                                  "servers at once); default $REDIS_URL, else a sandbox.")] = None,
    pids: Annotated[list[str] | None, typer.Option("--pids", metavar="PID|SELECTOR",
                                                   help="Processes to watch: " + PIDS_HELP)] = None,
    pm2: Pm2Opt = False,
    keys: Annotated[list[str] | None, typer.Option("--keys", metavar="GLOB",
                                                   help="Only keys matching this glob (repeatable).")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, metavar="SECONDS", help="Stop after this many seconds "
                                                   "(default: until Ctrl-C).")] = None,
    enable_events: EventsOpt = None,
    redact_values: Annotated[bool, typer.Option("--redact-values", help="Keep key names, sizes and hashes of "
                                                "values, never values.")] = False,
    connect_timeout: TimeoutOpt = None,
    json: JsonOpt = False,
    out: OutOpt = None,
    svg: SvgOpt = None,
    source: Annotated[str, typer.Option("--source", metavar="monitor|wire|both",
                                        help="Where commands come from: MONITOR; the network (replies and refused "
                                        "commands too, at a fraction of MONITOR's cost; needs root or "
                                        "CAP_NET_RAW; read when the capture ends); or both.")] = "monitor",
) -> None:
    """Watch a server: who (pid, connection) ran what on which key, and each key's life at the end."""
    set_connect_timeout(connect_timeout)
    check_output(out, "--out", regular=True)
    check_output(svg, "--svg")
    from redisprobe.commands.monitor import MonitorOptions, capture_from, summarise_capture
    from redisprobe.producers.processes.pidmap import parse_pid_spec
    from redisprobe.render.summary import print_summary
    from redisprobe.render.timeline import LiveTimeline
    from redisprobe.targets.resolve import check_user_target, open_targets
    from redisprobe.targets.url import parse_target

    spec = parse_pid_spec(pids or [], pm2_all=pm2)
    err = stderr_console()
    for warning in spec.warnings:
        err.print(f"redisprobe: warning: {shown(warning)}", markup=False)
    console = stdout_console(record=svg is not None)
    urls = [str(given_url(u)) for u in url or []]
    with open_targets(urls[0] if urls else None, roles=("api",)) as targets:
        watched_targets = [targets.by_role["api"], *[parse_target(u) for u in urls[1:]]]
        for extra in watched_targets[1:]:
            check_user_target(extra)
        from redisprobe.targets.topology import expand_cluster

        watched_targets, cluster_notes, cluster_watchers = expand_cluster(watched_targets)
        _check_source(source, watched_targets, redact_values)
        where = ", ".join(t.label for t in watched_targets)
        events = enable_events if enable_events is not None else (True if targets.owned else None)
        live = None if json else LiveTimeline(console, key_patterns=keys or (), watched=spec.labels)

        def ready() -> None:
            err.print(f"redisprobe: capturing {where}" + (f" for {duration:g}s" if duration else
                                                                 " (Ctrl-C to stop)"), markup=False)
            if live is not None:
                live.header()

        for note in cluster_notes:
            err.print(f"redisprobe: {shown(note)}", markup=False)
        options = MonitorOptions(duration=duration, key_patterns=tuple(keys or ()), enable_events=events,
                                 redact_values=redact_values, notes=tuple(cluster_notes),
                                 topology=tuple(cluster_watchers), source=source)
        outcome = capture_from(watched_targets, spec, options, out, live, on_ready=ready,
                               say=lambda line: err.print(f"redisprobe: {shown(line)}", markup=False))
    # Each warning once: what the end of the capture gave up on, on stderr; the rest was in the live timeline
    # (or, with --json, here).
    for line in [*([] if live else outcome.lost), *outcome.gave_up]:
        err.print(f"redisprobe: warning: {shown(line)}", markup=False)
    summary, cut = summarise_capture(outcome, spec, tuple(keys or ()),
                                     lambda line: err.print(f"redisprobe: {line}", markup=False))
    trace_path = None if outcome.temporary else str(outcome.trace_path)
    if json:
        print_json({**summary.to_json(), "trace": trace_path, "interrupted": outcome.interrupted or cut,
                    "complete": not cut})
    else:
        print_summary(console, summary, trace_path=trace_path,
                      already_said={*(live.said if live else ()), *outcome.gave_up})
    if cut:
        err.print("redisprobe: interrupted while analysing: the clients, gaps and counts above are what was ready; "
                  "key lives and findings were not computed" + ("" if trace_path else
                                                                " (the capture was not kept: --out FILE keeps it)"),
                  markup=False)
    if svg is not None:
        save_svg(console, str(svg), title="redisprobe monitor")
    if outcome.interrupted or cut:
        raise typer.Exit(ExitCode.INTERRUPTED)
    _exit_for(len(summary.findings))


def _check_source(source: str, targets: list[Any], redact_values: bool) -> None:
    from redisprobe.producers.wire.source import check_source

    check_source(source, targets, redact_values=redact_values)


@app.command("ttl-race")
@handled
def ttl_race(
    url: UrlOpt = None,
    topology: Annotated[str, typer.Option(
        "--topology", metavar="single|cluster", autocompletion=_complete(("single", "cluster")),
        help="Sandbox topology (cluster: three primaries, every actor a cluster client). With --url, cluster says "
             "your server is a Redis Cluster node: the actors reach every primary through its slot map.")] = "single",
    ttl: Annotated[float, typer.Option(min=0.1, metavar="SECONDS",
                                       help="TTL set on each batch and refreshed per message.")] = 1.0,
    messages: Annotated[int, typer.Option(min=1, metavar="N", help="Messages per batch.")] = 8,
    spacing: Annotated[float, typer.Option(min=0.01, metavar="SECONDS", help="Time between messages.")] = 0.25,
    batches: Annotated[int, typer.Option(min=1, metavar="N", help="Batches written in parallel.")] = 2,
    refresh: Annotated[str, typer.Option(metavar="|".join(REFRESH), help="How the TTL is refreshed.",
                                         autocompletion=_complete(REFRESH))] = "expire",
    processors: Annotated[int, typer.Option(min=1, metavar="N", help="Processor instances.")] = 1,
    policy: Annotated[str, typer.Option(metavar="|".join(POLICIES), help="When the processor takes a batch.",
                                        autocompletion=_complete(POLICIES))] = "quiet",
    quiet: Annotated[float, typer.Option(min=0.0, metavar="SECONDS", help="A batch is ready when quiet this long.")
                     ] = 0.5,
    duration: Annotated[float | None, typer.Option(min=0.5, metavar="SECONDS",
                                                   help="Run this long; default: until every "
                                                   "batch is done.")] = None,
    bug: Annotated[str | None, typer.Option("--bug", metavar="ID", autocompletion=_complete(bug_ids()),
                                            help=f"Inject one root cause: {', '.join(bug_ids())}.")] = None,
    allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Allow --bug on your --url server "
                                               "(under redisprobe: only).")] = False,
    enable_events: EventsOpt = None,
    connect_timeout: TimeoutOpt = None,
    json: JsonOpt = False,
    out: OutOpt = None,
    svg: SvgOpt = None,
) -> None:
    """Reproduce the batching race: batches vanishing before their TTL, measured and explained."""
    set_connect_timeout(connect_timeout)
    check_output(out, "--out", regular=True)
    check_output(svg, "--svg")
    from redisprobe.commands.ttlrace import RaceOptions, build_plan, check_allowed, server_args
    from redisprobe.producers.plan import execute
    from redisprobe.render.race import print_race, race_json
    from redisprobe.targets.resolve import open_targets

    options = RaceOptions(ttl=ttl, messages=messages, spacing=spacing, batches=batches, refresh=refresh,
                          processors=processors, policy=policy, quiet=quiet, duration=duration, bug=bug)
    options.validate()
    if topology not in ("single", "cluster"):
        raise ProbeError(f"unknown --topology {topology!r}: ttl-race runs on single or cluster")
    options.check_topology(topology)
    with open_targets(url, topology=topology, server_args=server_args(options)) as targets:
        check_allowed(options, targets.owned, allow_writes)
        plan = build_plan(targets, options)
        events = enable_events if enable_events is not None else (True if targets.owned else None)
        result = execute(plan, targets, out, enable_events=events)
    console = stdout_console(record=svg is not None)
    if json:
        print_json(race_json(result, options))
    else:
        print_race(console, result, options)
    if svg is not None:
        save_svg(console, str(svg), title="redisprobe ttl-race")
    _say_gave_up(result.notes)
    _interrupted(result.interrupted)
    if result.crashed:
        stderr_console().print(f"redisprobe: an actor crashed: {shown(result.crashed[0].detail)}", markup=False)
        raise typer.Exit(ExitCode.USAGE)
    _exit_for(len(result.findings))


@app.command()
@handled
def run(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Scenario files or folders.")],
    url: UrlOpt = None,
    junit: Annotated[Path | None, typer.Option("--junit", metavar="FILE",
                                               help="Write JUnit XML for CI systems.")] = None,
    enable_events: EventsOpt = None,
    connect_timeout: TimeoutOpt = None,
    json: JsonOpt = False,
    allow_writes: Annotated[bool, typer.Option("--allow-writes", help="Let scenarios that set allow_scripts = true "
                                               "run their scripts on your --url server (keys under redisprobe: "
                                               "only).")] = False,
) -> None:
    """Run scenario files (regression tests for Redis usage); exit 1 on any failed expectation."""
    set_connect_timeout(connect_timeout)
    check_output(junit, "--junit", make_folders=True)
    from redisprobe.commands.run import run_scenarios

    given_url(url)
    events = enable_events if enable_events is not None else (True if url is None else None)
    raise typer.Exit(run_scenarios(list(paths), junit=junit, json=json, url=url, enable_events=events,
                                   allow_writes=allow_writes))


@app.command()
@handled
def catalog(json: JsonOpt = False,
            markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/catalog.md (Markdown).")] = False,
            ) -> None:
    """The root causes redisprobe knows, one line each, with the scenario that reproduces each."""
    from redisprobe.commands.catalog import print_catalog

    print_catalog(json=json, markdown=markdown)


@app.command()
@handled
def sandbox(
    topology: Annotated[str, typer.Option("--topology", metavar="|".join(SANDBOX_TOPOLOGIES),
                                          help="Sandbox topology (cluster: three primaries).",
                                          autocompletion=_complete(SANDBOX_TOPOLOGIES))] = "single",
    replicas: Annotated[int, typer.Option(min=0, max=2, metavar="N",
                                          help="With --topology cluster: replicas per primary.")] = 0,
) -> None:
    """Start a disposable sandbox for your own experiments; prints its URLs and stops it on Ctrl-C."""
    import time

    from redisprobe.targets.sandbox import sandbox as start_sandbox

    if replicas and topology != "cluster":
        raise ProbeError("--replicas goes with --topology cluster")
    started = time.monotonic()
    with start_sandbox(topology, replicas=replicas) as box:
        console = stdout_console()
        if topology == "cluster":
            from redisprobe.targets.topology import discover

            client = box.target("api").connect()
            try:
                nodes = discover(client)
            finally:
                client.close()
            address = {node.node_id: node.address for node in nodes}
            for node in nodes:
                slots = ", ".join(f"{first}-{last}" for first, last in node.slots)
                console.print(f"{node.role}: redis://{node.address}/0 " + (
                    f"slots {slots}" if node.role == "primary" else f"replica of {address.get(node.primary_id or '')}"))
        else:
            for role, role_url in box.role_urls.items():
                console.print(f"{role}: {role_url}")
        console.print(f"sandbox ({topology}) running, started in {time.monotonic() - started:.1f}s; "
                      "Ctrl-C to stop")
        sys.stdout.flush()
        while True:
            time.sleep(3600)


@app.command()
@handled
def report(
    file: Annotated[Path, typer.Argument(metavar="FILE",
                                         help="A trace written with --out (or a redis-cli monitor log).")],
    keys: Annotated[list[str] | None, typer.Option("--keys", metavar="GLOB",
                                                   help="Only keys matching this glob (repeatable).")] = None,
    json: JsonOpt = False,
) -> None:
    """Re-render a saved trace, or analyse a `redis-cli monitor` log, offline."""
    from redisprobe.commands.report import run_report

    _exit_for(run_report(file, json=json, key_patterns=tuple(keys or ())))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    try:
        app(args=argv, prog_name="redisprobe", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def console_main() -> None:
    """The `redisprobe` program: main(), then exit without tearing down the heap object by object.

    After a big `report` the heap holds millions of objects; freeing them one by one at interpreter exit takes
    seconds and serves nobody. Every command has released what it holds (children, servers, CONFIG, files)
    before main() returns; output is flushed here. With a non-daemon thread still running, exit normally.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if threading.active_count() == 1:
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    console_main()
