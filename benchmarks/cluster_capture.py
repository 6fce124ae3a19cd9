"""Does `redisprobe monitor` keep up with a loaded Redis Cluster as well as one `redis-cli monitor` per node?

Run by hand (not part of pytest), from the repository root:

    .venv/bin/python benchmarks/cluster_capture.py [--primaries 3] [--requests 300000] [--rounds 4] [--before REV]
    .venv/bin/python benchmarks/cluster_capture.py --profile [--primaries 3] [--requests 1000000]

A sandbox cluster of N primaries; `redis-benchmark --cluster -P 16 -t set -n R -q` against it with
(a) one `redis-cli monitor > /dev/null` per primary attached, and (b) the whole `redisprobe monitor --url <first
node> --json --out FILE` command (it finds every primary and runs one MONITOR reader per node), and with `--before
REV` (c) the same command as it was at git revision REV (extracted and run from a folder of its own), so a change
is measured against what it replaces in the same run (REV may also be a folder holding a changed copy of the
`redisprobe` package: a variant under trial); each round rotates which mode goes first.
Reported per mode: throughput, commands captured against sent, CPU seconds and peak RSS of the monitor
processes (their whole process trees) during the load, and the trace size. On a shared 2-core machine the
throughput of one round swings by 2x; the CPU seconds per round are the steadier measure.

`--profile` runs the command's parts in this process instead (one capture per primary, pumped every 50 ms as the
command does) and prints the CPU seconds of each: the MONITOR reader processes, the pump that copies their spools
into the trace, the CLIENT LIST poller, the peer watcher, the keyspace observer and the refusal sampler.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.monitor_capture import count_sets
from redisprobe.producers import procs
from redisprobe.targets.sandbox import sandbox

_RPS = re.compile(r"SET: ([\d.]+) requests per second")
CLI = "(a) redis-cli monitor per node"
COMMAND = "(b) redisprobe monitor"
BEFORE = "(c) redisprobe monitor, --before revision"
ROOT = Path(__file__).resolve().parents[1]


def extract(revision: str, folder: Path) -> Path:
    """The `redisprobe` package as it was at `revision`, in a folder of its own (run from there); a folder given
    instead of a revision is taken as it is (a variant under trial: a copy of the package, changed by hand)."""
    if Path(revision).is_dir():
        return Path(revision)
    code = folder / "before"
    code.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "redisprobe"], capture_output=True,
                             check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True, timeout=120)
    return code


@dataclass
class Run:
    mode: str
    rps: float = 0.0
    captured: int | None = None
    cpu_s: float = 0.0
    rss_peak: int = 0
    trace_bytes: int = 0
    rss: list[int] = field(default_factory=list)


def tree(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(pid)
            out += [parent, *parent.children(recursive=True)]
    return out


def cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def load(port: int, requests: int) -> float:
    """Requests per second over the load's wall time, timed here: redis-benchmark's own figure in cluster mode
    is `requests / elapsed` with the elapsed time rounded to its 250 ms timer (rounds of 4.75, 5.0, 5.25 s...),
    a 5% step on a 5 s round; its start (connecting to every node) is in both modes' time alike."""
    started = time.monotonic()
    out = subprocess.run(["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(port), "-P", "16", "-t", "set",
                          "-n", str(requests), "-q"], capture_output=True, text=True, check=True, timeout=900)
    took = time.monotonic() - started
    if not _RPS.findall(out.stdout.replace("\r", "\n")):
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r}")
    return requests / took


def monitors_attached(ports: list[int], count: int) -> None:
    deadline = time.monotonic() + 30
    for port in ports:
        client = redis.Redis(port=port)
        try:
            while sum("O" in c["flags"] for c in client.client_list()) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MONITOR did not attach on {port}")
                time.sleep(0.02)
        finally:
            client.close()


