"""`monitor --source wire` streams: the spool is parsed while the capture runs, so commands and replies reach the
trace and the live timeline as they come; the spool is written in segments deleted once parsed, and a spool over
its disk budget is a gap with a count, never a silent loss."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import redis

from redisprobe import trace
from redisprobe.producers.wire import source as session
from redisprobe.producers.wire.offline import Reassembler
from redisprobe.producers.wire.sniffer import WireCapture
from redisprobe.producers.wire.source import LATE_AFTER
from redisprobe.producers.wire.spool import SpoolFollower
from redisprobe.targets.sandbox import Sandbox
from tests.monitorrun import MonitorRun

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a packet capture needs root or CAP_NET_RAW")


class Lines(threading.Thread):
    """A running command's stdout, collected as it comes."""

    def __init__(self, run: MonitorRun) -> None:
        super().__init__(daemon=True)
        self.stream = run.proc.stdout
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        assert self.stream is not None
        for line in self.stream:
            self.lines.append(line)


def wait_for(check: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def trace_commands(path: Path) -> list[list[bytes]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines()[1:]:
        try:
            event = trace.decode_event(line)
        except Exception:  # a line being written
            continue
        if isinstance(event, trace.Monitor):
            out.append(event.args)
    return out


def test_commands_and_replies_reach_the_trace_and_the_timeline_while_capturing(private_server: Sandbox,
                                                                                tmp_path: Path) -> None:
    url = private_server.servers[0].url
    out = tmp_path / "trace.jsonl"
    run = MonitorRun("--url", url, "--source", "wire", "--out", str(out), "--no-enable-events")
    stdout = Lines(run)
    try:
        client = redis.Redis.from_url(url, single_connection_client=True)
        client.set("stream:a", "1")
        assert client.get("stream:missing") is None
        assert client.expire("stream:missing", 100) is False
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                client.set("stream:refused", "x")
        finally:
            client.config_set("maxmemory", "0")
        # Still capturing: the commands are in the trace file and the timeline already.
        assert wait_for(lambda: [b"CONFIG", b"SET", b"maxmemory", b"0"] in trace_commands(out)), trace_commands(out)
        assert [b"EXPIRE", b"stream:missing", b"100"] in trace_commands(out)
        assert [b"SET", b"stream:refused", b"x"] not in trace_commands(out)  # the server never ran it

        def row(command: str, key: str) -> str:
            found = [x for x in stdout.lines if f" {command} " in x and key in x]
            return found[0] if found else ""

        rows = (("SET", "stream:a"), ("GET", "stream:missing"), ("EXPIRE", "stream:missing"), ("SET", "stream:refused"))
        assert wait_for(lambda: all(row(*r) for r in rows)), "".join(stdout.lines)
        assert "MISS" in row("GET", "stream:missing")
        assert "did nothing" in row("EXPIRE", "stream:missing")
        assert "REFUSED: OOM" in row("SET", "stream:refused")
        assert "MISS" not in row("SET", "stream:a") and "REFUSED" not in row("SET", "stream:a")
        client.close()
        assert run.proc.poll() is None
        code, _out, err = run.stop()
        assert code == 130 and "Traceback" not in err, err
    finally:
        run.kill()
    _header, events = trace.load_trace(out)
    mine = [e.args for e in events if isinstance(e, trace.Monitor) and e.args[0] in (b"SET", b"GET", b"EXPIRE")]
    assert mine.count([b"SET", b"stream:a", b"1"]) == 1  # streamed once, not again at the end
    newest = float("-inf")
    for event in events:
        assert event.t >= newest - trace.REORDER_WINDOW
        newest = max(newest, event.t)


def load(url: str, commands: int) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for n in range(commands):
        pipe.set(f"seg:{n % 500}", "x" * 100)
        if len(pipe) >= 200:
            pipe.execute()
    pipe.execute()
    client.close()


def test_the_spool_is_segmented_and_each_segment_goes_once_parsed(private_server: Sandbox, tmp_path: Path) -> None:
    server = private_server.servers[0]
    wire = WireCapture(server.port, tmp_path, interface="lo", segment_bytes=256 << 10)
    wire.start()
    follower = SpoolFollower(wire.spool)
    reassembler = Reassembler(server.port)
    most_on_disk = created = 0
    try:
        worker = threading.Thread(target=load, args=(server.url, 20_000))
        worker.start()
        while worker.is_alive():
            reassembler.records(follower.read())
            while follower.more:  # caught up: what is on disk now is what the reader wrote since
                reassembler.records(follower.read())
            on_disk = wire.segments()
            most_on_disk = max(most_on_disk, len(on_disk))
            created = max([created, *(int(p.suffix[1:]) for p in on_disk if p.suffix[1:].isdigit())])
            time.sleep(0.05)
        worker.join()
        time.sleep(0.3)
        wire.stop()
        while True:
            reassembler.records(follower.read())
            if not follower.more:
                break
        result = reassembler.finish()
    finally:
        follower.close()
        wire.stop()
        wire.remove()
    sets = [ex for ex in result.exchanges if ex.args[0] == b"SET" and ex.reply == b"OK"]
    assert len(sets) == 20_000 and not result.gaps
    assert created >= 8  # more than 2 MB went by in 256 KiB segments
    assert most_on_disk <= 3  # the current one, and what was written between the read and the look
    assert wire.segments() == []


def test_a_spool_over_its_disk_budget_is_a_gap_with_a_count(private_server: Sandbox, tmp_path: Path) -> None:
    server = private_server.servers[0]
    wire = WireCapture(server.port, tmp_path, interface="lo", segment_bytes=128 << 10, budget_bytes=512 << 10)
    wire.start()
    try:
        load(server.url, 20_000)  # about 3 MB of packets, nothing parsing them meanwhile
        time.sleep(0.3)
        wire.stop()
        on_disk = sum(path.stat().st_size for path in wire.segments())
        result = wire.result()
    finally:
        wire.stop()
        wire.remove()
    assert on_disk < (512 + 128 + 64) << 10  # the budget, a segment, and what one flush may add
    assert result.skipped > 0
    gaps = [g for g in result.gaps if "disk budget" in g.reason]
    assert gaps and f"{result.skipped:,} packets" in gaps[0].reason and gaps[0].until > gaps[0].t
    assert sum(1 for ex in result.exchanges if ex.args[0] == b"SET" and ex.reply == b"OK") < 20_000


def test_a_blocking_command_answered_late_is_merged_into_the_trace_in_time_order(private_server: Sandbox,
                                                                                 tmp_path: Path) -> None:
    url = private_server.servers[0].url
    out = tmp_path / "trace.jsonl"
    run = MonitorRun("--url", url, "--source", "wire", "--json", "--out", str(out), "--no-enable-events")
    try:
        waiter = redis.Redis.from_url(url, single_connection_client=True)
        pusher = redis.Redis.from_url(url, single_connection_client=True)
        popped: list[object] = []
        blocked = threading.Thread(target=lambda: popped.append(waiter.blpop(["late:q"], timeout=30)))
        blocked.start()
        time.sleep(LATE_AFTER + 1.5)  # its reply comes later than the trace's order allows a streamed event
        pusher.rpush("late:q", "job")
        blocked.join(30)
        assert popped == [(b"late:q", b"job")]
        assert wait_for(lambda: [b"RPUSH", b"late:q", b"job"] in trace_commands(out))
        assert [b"BLPOP", b"late:q", b"30"] not in trace_commands(out)  # kept aside while capturing
        run.stop_json()
    finally:
        run.kill()
    _header, events = trace.load_trace(out)
    order = [e.args[0] for e in events if isinstance(e, trace.Monitor) and e.args[0] in (b"BLPOP", b"RPUSH")]
    assert order == [b"BLPOP", b"RPUSH"]  # merged at its place: it was sent first
    reply = next(e for e in events if isinstance(e, trace.WireReply) and e.reply == ["late:q", "job"])
    assert reply.latency > LATE_AFTER
    newest = float("-inf")
    for event in events:
        assert event.t >= newest - trace.REORDER_WINDOW
        newest = max(newest, event.t)


def test_events_kept_aside_spill_to_sorted_runs_and_come_back_in_order(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "_RUN", 50)
    late = session._LateEvents(tmp_path)
    times = [1000.0 + (n * 7919 % 401) / 10 for n in range(401)]  # every time once, out of order
    for start in range(0, len(times), 30):
        late.add([trace.Monitor(t=t, db=0, peer="1.2.3.4:5", args=[b"GET", b"k%d" % n])
                  for n, t in enumerate(times[start:start + 30], start)])
    assert len(late.runs) >= 5 and all(path.stat().st_mode & 0o077 == 0 for path in late.runs)
    back = list(late.ordered())
    assert [e.t for e in back] == sorted(times)
    late.remove()
    assert not list(tmp_path.iterdir())
