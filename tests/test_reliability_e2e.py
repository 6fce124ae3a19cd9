"""Faults on a real server, and what redisprobe says about each: the exit code, one line where it is an error,
a gap window that covers what was really lost (with how much, where the server tells), nothing left behind.

README's reliability table lists these faults and outcomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis

from tests.clirun import cli_env, run_cli
from tests.fakeservers import fake_server
from tests.monitorrun import MonitorRun

READER = "redisprobe.producers.observers.monitorreader"  # the MONITOR reader child's module


def _children(pid: int, module: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if module in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _named(client: redis.Redis, name: str) -> bool:
    return any(c.get("name") == name for c in client.client_list())


def _server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def _load(client: redis.Redis, prefix: str, count: int) -> tuple[float, float]:
    """`count` SETs, pipelined; the server time just before the first and just after the last."""
    start = _server_time(client)
    pipe = client.pipeline(transaction=False)
    for index in range(count):
        pipe.set(f"{prefix}:{index}", "v")
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    return start, _server_time(client)


@pytest.fixture
def server(private_server):
    client = redis.Redis.from_url(private_server.urls[0])
    yield private_server.urls[0], client
    client.close()


def test_monitor_cut_by_output_buffer_limit_reports_the_true_window_and_the_lost_count(server):
    url, client = server
    client.config_set("client-output-buffer-limit", "normal 256kb 0 0")  # MONITOR clients are "normal" ones
    run = MonitorRun("--url", url, "--json", "--no-enable-events", "--keys", "none")
    try:
        reader = _children(run.proc.pid, READER)[0]
        _load(client, "warm", 10)  # captured before the reader stalls
        time.sleep(1.5)  # at least one mark (server time + command count) reaches the spool
        reader.suspend()  # a reader that stopped reading: the server buffers MONITOR's output for it
        start, end = _load(client, "lost", 200_000)
        _wait(lambda: not _named(client, "redisprobe:observer:monitor"), what="the server to drop MONITOR")
        reader.resume()
        _wait(lambda: _named(client, "redisprobe:observer:monitor"), what="MONITOR to reconnect")
        time.sleep(0.5)
        doc = run.stop_json()
    finally:
        reader.resume() if reader.is_running() else None
        run.kill()
    gaps = [g for g in doc["gaps"] if g["source"] == "monitor"]
    assert len(gaps) == 1, doc["gaps"]
    gap = gaps[0]
    captured = doc["stats"]["commands"]
    # The commands MONITOR never delivered all ran within [start, end]: the gap starts at or before the last one
    # it did deliver (server time) and ends after the load; it does not start at the reader's receive time.
    assert start - 2.0 <= gap["from"] <= end, (gap, start, end)
    assert gap["until"] >= end, (gap, end)
    lost = 200_000 + 10 - captured
    assert lost > 1_000, captured  # the limit really cut it
    assert gap["lost"] is not None and abs(gap["lost"] - lost) <= max(200, lost * 0.02), (gap, lost)
    assert f"{gap['lost']:,}" in gap["reason"] or str(gap["lost"]) in gap["reason"], gap["reason"]


def _subscribed(client: redis.Redis) -> bool:
    return any(c.get("name") == "redisprobe:observer:keyspace" and int(c.get("psub", 0)) > 0
               for c in client.client_list())


def test_keyspace_subscriber_cut_by_output_buffer_limit_reports_the_true_window(server, tmp_path):
    url, client = server
    client.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    out = tmp_path / "trace.jsonl"
    run = MonitorRun("--url", url, "--json", "--enable-events", "--keys", "none", "--out", str(out))
    main = psutil.Process(run.proc.pid)
    try:
        time.sleep(1.5)  # at least one mark reaches the subscriber
        main.suspend()  # redisprobe stops reading its subscription (the MONITOR reader, a child, goes on)
        start, end = _load(client, "lost", 100_000)
        _wait(lambda: not _subscribed(client), what="the server to drop the keyspace subscriber")
        main.resume()
        _wait(lambda: _subscribed(client), what="the subscriber to come back")
        time.sleep(0.5)
        doc = run.stop_json()
    finally:
        main.resume() if main.is_running() else None
        run.kill()
    from redisprobe.trace import Keyspace, Monitor, load_trace

    _header, events = load_trace(out)
    delivered = {e.key for e in events if isinstance(e, Keyspace) and e.key.startswith(b"lost:")}
    ran_at = {e.args[1]: e.t for e in events if isinstance(e, Monitor) and len(e.args) > 1}
    first_lost = min(ran_at[f"lost:{i}".encode()] for i in range(100_000) if f"lost:{i}".encode() not in delivered)
    gaps = [g for g in doc["gaps"] if g["source"] == "keyspace"]
    assert len(gaps) == 1, doc["gaps"]
    gap = gaps[0]
    assert len(delivered) < 100_000 - 1_000  # the limit really cut it
    # The window covers every event that was lost: from before the first one the server published (it used to
    # start when the drop was noticed, tens of milliseconds wide) to after the load.
    assert start - 2.0 <= gap["from"] <= first_lost, (gap, first_lost)
    assert gap["until"] >= end, (gap, end)
    assert gap["lost"] is not None and gap["lost"] >= 100_000 - len(delivered), (gap, len(delivered))


# -- hangs ---------------------------------------------------------------------------------------------------


def _one_line_error(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "internal error" not in lines[0], result.err


@pytest.mark.parametrize("command", ["info", "monitor"])
def test_hung_server_times_out_once_after_the_connect_timeout(command):
    with fake_server("hung") as port:
        started = time.monotonic()
        result = run_cli(command, "--url", f"redis://127.0.0.1:{port}/0", "--connect-timeout", "1")
        elapsed = time.monotonic() - started
    _one_line_error(result, "timed out")
    assert elapsed < 10, elapsed  # it was about 37 s with a 3 s timeout: retries multiplied it


def _stopped_server(box) -> psutil.Process:  # type: ignore[no-untyped-def]
    return psutil.Process(box.servers[0].proc.pid)


def test_server_that_hangs_mid_capture_does_not_stretch_the_duration(private_server):
    url = private_server.urls[0]
    server = _stopped_server(private_server)
    run = MonitorRun("--url", url, "--duration", "4", "--enable-events", "--connect-timeout", "1")
    started = time.monotonic()
    try:
        server.suspend()  # the server hangs: every connection stays open, nothing answers
        _out, err = run.proc.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        server.resume()
        run.kill()
    assert elapsed < 4 + 12, elapsed  # it was 4 + about 70 s
    err = "".join(run.err_lines) + err
    assert "Traceback" not in err and "gave up" in err, err


def test_ctrl_c_with_a_hung_server_stops_within_seconds_saying_what_it_gave_up(private_server):
    url = private_server.urls[0]
    server = _stopped_server(private_server)
    run = MonitorRun("--url", url, "--enable-events", "--connect-timeout", "3")
    try:
        server.suspend()
        time.sleep(0.5)
        started = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        _out, err = run.proc.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        server.resume()
        run.kill()
    err = "".join(run.err_lines) + err
    assert run.proc.returncode == 130, err
    assert elapsed < 5, elapsed  # it ignored Ctrl-C for about a minute
    assert "gave up" in err and "notify-keyspace-events" in err, err


# -- leftovers -----------------------------------------------------------------------------------------------


def _env(tmp_path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A temp folder and a state folder of the test's own, so that what a run leaves is visible."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return cli_env(TMPDIR=str(tmp_path / "tmp"), REDISPROBE_STATE_DIR=str(tmp_path / "state"), **extra)


def _left(tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(p.name for p in (tmp_path / "tmp").iterdir())


def test_failed_start_leaves_nothing_in_the_temp_folder(server, tmp_path):
    url, client = server
    client.acl_setuser("nomonitor", enabled=True, passwords=["+pw-123456"], keys=["*"], channels=["*"],
                       commands=["+@all", "-monitor"])
    limited = url.replace("redis://", "redis://nomonitor:pw-123456@")
    result = run_cli("monitor", "--url", limited, "--duration", "1", env=_env(tmp_path))
    _one_line_error(result, "MONITOR")
    assert _left(tmp_path) == []  # the temp trace stayed behind


def test_ctrl_c_while_analysing_prints_what_is_ready_and_keeps_no_temp_trace(server, tmp_path):
    url, client = server
    run = MonitorRun("--url", url, "--no-enable-events", "--json", env=_env(tmp_path))
    try:
        _load(client, "big", 150_000)
        # The capture ends once the load is in (a fixed duration would, on a loaded machine, end it with a part of
        # the load only: a trace analysed before the second Ctrl-C could come), then Ctrl-C cuts the analysis.
        run.proc.send_signal(signal.SIGINT)
        line = ""
        while "analysing" not in line:
            line = run.proc.stderr.readline()
            assert line, "no analysing line"
        run.proc.send_signal(signal.SIGINT)
        out, err = run.proc.communicate(timeout=60)
    finally:
        run.kill()
    assert run.proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted while analysing" in err, err
    partial = json.loads(out)  # what was ready: the counts (when the summary had begun), no key lives
    assert partial["complete"] is False and not partial["keys"], partial["stats"]
    assert not partial["stats"] or partial["stats"]["commands"] > 0, partial["stats"]
    assert _left(tmp_path) == []  # an 84 MB trace was left behind


def test_what_a_killed_run_left_is_removed_by_the_next_run(server, tmp_path):
    url, client = server
    before = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    env = _env(tmp_path)
    run = MonitorRun("--url", url, "--enable-events", env=env)
    family = psutil.Process(run.proc.pid).children(recursive=True)
    run.proc.kill()  # kill -9: no way to clean up
    run.proc.wait()
    psutil.wait_procs(family, timeout=10)  # the reader child follows its parent (PR_SET_PDEATHSIG)
    assert client.config_get("notify-keyspace-events")["notify-keyspace-events"] != before
    assert any(name.startswith("redisprobe-monitor-") for name in _left(tmp_path)), _left(tmp_path)

    result = run_cli("info", "--url", url, "--json", env=env)
    assert result.code in (0, 1), result.err
    assert _left(tmp_path) == []
    assert "removed" in result.err and "no longer exist" in result.err, result.err
    assert client.config_get("notify-keyspace-events")["notify-keyspace-events"] == before
    assert "restored notify-keyspace-events" in result.err, result.err

    again = run_cli("info", "--url", url, "--json", env=env)  # said once, done once
    assert "restored" not in again.err and "removed" not in again.err, again.err


# -- Ctrl-C everywhere ---------------------------------------------------------------------------------------


def _ctrl_c_when(args: list[str], ready: str | None, tmp_path, *, after: float = 0.5):  # type: ignore[no-untyped-def]
    """Run the CLI in a process group of its own, press Ctrl-C (SIGINT to the group, as a terminal does) once
    `ready` shows in its trace (None: once an actor has run for 3 s), and return (exit code, stdout, stderr)."""
    out = tmp_path / "ctrl-c.jsonl"
    argv = [*args, "--out", str(out)] if ready is not None else args
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(tmp_path), start_new_session=True)

    def actor_running() -> bool:
        now = time.time()
        return any(now - p.create_time() > 3 for p in _children(proc.pid, "redisprobe.producers.actors.child"))

    try:
        if ready is None:
            _wait(actor_running, timeout=60, what="an actor")
        else:
            _wait(lambda: out.exists() and ready in out.read_text(errors="replace"), timeout=60, what=ready)
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr


def test_ctrl_c_in_isolation_prints_the_report_so_far(tmp_path):
    code, out, err = _ctrl_c_when(["isolation", "--topology", "split", "--timeout", "60"], '"actor-started"',
                                  tmp_path, after=1.0)
    assert code == 130 and "Traceback" not in err, err
    assert "Each actor's connection" in out and "run_id" in out, out  # the fingerprints were ready
    assert "interrupted" in err


def test_ctrl_c_in_ttl_race_prints_the_batches_so_far(tmp_path):
    code, out, err = _ctrl_c_when(["ttl-race", "--duration", "60", "--messages", "100"], '"op"', tmp_path,
                                  after=1.5)
    assert code == 130 and "Traceback" not in err, err
    assert "Batches" in out and "batch:0" in out, out
    assert "interrupted" in err


def test_ctrl_c_with_a_hung_user_server_gives_up_the_key_clean_up_within_seconds(private_server, tmp_path):
    """The run's own keys on a user's server are removed at the end; a hung server must not hold Ctrl-C for the
    connect timeout: the clean-up is given up (the keys carry a TTL) and said."""
    server = _stopped_server(private_server)
    out = tmp_path / "ctrl-c.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "ttl-race", "--url", private_server.urls[0],
                             "--duration", "60", "--messages", "100", "--connect-timeout", "5", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
                            start_new_session=True)
    try:
        _wait(lambda: out.exists() and '"op"' in out.read_text(errors="replace"), timeout=60, what="an op")
        server.suspend()
        time.sleep(0.3)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        server.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert "gave up removing this run's keys (redisprobe:" in stderr and "TTL" in stderr, stderr
    assert elapsed < 4, elapsed  # the clean-up alone waited the 5 s connect timeout


def _scenario(folder, name: str, seconds: float, max_seconds: float = 60):  # type: ignore[no-untyped-def]
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\ncatalog_id = "healthy"\nmax_seconds = {max_seconds}\nobserve = false\n'
                    f'[[actors]]\nrole = "api"\nsteps = [{{ do = ["SET", "{{ns}}k", "1", "EX", "60"] }}, '
                    f'{{ sleep = {seconds} }}]\n[expect]\nclean = true\n')
    return path


def test_ctrl_c_in_run_prints_the_scenarios_so_far(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    _scenario(folder, "a-quick", 0.1)
    _scenario(folder, "b-slow", 60)
    code, out, err = _ctrl_c_when(["run", str(folder / "a-quick.toml"), str(folder / "b-slow.toml"), "--junit",
                                   str(tmp_path / "r.xml")], None, tmp_path, after=0.2)
    assert code == 130 and "Traceback" not in err, err
    assert "a-quick" in out and "passed" in out and "b-slow" in out and "interrupted" in out, out
    assert "b-slow" in (tmp_path / "r.xml").read_text()


def test_a_scenario_over_max_seconds_is_a_timeout_not_a_crash(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    result = run_cli("run", str(_scenario(folder, "too-long", 30, max_seconds=2)), "--json", env=_env(tmp_path))
    assert result.code == 1, (result.code, result.err)
    scenario = result.json()["scenarios"][0]
    assert scenario["status"] == "failed", scenario
    assert any("max_seconds" in f and "timed out" in f for f in scenario["failures"]), scenario["failures"]
    assert not any("crashed" in f for f in scenario["failures"]), scenario["failures"]


# -- restarts, kills -----------------------------------------------------------------------------------------


def _events_config(client: redis.Redis) -> str:
    return client.config_get("notify-keyspace-events")["notify-keyspace-events"]


def _finish(run: MonitorRun, tmp_path) -> dict:  # type: ignore[no-untyped-def]
    """Ctrl-C; the summary's JSON. Every process it started is gone, and nothing is left in its temp folder."""
    family = psutil.Process(run.proc.pid).children(recursive=True)
    doc = run.stop_json(settle=0.5)
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], alive
    assert _left(tmp_path) == []
    return doc


