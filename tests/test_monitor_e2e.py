"""`redisprobe monitor --pids` end to end: independent client processes (redis-py and redis-cli) commit each
defect against a real server while the real CLI captures; the doctor must name the rule and the pid."""

from __future__ import annotations

import time

import pytest
import redis

from tests.clients import start_client
from tests.monitorrun import MonitorRun, start_monitor


def _finding(doc: dict, rule: str) -> dict:
    rules = [f["rule"] for f in doc["findings"]]
    assert rule in rules, (rule, doc["findings"])
    return next(f for f in doc["findings"] if f["rule"] == rule)


def _culprit_is(finding: dict, pid: int) -> None:
    assert finding["culprit"] and finding["culprit"]["pid"] == pid, finding
    assert any(f"pid {pid}" in line for line in finding["evidence"]), finding["evidence"]


# -- removals ------------------------------------------------------------------------------------------------


def test_deleted_by_client_names_the_deleting_redis_cli(url, stack):
    api, processor = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "processor": processor.pid})
    api.send("RPUSH", "batch:1", "m1")
    api.send("EXPIRE", "batch:1", "60")
    processor.send("DEL", "batch:1")  # the processor thinks the batch is ready: it is not
    api.send("RPUSH", "batch:1", "m2")
    api.send("EXPIRE", "batch:1", "60")
    doc = run.stop_json()
    _culprit_is(_finding(doc, "deleted-by-client"), processor.pid)
    life = next(k for k in doc["keys"] if k["key"] == "batch:1" and k["removed"])
    assert life["removed"]["how"] == "del" and life["removed"]["by"]["pid"] == processor.pid
    assert life["created_by"]["pid"] == api.pid
    clients = {c["pid"]: c for c in doc["clients"]}
    assert clients[processor.pid]["label"] == "processor" and clients[api.pid]["label"] == "api"


def test_a_one_shot_redis_cli_is_named_a_short_lived_connection_when_its_pid_was_missed(url, stack):
    """`redis-cli DEL` connects, deletes and leaves within milliseconds, between two CLIENT LIST samples: the
    culprit is its address, and the finding says why there is no pid (unless a sample happened to catch it)."""
    import subprocess

    api = start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("RPUSH", "batch:1", "m1")
    api.send("EXPIRE", "batch:1", "60")
    one_shot = subprocess.Popen(["redis-cli", "-u", url, "DEL", "batch:1"], stdout=subprocess.DEVNULL)
    assert one_shot.wait(30) == 0
    api.send("RPUSH", "batch:1", "m2")
    doc = run.stop_json()
    finding = _finding(doc, "deleted-by-client")
    by = next(k for k in doc["keys"] if k["key"] == "batch:1" and k["removed"])["removed"]["by"]
    if by["pid"] != one_shot.pid:
        assert by["pid"] is None and "short-lived connection" in by["label"], by
        assert any("short-lived connection" in line for line in finding["evidence"]), finding["evidence"]


def test_healthy_consumption_is_no_finding(url, stack):
    api, processor = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "processor": processor.pid})
    api.send("RPUSH", "batch:1", "m1")
    api.send("EXPIRE", "batch:1", "2")
    time.sleep(1.2)  # the batch went quiet: processing it now is what everybody intended
    processor.send("LRANGE", "batch:1", "0", "-1")
    processor.send("DEL", "batch:1")
    doc = run.stop_json()
    assert doc["findings"] == []


def test_consumed_by_an_unlisted_process(url, stack):
    api, worker = start_client(stack, url), start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid, "worker": worker.pid})
    stale = start_client(stack, url, cli=True)  # a stale worker nobody listed
    time.sleep(0.5)  # let CLIENT LIST see its connection
    for n in range(3):
        api.send("SET", f"job:{n}", "x", "EX", "60")
    worker.send("GETDEL", "job:0")
    stale.send("GETDEL", "job:1")
    stale.send("GETDEL", "job:2")
    doc = run.stop_json()
    finding = _finding(doc, "consumed-by-other")
    assert finding["culprit"]["pid"] == stale.pid, finding
    unlisted = next(c for c in doc["clients"] if c["pid"] == stale.pid)
    assert unlisted["label"] == "unlisted" and unlisted["process"] == "redis-cli"