def measured(run: Run, pids: list[int], port: int, requests: int) -> None:
    processes = tree(pids)
    before = cpu(processes)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            run.rss.append(sum(p.memory_info().rss for p in processes if p.is_running()))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run.rps = load(port, requests)
    done.set()
    sampler.join()
    run.cpu_s = cpu(processes) - before
    run.rss_peak = max(run.rss, default=0)


def run_cli(ports: list[int], requests: int) -> Run:
    run = Run(CLI)
    clis = [procs.spawn(["redis-cli", "-p", str(port), "monitor"], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    try:
        monitors_attached(ports, 1)
        time.sleep(0.5)
        measured(run, [c.pid for c in clis], ports[0], requests)
    finally:
        for cli in clis:
            procs.stop(cli)
    return run


def run_command(ports: list[int], requests: int, folder: Path, code: Path | None = None) -> Run:
    """(b): this checkout's `redisprobe monitor`, or (c) the one in `code` (an older revision, extracted)."""
    run = Run(BEFORE if code is not None else COMMAND)
    out = folder / "trace.jsonl"
    env = {**os.environ, "REDISPROBE_PURE_PYTHON": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    command = procs.spawn([sys.executable, "-m", "redisprobe", "monitor", "--url", f"redis://127.0.0.1:{ports[0]}/0",
                           "--json", "--out", str(out), "--no-enable-events"], cwd=str(code or ROOT), env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        monitors_attached(ports, 1)
        time.sleep(0.5)
        measured(run, [command.pid], ports[0], requests)
        ended = time.monotonic()
        while count_sets(out) < requests and time.monotonic() - ended < 60:
            time.sleep(0.05)
        run.captured = count_sets(out)
        command.send_signal(signal.SIGINT)  # the capture ends...
        with contextlib.suppress(subprocess.TimeoutExpired):
            command.wait(5)
        command.send_signal(signal.SIGINT)  # ...and its analysis, not measured here, is cut short
        command.wait(600)
        run.trace_bytes = out.stat().st_size
    finally:
        procs.stop(command)
        out.unlink(missing_ok=True)
    return run


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median (order statistics, binomial): the rounds' ratios
    swing by +-15% on a shared 2-core machine, so a median alone says too little."""
    ordered, n = sorted(values), len(values)
    k = 0  # the largest k with P(Binomial(n, 1/2) < k + 1) <= (1 - confidence) / 2
    while k + 1 <= n // 2 and sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n <= (1 - confidence) / 2:
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]  # too few rounds for this confidence: the whole range
    return ordered[k - 1], ordered[n - k]


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from the kernel's per-task stat."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def profile(ports: list[int], requests: int, folder: Path) -> None:
    """Where a capture's CPU goes, per node: `redisprobe monitor`'s own parts run in this process (one
    CaptureSession per primary, pumped every 50 ms as the command does), each thread's CPU read from the kernel,
    each MONITOR reader process's too, while redis-benchmark loads the cluster."""
    from redisprobe import trace
    from redisprobe.producers.capture import CaptureSession, stop_sessions
    from redisprobe.targets.resolve import make_header
    from redisprobe.targets.url import parse_target

    targets = [parse_target(f"redis://127.0.0.1:{port}/0") for port in ports]
    writer = trace.TraceWriter(folder / "profile.jsonl", make_header("monitor", {f"n{i}": t for i, t in
                                                                                  enumerate(targets)}), keep=False)
    sessions = [CaptureSession(t, writer, enable_events=False) for t in targets]
    for session in sessions:
        session.start()
    monitors_attached(ports, 1)
    stop = threading.Event()
    pump_cpu = [0.0]

    def pump() -> None:
        began = time.thread_time()
        while not stop.is_set():
            for session in sessions:
                session.pump()
            writer.check()
            time.sleep(0.05)
        pump_cpu[0] = time.thread_time() - began

    pumper = threading.Thread(target=pump, name="pump (main loop)", daemon=True)
    pumper.start()
    time.sleep(0.5)
    threads = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    before = {tid: thread_cpu(tid) for tid in threads}
    readers = [psutil.Process(s.monitor.proc.pid) for s in sessions]
    readers_before = cpu(readers)
    started = time.monotonic()
    rps = load(ports[0], requests)
    took = time.monotonic() - started
    readers_cpu = cpu(readers) - readers_before
    readers_rss = [reader.memory_info().rss for reader in readers]
    spent: dict[str, float] = {}
    for tid, name in threads.items():
        spent[name] = spent.get(name, 0.0) + thread_cpu(tid) - before[tid]
    stop.set()
    pumper.join()
    stop_sessions(sessions, budget=10)
    writer.close()
    print(f"{len(ports)} primaries, {requests:,} SETs at {rps:,.0f} req/s in {took:.1f}s; CPU seconds:")
    print(f"  MONITOR reader processes (one per node): {readers_cpu:.2f} (RSS {min(readers_rss) / 2**20:.0f} to "
          f"{max(readers_rss) / 2**20:.0f} MiB each)")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if name != "MainThread":
            print(f"  {name} (all nodes together): {seconds:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--primaries", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="where the capture's CPU goes, per part and node")
    parser.add_argument("--before", metavar="REVISION",
                        help="also run (c), the monitor command of this git revision, in the same rounds")
    args = parser.parse_args()
    if args.profile:
        with sandbox("cluster", primaries=args.primaries) as box, tempfile.TemporaryDirectory() as folder:
            profile([server.port for server in box.servers], args.requests, Path(folder))
        return 0
    runs: list[Run] = []
    with sandbox("cluster", primaries=args.primaries) as box, tempfile.TemporaryDirectory() as folder:
        ports = [server.port for server in box.servers]
        before = extract(args.before, Path(folder)) if args.before else None
        modes: list[Callable[[], Run]] = [lambda: run_cli(ports, args.requests),
                                          lambda: run_command(ports, args.requests, Path(folder))]
        if before is not None:
            modes.append(lambda: run_command(ports, args.requests, Path(folder), before))
        for index in range(args.rounds):
            shift = index % len(modes)  # each mode goes first, second... in turn: no mode always runs warm
            for mode in modes[shift:] + modes[:shift]:
                run = mode()
                runs.append(run)
                print(f"round {index + 1} {run.mode}: {run.rps:,.0f} req/s, cpu {run.cpu_s:.2f}s, "
                      f"rss peak {run.rss_peak / 2**20:.0f} MiB"
                      + (f", captured {run.captured:,}/{args.requests:,}, trace {run.trace_bytes / 1e6:.1f} MB"
                         if run.captured is not None else ""), flush=True)
    cli = [r for r in runs if r.mode == CLI]
    print(f"{args.primaries} primaries, {args.requests:,} SETs per round, {args.rounds} rounds")
    for name in (COMMAND, BEFORE):
        ours = [r for r in runs if r.mode == name]
        if not ours:
            continue
        ratios = [b.rps / a.rps for a, b in zip(cli, ours, strict=True)]
        low, high = median_interval(ratios)
        print(f"{name}: throughput ratio to (a) median {statistics.median(ratios):.3f}, 95% interval of the median "
              f"{low:.3f}-{high:.3f} (rounds: "
              + ", ".join(f"{r:.2f}" for r in ratios) + f"); captured {min(r.captured or 0 for r in ours):,} to "
              f"{max(r.captured or 0 for r in ours):,} of {args.requests:,}; cpu s per round "
              f"{statistics.median(r.cpu_s for r in ours):.2f}; rss peak {max(r.rss_peak for r in ours) / 2**20:.0f} "
              f"MiB; trace {statistics.median(r.trace_bytes for r in ours) / 1e6:.1f} MB per round")
    print(f"{CLI}: cpu s per round {statistics.median(r.cpu_s for r in cli):.2f}; rss peak "
          f"{max(r.rss_peak for r in cli) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
