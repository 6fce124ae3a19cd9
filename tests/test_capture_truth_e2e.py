"""What a capture must get right on a live server it joins mid-flight: the baseline of keys that existed before,
`--keys` narrowing only what is shown, a server given twice, notify-keyspace-events changed by someone else."""

from __future__ import annotations

import subprocess
import time

import redis

from tests.clients import start_client
from tests.clirun import run_cli
from tests.monitorrun import MonitorRun, rules_of, start_monitor

# -- --keys narrows what is shown, never what the doctor sees -------------------------------------------------


def test_keys_pattern_keeps_a_finding_whose_cause_is_outside_it(url, stack):
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid}, "--keys", "batch:*")
    api.send("SET", "batch:7", "x", "EX", "1")
    api.send("EXPIRE", "batch_7", "30")  # the refresh names a key outside the pattern: the cause the user missed
    time.sleep(1.6)
    doc = run.stop_json()
    assert "ttl-refresh-missed" in rules_of(doc), doc["findings"]
    assert {k["key"] for k in doc["keys"]} <= {"batch:7"}  # the shown lives stay narrowed


def test_keys_pattern_keeps_findings_on_keys_all_outside_it_and_says_so(url, stack):
    api, processor = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "processor": processor.pid}, "--keys", "orders:*")
    api.send("RPUSH", "batch:1", "m1")
    api.send("EXPIRE", "batch:1", "60")
    processor.send("DEL", "batch:1")
    api.send("RPUSH", "batch:1", "m2")
    doc = run.stop_json()
    finding = next(f for f in doc["findings"] if f["rule"] == "deleted-by-client")
    assert "outside --keys" in finding["summary"]
    assert doc["keys"] == []


# -- one server given twice -----------------------------------------------------------------------------------


def test_the_same_server_given_twice_is_captured_once(private_server, stack):
    port = int(private_server.urls[0].rsplit(":", 1)[1].split("/")[0])
    api = start_client(stack, f"redis://127.0.0.1:{port}", cli=True)
    spec = f"api={api.pid}"
    run = MonitorRun("--url", f"redis://127.0.0.1:{port}", "--url", f"redis://localhost:{port}", "--pids", spec,
                     "--json", "--enable-events")
    stack.callback(run.kill)
    api.send("SET", "order:1", "x")
    api.send("GET", "order:1")
    doc = run.stop_json()
    assert doc["stats"]["commands"] == 2, doc["stats"]
    assert any("same server" in n["text"] for n in doc["notes"]), doc["notes"]
    assert "different-server" not in rules_of(doc)


# -- the baseline: keys that existed before the capture -------------------------------------------------------


def test_a_read_of_a_key_made_before_the_capture_is_not_a_miss(url, stack):
    db1 = url.rsplit("/", 1)[0] + "/1"
    admin = redis.Redis.from_url(db1)
    stack.callback(admin.close)
    admin.set("order:9", "made before anyone attached", ex=60)
    reader, writer = start_client(stack, db1), start_client(stack, url)
    run = start_monitor(stack, url, {"reader": reader.pid, "writer": writer.pid})
    assert "made before" in reader.send("GET", "order:9")
    writer.send("SET", "order:9", "a different order in db 0")
    doc = run.stop_json()
    assert doc["findings"] == [], doc["findings"]
    life = next(k for k in doc["keys"] if k["key"] == "order:9" and k["db"] == 1)
    assert life["preexisting"] and life["before_capture"]["type"] == "string" and life["reads"] == 1
    assert any("baseline" in n["text"] and "complete" in n["text"] for n in doc["notes"]), doc["notes"]


def test_the_baseline_gives_a_key_made_before_the_capture_its_ttl(url, stack):
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.set("rl:client-1", 0, px=8000)  # a rate-limit window opened before the capture
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid}, "--keys", "rl:*")
    api.send("SET", "rl:client-1", "0", "EX", "1", "NX")  # opens a window only once: a no-op on a live counter
    api.send("INCR", "rl:client-1")
    left = admin.pttl("rl:client-1")
    assert left > 0  # still the window opened before the capture
    time.sleep(left / 1000 + 0.6)
    doc = run.stop_json()
    assert doc["findings"] == [], doc["findings"]
    life = next(k for k in doc["keys"] if k["key"] == "rl:client-1")
    assert life["removed"]["how"] == "expired" and life["expired_on_time"], life
    notes = [n["text"] for n in doc["notes"]]
    assert any("1 key existed (complete" in text for text in notes), notes  # rl:* and, room left, every key


