"""How fast `redisprobe report` analyses a plain `redis-cli monitor` log, and whether memory follows keys, not lines.

Run by hand: `.venv/bin/python benchmarks/report_speed.py [--lines 1000000] [--keys 10000]`.
Writes a synthetic log (SET with EX / GET / EXPIRE / DEL over a fixed key population, 4 clients), then times the
whole offline analysis (parse + lifecycle fold + doctor) in this process, twice the lines to check memory.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path


def write_log(path: Path, lines: int, keys: int) -> None:
    rng = random.Random(7)
    peers = [f"127.0.0.1:{50000 + n}" for n in range(4)]
    t = 1_700_000_000.0
    with path.open("w") as out:
        out.write("OK\n")
        for n in range(lines):
            t += 0.0001
            key = f"session:{rng.randrange(keys)}"
            pick = rng.random()
            if pick < 0.4:
                cmd = f'"SET" "{key}" "value-{n}" "EX" "60"'
            elif pick < 0.8:
                cmd = f'"GET" "{key}"'
            elif pick < 0.95:
                cmd = f'"EXPIRE" "{key}" "60"'
            else:
                cmd = f'"DEL" "{key}"'
            out.write(f"{t:.6f} [0 {peers[n % 4]}] {cmd}\n")


def measure(path: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of `redisprobe report --json` in a fresh process."""
    code = (
        "import sys, time, resource; from pathlib import Path;"
        "from redisprobe.monitorlog import read_monitor_log; from redisprobe.summary import summarise;"
        "t=time.perf_counter(); s=summarise(read_monitor_log(Path(sys.argv[1])));"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s.stats['commands'])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    seconds, rss, _commands = out.split()
    return float(seconds), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for lines in (args.lines // 4, args.lines):
            path = Path(tmp) / f"monitor-{lines}.log"
            write_log(path, lines, args.keys)
            seconds, rss = measure(path)
            rows.append((lines, seconds, lines / seconds, rss / 1024))
        print(f"{'lines':>10} {'seconds':>8} {'lines/s':>10} {'peak RSS MiB':>13}   ({args.keys} keys)")
        for lines, seconds, rate, rss in rows:
            print(f"{lines:>10,} {seconds:>8.2f} {rate:>10,.0f} {rss:>13.1f}")


if __name__ == "__main__":
    main()
