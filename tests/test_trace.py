"""The trace: strict round-trips, tolerance of a torn last line, clear errors for bad or newer files."""

from __future__ import annotations

import pytest

from redisprobe import trace
from redisprobe.errors import TraceFormatError
from redisprobe.trace.monitor_text import parse_monitor_line
from tests.clirun import run_cli


def _sample_events() -> list[trace.Event]:
    fp = trace.ServerFingerprint(run_id="abc", host="127.0.0.1", port=6379, version="7.0.15", role="master")
    return [
        trace.ActorStarted(t=1.0, pid=10, role="api", target="redis://127.0.0.1:6379/0", client_id=3, server=fp),
        trace.Op(t=1.1, mono=5.0, pid=10, role="api", client_id=3, db=0, args=[b"SET", b"k\xff\x00", b"a b"],
                 reply="OK"),
        trace.Monitor(t=1.2, db=0, peer="127.0.0.1:5000", args=[b"DEL", b"k\xff\x00"]),
        trace.Keyspace(t=1.3, db=0, event="del", key=b"k\xff\x00"),
        trace.Gap(t=1.4, source="monitor", reason="connection lost", until=1.9),
        trace.ActorExited(t=2.0, pid=10, role="api", returncode=0),
    ]


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "t.jsonl"
    header = trace.Header(command="isolation", argv=["redisprobe", "isolation"], targets={"api": "redis://x"})
    writer = trace.TraceWriter(path, header)
    for event in _sample_events():
        writer.emit(event)
    writer.close()
    loaded_header, events = trace.load_trace(path)
    assert loaded_header == header
    assert events == _sample_events()


def test_readable_while_being_written_and_after_a_torn_write(tmp_path):
    path = tmp_path / "t.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"))
    for event in _sample_events()[:3]:
        writer.emit(event)
    # not closed: a crashed writer; and a half-written last line
    with path.open("ab") as handle:
        handle.write(trace.encode(_sample_events()[3])[:20])
    _, events = trace.load_trace(path)
    assert events == _sample_events()[:3]
    writer.close()


def test_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [trace.encode(trace.Header()), b'{"type":"op","t":"soon"}\n', trace.encode(_sample_events()[0])]
    path.write_bytes(b"".join(lines))
    with pytest.raises(TraceFormatError, match=r"t\.jsonl:2: malformed"):
        trace.load_trace(path)


def test_a_big_trace_is_read_whole_and_a_bad_line_far_in_is_named(tmp_path):
    """Traces are decoded a block of lines at a time: every event comes back, line numbers stay exact."""
    path = tmp_path / "t.jsonl"
    events = [trace.Monitor(t=float(n), db=0, peer="127.0.0.1:5000", args=[b"SET", b"k%d" % n, b"v" * 40])
              for n in range(30_000)]  # about 3 MiB: several blocks
    lines = [trace.encode(trace.Header())] + [trace.encode(event) for event in events]
    path.write_bytes(b"".join(lines) + b"\n")  # a blank line at the end is fine
    assert trace.load_trace(path)[1] == events
    lines[25_000] = b'{"type":"monitor","t":"late"}\n'
    path.write_bytes(b"".join(lines) + trace.encode(events[0])[:30])  # and a torn last write
    with pytest.raises(TraceFormatError, match=r"t\.jsonl:25001: malformed"):
        trace.load_trace(path)
    lines[25_000] = trace.encode(events[24_999])
    path.write_bytes(b"".join(lines) + trace.encode(events[0])[:30])
    assert trace.load_trace(path)[1] == events


def test_newer_format_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(trace.encode(trace.Header(format=trace.TRACE_FORMAT + 1)))
    with pytest.raises(TraceFormatError, match="please upgrade"):
        trace.load_trace(path)


def test_isolation_trace_re_renders_with_the_same_verdict(tmp_path):
    out = tmp_path / "split.jsonl"
    live = run_cli("isolation", "--topology", "split", "--timeout", "0.5", "--json", "--out", str(out))
    assert live.code == 1
    header, events = trace.load_trace(out)
    assert header.command == "isolation"
    assert "--out" in header.argv
    kinds = {type(e).__name__ for e in events}
    assert {"ActorStarted", "Op", "Check", "ActorExited"} <= kinds
    offline = run_cli("report", str(out), "--json")
    assert offline.code == 1
    assert offline.json()["verdict"] == live.json()["verdict"] == "not-visible"
    assert [f["rule"] for f in offline.json()["findings"]] == ["different-server"]
    text = run_cli("report", str(out))
    assert "different-server" in text.out and "Traceback" not in text.err


# -------------------------------------------------------------------- MONITOR lines stored as the server sent them

RAW_LINES = [
    b'+1700000000.000001 [0 127.0.0.1:5000] "SET" "k\\xff\\x00" "a \\"b\\" \\\\ \\r\\n\\t\\a\\b"',
    b'+1700000000.000002 [3 lua] "DEL" "k"',
    b'+1700000000.000003 [0 unix:/tmp/r\xc3\xa9dis.sock] "GET" ""',  # a socket path is printed as is
    b'+1700000000.000004 [0 [::1]:6000] "EXPIRE" "k\\\\" "10"',
]


