"""What does reading Redis off the wire cost the server, next to MONITOR? And does its offline parse keep up?

Run by hand (not part of pytest), as root (the wire reader needs CAP_NET_RAW), from the repository root:

    .venv/bin/python benchmarks/wire_capture.py [--requests 300000] [--rounds 5] [--parse-requests 200000]

One sandbox server; `redis-benchmark -P 16 -t set -n N -q` against it with (a) nothing attached, (b) `redis-cli
monitor > /dev/null`, (c) the whole `redisprobe monitor --json --out FILE` command (MONITOR source), (d) the whole
`redisprobe monitor --source wire --json --out FILE` command (its reader process, and its own parse of the spool
while the capture runs), (e) the wire reader alone (`WireCapture` on `lo`, its spool parsed after the run), in the
same run, the order rotated round after round so that drift of a shared machine falls on all alike. For (d):
the CPU of the reader process and of the command, every SET found in the trace; for (e): the kernel's drops, the
spool's size per million commands and the time of its offline parse.

Then the parse rate, side by side: one load of `-t set,get -r 100000` captured at once by the wire reader and by
`redis-cli monitor > LOG`; then, alternately, a fresh process parsing the spool into trace events
(`--parse-spool`) and `redisprobe report LOG --json` (parsing, the fold, every rule) on the same commands.
Helpers (the load, the samplers, (b) and (c)) are those of `monitor_capture.py`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import monitor_capture as mc

from redisprobe.producers import procs
from redisprobe.producers.wire.sniffer import WireCapture
from redisprobe.producers.wire.source import LATE_AFTER
from redisprobe.targets.sandbox import sandbox

NONE = "(a) nothing"
COMMAND = "(d) monitor --source wire"
READER = "(e) wire reader alone"


def run_wire_command(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path) -> mc.Run:
    """(d) the whole command; `drain s` until its streamed trace holds every SET, or until that count has not
    grown for 2 s (a parse behind a busy machine keeps late events aside until the end), `live` the SETs in the
    trace then; Ctrl-C, and `end s` until it has exited (the rest of the backlog parsed, late events merged)."""
    run = mc.Run(COMMAND)
    out = spool_dir / "wire-trace.jsonl"
    command = procs.spawn([sys.executable, "-m", "redisprobe", "monitor", "--url", f"redis://{host}:{port}/0",
                           "--source", "wire", "--json", "--out", str(out), "--no-enable-events"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert command.stderr is not None
        while "capturing" not in (line := command.stderr.readline()):
            if not line:
                raise RuntimeError(f"monitor --source wire exited: {command.wait()}")
        time.sleep(0.5)  # as for the others: the same settling time before the load
        readers = [c for c in psutil.Process(command.pid).children(recursive=True)
                   if "redisprobe.producers.wire.reader" in " ".join(c.cmdline())]
        sampler = mc.Sampler(client, run, [command.pid] + [r.pid for r in readers])
        reader_cpu = mc.cpu_seconds(readers)
        sampler.start()
        run.rps = mc.benchmark(host, port, requests)
        ended = changed = time.monotonic()
        live = 0
        while live < requests and time.monotonic() - changed < 2.0:
            time.sleep(0.1)
            seen = mc.count_sets(out)
            if seen != live:
                live, changed = seen, time.monotonic()
        run.drain_s = (time.monotonic() if live >= requests else changed) - ended
        run.live = live  # type: ignore[attr-defined]
        run.cpu_reader = mc.cpu_seconds(readers) - reader_cpu  # type: ignore[attr-defined]
        sampler.finish()
        interrupted = time.monotonic()
        command.send_signal(signal.SIGINT)
        command.wait(300)
        run.end_s = time.monotonic() - interrupted
        run.sent, run.captured = requests, mc.count_sets(out)
        run.trace_bytes = 0
    finally:
        procs.stop(command)
        out.unlink(missing_ok=True)
    return run


def run_reader(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path) -> mc.Run:
    """(e) the reader alone: its spool kept whole and parsed after the run."""
    run = mc.Run(READER)
    wire = WireCapture(port, spool_dir, interface="lo")
    wire.start()
    try:
        time.sleep(0.5)
        assert wire.proc is not None
        sampler = mc.Sampler(client, run, [wire.proc.pid])
        sampler.start()
        run.rps = mc.benchmark(host, port, requests)
        time.sleep(0.5)  # the reader spools what its socket still holds
        sampler.finish()
        wire.stop()
        run.trace_bytes = sum(path.stat().st_size for path in wire.segments())
        started = time.perf_counter()
        result = wire.result()
        run.drain_s = time.perf_counter() - started  # here: the offline parse of the spool
        run.captured = sum(1 for ex in result.exchanges if ex.args[:1] == [b"SET"] and ex.replied is not None)
        run.sent = requests
        run.gaps = result.kernel_drops + result.skipped
    finally:
        wire.stop()
        wire.remove()
    return run


def compiled() -> str:
    import redisprobe.analysis.lifecycle.engine as engine

    return "analysis compiled (mypyc)" if (engine.__file__ or "").endswith(".so") else "pure Python"


def parse_spool_main(spool: str, port: int) -> int:
    """`--parse-spool`: what a streaming capture does with a spool, in a process of its own: packets to trace
    events (each encoded, as the trace writer does). Prints the commands and the seconds."""
    from redisprobe import trace
    from redisprobe.producers.wire.events import exchange_events
    from redisprobe.producers.wire.offline import parse_spool

    started = time.perf_counter()
    result = parse_spool(Path(spool), port)
    size = 0
    for start in range(0, len(result.exchanges), 8192):
        events = exchange_events(result.exchanges[start:start + 8192])
        size += len(b"".join(trace.encode(e) for e in events))
    print(len(result.exchanges), time.perf_counter() - started, size)
    return 0


def parse_vs_report(host: str, port: int, requests: int, rounds: int, spool_dir: Path, pipeline: int) -> list[str]:
    """One load captured by the wire reader and by `redis-cli monitor` at once; then the spool's parse and
    `report` on the MONITOR log, alternately, each a fresh process."""
    log = spool_dir / "monitor.log"
    wire = WireCapture(port, spool_dir, interface="lo", keep_spool=True)
    wire.start()
    try:
        with log.open("wb") as out:
            cli = procs.spawn(["redis-cli", "-h", host, "-p", str(port), "monitor"], stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-P", str(pipeline), "-c", "20", "-t",
                            "set,get", "-r", "100000", "-n", str(requests), "-q"], capture_output=True, check=True,
                           timeout=600)
            time.sleep(0.5)
            procs.stop(cli)
        wire.stop()
        commands = sum(1 for line in log.open("rb") if line.startswith(b"1") or line.startswith(b"+1"))
        spool_bytes = sum(path.stat().st_size for path in wire.segments())
        lines = [f"\nparse rate: one load of {requests:,} SET + {requests:,} GET (-P {pipeline} -c 20), {commands:,} "
                 f"MONITOR lines, spool {spool_bytes / 2**20:.1f} MiB",
                 f"{'round':>5} {'wire parse s':>13} {'commands/s':>11} {'report s':>9} {'lines/s':>10} {'ratio':>6}"]
        ratios = []
        for index in range(rounds):
            order = [("wire", [sys.executable, __file__, "--parse-spool", str(wire.spool), "--port", str(port)]),
                     ("report", [sys.executable, "-m", "redisprobe", "report", str(log), "--json"])]
            if index % 2:
                order.reverse()
            took: dict[str, float] = {}
            parsed = 0
            for name, argv in order:
                started = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
                took[name] = time.perf_counter() - started
                if name == "wire":
                    parsed = int(done.stdout.split()[0])
                elif done.returncode not in (0, 1):
                    raise RuntimeError(f"report failed: {done.stderr[-500:]}")
            ratios.append(took["report"] / took["wire"])
            lines.append(f"{index + 1:>5} {took['wire']:>13.2f} {parsed / took['wire']:>11,.0f} "
                         f"{took['report']:>9.2f} {commands / took['report']:>10,.0f} {ratios[-1]:>6.2f}")
        lines.append(f"median ratio (report time / wire parse time): {statistics.median(ratios):.2f}; the wire "
                     f"parse gave {parsed:,} commands with their replies")
        return lines
    finally:
        wire.stop()
        wire.keep_spool = False
        wire.remove()
        log.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a)-(e), the order rotated")
    parser.add_argument("--parse-requests", type=int, default=200_000, help="SETs (and as many GETs) for the "
                        "parse rate (0: skip it)")
    parser.add_argument("--parse-rounds", type=int, default=3)
    parser.add_argument("--parse-pipelines", default="16,1", help="-P of the parse-rate loads")
    parser.add_argument("--parse-spool", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_spool:
        return parse_spool_main(args.parse_spool, args.port)
    if os.geteuid() != 0:
        print("the wire reader needs root or CAP_NET_RAW: run this as root", file=sys.stderr)
        return 2
    runs: list[mc.Run] = []
    parse_lines: list[str] = []
    spool_dir = Path(tempfile.mkdtemp(prefix="redisprobe-wire-bench-"))
    try:
        with sandbox("single") as box:
            server = box.servers[0]
            assert server.proc is not None
            mc.SERVER_PID = server.proc.pid
            host, port = server.host, server.port
            client = redis.Redis(host=host, port=port)
            modes = [
                lambda: mc.run_none(host, port, client, args.requests),
                lambda: mc.run_redis_cli(host, port, client, args.requests),
                lambda: mc.run_command(host, port, client, args.requests, spool_dir),
                lambda: run_wire_command(host, port, client, args.requests, spool_dir),
                lambda: run_reader(host, port, client, args.requests, spool_dir),
            ]
            for index in range(args.rounds):
                shift = index % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    runs.append(mode())
                print(f"round {index + 1} done", file=sys.stderr, flush=True)
            for pipeline in (int(p) for p in args.parse_pipelines.split(",")) if args.parse_requests else ():
                client.flushall()
                requests = args.parse_requests if pipeline > 1 else args.parse_requests // 4
                parse_lines += parse_vs_report(host, port, requests, args.parse_rounds, spool_dir, pipeline)
            client.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)

    for run in runs:
        if run.mode == "none":
            run.mode = NONE
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {mc.redis_version()}, {compiled()}; load average {os.getloadavg()[0]:.1f} at the end")
    lost = table(runs, args) if runs else False
    for line in parse_lines:
        print(line)
    return 0 if not lost else 1


def table(runs: list[mc.Run], args: argparse.Namespace) -> bool:
    """The throughput table; whether any SET was lost."""
    print(f"redis-benchmark -P 16 -t set -n {args.requests} -q; {args.rounds} rounds, order rotated")
    header = (f"{'mode':27} {'SET/s median':>12} {'x (a)':>6} {'range':>19} {'captured/sent':>16} {'lost':>5} "
              f"{'CPU s capture':>13} {'CPU s reader':>12} {'CPU s server':>12} {'MiB per 1M':>10} {'drain s':>7} "
              f"{'parse s':>7}")
    print(header)
    print("-" * len(header))
    order = [NONE, mc.CLI, mc.COMMAND, COMMAND, READER]
    labels = {NONE: NONE, mc.CLI: "(b) redis-cli monitor", mc.COMMAND: "(c) redisprobe monitor", COMMAND: COMMAND,
              READER: READER}
    baseline = statistics.median(r.rps for r in runs if r.mode == NONE)
    lost = False
    for mode in order:
        mine = [r for r in runs if r.mode == mode]
        rps = statistics.median(r.rps for r in mine)
        captured = "-"
        if mine[0].captured is not None:
            got = sum(r.captured or 0 for r in mine)
            sent = sum(r.sent for r in mine)
            captured = f"{got}/{sent}"
            lost = lost or got != sent
        per_million = statistics.median(r.trace_bytes / r.sent * 1e6 / 2**20 for r in mine) \
            if mode in (READER, mc.COMMAND) else None
        gaps = sum(r.gaps or 0 for r in mine) if mode == READER else None
        reader_cpu = statistics.median(getattr(r, "cpu_reader", 0.0) for r in mine) if mode == COMMAND else None
        drain = statistics.median(r.drain_s or 0 for r in mine) if mode == COMMAND else None
        if mode == COMMAND:
            live = sum(getattr(r, "live", 0) for r in mine) / sum(r.sent for r in mine)
            ends = statistics.median(r.end_s or 0 for r in mine)
        parse = statistics.median(r.drain_s or 0 for r in mine) if mode == READER else None
        print(f"{labels[mode]:27} {rps:12,.0f} {rps / baseline:6.2f} "
              f"{min(r.rps for r in mine):9,.0f}-{max(r.rps for r in mine):<9,.0f} {captured:>16} "
              f"{'-' if gaps is None else gaps:>5} {statistics.median(r.cpu.get('monitor', 0) for r in mine):13.2f} "
              f"{'-' if reader_cpu is None else f'{reader_cpu:.2f}':>12} "
              f"{statistics.median(r.cpu.get('server', 0) for r in mine):12.2f} "
              f"{'-' if per_million is None else f'{per_million:.1f}':>10} "
              f"{'-' if drain is None else f'{drain:.2f}':>7} {'-' if parse is None else f'{parse:.2f}':>7}")
    print("CPU s capture: the monitoring side during load and drain (redis-cli; the command and its reader child; "
          "the reader alone). (c)'s MiB per 1M is its trace file; (e)'s the spool. (d)'s drain s: from the end of "
          "the load until its streamed trace held every SET, or stopped growing for 2 s. (e)'s parse s: the "
          "offline parse of one run's spool. lost: kernel drops and packets over the spool budget.")
    print(f"(d): {live:.1%} of the SETs were in the trace while capturing (the rest, parsed more than "
          f"{LATE_AFTER:.0f} s late, merged at the end); Ctrl-C to exit {ends:.2f} s (median)")
    print("nothing lost" if not lost else "LOST COMMANDS")
    return lost


if __name__ == "__main__":
    sys.exit(main())
