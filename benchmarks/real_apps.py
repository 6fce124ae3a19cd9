"""Run the real-app corpus (tests/apps/) and print the confusion table: how often `redisprobe monitor` names the
right root cause and culprit on bug apps, and how often it stays silent on healthy twins.

    .venv/bin/python benchmarks/real_apps.py                 # every app once, 2 at a time
    .venv/bin/python benchmarks/real_apps.py --runs 3 -v     # 3 rounds; every finding of every app
    .venv/bin/python benchmarks/real_apps.py --only bullmq,celery --json out.json
    .venv/bin/python benchmarks/real_apps.py --from-json out.json    # the table of a saved run again
    sudo .venv/bin/python benchmarks/real_apps.py --source wire --only audit-oom,pricing-key-misnamed

Needs `npm ci` in tests/apps/node and the `apps` extra (`pip install -e '.[apps]'`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.apps.corpus import APPS, BY_NAME
from tests.apps.harness import Capture, check_installed, run_app

BUG_COLUMNS = ("right", "wrong", "missed", "error")
TWIN_COLUMNS = ("silent", "false", "error")


def run_corpus(names: list[str], parallel: int, source: str = "monitor") -> list[Capture]:
    """Every app once, `parallel` at a time; bug apps and twins interleaved so a slow pair does not queue up."""
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(lambda name: run_app(BY_NAME[name], source=source), names))


def false_rules(capture: Capture) -> list[str]:
    if capture.app.healthy:
        return capture.rules()
    return [f.get("rule", "?") for f in capture.findings if f not in capture.right()]


def table(rounds: list[list[Capture]]) -> str:
    per_app: dict[str, Counter[str]] = {}
    extra: dict[str, Counter[str]] = {}
    for captures in rounds:
        for capture in captures:
            per_app.setdefault(capture.app.name, Counter())[capture.verdict()] += 1
            extra.setdefault(capture.app.name, Counter()).update(false_rules(capture))
    lines = []
    width = max(len(name) for name in per_app) + 2
    bugs = [app for app in APPS if app.name in per_app and not app.healthy]
    twins = [app for app in APPS if app.name in per_app and app.healthy]
    lines.append(f"{'bug app':{width}}{'expected':36}" + "".join(f"{c:>8}" for c in BUG_COLUMNS)
                 + "  other findings (count over the runs)")
    totals: Counter[str] = Counter()
    for app in bugs:
        counts = per_app[app.name]
        totals.update(counts)
        culprit = app.culprit or "server"
        others = ", ".join(f"{rule} x{n}" for rule, n in extra[app.name].most_common())
        lines.append(f"{app.name:{width}}{(app.rule or '') + ' / ' + culprit:36}"
                     + "".join(f"{counts[c]:>8}" for c in BUG_COLUMNS) + f"  {others}")
    lines.append(f"{'bug apps, all':{width}}{'':36}" + "".join(f"{totals[c]:>8}" for c in BUG_COLUMNS))
    lines.append("")
    lines.append(f"{'healthy twin':{width}}{'':36}" + "".join(f"{c:>8}" for c in TWIN_COLUMNS)
                 + "  false findings (rule x count over the runs)")
    totals = Counter()
    for app in twins:
        counts = per_app[app.name]
        totals.update(counts)
        others = ", ".join(f"{rule} x{n}" for rule, n in extra[app.name].most_common())
        lines.append(f"{app.name:{width}}{'':36}" + "".join(f"{counts[c]:>8}" for c in TWIN_COLUMNS)
                     + f"  {others}")
    lines.append(f"{'twins, all':{width}}{'':36}" + "".join(f"{totals[c]:>8}" for c in TWIN_COLUMNS))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="rounds over the whole corpus")
    parser.add_argument("--parallel", type=int, default=2, help="apps at once (2 cores: 2)")
    parser.add_argument("--only", default="", help="comma-separated app names")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every finding of every app")
    parser.add_argument("--source", default="monitor", choices=("monitor", "wire", "both"),
                        help="monitor --source (wire and both read the network: root or CAP_NET_RAW)")
    parser.add_argument("--json", type=Path, help="write every capture's verdict and findings here")
    parser.add_argument("--from-json", type=Path, help="print the table of a --json file again, run nothing")
    args = parser.parse_args()
    if args.from_json:
        rounds = [[Capture(app=BY_NAME[c["app"]], code=c["code"], doc={"findings": c["findings"]}, stderr="",
                           pids={k: set(v) for k, v in c["pids"].items()}, argv=[], seconds=c["seconds"])
                   for c in captures] for captures in json.loads(args.from_json.read_text())]
        print(table(rounds))
        return 0
    problem = check_installed()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    names = [name for name in args.only.split(",") if name] or [app.name for app in APPS]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        print(f"unknown app(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    rounds: list[list[Capture]] = []
    began = time.monotonic()
    for index in range(args.runs):
        start = time.monotonic()
        captures = run_corpus(names, args.parallel, args.source)
        rounds.append(captures)
        print(f"# round {index + 1}: {len(captures)} apps in {time.monotonic() - start:.0f} s", flush=True)
        for capture in captures:
            if args.verbose or capture.verdict() not in ("right", "silent"):
                print(capture.explain(), flush=True)
    wall = time.monotonic() - began
    print()
    print(table(rounds))
    print(f"\n{len(names)} apps x {args.runs} run(s), {args.parallel} at a time, --source {args.source}: "
          f"{wall:.0f} s wall")
    if args.json:
        args.json.write_text(json.dumps([
            [{"app": c.app.name, "source": c.source, "verdict": c.verdict(), "code": c.code,
              "seconds": round(c.seconds, 1),
              "pids": {k: sorted(v) for k, v in c.pids.items()}, "findings": c.findings} for c in captures]
            for captures in rounds], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