def test_monitor_lines_are_stored_raw_and_read_back_as_monitor_events(tmp_path):
    """The capture copies MONITOR lines into the trace unparsed; every reader gets exact Monitor events."""
    data = b"".join(line + b"\r\n" for line in RAW_LINES)
    block = trace.monitor_lines(data, target="api")
    assert (block.t, block.until) == (1700000000.000001, 1700000000.000004)
    path = tmp_path / "t.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"), keep=False)
    writer.emit_many([block, trace.Keyspace(t=1700000000.5, db=0, event="del", key=b"k")])
    writer.close()
    stored = path.read_bytes()
    assert b'{"type":"monitor-raw","t":1700000000.000001,"until":1700000000.000004,"target":"api","size":%d}\n' \
        % len(data) + data in stored  # the bytes as the server sent them, escaped into no JSON string
    assert b'"monitor-lines"' not in stored and b'"type":"monitor"' not in stored
    _, events = trace.load_trace(path)
    expected = [parse_monitor_line(line) for line in RAW_LINES]
    assert [(e.t, e.db, e.peer, e.args, e.target) for e in events[:4]] == \
        [(m.ts, m.db, m.peer, m.args, "api") for m in expected]
    assert events[2].peer == "unix:/tmp/rédis.sock"
    assert events[0].args == [b"SET", b"k\xff\x00", b'a "b" \\ \r\n\t\a\b']
    assert isinstance(events[4], trace.Keyspace)


def test_a_format_1_trace_with_monitor_blocks_as_json_still_reads(tmp_path):
    """Traces written before raw MONITOR blocks (format 1) hold them as JSON `monitor-lines` records."""
    import msgspec

    from redisprobe.trace.schema import MonitorLinesV1

    data = b"".join(line + b"\r\n" for line in RAW_LINES)
    block = MonitorLinesV1(t=1700000000.000001, until=1700000000.000004, lines=data.decode("latin-1"), target="api")
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(record) + b"\n" for record in [
        trace.Header(command="monitor", format=1), block, trace.Keyspace(t=1700000000.5, db=0, event="del", key=b"k"),
        block]))
    _, events = trace.load_trace(path)
    assert [type(e).__name__ for e in events] == ["Monitor"] * 4 + ["Keyspace"] + ["Monitor"] * 4
    assert events[0].args == [b"SET", b"k\xff\x00", b'a "b" \\ \r\n\t\a\b'] == events[5].args


def test_raw_monitor_blocks_read_across_buffer_edges_and_a_torn_end_keeps_whole_lines(tmp_path):
    """Blocks bigger than a read, JSON lines between them, and a writer killed mid-block: every whole line is
    read back, in order, and nothing else."""
    line = b'+1700000000.000001 [0 127.0.0.1:5000] "SET" "key:%07d" "v"\r\n'
    path = tmp_path / "t.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"), keep=False)
    count = 0
    for round_ in range(3):
        data = b"".join(line % (count + i) for i in range(30000))  # ~1.7 MB: more than one read of the loader
        count += 30000
        note = trace.Note(t=1.0 + round_, level="info", text=f"n{round_}")
        writer.emit_many([trace.monitor_lines(data, target="api"), note])
    writer.close()
    _, events = trace.load_trace(path)
    monitors = [e for e in events if isinstance(e, trace.Monitor)]
    assert [e.args[1] for e in monitors] == [b"key:%07d" % i for i in range(count)]
    assert [e.text for e in events if isinstance(e, trace.Note)] == ["n0", "n1", "n2"]
    stored = path.read_bytes()
    cut = stored.rfind(b"key:0075000")  # the middle of a line of the last block
    path.write_bytes(stored[:cut])
    _, events = trace.load_trace(path)
    monitors = [e for e in events if isinstance(e, trace.Monitor)]
    assert [e.args[1] for e in monitors] == [b"key:%07d" % i for i in range(75000)]


def test_a_malformed_stored_line_becomes_a_gap_where_it_was(tmp_path):
    data = b"".join(line + b"\r\n" for line in [RAW_LINES[0], b"not a MONITOR line", RAW_LINES[1]])
    path = tmp_path / "t.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"))
    writer.emit_many([trace.monitor_lines(data, target="api")])
    writer.close()
    for events in (trace.load_trace(path)[1], writer.events):
        assert [type(e).__name__ for e in events] == ["Monitor", "Gap", "Monitor"]
        assert events[1].source == "monitor" and "could not be parsed" in events[1].reason
        assert "not a MONITOR line" in events[1].reason and events[1].target == "api"


def test_writer_hands_listeners_and_transforms_monitor_events_not_blocks(tmp_path):
    """An in-memory run (isolation, ttl-race) and the live timeline see Monitor events; redaction applies."""
    from redisprobe.trace.redact import redacting

    seen: list[trace.Event] = []
    path = tmp_path / "t.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"))
    writer.subscribe(seen.append)
    writer.transform = redacting
    writer.emit_many([trace.monitor_lines(RAW_LINES[0] + b"\r\n", target="api")])
    writer.close()
    assert seen == writer.events == trace.load_trace(path)[1]
    (event,) = seen
    assert isinstance(event, trace.Monitor) and event.args[:2] == [b"SET", b"k\xff\x00"]
    assert event.args[2].startswith(b"<redacted ") and b"a \\" not in path.read_bytes()
