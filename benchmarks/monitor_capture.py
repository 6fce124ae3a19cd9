"""Does our MONITOR capture keep up with a loaded server as well as `redis-cli monitor` does?

Run by hand (not part of pytest), from the repository root:

    .venv/bin/python benchmarks/monitor_capture.py [--requests 300000] [--rounds 2]

One sandbox server; `redis-benchmark -P 16 -t set -n N -q` against it, alternately with
(a) `redis-cli monitor > /dev/null` attached and (b) our `MonitorCapture` attached (default: background parser
thread at nice 19), polled every 50 ms as `redisprobe monitor` does. Once each, for comparison: (b-fg) the
caller parses at normal priority in its 50 ms polls (`background=False`), and (b0) nobody parses until the
load has ended (the reader alone). Meanwhile CLIENT LIST is polled every 50 ms for the monitor client's `omem`
(what the server has queued for it), and psutil samples the RSS of the monitor process and of this process.
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

from redisprobe import procs, trace
from redisprobe.monitor_parse import parse_monitor_chunk
from redisprobe.observers.monitor import MonitorCapture
from redisprobe.sandbox import sandbox
from redisprobe.target import parse_target

_RPS = re.compile(r"SET: ([\d.]+) requests per second")


@dataclass
class Run:
    mode: str
    rps: float = 0.0
    sent: int = 0
    captured: int | None = None
    gaps: int | None = None
    drain_s: float | None = None
    omem_peak: int = 0
    reader_rss: list[int] = field(default_factory=list)
    parent_rss: list[int] = field(default_factory=list)
    spool_bytes: int = 0
    parse_lps: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the run: server, monitor, parent


SERVER_PID = 0


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


class Sampler(threading.Thread):
    """Every 50 ms: the monitor client's omem, the reader's and our RSS; CPU seconds over the whole run."""

    def __init__(self, client: redis.Redis, run: Run, reader_pid: int | None) -> None:
        super().__init__(daemon=True)
        self.client, self.run_, self.reader_pid = client, run, reader_pid
        self.done = threading.Event()
        self.processes = {"server": psutil.Process(SERVER_PID), "monitor": psutil.Process(reader_pid)
                          if reader_pid else None, "parent": psutil.Process()}
        self.cpu_start = {name: cpu_seconds(p) for name, p in self.processes.items()}

    def finish(self) -> None:
        self.done.set()
        self.join()
        self.run_.cpu = {name: cpu_seconds(p) - self.cpu_start[name] for name, p in self.processes.items()}

    def run(self) -> None:
        me = psutil.Process()
        reader = psutil.Process(self.reader_pid) if self.reader_pid else None
        while not self.done.is_set():
            for info in self.client.client_list():
                if "O" in info["flags"]:
                    self.run_.omem_peak = max(self.run_.omem_peak, int(info["omem"]))
            self.run_.parent_rss.append(me.memory_info().rss)
            if reader is not None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.run_.reader_rss.append(reader.memory_info().rss)
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
    sampler = Sampler(client, run, None)
    sampler.start()
    run.rps = benchmark(host, port, requests)
    sampler.finish()
    return run


def run_redis_cli(host: str, port: int, client: redis.Redis, requests: int) -> Run:
    run = Run("(a) redis-cli")
    cli = procs.spawn(["redis-cli", "-h", host, "-p", str(port), "monitor"], stdin=subprocess.DEVNULL,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_monitor_attached(client)
        sampler = Sampler(client, run, cli.pid)
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


def run_command(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path) -> Run:
    """(c) the whole `redisprobe monitor` command (capture + trace file + keyspace/client observers), Ctrl-C'd
    once the load ends; `drain s` is from the end of the load until the trace on disk holds every SET."""
    run = Run("(c) redisprobe monitor")
    out = spool_dir / "command-trace.jsonl"
    command = procs.spawn([sys.executable, "-m", "redisprobe", "monitor", "--url", f"redis://{host}:{port}/0",
                           "--json", "--out", str(out), "--no-enable-events"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_monitor_attached(client)
        time.sleep(0.5)
        sampler = Sampler(client, run, command.pid)
        sampler.start()
        run.rps = benchmark(host, port, requests)
        ended = time.monotonic()
        while True:
            seen = count_sets(out)
            if seen >= requests or time.monotonic() - ended > 60:
                break
            time.sleep(0.05)
        run.drain_s = time.monotonic() - ended
        run.sent, run.captured = requests, seen
        sampler.finish()
        command.send_signal(signal.SIGINT)
        command.wait(120)
    finally:
        procs.stop(command)
    wait_monitor_detached(client)
    return run


def count_sets(path: Path) -> int:
    """SET commands in a trace: parsed events (base64 args) or MONITOR lines stored as the server sent them."""
    parsed, raw = b'"args":["U0VU"', b'] \\"SET\\" '
    with path.open("rb") as handle:
        return sum(line.count(parsed) + line.count(raw) for line in handle)


def run_capture(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path, *, live: bool,
                background: bool) -> Run:
    mode = "(b) MonitorCapture" if background else "(b-fg) caller parses" if live else "(b0) parse after load"
    run = Run(mode)
    target = parse_target(f"redis://{host}:{port}/0")
    counted = {"set": 0, "gaps": 0}
    lock = threading.Lock()

    def count(events: list[trace.Monitor | trace.Gap]) -> None:
        # Count and drop, like a trace writer would: the parent's memory must not grow with the commands.
        sets = sum(1 for e in events if isinstance(e, trace.Monitor) and e.args[0] == b"SET")
        holes = sum(1 for e in events if isinstance(e, trace.Gap))
        with lock:
            counted["set"] += sets
            counted["gaps"] += holes

    capture = MonitorCapture(target, spool_dir, keep_spool=True, background=background)
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
        sampler = Sampler(client, run, capture.proc.pid)
        sampler.start()
        if live:
            pumper.start()
        run.rps = benchmark(host, port, requests)
        ended = time.monotonic()
        pumping.set()
        if live:
            pumper.join()
        with pump_lock:
            for batch in capture.drain_batches(timeout=60):
                count(batch)
        run.drain_s = time.monotonic() - ended
        sampler.finish()
        run.captured, run.gaps, run.sent = counted["set"], counted["gaps"], requests
        assert capture.spool is not None
        run.spool_bytes = capture.spool.stat().st_size
        run.parse_lps = parse_speed(capture.spool)
    finally:
        pumping.set()
        capture.stop()
        spool = capture.spool
        if spool is not None:
            spool.unlink(missing_ok=True)
    wait_monitor_detached(client)
    return run


def parse_speed(spool: Path) -> float:
    """parse_monitor_chunk over the spool in 1 MiB reads, as the capture does (status lines dropped first)."""
    blocks = []
    with spool.open("rb") as handle:
        while block := handle.read(1 << 20):
            blocks.append(block)
    lines = 0
    rest = b""
    started = time.perf_counter()
    for block in blocks:
        data = rest + block
        if b"!" in data[:1] or b"\r\n!" in data:
            data = b"\r\n".join(x for x in data.split(b"\r\n")[:-1] if not x.startswith(b"!")) + b"\r\n" + \
                data.rsplit(b"\r\n", 1)[-1]
        parsed, rest = parse_monitor_chunk(data)
        lines += len(parsed)
    return lines / (time.perf_counter() - started)


def mib(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{values[0] / 2**20:.0f}->{max(values) / 2**20:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flat-check", type=int, default=1_000_000, metavar="N",
                        help="one more (b) run with N requests, to see that memory does not grow with N (0: skip)")
    args = parser.parse_args()
    runs: list[Run] = []
    spool_dir = Path(tempfile.mkdtemp(prefix="redisprobe-bench-"))
    try:
        with sandbox("single") as box:
            server = box.servers[0]
            global SERVER_PID
            assert server.proc is not None
            SERVER_PID = server.proc.pid
            client = redis.Redis(host=server.host, port=server.port)
            runs.append(run_none(server.host, server.port, client, args.requests))
            for _ in range(args.rounds):
                runs.append(run_redis_cli(server.host, server.port, client, args.requests))
                runs.append(run_capture(server.host, server.port, client, args.requests, spool_dir, live=True,
                                        background=True))
                runs.append(run_command(server.host, server.port, client, args.requests, spool_dir))
            runs.append(run_capture(server.host, server.port, client, args.requests, spool_dir, live=True,
                                    background=False))
            runs.append(run_capture(server.host, server.port, client, args.requests, spool_dir, live=False,
                                    background=False))
            if args.flat_check:
                flat = run_capture(server.host, server.port, client, args.flat_check, spool_dir, live=True,
                                   background=True)
                flat.mode = f"(b) with -n {args.flat_check:,}"
                runs.append(flat)
            client.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)

    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {redis_version()}; redis-benchmark -P 16 -t set -n {args.requests} -q")
    header = (f"{'mode':28} {'SET/s':>10} {'captured/sent':>16} {'gaps':>4} {'drain s':>8} {'omem peak':>10} "
              f"{'monitor RSS MiB':>15} {'parent RSS MiB':>15} {'parse lines/s':>14} {'CPU s srv/mon/parent':>21}")
    print(header)
    print("-" * len(header))
    for run in runs:
        captured = f"{run.captured}/{run.sent}" if run.captured is not None else "-"
        print(f"{run.mode:28} {run.rps:10,.0f} {captured:>16} {run.gaps if run.gaps is not None else '-':>4} "
              f"{run.drain_s if run.drain_s is not None else float('nan'):8.3f} {run.omem_peak:10,} "
              f"{mib(run.reader_rss):>15} {mib(run.parent_rss if run.mode.startswith('(b') else []):>15} "
              f"{(f'{run.parse_lps:,.0f}' if run.parse_lps else '-'):>14} "
              f"{'/'.join(f'{run.cpu.get(k, 0):.2f}' for k in ('server', 'monitor', 'parent')):>21}")
    cli = [r.rps for r in runs if r.mode.startswith("(a)")]
    ours = [r.rps for r in runs if r.mode == "(b) MonitorCapture"]
    if cli and ours:
        print(f"\nratio (b)/(a), medians: {statistics.median(ours) / statistics.median(cli):.3f}; "
              f"per round: {', '.join(f'{b / a:.3f}' for a, b in zip(cli, ours, strict=False))}")
    whole = [r.rps for r in runs if r.mode.startswith("(c)")]
    if cli and whole:
        print(f"ratio (c)/(a), medians: {statistics.median(whole) / statistics.median(cli):.3f}; "
              f"per round: {', '.join(f'{c / a:.3f}' for a, c in zip(cli, whole, strict=False))}")
    lost = [r for r in runs if r.captured is not None and r.captured != r.sent]
    print("nothing lost" if not lost else f"LOST COMMANDS in {[r.mode for r in lost]}")
    return 0 if not lost else 1


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return f"redis {found.group(1)}" if found else "redis ?"


if __name__ == "__main__":
    sys.exit(main())