def test_flushed_names_the_flushing_process(url, stack):
    api, fixture = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "fixture": fixture.pid})
    api.send("SET", "session:1", "x", "EX", "60")
    fixture.send("FLUSHDB")
    doc = run.stop_json()
    _culprit_is(_finding(doc, "flushed"), fixture.pid)
    assert next(k for k in doc["keys"] if k["key"] == "session:1")["removed"]["how"] == "flush"


def test_renamed_away(url, stack):
    api, mover = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "mover": mover.pid})
    api.send("SET", "report:1", "x", "EX", "60")
    mover.send("RENAME", "report:1", "archive:report:1")
    api.send("GET", "report:1")  # the owner still uses the old name
    doc = run.stop_json()
    _culprit_is(_finding(doc, "renamed-away"), mover.pid)


def test_rename_nobody_misses_is_no_finding(url, stack):
    api, mover = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "mover": mover.pid})
    api.send("SET", "report:1", "x", "EX", "60")
    mover.send("RENAME", "report:1", "archive:report:1")
    api.send("GET", "archive:report:1")
    assert run.stop_json()["findings"] == []


def test_evicted_is_the_servers_doing(url, stack):
    admin = redis.Redis.from_url(url)
    admin.config_set("maxmemory", "3mb")
    admin.config_set("maxmemory-policy", "volatile-ttl")
    api = start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "short:1", "x", "EX", "5")
    for n in range(80):
        api.send("SET", f"bulk:{n}", "y" * 65536, "EX", "300")
    doc = run.stop_json()
    finding = _finding(doc, "evicted")
    assert finding["culprit"] is None
    assert next(k for k in doc["keys"] if k["key"] == "short:1")["removed"]["how"] == "evicted"


# -- TTLs ----------------------------------------------------------------------------------------------------


def test_ttl_refresh_missed_on_a_near_miss_name(url, stack):
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "batch:7", "x", "EX", "1")
    api.send("EXPIRE", "batch_7", "30")  # the refresh hits a key that does not exist
    time.sleep(1.6)
    doc = run.stop_json()
    _culprit_is(_finding(doc, "ttl-refresh-missed"), api.pid)
    assert next(k for k in doc["keys"] if k["key"] == "batch:7")["removed"]["how"] == "expired"


def test_refresh_that_works_and_expiry_on_time_are_no_finding(url, stack):
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "batch:7", "x", "EX", "1")
    api.send("EXPIRE", "batch:7", "1")
    time.sleep(1.6)
    doc = run.stop_json()
    assert doc["findings"] == []
    life = next(k for k in doc["keys"] if k["key"] == "batch:7")
    assert life["removed"]["how"] == "expired" and life["expired_on_time"]


def test_ttl_cleared_by_set(url, stack):
    api, other = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "other": other.pid})
    api.send("SET", "limit:1", "1", "EX", "60")
    other.send("SET", "limit:1", "2")  # no KEEPTTL: the key now lives forever
    doc = run.stop_json()
    _culprit_is(_finding(doc, "ttl-cleared-by-set"), other.pid)


def test_set_with_keepttl_is_no_finding(url, stack):
    api, other = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "other": other.pid})
    api.send("SET", "limit:1", "1", "EX", "60")
    other.send("SET", "limit:1", "2", "KEEPTTL")
    assert run.stop_json()["findings"] == []


def test_expire_in_the_past(url, stack):
    api = start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "token:1", "x")
    api.send("EXPIREAT", "token:1", str(int(time.time()) - 3600))
    doc = run.stop_json()
    _culprit_is(_finding(doc, "expire-in-past"), api.pid)


# -- visibility ----------------------------------------------------------------------------------------------


def test_different_db(url, stack):
    base = url.rsplit("/", 1)[0]
    api, reader = start_client(stack, f"{base}/0"), start_client(stack, f"{base}/2", cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "reader": reader.pid})
    api.send("SET", "order:9", "x", "EX", "60")
    reader.send("GET", "order:9")
    doc = run.stop_json()
    _culprit_is(_finding(doc, "different-db"), reader.pid)