def test_the_baseline_is_bounded_and_says_when_it_was_cut(url):
    from redisprobe.producers.observers.baseline_scan import take_baseline
    from redisprobe.targets.url import parse_target

    admin = redis.Redis.from_url(url)
    admin.mset({f"bulk:{n}": n for n in range(50)})
    admin.close()
    found = take_baseline(parse_target(url), max_keys=10)
    assert sum(len(e.keys) for e in found.events) == 10
    assert not found.events[-1].complete and "10-key bound" in found.note and "unknown" in found.note
    matching = {f"bulk:{n}".encode() for n in [1, *range(10, 20)]}
    found = take_baseline(parse_target(url), ("bulk:1*",), max_keys=20)
    (event,) = found.events
    assert matching < set(event.keys) and len(event.keys) == 15  # the pattern's 11, then half the room left
    assert event.complete and event.patterns == ["bulk:1*"] and found.level == "info"
    found = take_baseline(parse_target(url), ("bulk:1*",))
    (event,) = found.events
    assert len(event.keys) == 50 and event.complete and event.patterns == []  # room for every key: all covered


# -- notify-keyspace-events changed by someone else during the capture ---------------------------------------


def test_events_turned_off_mid_run_are_a_gap_and_never_findings(url, stack):
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "before", "1", "EX", "60")  # events flow: from here on, a missing one would be read as a fact
    time.sleep(0.3)
    admin.config_set("notify-keyspace-events", "")  # another tool turns them off
    time.sleep(1.5)  # re-read at least once meanwhile
    for n in range(3):
        api.send("SET", f"batch:{n}", "x", "EX", "1")
        api.send("EXPIRE", f"batch:{n}", "2")  # took effect: only its (lost) `expire` event would say so
    time.sleep(2.5)  # they expire while events are off
    admin.config_set("notify-keyspace-events", "KEA")  # and back on, with their own flags
    time.sleep(1.5)
    api.send("SET", "after", "1", "EX", "60")  # an event after the hole: the stream has moved past those EXPIREs
    api.send("EXPIRE", "after", "90")
    doc = run.stop_json(settle=1.0)
    assert doc["findings"] == [], doc["findings"]
    gaps = [g for g in doc["gaps"] if g["source"] == "keyspace" and "notify-keyspace-events" in g["reason"]]
    assert len(gaps) == 1 and gaps[0]["until"] is not None, doc["gaps"]
    assert any("changed to ''" in n["text"] for n in doc["notes"]), doc["notes"]
    # their value stands: our restore on exit does not undo another client's change
    assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] in ("AKE", "KEA", "AEK")


def test_events_still_off_when_the_capture_ends_are_an_open_gap(url, stack):
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "before", "1", "EX", "60")
    time.sleep(0.3)
    admin.config_set("notify-keyspace-events", "")
    api.send("SET", "batch:1", "x", "EX", "1")
    api.send("EXPIRE", "batch:1", "2")
    time.sleep(2.5)
    doc = run.stop_json()
    assert doc["findings"] == [], doc["findings"]
    gaps = [g for g in doc["gaps"] if g["source"] == "keyspace" and "notify-keyspace-events" in g["reason"]]
    assert len(gaps) == 1 and gaps[0]["until"] is None and "still so" in gaps[0]["reason"], doc["gaps"]
    assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""


# -- info --pids never says healthy about a process it could not check ---------------------------------------


def test_info_pids_with_a_password_it_lacks_is_unknown_and_says_what_to_pass(private_server, stack):
    url = private_server.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    admin = redis.Redis.from_url(url)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    api = start_client(stack, f"redis://:s3cret@127.0.0.1:{port}/0")
    result = run_cli("info", "--pids", f"api={api.pid}", "--json")
    assert result.code == 1, (result.code, result.err)
    doc = result.json()
    assert doc["findings"] == [] and len(doc["unknown"]) == 1
    assert f"pid {api.pid} (api)" in doc["unknown"][0] and "--url" in doc["unknown"][0]
    text = run_cli("info", "--pids", f"api={api.pid}")
    assert text.code == 1 and "unknown" in text.out and "reaches the same server" not in text.out
    given = run_cli("info", "--pids", f"api={api.pid}", "--url", f"redis://:s3cret@127.0.0.1:{port}/0", "--json")
    assert given.code == 0 and given.json()["unknown"] == [], given.out
    assert "s3cret" not in result.out + text.out + given.out


