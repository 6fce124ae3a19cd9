"""`redisprobe report FILE --json` for the golden corpus, in-process, with the file's own path taken out."""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

GOLDEN = Path(os.environ.get("REDISPROBE_GOLDEN_DIR") or Path(__file__).resolve().parents[1] / "data" / "golden")


def benchmark_logs(folder: Path) -> Iterator[tuple[str, Path]]:
    """The benchmarks' monitor logs, made again by their seeded generators (small sizes)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from report_speed import write_log
    from test_compiled import _varied_log

    path = folder / "bench-report-speed.log"
    write_log(path, 20_000, 500)
    yield "bench-report-speed", path
    path = folder / "bench-varied.log"
    _varied_log(path, 20_000)
    yield "bench-varied", path


def golden_inputs(folder: Path) -> Iterator[tuple[str, Path]]:
    """(name, file) for every golden input, each unpacked into `folder` (the caller removes them)."""
    for packed in sorted((GOLDEN / "traces").glob("*.jsonl.gz")):
        name = packed.name.removesuffix(".jsonl.gz")
        path = folder / f"{name}.jsonl"
        path.write_bytes(gzip.decompress(packed.read_bytes()))
        yield name, path
    yield from benchmark_logs(folder)


def report_json(path: Path) -> str:
    """The JSON `report --json` prints for `path`, re-indented, with the path itself replaced."""
    from redisprobe.commands.report import run_report

    out = io.StringIO()
    enabled = gc.isenabled()
    try:
        with contextlib.redirect_stdout(out):
            run_report(path, json=True)
    finally:
        if enabled:
            gc.enable()  # report turns the cyclic collector off for its own short-lived process
    data = json.loads(out.getvalue().replace(str(path), "TRACE"))
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
