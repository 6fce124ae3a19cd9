"""`redisprobe monitor --pids` on real servers for the fold's semantics found on real apps: a stuck transaction,
blocking pops, scripts, TTL units, same-millisecond writes, instances of one program racing for a key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import redis

from tests.clients import Client, start_client
from tests.monitorrun import MonitorRun, rules_of, start_monitor


def test_a_connection_stuck_inside_multi_is_one_finding(url, stack):
    wallet = start_client(stack, url)
    run = start_monitor(stack, url, {"wallet": wallet.pid})
    wallet.send("MULTI")
    for _ in range(6):  # each later MULTI is refused ("can not be nested") but MONITOR shows it
        wallet.send("INCRBY", "balance:1", "5")
        assert "nested" in wallet.send("MULTI").lower()
    doc = run.stop_json(settle=0.8)
    assert rules_of(doc) == ["transaction-not-executed"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == wallet.pid
    assert any("6 later MULTI" in line for line in finding["evidence"]), finding["evidence"]


def test_px_under_a_second_then_a_wave_of_misses_is_ttl_unit_mismatch(url, stack):
    catalog = start_client(stack, url)
    run = start_monitor(stack, url, {"catalog": catalog.pid})
    for _round in range(2):
        for product in range(3):  # cache.wrap(key, fn, 30): GET, miss, SET ... PX 30 meant as 30 s
            catalog.send("GET", f"product:{product}")
            catalog.send("SET", f"product:{product}", "{}", "PX", "30")
        time.sleep(0.2)
    doc = run.stop_json(settle=0.5)
    assert rules_of(doc) == ["ttl-unit-mismatch"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == catalog.pid
    assert "did you mean 30 seconds?" in finding["summary"], finding["summary"]
    assert any("missed: it had expired" in line for line in finding["evidence"]), finding["evidence"]


def test_a_sub_second_lock_nobody_reads_after_expiry_is_silent(url, stack):
    worker = start_client(stack, url)
    run = start_monitor(stack, url, {"worker": worker.pid})
    for job in range(3):
        worker.send("SET", f"lock:job:{job}", "token", "NX", "PX", "100")
        time.sleep(0.15)  # the lease lapses; the next taker just takes it again
        worker.send("SET", f"lock:job:{job}", "token2", "NX", "PX", "100")
        worker.send("DEL", f"lock:job:{job}")
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []


def _flush_rounds(api: Client, flushers: list[Client], rounds: int = 3) -> None:
    for round_ in range(rounds):
        for view in range(3):
            api.send("RPUSH", "events:pending", f"view-{round_}-{view}")
        for flusher in flushers:  # every instance flushes on its own timer: the later one finds nothing
            flusher.send("LPOP", "events:pending", "50")
        time.sleep(0.1)


def test_two_listed_instances_of_one_app_racing_for_a_key_is_consumed_by_other(url, stack):
    api, first, second = start_client(stack, url), start_client(stack, url), start_client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    _flush_rounds(api, [first, second])
    doc = run.stop_json(settle=0.5)
    assert rules_of(doc) == ["consumed-by-other"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == first.pid
    assert f"pid {second.pid} came away empty" in finding["summary"], finding["summary"]


def test_one_flushing_instance_of_two_is_silent(url, stack):
    api, first, second = start_client(stack, url), start_client(stack, url), start_client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    second.send("PING")
    _flush_rounds(api, [first])
    first.send("LPOP", "events:pending", "50")  # a flush with nothing to do
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []


def test_two_listed_instances_each_draining_batches_of_one_key_is_consumed_by_other(url, stack):
    api, first, second = start_client(stack, url), start_client(stack, url), start_client(stack, url)
    spec = f"api={api.pid},tracker={first.pid},tracker={second.pid}"
    run = MonitorRun("--url", url, "--pids", spec, "--json", "--enable-events")
    stack.callback(run.kill)
    for _round in range(2):
        for flusher in (first, second):  # out of phase: each finds events, neither comes away empty
            api.send("RPUSH", "events:pending", "view")
            flusher.send("LPOP", "events:pending", "50")
    doc = run.stop_json(settle=0.5)
    assert rules_of(doc) == ["consumed-by-other"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] in (first.pid, second.pid)
    assert "2 instances of tracker" in finding["summary"] and "each take batches" in finding["summary"]


def test_a_blocked_pop_that_times_out_in_another_db_is_different_db(url, stack):
    api, worker = start_client(stack, url), start_client(stack, url.rsplit("/", 1)[0] + "/1")
    run = start_monitor(stack, url, {"api": api.pid, "worker": worker.pid})
    api.send("RPUSH", "jobs:queue", "job-1")
    worker.send("BLPOP", "jobs:queue", "1")  # db 1: nobody pushes there, it times out
    doc = run.stop_json(settle=0.5)
    finding = next(f for f in doc["findings"] if f["rule"] == "different-db")
    assert finding["culprit"]["pid"] == worker.pid
    assert any("BLPOP jobs:queue 1" in line for line in finding["evidence"]), finding["evidence"]


def test_a_blocked_pop_served_by_a_push_is_silent(url, stack):
    api, worker = start_client(stack, url), start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid, "worker": worker.pid})
    served = threading.Thread(target=worker.send, args=("BLPOP", "jobs:queue", "5"))
    served.start()
    time.sleep(0.3)  # the worker is blocked on an absent key
    api.send("RPUSH", "jobs:queue", "job-1")
    served.join(10)
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []
    life = next(k for k in doc["keys"] if k["key"] == "jobs:queue")
    assert life["removed"]["by"]["pid"] == worker.pid, life  # the blocked pop took the element


def test_a_client_blocked_since_before_the_capture_in_another_db_is_different_db(url, stack):
    worker = subprocess.Popen(["redis-cli", "-u", url.rsplit("/", 1)[0] + "/1", "BLPOP", "jobs:queue", "0"],
                              stdout=subprocess.DEVNULL)
    stack.callback(worker.wait)
    stack.callback(worker.kill)
    api = start_client(stack, url)
    time.sleep(0.5)  # blocked before anyone attaches: MONITOR will never show its BLPOP
    run = start_monitor(stack, url, {"api": api.pid, "worker": worker.pid})
    for job in range(3):
        api.send("RPUSH", "jobs:queue", f"job-{job}")
    doc = run.stop_json(settle=0.8)
    assert rules_of(doc) == ["different-db"], doc["findings"]
    finding = doc["findings"][0]
    assert finding["culprit"]["pid"] == worker.pid
    assert any("blocked in BLPOP on db 1 since before the capture" in line for line in finding["evidence"])


_LIMITER = ("local n = redis.call('INCRBY', KEYS[1], ARGV[1]) "
            "if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], 5) end return n")


def test_a_script_that_recreates_an_expired_counter_with_its_ttl_is_silent(stack):
    from redisprobe.targets.sandbox import sandbox

    box = stack.enter_context(sandbox("single", extra=["--enable-debug-command", "yes"]))
    url = box.urls[0]
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # only an access expires a key: the script's own
    admin.set("rl:client-1", 3, px=200)  # a window opened before the capture
    gateway = start_client(stack, url)
    time.sleep(0.4)  # its TTL has run out; the key is still there until someone touches it
    run = start_monitor(stack, url, {"gateway": gateway.pid})
    gateway.send("EVAL", _LIMITER, "1", "rl:client-1", "5")  # INCRBY expires it on access, then recreates it
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []
    lives = [k for k in doc["keys"] if k["key"] == "rl:client-1"]
    assert [life["removed"]["how"] if life["removed"] else None for life in lives] == ["expired", None], lives
    assert lives[1]["created_by"]["pid"] == gateway.pid and lives[1]["ttl_set"] == 5.0, lives[1]
    assert lives[1]["created_with"].startswith("INCRBY rl:client-1"), lives[1]


def test_a_script_that_recreates_an_expired_counter_without_a_ttl_is_recreated_without_ttl(stack):
    from redisprobe.targets.sandbox import sandbox

    box = stack.enter_context(sandbox("single", extra=["--enable-debug-command", "yes"]))
    url = box.urls[0]
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    admin.set("rl:client-1", 3, px=200)
    gateway = start_client(stack, url)
    time.sleep(0.4)
    run = start_monitor(stack, url, {"gateway": gateway.pid})
    limiter = _LIMITER.replace("tonumber(ARGV[1])", "1")  # the TTL only when the counter reads 1: a cost-5 call
    gateway.send("EVAL", limiter, "1", "rl:client-1", "5")  # recreates it without one
    doc = run.stop_json(settle=1.5)
    assert rules_of(doc) == ["recreated-without-ttl"], doc["findings"]
    assert doc["findings"][0]["culprit"]["pid"] == gateway.pid


_BURST = r"""
import sys, redis
client = redis.Redis.from_url(sys.argv[1])
client.ping()
print("ready", flush=True)
sys.stdin.readline()
for _round in range(5):
    pipe = client.pipeline(transaction=False)
    for n in range(40):
        pipe.set(f"item:{n % 8}", "v", ex=10)
        pipe.expire(f"item:{n % 8}", 20)
    pipe.execute()