def test_same_db_reads_are_no_finding(url, stack):
    api, reader = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "reader": reader.pid})
    api.send("SET", "order:9", "x", "EX", "60")
    reader.send("GET", "order:9")
    assert run.stop_json()["findings"] == []


def test_key_prefix_mismatch(url, stack):
    api, reader = start_client(stack, url), start_client(stack, url, cli=True)
    run = start_monitor(stack, url, {"api": api.pid, "reader": reader.pid})
    api.send("SET", "app:order:9", "x", "EX", "60")
    reader.send("GET", "app_order:9")
    doc = run.stop_json()
    _culprit_is(_finding(doc, "key-prefix-mismatch"), reader.pid)


def test_different_server_across_two_watched_servers(stack):
    from redisprobe.targets.sandbox import sandbox

    box = stack.enter_context(sandbox("split"))
    api, reader = start_client(stack, box.role_urls["api"]), start_client(stack, box.role_urls["processor"], cli=True)
    spec = f"api={api.pid},reader={reader.pid}"
    run = MonitorRun("--url", box.role_urls["api"], "--url", box.role_urls["processor"], "--pids", spec, "--json",
                     "--enable-events")
    stack.callback(run.kill)
    api.send("SET", "order:9", "x", "EX", "60")
    reader.send("GET", "order:9")
    doc = run.stop_json()
    _culprit_is(_finding(doc, "different-server"), reader.pid)


# -- the capture itself --------------------------------------------------------------------------------------


def test_ctrl_c_restores_config_prints_summary_and_keeps_a_readable_trace(url, stack, tmp_path):
    admin = redis.Redis.from_url(url)
    admin.config_set("notify-keyspace-events", "Kl")
    api = start_client(stack, url)
    out = tmp_path / "capture.jsonl"
    run = MonitorRun("--url", url, "--pids", f"api={api.pid}", "--enable-events", "--out", str(out))
    stack.callback(run.kill)
    assert set(admin.config_get("notify-keyspace-events")["notify-keyspace-events"]) > set("Kl")
    api.send("SET", "k", "v", "EX", "60")
    api.send("DEL", "k")
    code, stdout, err = run.stop()
    assert code == 130 and "Traceback" not in err
    assert "Each key's life" in stdout and "api" in stdout
    assert admin.config_get("notify-keyspace-events")["notify-keyspace-events"] == "lK"  # restored, as Redis spells it
    from redisprobe.trace import Monitor, load_trace

    header, events = load_trace(out)
    assert header.command == "monitor"
    stored = out.read_bytes()  # MONITOR's lines kept as the server sent them (raw), parsed when read
    assert b'{"type":"monitor-raw"' in stored and b'] "SET" "k"' in stored
    assert [e.args[0] for e in events if isinstance(e, Monitor) and e.args[1:2] == [b"k"]] == [b"SET", b"DEL"]
    again = __import__("tests.clirun", fromlist=["run_cli"]).run_cli("report", str(out), "--json")
    assert {k["key"] for k in again.json()["keys"]} >= {"k"}


@pytest.mark.parametrize("keys", [None, "busy:vic*"], ids=["removals-first", "keys-pattern"])
def test_live_timeline_of_a_busy_server_shows_what_matters_and_the_trace_keeps_all(url, stack, tmp_path, keys):
    """40,000 commands in one burst: the live view prints a bounded number of rows, still shows the DEL (and,
    with --keys, every command on the matching key), says how many lines it passed over; nothing is lost."""
    out = tmp_path / "busy.jsonl"
    run = MonitorRun("--url", url, "--out", str(out), *(["--keys", keys] if keys else []))
    stack.callback(run.kill)
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    pipe.set("busy:victim", "v")
    for i in range(30_000):
        pipe.set(f"busy:{i}", i)
    pipe.delete("busy:victim")
    for i in range(10_000):
        pipe.get(f"busy:{i}")
    pipe.execute()
    client.close()
    code, stdout, err = run.stop(settle=1.0)
    assert code == 130 and "Traceback" not in err
    rows = [line for line in stdout.splitlines() if " busy:" in line]
    assert len(rows) < 5_000, len(rows)
    assert any("DEL" in row and "busy:victim" in row and "REMOVES" in row for row in rows), rows[-20:]
    assert "MONITOR lines in" in stdout and "not shown" in stdout
    if keys:
        assert all("busy:victim" in row for row in rows)
        assert [next(c for c in ("SET", "DEL", "?") if c == "?" or f" {c} " in row) for row in rows][:2] == \
            ["SET", "DEL"]
    from redisprobe.trace import Monitor, load_trace

    _, events = load_trace(out)
    assert sum(isinstance(e, Monitor) and e.args[1:2] and e.args[1].startswith(b"busy:") for e in events) == 40_002


