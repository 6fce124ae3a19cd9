"""The fold with a capture's baseline, on hand-made traces: what existed at the start is alive from the start."""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis.digest import summarise
from tests.tracebuild import T0, TARGET, TraceBuilder


def _baseline(tb: TraceBuilder, keys: dict[str, float | None], *, took: float = 0.05, patterns: list[str] | None = None,
              complete: bool = True, peer: str = "127.0.0.1:40000") -> None:
    expires = [None if v is None else T0 + v for v in keys.values()]
    tb.add(trace.Baseline(t=tb.now, until=tb.now + took, db=0, keys=[k.encode() for k in keys],
                          types=["string"] * len(keys), expires_at=expires,
                          patterns=patterns or [], complete=complete, peer=peer, target=TARGET))


def test_reads_during_the_scan_of_a_key_it_found_are_not_misses_and_its_own_lines_are_left_out() -> None:
    tb = TraceBuilder()
    reader = tb.client("reader", pid=200, client_id=8, port=5002)
    _baseline(tb, {"order:1": 5.0, "order:2": None})
    reader("GET", "order:1")  # during the scan: the fold has not applied the baseline yet
    tb.monitor("127.0.0.1:40000", "TYPE", "order:2")  # the scan's own read
    tb.at(1.0)
    reader("GET", "order:2")
    tb.at(6.0)
    reader("GET", "order:1")  # after the TTL it had at the start: gone
    summary = summarise(sorted(tb.events, key=lambda e: e.t), watched={200: "reader"})
    lives = {k["key"]: k for k in summary.keys}
    assert lives["order:1"]["before_capture"] and lives["order:1"]["removed"]["how"] == "expired"
    assert lives["order:1"]["expired_on_time"] and lives["order:1"]["reads"] == 0  # the first read was retracted...
    assert lives["order:2"]["reads"] == 1 and lives["order:2"]["removed"] is None  # ...and TYPE was not a read
    assert summary.stats["commands"] == 3 and summary.findings == []


def test_a_key_the_capture_saw_made_during_the_scan_keeps_what_the_capture_saw() -> None:
    tb = TraceBuilder()
    writer = tb.client("writer", pid=100, client_id=7, port=5001)
    _baseline(tb, {"batch:1": None}, took=0.1)
    writer("RPUSH", "batch:1", "a")  # made during the scan, which then found it
    summary = summarise(sorted(tb.events, key=lambda e: e.t), watched={100: "writer"})
    (life,) = summary.keys
    assert life["created_by"]["pid"] == 100 and "before_capture" not in life


def test_a_miss_on_a_key_the_baseline_did_not_cover_says_its_state_is_unknown() -> None:
    from redisprobe.analysis.lifecycle import fold

    tb = TraceBuilder()
    reader = tb.client("reader", pid=200, client_id=8, port=5002)
    _baseline(tb, {"orders:1": None}, patterns=["orders:*"])
    tb.at(0.5)
    reader("GET", "orders:2")  # covered and absent: a miss
    reader("GET", "session:9")  # not covered: unknown
    lives = fold(sorted(tb.events, key=lambda e: e.t), watched={200: "reader"})
    rows = {row.key: row.effect for row in lives.timeline().rows}
    assert rows["orders:2"] == "missed: no such key"
    assert rows["session:9"].startswith("unknown")
    certain = {slot.key: slot.miss_log[0][3] for slot in lives.slot_items() if slot.miss_log}
    assert certain == {b"orders:2": True}  # the rules never see the unknown one as a miss


def test_a_read_of_an_unknown_key_is_no_different_db_finding() -> None:
    tb = TraceBuilder()
    reader = tb.client("reader", pid=200, client_id=8, port=5002, db=1)
    writer = tb.client("writer", pid=100, client_id=7, port=5001)
    tb.add(trace.Baseline(t=tb.now, until=tb.now + 0.05, db=1, keys=[b"other:1"], types=["string"],
                          expires_at=[None], complete=False, reason="the 1-key bound", target=TARGET))
    tb.at(0.5)
    reader("GET", "order:9", db=1)  # made before the capture in db 1? The cut baseline cannot say
    writer("SET", "order:9", "x")
    summary = summarise(sorted(tb.events, key=lambda e: e.t), watched={200: "reader", 100: "writer"})
    assert summary.findings == []
