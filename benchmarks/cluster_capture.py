"""Does `redisprobe monitor` keep up with a loaded Redis Cluster as well as one `redis-cli monitor` per node?

Run by hand (not part of pytest), from the repository root:

    .venv/bin/python benchmarks/cluster_capture.py [--primaries 3] [--requests 300000] [--rounds 4]

A sandbox cluster of N primaries; `redis-benchmark --cluster -P 16 -t set -n R -q` against it with
(a) one `redis-cli monitor > /dev/null` per primary attached, and (b) the whole `redisprobe monitor --url <first
node> --json --out FILE` command (it finds every primary and runs one MONITOR reader per node), in ABBA order.
Reported per mode: throughput, commands captured against sent (b), CPU seconds and peak RSS of the monitor
processes (their whole process trees), and the trace size.
"""

from __future__ import annotations

import argparse
import contextlib
import re
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

from benchmarks.monitor_capture import count_sets
from redisprobe import procs
from redisprobe.sandbox import sandbox

_RPS = re.compile(r"SET: ([\d.]+) requests per second")
CLI = "(a) redis-cli monitor per node"
COMMAND = "(b) redisprobe monitor"


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
    out = subprocess.run(["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(port), "-P", "16", "-t", "set",
                          "-n", str(requests), "-q"], capture_output=True, text=True, check=True, timeout=900)
    found = _RPS.findall(out.stdout.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r}")
    return float(found[-1])


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


def run_command(ports: list[int], requests: int, folder: Path) -> Run:
    run = Run(COMMAND)
    out = folder / "trace.jsonl"
    command = procs.spawn([sys.executable, "-m", "redisprobe", "monitor", "--url", f"redis://127.0.0.1:{ports[0]}/0",
                           "--json", "--out", str(out), "--no-enable-events"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        monitors_attached(ports, 1)
        time.sleep(0.5)
        measured(run, [command.pid], ports[0], requests)
        ended = time.monotonic()
        while count_sets(out) < requests and time.monotonic() - ended < 60:
            time.sleep(0.05)
        run.captured = count_sets(out)
        command.send_signal(signal.SIGINT)
        command.wait(600)
        run.trace_bytes = out.stat().st_size
    finally:
        procs.stop(command)
        out.unlink(missing_ok=True)
    return run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--primaries", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    runs: list[Run] = []
    with sandbox("cluster", primaries=args.primaries) as box, tempfile.TemporaryDirectory() as folder:
        ports = [server.port for server in box.servers]
        for index in range(args.rounds):
            order = [run_cli, run_command] if index % 2 == 0 else [run_command, run_cli]
            for mode in order:
                run = mode(ports, args.requests) if mode is run_cli else run_command(ports, args.requests,
                                                                                      Path(folder))
                runs.append(run)
                print(f"round {index + 1} {run.mode}: {run.rps:,.0f} req/s, cpu {run.cpu_s:.2f}s, "
                      f"rss peak {run.rss_peak / 2**20:.0f} MiB"
                      + (f", captured {run.captured:,}/{args.requests:,}, trace {run.trace_bytes / 1e6:.1f} MB"
                         if run.captured is not None else ""), flush=True)
    cli = [r for r in runs if r.mode == CLI]
    ours = [r for r in runs if r.mode == COMMAND]
    ratios = [b.rps / a.rps for a, b in zip(cli, ours, strict=True)]
    print(f"{args.primaries} primaries, {args.requests:,} SETs per round, {args.rounds} rounds")
    print(f"throughput ratio (b)/(a): median {statistics.median(ratios):.3f} (rounds: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print(f"captured: {min(r.captured or 0 for r in ours):,} to {max(r.captured or 0 for r in ours):,} of "
          f"{args.requests:,}")
    print(f"cpu s per round: (a) {statistics.median(r.cpu_s for r in cli):.2f}, "
          f"(b) {statistics.median(r.cpu_s for r in ours):.2f}; rss peak: (a) "
          f"{max(r.rss_peak for r in cli) / 2**20:.0f} MiB, (b) {max(r.rss_peak for r in ours) / 2**20:.0f} MiB; "
          f"trace {statistics.median(r.trace_bytes for r in ours) / 1e6:.1f} MB per round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
