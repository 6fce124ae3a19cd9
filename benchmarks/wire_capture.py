"""What does reading Redis off the wire cost the server, next to MONITOR?

Run by hand (not part of pytest), as root (the wire reader needs CAP_NET_RAW), from the repository root:

    .venv/bin/python benchmarks/wire_capture.py [--requests 300000] [--rounds 5]

One sandbox server; `redis-benchmark -P 16 -t set -n N -q` against it with (a) nothing attached, (b) `redis-cli
monitor > /dev/null`, (c) the whole `redisprobe monitor --json --out FILE` command (MONITOR source), (d) the wire
reader alone (`WireCapture` on `lo`), in the same run, the order rotated round after round so that drift of a
shared machine falls on all alike. For (d): the reader process's CPU seconds, the kernel's drops, the spool's
size per million commands, and the time the offline parse of the spool takes (with every SET checked as
captured). Helpers (the load, the samplers, (b) and (c)) are those of `monitor_capture.py`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import monitor_capture as mc

from redisprobe.sandbox import sandbox
from redisprobe.wire.capture import WireCapture

WIRE = "(d) wire reader"
NONE = "(a) nothing"




def run_wire(host: str, port: int, client: redis.Redis, requests: int, spool_dir: Path) -> mc.Run:
    run = mc.Run(WIRE)
    wire = WireCapture(port, spool_dir, interface="lo")
    wire.start()
    try:
        time.sleep(0.5)  # as for the others: the same settling time before the load
        assert wire.proc is not None
        sampler = mc.Sampler(client, run, [wire.proc.pid])
        sampler.start()
        run.rps = mc.benchmark(host, port, requests)
        time.sleep(0.5)  # the reader spools what its socket still holds
        sampler.finish()
        wire.stop()
        run.trace_bytes = wire.spool.stat().st_size
        started = time.perf_counter()
        result = wire.result()
        run.drain_s = time.perf_counter() - started  # here: the offline parse of the spool
        run.captured = sum(1 for ex in result.exchanges if ex.args[:1] == [b"SET"] and ex.replied is not None)
        run.sent = requests
        run.gaps = result.kernel_drops
    finally:
        wire.stop()
        wire.remove()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a) (b) (c) (d), the order rotated")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the wire reader needs root or CAP_NET_RAW: run this as root", file=sys.stderr)
        return 2
    runs: list[mc.Run] = []
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
                lambda: run_wire(host, port, client, args.requests, spool_dir),
            ]
            for index in range(args.rounds):
                shift = index % len(modes)
                for mode in modes[shift:] + modes[:shift]:
                    runs.append(mode())
                print(f"round {index + 1} done", file=sys.stderr, flush=True)
            client.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)

    for run in runs:
        if run.mode == "none":
            run.mode = NONE
    print(f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {mc.redis_version()}; redis-benchmark -P 16 -t set -n {args.requests} -q; {args.rounds} rounds, "
          "order rotated")
    header = (f"{'mode':26} {'SET/s median':>12} {'x (a)':>6} {'range':>19} {'captured/sent':>16} "
              f"{'drops':>5} {'CPU s capture':>13} {'CPU s server':>12} {'MiB per 1M':>10} {'parse s':>8}")
    print(header)
    print("-" * len(header))
    order = [NONE, mc.CLI, mc.COMMAND, WIRE]
    labels = {NONE: NONE, mc.CLI: "(b) redis-cli monitor", mc.COMMAND: "(c) redisprobe monitor", WIRE: WIRE}
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
        per_million = statistics.median(r.trace_bytes / r.sent * 1e6 / 2**20 for r in mine) if mine[0].sent else None
        drops = sum(r.gaps or 0 for r in mine) if mode == WIRE else None
        parse = statistics.median(r.drain_s or 0 for r in mine) if mode == WIRE else None
        shown_million = "-" if per_million is None else f"{per_million:.1f}"
        shown_parse = "-" if parse is None else f"{parse:.2f}"
        print(f"{labels[mode]:26} {rps:12,.0f} {rps / baseline:6.2f} "
              f"{min(r.rps for r in mine):9,.0f}-{max(r.rps for r in mine):<9,.0f} {captured:>16} "
              f"{'-' if drops is None else drops:>5} {statistics.median(r.cpu.get('monitor', 0) for r in mine):13.2f} "
              f"{statistics.median(r.cpu.get('server', 0) for r in mine):12.2f} "
              f"{shown_million:>10} {shown_parse:>8}")
    print("(c)'s MiB per 1M is its trace file; (d)'s the spool. (d)'s parse s: the offline parse of one run's spool.")
    print("nothing lost" if not lost else "LOST COMMANDS")
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main())