def _covers(gap: dict, start: float, end: float) -> bool:
    return gap["from"] <= start + 0.05 and (gap["until"] or float("inf")) >= end - 0.05


def test_server_restart_mid_capture(private_server, tmp_path):
    url = private_server.urls[0]
    client = redis.Redis.from_url(url)
    before = _events_config(client)
    run = MonitorRun("--url", url, "--json", "--enable-events", env=_env(tmp_path))
    try:
        time.sleep(1.5)
        down = time.time()
        private_server.servers[0].stop()
        private_server.servers[0].start()
        up = time.time()
        client = redis.Redis.from_url(url)
        _wait(lambda: _named(client, "redisprobe:observer:monitor"), what="MONITOR to reconnect")
        doc = _finish(run, tmp_path)
    finally:
        run.kill()
    for source in ("monitor", "keyspace"):
        gaps = [g for g in doc["gaps"] if g["source"] == source]
        assert any(_covers(g, down, up) for g in gaps), (source, down, up, doc["gaps"])
    assert _events_config(client) == before  # our flags were set again after the restart, and restored
    client.close()


def test_client_kill_of_every_observer(server, tmp_path):
    url, client = server
    before = _events_config(client)
    run = MonitorRun("--url", url, "--json", "--enable-events", env=_env(tmp_path))
    try:
        time.sleep(1.5)
        killed = time.time()
        for name in ("redisprobe:observer:monitor", "redisprobe:observer:keyspace"):
            for entry in client.client_list():
                if entry.get("name") == name:
                    client.client_kill_filter(_id=entry["id"])
        _wait(lambda: _named(client, "redisprobe:observer:monitor") and _subscribed(client), what="reconnection")
        doc = _finish(run, tmp_path)
    finally:
        run.kill()
    for source in ("monitor", "keyspace"):
        gaps = [g for g in doc["gaps"] if g["source"] == source]
        assert any(g["from"] <= killed + 0.05 and g["until"] and g["until"] >= killed for g in gaps), (source, gaps)
    # nothing but admin commands (CLIENT LIST, CLIENT KILL) and our own PINGs ran meanwhile: MONITOR missed at most
    # those few, not "lost 10" for commands it never shows
    monitor_gap = next(g for g in doc["gaps"] if g["source"] == "monitor")
    assert monitor_gap["lost"] is not None and monitor_gap["lost"] <= 3, monitor_gap
    assert _events_config(client) == before


