"""A pytest plugin that saves every trace the suite folds, as trace files for the golden tests.

`python -m pytest -p golden.recorder` with REDISPROBE_GOLDEN_RECORD=DIR set: every call of the analysis entry
points (`fold`, `Lifecycle.run_rows`) made inside the test process is written to DIR as a trace file whose header
lists the watched pids, so `redisprobe report FILE --json` runs the same analysis on it later.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import msgspec

from redisprobe import trace

_DIR = os.environ.get("REDISPROBE_GOLDEN_RECORD")


def _save(events: list[trace.Event], watched: dict[int, str] | None) -> None:
    assert _DIR is not None
    body = b"".join(trace.encode(e) for e in events)
    header = trace.Header(argv=["golden"], command="monitor", started=0.0, targets={},
                          options={"pids": {str(k): v for k, v in (watched or {}).items()}})
    head = trace.encode(header)
    digest = hashlib.sha1(head + body).hexdigest()[:16]
    path = Path(_DIR) / f"folded-{digest}.jsonl"
    if not path.exists() and events:
        path.write_bytes(head + body)


def pytest_configure(config: object) -> None:
    if not _DIR:
        return
    Path(_DIR).mkdir(parents=True, exist_ok=True)
    from redisprobe.analysis.lifecycle import Lifecycle

    original = Lifecycle.run

    def recording_run(self, events):  # type: ignore[no-untyped-def]
        events = list(events)
        try:
            _save(events, self.attributor.watched)
        except (msgspec.EncodeError, TypeError):
            print("golden: could not save a folded trace", file=sys.stderr)
        return original(self, events)

    Lifecycle.run = recording_run  # type: ignore[method-assign]