print("done", flush=True)
sys.stdin.readline()
"""


def test_same_millisecond_ttl_writes_from_several_processes_each_meet_their_own_event(url, stack):
    writers = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _BURST, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        stack.callback(proc.wait, 10)
        stack.callback(proc.stdin.close)
        assert proc.stdout.readline().strip() == "ready"
        writers.append(proc)
    run = start_monitor(stack, url, {f"writer{index}": proc.pid for index, proc in enumerate(writers)})
    for proc in writers:  # all at once: hundreds of SET EX / EXPIRE on 8 keys within a few milliseconds
        proc.stdin.write("\n")
        proc.stdin.flush()
    for proc in writers:
        assert proc.stdout.readline().strip() == "done"
    doc = run.stop_json(settle=1.0)
    assert doc["findings"] == []
    unpaired = {k["key"]: k["ttl_missed"] for k in doc["keys"] if k["ttl_missed"]}
    assert not unpaired, f"TTL commands called ineffective though every one took effect: {unpaired}"


def test_a_multi_held_open_across_client_list_samples_then_executed_is_silent(url, stack):
    wallet = start_client(stack, url)
    run = start_monitor(stack, url, {"wallet": wallet.pid})
    wallet.send("MULTI")
    wallet.send("INCRBY", "balance:1", "5")
    time.sleep(1.5)  # CLIENT LIST samples see flags=x meanwhile
    wallet.send("EXEC")
    doc = run.stop_json(settle=0.5)
    assert doc["findings"] == []


def test_commands_inside_fcall_belong_to_the_caller(url, stack):
    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.execute_command("FUNCTION", "LOAD", "REPLACE",
                          "#!lua name=jobs\nredis.register_function('take', function(keys) "
                          "return redis.call('GETDEL', keys[1]) end)")
    api, worker = start_client(stack, url), start_client(stack, url)
    run = start_monitor(stack, url, {"api": api.pid, "worker": worker.pid})
    api.send("SET", "job:1", "payload")
    worker.send("FCALL", "take", "1", "job:1")  # MONITOR: FCALL from the worker, then [0 lua] GETDEL job:1
    doc = run.stop_json(settle=0.5)
    life = next(k for k in doc["keys"] if k["key"] == "job:1")
    assert life["removed"]["by"]["pid"] == worker.pid and life["removed"]["command"].startswith("GETDEL"), life


def test_pops_on_a_list_made_before_the_capture_are_no_misses(url, stack, tmp_path):
    from redisprobe.analysis.lifecycle import fold
    from redisprobe.trace import load_trace

    admin = redis.Redis.from_url(url)
    stack.callback(admin.close)
    admin.rpush("jobs:old", *[f"job-{n}" for n in range(5)])  # queued before anyone attached
    worker = start_client(stack, url)
    out = tmp_path / "capture.jsonl"
    run = start_monitor(stack, url, {"worker": worker.pid}, "--out", str(out))
    worker.send("BLPOP", "jobs:old", "0")  # served at once: MONITOR shows it, the keyspace shows an lpop
    worker.send("LPOP", "jobs:old")
    doc = run.stop_json(settle=1.5)
    assert doc["findings"] == []
    _header, events = load_trace(out)
    [slot] = [slot for slot in fold(events).slot_items() if slot.key == b"jobs:old"]
    assert slot.misses == 0 and [life.preexisting for life in slot.all_lives()] == [True]


_CACHER = r"""
import sys, time, redis
client = redis.Redis.from_url(sys.argv[1])
client.ping()
print("ready", flush=True)
n = 0
while True:
    client.set(f"profile:{n % 20}", "{}", ex=30)
    n += 1
    time.sleep(0.02)
"""


def test_keyspace_events_read_seconds_late_still_pair_with_their_writes(url, stack):
    """The capture stalls (stopped for 2 s: a loaded machine gives its reader no core): MONITOR keeps spooling in
    its own process, the keyspace events wait in the socket and are read seconds after their SET ... EX. The link's
    marks measure that lag, so each late `expire` still meets its SET: no "did nothing", no finding."""
    cacher = subprocess.Popen([sys.executable, "-c", _CACHER, url], stdout=subprocess.PIPE, text=True)
    stack.callback(cacher.wait, 10)
    stack.callback(cacher.kill)
    assert cacher.stdout.readline().strip() == "ready"
    run = start_monitor(stack, url, {"login": cacher.pid})
    time.sleep(1.0)
    os.kill(run.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0)
    finally:
        os.kill(run.proc.pid, signal.SIGCONT)
    doc = run.stop_json(settle=2.0)
    assert doc["findings"] == [], doc["findings"]
    unpaired = {k["key"]: k["ttl_missed"] for k in doc["keys"] if k["ttl_missed"]}
    assert not unpaired, f"SET ... EX called ineffective though every one took effect: {unpaired}"