def test_info_pids_refused_by_the_server_the_process_uses_is_unknown(private_server, stack):
    url = private_server.urls[0]
    api = start_client(stack, url)
    admin = redis.Redis.from_url(url)
    admin.config_set("maxclients", "1")  # the process's connection stays; ours will be refused
    admin.close()
    try:
        result = run_cli("info", "--pids", f"api={api.pid}", "--json")
    finally:
        api.send("CONFIG", "SET", "maxclients", "10000")
    assert result.code == 1, (result.code, result.out, result.err)
    (line,) = result.json()["unknown"]
    assert "max number of clients" in line and f"pid {api.pid}" in line


# -- monitor --pids: a listed process the capture never saw ---------------------------------------------------


def test_a_listed_process_connected_elsewhere_is_told_where(private_server, stack):
    from redisprobe.targets.sandbox import sandbox

    other = stack.enter_context(sandbox("single"))
    other_port = int(other.urls[0].rsplit(":", 1)[1].split("/")[0])
    url = private_server.urls[0]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    api, lost = start_client(stack, url), start_client(stack, other.urls[0])
    sleeper = subprocess.Popen(["sleep", "60"])
    stack.callback(sleeper.kill)
    run = start_monitor(stack, url, {"api": api.pid, "lost": lost.pid, "idle": sleeper.pid})
    api.send("SET", "order:1", "x")
    lost.send("GET", "order:1")  # on the other server: nothing here shows it
    doc = run.stop_json()
    notes = [n["text"] for n in doc["notes"] if n["level"] == "warning"]
    assert any(f"pid {lost.pid} (lost) has no connection to 127.0.0.1:{port}; it is connected to "
               f"127.0.0.1:{other_port}" in text for text in notes), notes
    assert any(f"pid {sleeper.pid} (idle) is not a Redis client" in text for text in notes), notes
    assert not any(f"pid {api.pid}" in text for text in notes), notes


def test_the_baseline_is_said_kept_in_the_trace_and_its_own_reads_are_not_shown(url, stack, tmp_path):
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.set("pre:1", "a", ex=100)
    admin.set("pre:2", "b")
    api = start_client(stack, url)
    out = tmp_path / "capture.jsonl"
    run = MonitorRun("--url", url, "--pids", f"api={api.pid}", "--enable-events", "--out", str(out))
    stack.callback(run.kill)
    api.send("GET", "pre:1")
    code, stdout, err = run.stop()
    assert code == 130 and "Traceback" not in err
    assert "baseline of" in err and "2 keys existed (complete" in err
    assert "TYPE" not in stdout and "PTTL" not in stdout and "SCAN" not in stdout  # the baseline's own reads
    assert "before the capture" in stdout
    report = run_cli("report", str(out), "--json")
    doc = report.json()
    assert {k["key"] for k in doc["keys"] if k.get("before_capture")} == {"pre:1", "pre:2"}
    assert doc["stats"]["commands"] == 1 and doc["findings"] == [], (doc["stats"], doc["findings"])


def test_info_pids_whose_db_could_not_be_read_is_unknown(private_server, stack):
    url = private_server.urls[0]
    api = start_client(stack, url)
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.acl_setuser("default", enabled=True, reset=False, commands=["-client|list"])  # INFO allowed
    try:
        result = run_cli("info", "--pids", f"api={api.pid}", "--json")
    finally:
        admin.acl_setuser("default", enabled=True, reset=False, commands=["+client|list"])
    assert result.code == 1, (result.code, result.out, result.err)
    (line,) = result.json()["unknown"]
    assert "CLIENT LIST refused" in line and f"pid {api.pid}" in line


def test_a_baseline_the_server_refuses_is_said_and_leaves_key_states_unknown(url):
    from redisprobe.producers.observers.baseline_scan import take_baseline
    from redisprobe.targets.url import parse_target

    admin = redis.Redis.from_url(url)
    admin.set("k", "v")
    admin.acl_setuser("noscan", enabled=True, passwords=["+pw-123456"], keys=["*"], commands=["+@all", "-scan"])
    admin.close()
    limited = url.replace("redis://", "redis://noscan:pw-123456@")
    found = take_baseline(parse_target(limited))
    assert found.level == "warning" and "no baseline" in found.note and "unknown" in found.note
    (event,) = found.events
    assert event.keys == [] and not event.complete and event.peer  # our own lines stay ours
