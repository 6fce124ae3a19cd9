"""How fast `redisprobe report` analyses a plain `redis-cli monitor` log, beside redis-faina, and whether its memory
follows keys, not lines.

Run by hand:

    .venv/bin/python benchmarks/report_speed.py [--lines 400000] [--keys 10000] [--rounds 3] [--faina PATH]

Writes a synthetic log (40% `SET k v EX 60`, 40% `GET`, 15% `EXPIRE k 60`, 5% `DEL`, 4 clients, 0.1 ms apart),
then times the whole command, `redisprobe report LOG --json > /dev/null` (start-up, parsing, the fold, every
doctor rule, the JSON), alternately with `python3 FAINA LOG > /dev/null` when `--faina` names a Python 3 copy of
redis-faina.py (its code is not shipped here: `print` as a function and `.items()` for `.iteritems()` are all it
needs). Peak RSS comes from the child's rusage. Then the memory check: the same command on logs of
N/4 and N lines over the same keys, and over a tenth of the keys.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REDISPROBE = [sys.executable, "-m", "redisprobe", "report"]


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


def timed(argv: list[str]) -> float:
    """Wall seconds of one child process, output discarded."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # report exits 1 when it has findings
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr.decode()[-500:]}")
    return seconds


def peak_rss(argv: list[str]) -> float:
    """Peak RSS (MiB) of the command, measured alone in a fresh interpreter (rusage of children is a maximum)."""
    code = ("import resource, subprocess, sys;"
            "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024


def compiled() -> str:
    import redisprobe.analysis.lifecycle.engine as engine

    return "compiled (mypyc)" if (engine.__file__ or "").endswith(".so") else "pure Python"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--faina", type=Path, help="a Python 3 copy of redis-faina.py, timed beside us")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"fold {compiled()}; {args.lines:,} lines, {args.keys:,} keys")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "monitor.log"
        write_log(log, args.lines, args.keys)
        ours: list[float] = []
        theirs: list[float] = []
        print(f"{'round':>5} {'redisprobe s':>13} {'lines/s':>10} {'redis-faina s':>14} {'lines/s':>10} {'ratio':>6}")
        for round_ in range(1, args.rounds + 1):
            seconds = timed([*REDISPROBE, str(log), "--json"])
            ours.append(seconds)
            faina = timed([sys.executable, str(args.faina), str(log)]) if args.faina else float("nan")
            theirs.append(faina)
            print(f"{round_:>5} {seconds:>13.2f} {args.lines / seconds:>10,.0f} {faina:>14.2f} "
                  f"{args.lines / faina:>10,.0f} {faina / seconds:>6.2f}")
        median_ours = statistics.median(ours)
        line = f"median: redisprobe {args.lines / median_ours:,.0f} lines/s"
        if args.faina:
            median_theirs = statistics.median(theirs)
            line += (f", redis-faina {args.lines / median_theirs:,.0f} lines/s, "
                     f"ratio (faina time / ours) {median_theirs / median_ours:.2f}")
        print(line)

        print(f"\n{'lines':>10} {'keys':>7} {'peak RSS MiB':>13}")
        for lines, keys in ((args.lines // 4, args.keys), (args.lines, args.keys),
                            (args.lines // 4, args.keys // 10), (args.lines, args.keys // 10)):
            path = Path(tmp) / f"monitor-{lines}-{keys}.log"
            write_log(path, lines, keys)
            print(f"{lines:>10,} {keys:>7,} {peak_rss([*REDISPROBE, str(path), '--json']):>13.1f}")
            path.unlink()


if __name__ == "__main__":
    main()