def test_stats_count_the_users_commands_not_redisprobes_own(url, stack):
    """The CLIENT LIST poller's INFO calls show in MONITOR too; `commands` counts only what clients sent."""
    api = start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid})
    for command in (("SET", "a", "1"), ("GET", "a"), ("DEL", "a")):
        api.send(*command)
    doc = run.stop_json(settle=1.0)
    assert doc["stats"]["commands"] == 3, doc["stats"]
    assert doc["stats"]["own_commands"] >= 1, doc["stats"]


def test_killed_keyspace_subscriber_is_reported_as_a_gap(url, stack):
    api = start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid})
    api.send("SET", "a", "1")
    redis.Redis.from_url(url).client_kill_filter(_type="pubsub")
    time.sleep(1.5)
    api.send("SET", "b", "1")
    doc = run.stop_json()
    assert any(g["source"] == "keyspace" for g in doc["gaps"]), doc["gaps"]


def test_events_off_without_consent_on_a_user_server(url, stack):
    api = start_client(stack, url)
    run = MonitorRun("--url", url, "--pids", f"api={api.pid}", "--json")
    stack.callback(run.kill)
    api.send("SET", "a", "1", "EX", "60")
    code, _out, err = run.stop()
    assert code == 130
    assert "--enable-events" in err  # one line on what is lost and how to turn it on
    assert redis.Redis.from_url(url).config_get("notify-keyspace-events")["notify-keyspace-events"] == ""


def test_redact_values_keeps_keys_and_hides_values(url, stack, tmp_path):
    api = start_client(stack, url)
    out = tmp_path / "r.jsonl"
    run = start_monitor(stack, url, {"api": api.pid}, "--redact-values", "--out", str(out))
    api.send("SET", "user:1", "hunter2-secret-value", "EX", "60")
    doc = run.stop_json()
    text = out.read_bytes()
    import base64

    assert base64.b64encode(b"hunter2-secret-value") not in text and b"hunter2" not in text
    assert base64.b64encode(b"user:1") in text
    assert any(k["key"] == "user:1" for k in doc["keys"])


def test_unknown_pid_is_an_error(url):
    from tests.clirun import run_cli

    result = run_cli("monitor", "--url", url, "--pids", "api=999999999", "--duration", "1")
    assert result.code == 2 and "999999999" in result.err and "Traceback" not in result.err


def test_duration_and_svg(url, stack, tmp_path):
    from tests.clirun import run_cli

    svg = tmp_path / "t.svg"
    result = run_cli("monitor", "--url", url, "--duration", "1", "--svg", str(svg), "--enable-events")
    assert result.code == 0, result.err
    assert svg.read_text().lstrip().startswith("<svg")


def test_redis_cli_monitor_log_is_analysed_offline(url, stack, tmp_path):
    import subprocess

    log = tmp_path / "monitor.log"
    with log.open("w") as handle:
        watcher = subprocess.Popen(["redis-cli", "-u", url, "monitor"], stdout=handle)
        try:
            time.sleep(0.5)
            api = start_client(stack, url, cli=True)
            api.send("SET", "batch:1", "x", "EX", "60")
            api.send("SET", "batch:1", "y")  # drops the TTL
            time.sleep(0.3)
        finally:
            watcher.terminate()
            watcher.wait()
    from tests.clirun import run_cli

    result = run_cli("report", str(log), "--json")
    assert result.code == 1, result.err
    doc = result.json()
    assert "ttl-cleared-by-set" in [f["rule"] for f in doc["findings"]]
    assert doc["stats"]["commands"] >= 2
