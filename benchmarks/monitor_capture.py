"""Does `redisprobe monitor` keep up with a loaded server as well as `redis-cli monitor` does?

Run by hand (not part of pytest), from the repository root:

    .venv/bin/python benchmarks/monitor_capture.py [--requests 300000] [--rounds 10] [--library] [--before REV]

One sandbox server; `redis-benchmark -P 16 -t set -n N -q` against it with
(a) `redis-cli monitor > /dev/null` attached, and (b) the whole `redisprobe monitor --json --out FILE` command
attached (its MONITOR reader child, the trace file, the CLIENT LIST poller and pid mapper, keyspace observer),
in ABBA order round after round (a b, b a, a b, ...) so that drift of a shared machine falls on both alike.
Meanwhile CLIENT LIST is polled every 50 ms for the monitor client's `omem` (what the server has queued for it),
and psutil samples RSS and CPU of the monitor processes. With `--library`, each round also runs (b-lib), the
capture library alone (`MonitorCapture`, polled every 50 ms, lines counted and dropped).
With `--live`, each round also runs (b-live): the command without `--json`, its live timeline printing.
With `--before REV`, each round also runs (c): the command as it was at git revision REV (extracted and run from a
folder of its own), next to (b) in the round's order (a b c, c b a, ...), so a change is measured against what it
replaces in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redisprobe import trace
from redisprobe.producers import procs
from redisprobe.producers.observers.monitor_capture import MonitorCapture
from redisprobe.targets.sandbox import sandbox
from redisprobe.targets.url import parse_target

_RPS = re.compile(r"SET: ([\d.]+) requests per second")
COMMAND = "(b) redisprobe monitor"
BEFORE = "(c) monitor, --before rev"
CLI = "(a) redis-cli monitor"


@dataclass
class Run:
    mode: str
    rps: float = 0.0
    sent: int = 0
    captured: int | None = None
    gaps: int | None = None
    drain_s: float | None = None
    end_s: float | None = None  # Ctrl-C to exit: the summary of everything captured
    omem_peak: int = 0
    monitor_rss: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during load + drain: server, monitor
    trace_bytes: int = 0


SERVER_PID = 0


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class Sampler(threading.Thread):
    """Every 50 ms: the monitor client's omem and the monitor processes' RSS; CPU seconds over the whole run."""

    def __init__(self, client: redis.Redis, run: Run, monitor_pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.client, self.run_ = client, run
        self.done = threading.Event()
        self.server = [psutil.Process(SERVER_PID)]
        self.monitor = [psutil.Process(pid) for pid in monitor_pids]
        self.cpu_start = {"server": cpu_seconds(self.server), "monitor": cpu_seconds(self.monitor)}

    def finish(self) -> None:
        self.done.set()
        self.join()
        self.run_.cpu = {"server": cpu_seconds(self.server) - self.cpu_start["server"],
                         "monitor": cpu_seconds(self.monitor) - self.cpu_start["monitor"]}

    def run(self) -> None:
        while not self.done.is_set():
            for info in self.client.client_list():
                if "O" in info["flags"]:
                    self.run_.omem_peak = max(self.run_.omem_peak, int(info["omem"]))
            rss = 0
            for process in self.monitor:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += process.memory_info().rss
            self.run_.monitor_rss.append(rss)
            self.done.wait(0.05)


def benchmark(host: str, port: int, requests: int) -> float:
    out = subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-P", "16", "-t", "set", "-n",
                          str(requests), "-q"], capture_output=True, text=True, check=True, timeout=600)
    found = _RPS.findall(out.stdout.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r}")
    return float(found[-1])


def wait_monitor_attached(client: redis.Redis, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not any("O" in c["flags"] for c in client.client_list()):
        if time.monotonic() > deadline:
            raise RuntimeError("the monitor client did not attach")
        time.sleep(0.01)


def wait_monitor_detached(client: redis.Redis, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any("O" in c["flags"] for c in client.client_list()) and time.monotonic() < deadline:
        time.sleep(0.01)


def run_none(host: str, port: int, client: redis.Redis, requests: int) -> Run:
    run = Run("none")
    sampler = Sampler(client, run, [])
    sampler.start()
    run.rps = benchmark(host, port, requests)
    sampler.finish()
    return run


def run_redis_cli(host: str, port: int, client: redis.Redis, requests: int) -> Run:
    run = Run(CLI)
    cli = procs.spawn(["redis-cli", "-h", host, "-p", str(port), "monitor"], stdin=subprocess.DEVNULL,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_monitor_attached(client)
        time.sleep(0.5)  # as for (b): the same settling time before the load
        sampler = Sampler(client, run, [cli.pid])
        sampler.start()
        run.rps = benchmark(host, port, requests)
        # How long redis-cli takes to empty what the server queued for it.
        ended = time.monotonic()
        while any("O" in c["flags"] and int(c["omem"]) > 0 for c in client.client_list()):
            time.sleep(0.005)
        run.drain_s = time.monotonic() - ended
        sampler.finish()
    finally:
        procs.stop(cli)
    wait_monitor_detached(client)
    return run


def count_sets(path: Path) -> int:
    """SET commands in a trace: parsed events (base64 args) or MONITOR lines stored as the server sent them (raw
    since trace format 2, escaped into JSON strings before)."""
    parsed, escaped, raw = b'"args":["U0VU"', b'] \\"SET\\" ', b'] "SET" '
    with path.open("rb") as handle:
        return sum(line.count(parsed) + line.count(escaped) + line.count(raw) for line in handle)


def run_command(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path, *,
                live: bool = False, code: Path | None = None) -> Run:
    """(b) the whole `redisprobe monitor` command, Ctrl-C'd once the load ends; `drain s` is from the end of the
    load until the trace on disk holds every SET; `end s` from Ctrl-C until the command has printed its summary.
    `live`: without --json, so the live timeline prints (to /dev/null). `code`: (c), the package extracted there
    (an older revision) instead of this checkout's."""
    run = Run("(b-live) monitor, timeline" if live else BEFORE if code is not None else COMMAND)
    out = spool_dir / "command-trace.jsonl"
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    command = procs.spawn([sys.executable, "-m", "redisprobe", "monitor", "--url", f"redis://{host}:{port}/0",
                           *([] if live else ["--json"]), "--out", str(out), "--no-enable-events"],
                          stdin=subprocess.DEVNULL, cwd=None if code is None else str(code), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_monitor_attached(client)
        time.sleep(0.5)
        family = [command.pid] + [child.pid for child in psutil.Process(command.pid).children(recursive=True)]
        sampler = Sampler(client, run, family)
        sampler.start()
        run.rps = benchmark(host, port, requests)
        ended = time.monotonic()
        while True:
            seen = count_sets(out)
            if seen >= requests or time.monotonic() - ended > 60:
                break
            time.sleep(0.02)
        run.drain_s = time.monotonic() - ended
        run.sent, run.captured = requests, seen
        sampler.finish()
        interrupted = time.monotonic()
        command.send_signal(signal.SIGINT)
        command.wait(300)
        run.end_s = time.monotonic() - interrupted
        run.trace_bytes = out.stat().st_size
    finally:
        procs.stop(command)
        out.unlink(missing_ok=True)
    wait_monitor_detached(client)
    return run


def run_library(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path) -> Run:
    """The capture library alone, polled every 50 ms as the command does, then drained to a fence."""
    run = Run("(b-lib) MonitorCapture")
    counted = {"set": 0, "gaps": 0}
    lock = threading.Lock()

    def count(events: list[trace.MonitorLines | trace.Gap]) -> None:
        # Count and drop, like a trace writer would: memory must not grow with the commands.
        sets = holes = 0
        for event in events:
            if isinstance(event, trace.MonitorLines):
                sets += event.lines.count('] "SET" ')
            else:
                holes += 1
        with lock:
            counted["set"] += sets
            counted["gaps"] += holes

    capture = MonitorCapture(parse_target(f"redis://{host}:{port}/0"), spool_dir)
    capture.start()
    pumping = threading.Event()
    pump_lock = threading.Lock()

    def pump() -> None:
        while not pumping.is_set():
            with pump_lock:
                count(capture.poll())
            pumping.wait(0.05)

    pumper = threading.Thread(target=pump, daemon=True)
    try:
        assert capture.proc is not None
        sampler = Sampler(client, run, [os.getpid(), capture.proc.pid])
        sampler.start()
        pumper.start()
        run.rps = benchmark(host, port, requests)
        ended = time.monotonic()
        pumping.set()
        pumper.join()
        with pump_lock:
            for batch in capture.drain_batches(timeout=60):
                count(batch)
        run.drain_s = time.monotonic() - ended
        sampler.finish()
        run.captured, run.gaps, run.sent = counted["set"], counted["gaps"], requests
    finally:
        pumping.set()
        capture.stop()
    wait_monitor_detached(client)
    return run


def mib(values: list[int]) -> str:
    if not values or not max(values):
        return "-"
    return f"{values[0] / 2**20:.0f}->{max(values) / 2**20:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=10, help="(a)/(b) pairs, in ABBA order")
    parser.add_argument("--library", action="store_true", help="also the capture library alone, each round")
    parser.add_argument("--live", action="store_true", help="also the command with its live timeline, each round")
    parser.add_argument("--before", metavar="REVISION",
                        help="also run (c), the monitor command of this git revision, in the same rounds")
    parser.add_argument("--flat-check", type=int, default=1_000_000, metavar="N",
                        help="one more (b) run with N requests, to see that memory does not grow with N (0: skip)")
    args = parser.parse_args()
    runs: list[Run] = []
    pairs: list[tuple[Run, Run]] = []
    befores: list[Run] = []
    spool_dir = Path(tempfile.mkdtemp(prefix="redisprobe-bench-"))
    try:
        code = None
        if args.before:
            from benchmarks.cluster_capture import extract

            (spool_dir / "code").mkdir()
            code = extract(args.before, spool_dir / "code")
        with sandbox("single") as box:
            server = box.servers[0]
            global SERVER_PID
            assert server.proc is not None
            SERVER_PID = server.proc.pid
            host, port = server.host, server.port
            client = redis.Redis(host=host, port=port)
            runs.append(run_none(host, port, client, args.requests))
            for index in range(args.rounds):
                if index % 2 == 0:
                    cli = run_redis_cli(host, port, client, args.requests)
                    ours = run_command(host, port, client, args.requests, spool_dir)
                    runs += [cli, ours]
                if code is not None:
                    befores.append(run_command(host, port, client, args.requests, spool_dir, code=code))
                    runs.append(befores[-1])
                if index % 2 == 1:
                    ours = run_command(host, port, client, args.requests, spool_dir)
                    cli = run_redis_cli(host, port, client, args.requests)
                    runs += [ours, cli]
                pairs.append((cli, ours))
                if args.live:
                    runs.append(run_command(host, port, client, args.requests, spool_dir, live=True))
                if args.library:
                    runs.append(run_library(host, port, client, args.requests, spool_dir))
                print(f"round {index + 1}: (b)/(a) {ours.rps / cli.rps:.3f}", file=sys.stderr, flush=True)
            if args.flat_check:
                flat = run_command(host, port, client, args.flat_check, spool_dir)
                flat.mode = f"(b) with -n {args.flat_check:,}"
                runs.append(flat)
            client.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)

    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {redis_version()}; redis-benchmark -P 16 -t set -n {args.requests} -q; {args.rounds} rounds ABBA")
    header = (f"{'mode':28} {'SET/s':>10} {'captured/sent':>16} {'gaps':>4} {'drain s':>8} {'end s':>6} "
              f"{'omem peak':>10} {'monitor RSS MiB':>15} {'trace MiB':>9} {'CPU s srv/mon':>14}")
    print(header)
    print("-" * len(header))
    for run in runs:
        captured = f"{run.captured}/{run.sent}" if run.captured is not None else "-"
        print(f"{run.mode:28} {run.rps:10,.0f} {captured:>16} {run.gaps if run.gaps is not None else '-':>4} "
              f"{run.drain_s if run.drain_s is not None else float('nan'):8.3f} "
              f"{run.end_s if run.end_s is not None else float('nan'):6.2f} {run.omem_peak:10,} "
              f"{mib(run.monitor_rss):>15} {run.trace_bytes / 2**20:9.1f} "
              f"{run.cpu.get('server', 0):.2f}/{run.cpu.get('monitor', 0):.2f}".rjust(14))
    ratios = sorted(ours.rps / cli.rps for cli, ours in pairs)
    if ratios:
        cli_median = statistics.median(cli.rps for cli, _ in pairs)
        ours_median = statistics.median(ours.rps for _, ours in pairs)
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(f"\nratio (b)/(a): median of the {len(ratios)} rounds' ratios {statistics.median(ratios):.3f} "
              f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}); "
              f"ratio of medians {ours_median / cli_median:.3f}")
        cpu_cli = statistics.median(cli.cpu["monitor"] for cli, _ in pairs)
        cpu_ours = statistics.median(ours.cpu["monitor"] for _, ours in pairs)
        print(f"CPU s of the monitor side per run, medians: redis-cli {cpu_cli:.2f}, redisprobe monitor "
              f"(command + reader child) {cpu_ours:.2f}")
    if befores:
        before_ratios = sorted(before.rps / cli.rps for (cli, _), before in zip(pairs, befores, strict=True))
        print(f"ratio (c)/(a), the --before revision: median {statistics.median(before_ratios):.3f} (range "
              f"{before_ratios[0]:.3f}-{before_ratios[-1]:.3f}); CPU s of the monitor side per run, median "
              f"{statistics.median(before.cpu['monitor'] for before in befores):.2f}")
    lost = [r for r in runs if r.captured is not None and r.captured != r.sent]
    print("nothing lost" if not lost else f"LOST COMMANDS in {[r.mode for r in lost]}")
    return 0 if not lost else 1


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return f"redis {found.group(1)}" if found else "redis ?"


if __name__ == "__main__":
    sys.exit(main())