def test_kill_9_of_the_monitor_reader(server, tmp_path):
    url, client = server
    run = MonitorRun("--url", url, "--json", "--no-enable-events", "--keys", "while-dead:*", env=_env(tmp_path))
    try:
        time.sleep(1.5)  # a mark
        reader = _children(run.proc.pid, READER)[0]
        killed = time.time()
        reader.kill()
        reader.wait(10)
        pipe = client.pipeline(transaction=False)
        for index in range(200):
            pipe.set(f"while-dead:{index}", "v")
        pipe.execute()  # most likely before a new reader runs: lost, and counted
        _wait(lambda: any(p.pid != reader.pid for p in _children(run.proc.pid, READER))
              and _named(client, "redisprobe:observer:monitor"), what="a new reader")
        doc = _finish(run, tmp_path)
    finally:
        run.kill()
    gaps = [g for g in doc["gaps"] if g["source"] == "monitor"]
    assert len(gaps) == 1 and "reader process exited" in gaps[0]["reason"], gaps
    assert gaps[0]["from"] <= killed + 0.05 and gaps[0]["until"] >= killed, (gaps, killed)
    missed = 200 - len(doc["keys"])  # the SETs sent while no reader ran
    # counted from INFO, less the admin commands MONITOR never shows (our CLIENT LIST polls): the SETs, and the
    # few INFO our own observers sent meanwhile (a mark each second, the server check five times a second)
    assert gaps[0]["lost"] is not None and missed <= gaps[0]["lost"] <= missed + 15, (gaps, missed)


