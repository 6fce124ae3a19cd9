"""Build the golden corpus: saved traces (gzipped) and the `report --json` each gives today.

    REDISPROBE_GOLDEN_RECORD=/tmp/rec PYTHONPATH=tests python -m pytest -p golden.recorder --basetemp=/tmp/base
    python tests/golden/make.py --recorded /tmp/rec --basetemp /tmp/base --scenarios

Inputs kept: every trace the suite folded in-process (tests/golden/recorder.py), every trace or monitor log the
suite's CLI runs wrote under its temp folder, one run of each file in scenarios/, and the benchmark logs (made
again by their seeded generators at test time). Files over MAX_BYTES are left out (the repository stays small).
Expected outputs are then written from the code as it is: run this before a change that must not alter them.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(os.environ.get("REDISPROBE_GOLDEN_DIR") or ROOT / "tests" / "data" / "golden")
MAX_BYTES = 400_000
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _keep(source: Path, prefix: str) -> None:
    data = source.read_bytes()
    if not data.strip() or len(data) > MAX_BYTES:
        return
    first = data.split(b"\n", 1)[0]
    if not (first.startswith(b'{"format"') or first.startswith(b'{"kind":"header"') or b"redisprobe" in first
            or first == b"OK" or first[:1].isdigit()):
        return
    name = f"{prefix}-{hashlib.sha1(data).hexdigest()[:12]}.jsonl.gz"
    (GOLDEN / "traces").mkdir(parents=True, exist_ok=True)
    target = GOLDEN / "traces" / name
    if not target.exists():
        target.write_bytes(gzip.compress(data, mtime=0))


def collect(recorded: Path | None, basetemp: Path | None) -> None:
    if recorded:
        for path in sorted(recorded.glob("*.jsonl")):
            _keep(path, "folded")
    if basetemp:
        for path in sorted(basetemp.rglob("*")):
            if path.is_file() and path.suffix in (".jsonl", ".log", ".trace") and "spool" not in path.name:
                _keep(path, "written")


def scenarios() -> None:
    from redisprobe.scenario.loader import load
    from redisprobe.scenario.runner import run_scenario

    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "scenarios").glob("*.toml")):
            out = Path(tmp) / f"{path.stem}.jsonl"
            run_scenario(load(path), out=out)
            if out.exists():
                _keep(out, f"scenario-{path.stem}")


def expected() -> None:
    from golden.report import golden_inputs, report_json

    (GOLDEN / "expected").mkdir(parents=True, exist_ok=True)
    from redisprobe.errors import ProbeError

    for name, path in golden_inputs(Path(tempfile.mkdtemp())):
        try:
            (GOLDEN / "expected" / f"{name}.json").write_text(report_json(path))
        except ProbeError as exc:  # a test's deliberately broken file (a newer format, a torn header)
            print(f"golden: left out {name}: {exc}", file=sys.stderr)
            (GOLDEN / "traces" / f"{name}.jsonl.gz").unlink(missing_ok=True)
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recorded", type=Path)
    parser.add_argument("--basetemp", type=Path)
    parser.add_argument("--scenarios", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="drop the corpus first")
    args = parser.parse_args()
    if args.fresh and GOLDEN.exists():
        shutil.rmtree(GOLDEN)
    collect(args.recorded, args.basetemp)
    if args.scenarios:
        scenarios()
    expected()


if __name__ == "__main__":
    main()