def test_ctrl_c_while_report_analyses_a_big_trace_prints_what_was_ready(tmp_path):
    from redisprobe import trace

    path = tmp_path / "big.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"), keep=False)
    t = 1_700_000_000.0
    writer.emit(trace.ClientSeen(t=t, client_id=7, addr="127.0.0.1:5000", target="redis://127.0.0.1:6379/0"))
    for block in range(100):  # a million MONITOR lines: several seconds of analysis
        lines = "".join(f'+{t + (block * 10_000 + i) / 1e4:.6f} [0 127.0.0.1:5000] "SET" "k:{i}" "v"\r\n'
                        for i in range(10_000))
        writer.emit(trace.monitor_lines(lines.encode(), "redis://127.0.0.1:6379/0"))
    writer.close()
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "report", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    partial = json.loads(out)
    assert partial["keys"] == [] and 0 < partial["stats"]["commands"] < 1_000_000, partial["stats"]
    assert partial["clients"], partial


def test_ctrl_c_while_the_json_is_written_still_gives_one_whole_document(tmp_path):
    from redisprobe import trace

    path = tmp_path / "keys.jsonl"
    writer = trace.TraceWriter(path, trace.Header(command="monitor"), keep=False)
    t = 1_700_000_000.0
    writer.emit(trace.ClientSeen(t=t, client_id=7, addr="127.0.0.1:5000", target="redis://127.0.0.1:6379/0"))
    lines = "".join(f'+{t + i / 1e4:.6f} [0 127.0.0.1:5000] "SET" "key:{i}" "v" "EX" "60"\r\n' for i in range(3000))
    writer.emit(trace.monitor_lines(lines.encode(), "redis://127.0.0.1:6379/0"))
    writer.close()
    proc = subprocess.Popen([sys.executable, "-m", "redisprobe", "report", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
    try:
        assert proc.stdout is not None
        head = proc.stdout.read(4096)  # the document has begun; the rest waits in a full pipe
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and b"Traceback" not in err, err
    document = json.loads(head + rest)  # a cut document would not parse
    assert len(document["keys"]) == 3000, len(document["keys"])
