"""Every doctor rule on a hand-made incident (rule id, culprit pid, evidence) and on its healthy twin (silence)."""

from __future__ import annotations

import msgspec

from redisprobe import trace
from redisprobe.analysis import RULES, Context, analyze, diagnose
from redisprobe.analysis.lifecycle import fold
from redisprobe.analysis.verdict import analyse
from redisprobe.findings import Finding, to_builtins
from tests.tracebuild import T0, TraceBuilder

WATCHED = {100: "api", 200: "processor"}


def run(tb: TraceBuilder, watched: dict[int, str] | None = None, **intended: float) -> list[Finding]:
    return diagnose(tb.events, Context(watched=watched or {}, intended_ttls=intended))


def one(tb: TraceBuilder, rule: str, watched: dict[int, str] | None = None) -> Finding:
    findings = run(tb, watched)
    mine = [f for f in findings if f.rule == rule]
    assert len(mine) == 1, [to_builtins(f) for f in findings]
    return mine[0]


def healthy(tb: TraceBuilder, watched: dict[int, str] | None = None) -> None:
    findings = run(tb, watched)
    assert findings == [], [to_builtins(f) for f in findings]


def mentions(finding: Finding, *parts: str) -> bool:
    """Some evidence line names all of `parts` (time, pid, client id, exact command...)."""
    return any(all(part in line for part in parts) for line in finding.evidence)


def test_every_bugs_md_rule_is_registered() -> None:
    expected = {"deleted-by-client", "consumed-by-other", "ttl-refresh-missed", "ttl-cleared-by-set",
                "recreated-without-ttl", "ttl-shortened", "ttl-unit-mismatch", "expire-in-past", "evicted", "flushed",
                "renamed-away", "different-db", "different-server", "key-prefix-mismatch", "server-restarted",
                "transaction-not-executed", "shared-connection", "stale-client-cache"}
    assert expected <= set(RULES) and all(RULES[rule] for rule in expected)


def test_empty_trace_is_healthy() -> None:
    assert diagnose([]) == []


# -- deleted-by-client ------------------------------------------------------------------------------------------

def _batch(tb: TraceBuilder, api, start: float, items: int, key: str = "batch:1") -> None:
    for i in range(items):
        tb.at(start + i * 0.1)
        api("RPUSH", key, f"item{i}")
        tb.ks("rpush", key)
        api("EXPIRE", key, 60)
        tb.ks("expire", key)


def test_deleted_by_client_while_the_api_still_appends() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8)
    _batch(tb, api, 0.0, 4)
    tb.at(0.35)
    processor("LRANGE", "batch:1", 0, -1)
    processor("DEL", "batch:1")
    tb.ks("del", "batch:1")
    _batch(tb, api, 0.4, 2)  # the api goes on: its appends recreate the batch
    finding = one(tb, "deleted-by-client", WATCHED)
    assert finding.severity == "error" and finding.culprit is not None
    assert finding.culprit.pid == 200 and finding.culprit.client_id == 8
    assert finding.keys == ["batch:1"]
    assert mentions(finding, "pid 200 (processor)", "client id 8", "DEL batch:1")
    assert mentions(finding, "pid 100 (api)", "client id 7", "RPUSH batch:1 item3", "still writing")
    assert mentions(finding, "pid 100 (api)", "RPUSH batch:1 item0", "recreated")
    assert "pid 200" in finding.summary and "pid 100" in finding.summary


def test_deleted_by_client_then_the_writers_expire_misses() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8)
    api("SET", "report:9", "partial", "EX", 30)
    tb.at(0.2)
    processor("GETDEL", "report:9")
    tb.ks("del", "report:9")
    tb.at(0.3)
    api("EXPIRE", "report:9", 30)  # no such key any more
    finding = one(tb, "deleted-by-client")
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "GETDEL report:9") and mentions(finding, "EXPIRE report:9 30", "hit nothing")


def _forked_horse(tb: TraceBuilder, pid: int, port: int, label: str = "worker") -> object:
    """A connection the kernel showed between CLIENT LIST samples: a job a listed worker forked (rq's work horse)."""
    addr = f"127.0.0.1:{port}"
    tb.add(trace.PeerSeen(t=tb.now, addr=addr, pid=pid, process="python", cmdline="python -m rq.cli worker",
                          label=label, target=tb.target))
    return tb.client(label, client_id=0, addr=addr, sample=False)


def test_healthy_a_forked_horse_removes_what_its_worker_writes() -> None:
    """rq's worker writes rq:worker:<id>:executions and its horse (a child carrying the worker's label) removes
    it with the job's last SREM: one actor's bookkeeping, whatever the worker's EXPIRE then finds."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    key = "rq:worker:ab12:executions"
    for i in range(3):
        tb.at(i * 0.1)
        worker("SADD", key, f"job{i}")
        tb.ks("sadd", key)
        worker("EXPIRE", key, 90)
        tb.ks("expire", key)
    tb.at(0.35)
    horse = _forked_horse(tb, 301, 45001)
    horse("SREM", key, "job0", "job1", "job2")
    tb.ks("srem", key).ks("del", key)
    tb.at(0.4)
    worker("EXPIRE", key, 480)  # hits nothing
    healthy(tb, {300: "worker", 100: "api"})


def test_healthy_a_horse_caught_by_client_list_without_its_pid() -> None:
    """A CLIENT LIST sample caught the horse's connection, but the process had gone before its pid was read; the
    kernel's table had named it a moment before: that sighting names the client."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    key = "rq:worker:ab12:executions"
    worker("SADD", key, "job0")
    tb.ks("sadd", key)
    worker("EXPIRE", key, 90)
    tb.ks("expire", key)
    tb.at(0.35)
    _forked_horse(tb, 301, 45001)
    horse = tb.client("", client_id=27, port=45001)  # sampled, no pid
    horse("SREM", key, "job0")
    tb.ks("srem", key).ks("del", key)
    tb.at(0.4)
    worker("EXPIRE", key, 480)
    healthy(tb, {300: "worker", 100: "api"})


def test_a_forked_horse_removes_what_another_process_writes() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    tb.client("worker", pid=300, client_id=9)
    _batch(tb, api, 0.0, 4)
    tb.at(0.35)
    horse = _forked_horse(tb, 301, 45001)
    horse("DEL", "batch:1")
    tb.ks("del", "batch:1")
    _batch(tb, api, 0.4, 2)
    finding = one(tb, "deleted-by-client", {300: "worker", 100: "api"})
    assert finding.culprit is not None and finding.culprit.pid == 301 and finding.culprit.label == "worker"


def test_healthy_processor_deletes_a_batch_that_went_quiet() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8)
    _batch(tb, api, 0.0, 4)
    tb.at(1.5)
    processor("LRANGE", "batch:1", 0, -1)
    processor("DEL", "batch:1")
    tb.ks("del", "batch:1")
    _batch(tb, api, 1.6, 3, key="batch:2")  # the next batch: another key
    healthy(tb, WATCHED)


def test_healthy_queue_emptied_by_pops() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    for i in range(5):
        tb.at(i * 0.05)
        api("RPUSH", "jobs", f"j{i}")
        api("EXPIRE", "jobs", 60)
        worker("LPOP", "jobs")
        tb.ks("lpop", "jobs").ks("del", "jobs")
    healthy(tb, WATCHED)


# -- consumed-by-other ------------------------------------------------------------------------------------------

def test_consumed_by_an_unlisted_process() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    stranger = tb.client(pid=300, client_id=9, process="python3", name="old-worker")
    for i in range(3):
        api("SET", f"job:{i}", "payload", "EX", 60)
    worker("GETDEL", "job:0")
    stranger("GETDEL", "job:1")
    stranger("GETDEL", "job:2")
    finding = one(tb, "consumed-by-other", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 300
    assert set(finding.keys) == {"job:1", "job:2"}
    assert mentions(finding, "pid 300", "client id 9", "GETDEL job:1", "took it")
    assert mentions(finding, "pid 200 (processor)", "expected consumer")


def test_consumed_by_a_second_instance() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    first = tb.client("processor", pid=200, client_id=8, process="worker")
    second = tb.client(pid=201, client_id=10, process="worker")
    api("RPUSH", "queue:a", "x", "y", "z")
    first("LPOP", "queue:a")
    second("LPOP", "queue:a")
    finding = one(tb, "consumed-by-other", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 201
    assert "second instance" in finding.summary


def test_consumed_by_a_client_from_no_local_process() -> None:
    tb = TraceBuilder()
    tb.client(pid=100, client_id=7, process="api")("SADD", "tasks", "a", "b")
    tb.client(pid=200, client_id=8, process="worker")("SPOP", "tasks")
    tb.client(client_id=11, addr="10.0.0.5:41000", name="", lib="ioredis")("SPOP", "tasks")
    finding = one(tb, "consumed-by-other")
    assert finding.culprit is not None and finding.culprit.pid is None and finding.culprit.addr == "10.0.0.5:41000"


def test_healthy_only_the_expected_consumer_takes() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    for i in range(3):
        api("SET", f"job:{i}", "p", "EX", 60)
    tb.at(2.0)
    for i in range(3):
        worker("GETDEL", f"job:{i}")
        tb.ks("del", f"job:{i}")
    healthy(tb, WATCHED)


# -- ttl-refresh-missed -----------------------------------------------------------------------------------------

def test_refresh_hits_a_near_miss_name_and_the_key_expires_on_its_first_ttl() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    keeper = tb.client("keeper", pid=150, client_id=12)
    api("SET", "session:42", "data", "EX", 1)
    tb.ks("set", "session:42").ks("expire", "session:42")
    tb.at(0.5)
    keeper("EXPIRE", "session_42", 1)  # wrong separator: no such key, no event
    tb.at(1.1).ks("expired", "session:42")
    finding = one(tb, "ttl-refresh-missed")
    assert finding.culprit is not None and finding.culprit.pid == 150
    assert mentions(finding, "pid 150 (keeper)", "client id 12", "EXPIRE session_42 1", "no such key")
    assert mentions(finding, "session:42 exists")


def test_refresh_with_xx_on_a_key_without_ttl_leaves_it_forever() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "cache:1", "v")
    api("EXPIRE", "cache:1", 60, "XX")
    finding = one(tb, "ttl-refresh-missed")
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "EXPIRE cache:1 60 XX", "XX: the key had no TTL") and "never expire" in finding.summary


def test_refresh_that_came_too_late() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "lease:1", "me", "PX", 800)
    tb.at(0.85).ks("expired", "lease:1")
    tb.at(0.9)
    api("PEXPIRE", "lease:1", 800)
    finding = one(tb, "ttl-refresh-missed")
    assert mentions(finding, "too late")


def test_refresh_refuted_by_missing_keyspace_event() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k:1", "v")
    tb.ks("set", "k:1")
    api("EXPIRE", "k:1", 30)  # the server never said `expire`
    tb.at(1.0).ks("del", "unrelated")
    finding = one(tb, "ttl-refresh-missed")
    assert mentions(finding, "EXPIRE k:1 30", "no keyspace")


def test_expire_before_the_key_existed() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("EXPIRE", "counter:1", 60)
    api("INCR", "counter:1")
    tb.at(2.0)
    api("GET", "counter:1")
    findings = run(tb)
    assert {f.rule for f in findings} == {"ttl-refresh-missed"}
    assert mentions(findings[0], "before the key was created")


def test_healthy_refreshes_and_the_nx_idiom() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    for i in range(3):
        tb.at(i * 0.3)
        api("INCR", "rate:1")
        api("EXPIRE", "rate:1", 1, "NX")  # TTL from the first hit only: by design
        api("SET", "session:1", "v", "EX", 1)
    tb.at(1.05).ks("expired", "rate:1")
    tb.at(1.65).ks("expired", "session:1")
    healthy(tb)


# -- ttl-cleared-by-set -----------------------------------------------------------------------------------------

def test_set_without_keepttl_drops_the_ttl() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    other = tb.client("admin", pid=300, client_id=9)
    api("SET", "token:1", "a", "EX", 3600)
    tb.at(1.0)
    other("SET", "token:1", "b")
    tb.at(3.0).ttl_sample("token:1", -1)
    finding = one(tb, "ttl-cleared-by-set")
    assert finding.severity == "error" and finding.culprit is not None and finding.culprit.pid == 300
    assert mentions(finding, "pid 300 (admin)", "SET token:1 b", "TTL dropped")
    assert mentions(finding, "TTL sample", "-1")


def test_healthy_keepttl_or_set_then_expire() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1", "EX", 100)
    api("SET", "a", "2", "KEEPTTL")
    api("SET", "b", "1", "EX", 100)
    api("SET", "b", "2")
    api("EXPIRE", "b", 100)
    tb.at(3.0)
    api("GET", "a")
    healthy(tb)


# -- recreated-without-ttl --------------------------------------------------------------------------------------

def test_rate_limiter_recreated_without_ttl() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("INCR", "rl:ip:1")
    api("EXPIRE", "rl:ip:1", 1)
    tb.at(1.02).ks("expired", "rl:ip:1")
    tb.at(1.5)
    api("INCR", "rl:ip:1")  # count != 1 in the app's racy logic: no EXPIRE this time
    tb.at(4.0)
    api("INCR", "rl:ip:1")
    finding = one(tb, "recreated-without-ttl")
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "pid 100 (api)", "INCR rl:ip:1", "recreated, no TTL")
    assert mentions(finding, "expired")


def test_recreated_by_an_append_even_if_a_consumer_deletes_it_later() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("RPUSH", "batch:0", "m0")
    api("EXPIRE", "batch:0", 1)
    tb.at(1.01).ks("expired", "batch:0")
    api("RPUSH", "batch:0", "m4")
    tb.at(2.5)
    tb.client("processor", pid=200, client_id=8)("DEL", "batch:0")
    finding = one(tb, "recreated-without-ttl")
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "until it was del")


def test_healthy_marker_rewritten_by_set_keepttl() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "batch:0:last", "t0", "EX", 1)
    tb.at(1.01).ks("expired", "batch:0:last")
    api("SET", "batch:0:last", "t1", "KEEPTTL")  # a fresh value: SET chose its own TTL options
    tb.at(2.5)
    tb.client("processor", pid=200, client_id=8)("DEL", "batch:0:last")
    healthy(tb)


def test_healthy_recreated_with_its_ttl() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    for start in (0.0, 1.5):
        tb.at(start)
        api("INCR", "rl:ip:1")
        api("EXPIRE", "rl:ip:1", 1)
        tb.at(start + 1.02).ks("expired", "rl:ip:1")
    healthy(tb)


# -- ttl-shortened ----------------------------------------------------------------------------------------------

def test_another_process_shortens_the_ttl() -> None:
    tb = TraceBuilder()
    owner = tb.client("api", pid=100, client_id=7)
    other = tb.client("cleaner", pid=300, client_id=9)
    owner("SET", "cart:5", "items", "EX", 3600)
    tb.at(1.0)
    other("EXPIRE", "cart:5", 2)
    tb.at(3.05).ks("expired", "cart:5")
    finding = one(tb, "ttl-shortened")
    assert finding.severity == "error" and finding.culprit is not None and finding.culprit.pid == 300
    assert mentions(finding, "pid 300 (cleaner)", "client id 9", "EXPIRE cart:5 2", "TTL cut to 2s")


def test_a_shorter_ttl_the_key_survives_is_not_a_finding() -> None:
    """A heartbeat refreshing a worker registration (rq: 480 s, then 90 s every few seconds) explains nothing:
    the key never expired early, so there is no symptom and no finding."""
    tb = TraceBuilder()
    owner = tb.client("worker", pid=100, client_id=7)
    heartbeat = tb.client("heartbeat", pid=300, client_id=9)
    owner("HSET", "rq:worker:1", "state", "idle")
    owner("EXPIRE", "rq:worker:1", 480)
    tb.ks("expire", "rq:worker:1")
    for second in range(1, 4):
        tb.at(second)
        heartbeat("EXPIRE", "rq:worker:1", 90)
        tb.ks("expire", "rq:worker:1")
    healthy(tb)


def test_healthy_owner_refreshes_itself() -> None:
    tb = TraceBuilder()
    owner = tb.client("api", pid=100, client_id=7)
    owner("SET", "cart:5", "items", "EX", 3600)
    owner("EXPIRE", "cart:5", 3600)
    owner("EXPIRE", "cart:5", 10)  # the owner may change its mind
    healthy(tb)


# -- ttl-unit-mismatch ------------------------------------------------------------------------------------------

def test_milliseconds_meant_as_seconds() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "user:1", "x", "EX", 30)
    api("SET", "lock:1", "x")
    api("PEXPIRE", "lock:1", 30)  # 30 ms: meant 30 s, like everywhere else
    tb.at(0.031).ks("expired", "lock:1")
    finding = one(tb, "ttl-unit-mismatch")
    assert finding.severity == "error" and finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "PEXPIRE lock:1 30", "30 ms is under a second", "sets 30s TTLs elsewhere")


def test_milliseconds_on_a_key_that_had_seconds() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    other = tb.client("worker", pid=200, client_id=8)
    api("SET", "job:1", "x", "EX", 600)
    other("PEXPIRE", "job:1", 600)
    finding = one(tb, "ttl-unit-mismatch")
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "PEXPIRE job:1 600", "had a TTL in seconds")


def test_seconds_meant_as_milliseconds() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("SET", "k", "v", "EX", 3_600_000)
    finding = one(tb, "ttl-unit-mismatch")
    assert finding.severity == "warning" and mentions(finding, "SET k v EX 3600000", "days")


def test_healthy_client_that_always_speaks_milliseconds() -> None:
    tb = TraceBuilder()
    locker = tb.client("locker", pid=100, client_id=7)
    locker("SET", "session:a", "x", "EX", 3600)  # seconds for sessions...
    locker("SET", "lock:a", "me", "NX", "PX", 500)  # ...and half a second for a lock: both on purpose
    locker("PEXPIRE", "lock:a", 500)
    healthy(tb)


# -- expire-in-past ---------------------------------------------------------------------------------------------

def test_expireat_in_the_past_deletes_at_once() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "promo:1", "on")
    api("EXPIREAT", "promo:1", int(T0) - 3600)  # client clock an hour behind
    tb.ks("del", "promo:1")
    finding = one(tb, "expire-in-past")
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "EXPIREAT promo:1", "before the server's clock")


def test_negative_ttl_deletes_at_once() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "x", "1")
    api("EXPIRE", "x", -1)
    finding = one(tb, "expire-in-past")
    assert mentions(finding, "EXPIRE x -1", "<= 0")


def test_healthy_expireat_in_the_future() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "promo:1", "on")
    api("EXPIREAT", "promo:1", int(T0) + 3600)
    healthy(tb)


# -- evicted ----------------------------------------------------------------------------------------------------

def test_evicted_keys_have_no_culprit() -> None:
    tb = TraceBuilder()
    tb.server(evicted_keys=0, used_memory=1000, maxmemory=1000)
    api = tb.client("api", pid=100, client_id=7)
    for i in range(3):
        api("SET", f"cache:{i}", "x" * 10, "EX", 600)
    tb.at(1.0).ks("evicted", "cache:0").ks("evicted", "cache:1")
    tb.server(evicted_keys=2, used_memory=990, maxmemory=1000)
    finding = one(tb, "evicted")
    assert finding.culprit is None and set(finding.keys) == {"cache:0", "cache:1"}
    assert mentions(finding, "the server", "evicted cache:0") and mentions(finding, "evicted_keys 0 -> 2")


def test_evicted_known_only_from_server_stats() -> None:
    tb = TraceBuilder()
    tb.server(evicted_keys=5)
    tb.at(1.0).server(evicted_keys=9)
    finding = one(tb, "evicted")
    assert finding.culprit is None and "4 key(s)" in finding.summary


# -- flushed ----------------------------------------------------------------------------------------------------

def test_flushdb_by_another_process() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1")
    api("RPUSH", "b", "1")
    tests = tb.client("pytest", pid=400, client_id=20)
    tests("FLUSHDB")
    finding = one(tb, "flushed")
    assert finding.culprit is not None and finding.culprit.pid == 400
    assert set(finding.keys) == {"a", "b"}
    assert mentions(finding, "pid 400 (pytest)", "client id 20", "FLUSHDB", "no per-key event")


def test_healthy_a_process_flushing_only_its_own_keys() -> None:
    tb = TraceBuilder()
    tests = tb.client("pytest", pid=400, client_id=20)
    tests("SET", "fixture:1", "x")
    tests("FLUSHDB")
    tb.client("api", pid=100, client_id=7)("FLUSHALL")  # nothing of anyone's was live
    healthy(tb)


# -- renamed-away -----------------------------------------------------------------------------------------------

def test_renamed_away_from_under_its_reader() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    mover = tb.client("janitor", pid=300, client_id=9)
    api("SET", "job:1", "payload", "EX", 60)
    tb.at(0.1)
    mover("RENAME", "job:1", "job:1:done")
    tb.ks("rename_from", "job:1").ks("rename_to", "job:1:done")
    tb.at(0.2)
    api("GET", "job:1")
    finding = one(tb, "renamed-away")
    assert finding.culprit is not None and finding.culprit.pid == 300
    assert mentions(finding, "RENAME job:1 job:1:done", "renamed to job:1:done")
    assert mentions(finding, "pid 100 (api)", "GET job:1", "moved away")


def test_healthy_rename_by_the_owner_nobody_looks_back() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "job:1", "payload")
    api("RENAME", "job:1", "job:1:done")
    api("GET", "job:1:done")
    healthy(tb)


# -- different-db -----------------------------------------------------------------------------------------------

def test_reader_on_another_db() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8, db=1)
    api("SET", "order:7", "x")
    processor("SELECT", 1)
    processor("GET", "order:7", db=1)
    finding = one(tb, "different-db", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "pid 100 (api)", "db 0", "SET order:7 x")
    assert mentions(finding, "pid 200 (processor)", "db 1", "GET order:7", "missed")
    assert mentions(finding, "SELECT 1")
    assert "db 1" in finding.summary and "db 0" in finding.summary


def test_scan_in_another_db() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8, db=1)
    processor("SELECT", 1, db=1)
    for i in range(3):
        api("RPUSH", f"batch:{i}", "x")
        processor("SCAN", 0, "MATCH", "batch:*", "COUNT", 1000, db=1)
    finding = one(tb, "different-db", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "SCAN 0 MATCH batch:*", "matched nothing in db 1")
    assert mentions(finding, "pid 100 (api)", "RPUSH batch:0", "written in db 0")
    assert "db 1" in finding.summary and "db 0" in finding.summary


def test_healthy_same_db() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("SET", "order:7", "x")
    tb.client("processor", pid=200, client_id=8)("GET", "order:7")
    healthy(tb, WATCHED)


# -- different-server -------------------------------------------------------------------------------------------

def test_reader_on_another_server() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, target="redis://127.0.0.1:6379/0")
    processor = tb.client("processor", pid=200, client_id=7, target="redis://127.0.0.2:6379/0")
    api("SET", "order:7", "x")
    processor("GET", "order:7")
    finding = one(tb, "different-server", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "GET order:7", "127.0.0.2:6379")


def test_actors_fingerprints_disagree() -> None:
    tb = TraceBuilder()
    tb.actor("api", pid=100, client_id=7, run_id="a" * 40, host="127.0.0.1")
    tb.actor("processor", pid=200, client_id=3, run_id="b" * 40, host="127.0.0.2",
             target="redis://127.0.0.2:6379/0")
    finding = one(tb, "different-server")
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "run_id aaaaaaaaaaaa") and mentions(finding, "run_id bbbbbbbbbbbb")
    assert analyse(tb.events).findings == [finding]  # isolation and info say it in the same words: one rule


def test_actors_on_servers_that_do_not_look_alike_are_two_servers_on_purpose() -> None:
    tb = TraceBuilder()
    tb.actor("api", pid=100, client_id=7, run_id="a" * 40, host="127.0.0.1")
    tb.actor("cache", pid=200, client_id=3, run_id="b" * 40, host="127.0.0.2", server_port=6380, version="6.2.0",
             target="redis://127.0.0.2:6380/0")
    healthy(tb)


def test_healthy_one_server() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    processor = tb.actor("processor", pid=200, client_id=8)
    api("SET", "order:7", "x")
    processor("GET", "order:7")
    healthy(tb)


# -- key-prefix-mismatch ----------------------------------------------------------------------------------------

def test_reader_without_the_writers_prefix() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("SET", "bull:job:17", "x")
    tb.client("processor", pid=200, client_id=8)("GET", "job:17")
    finding = one(tb, "key-prefix-mismatch", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert "prefix 'bull:'" in finding.summary
    assert mentions(finding, "pid 200 (processor)", "GET job:17", "bull:job:17 exists")
    assert mentions(finding, "pid 100 (api)", "SET bull:job:17 x")



def test_one_rewrite_over_keys_of_every_kind_is_one_finding() -> None:
    """The reader lacks the writer's prefix on a string, a hash and a list: one cause and one culprit, so one
    finding that lists the three keys (not one per key family)."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "app:run:string", "x")
    api("HSET", "app:run:hash", "f", "v")
    api("RPUSH", "app:run:list", "a")
    reader = tb.client("processor", pid=200, client_id=8)
    reader("GET", "run:string")
    reader("HGETALL", "run:hash")
    reader("LRANGE", "run:list", 0, -1)
    finding = one(tb, "key-prefix-mismatch", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert sorted(finding.keys) == ["run:hash", "run:list", "run:string"]

def test_doubled_prefix_and_separator() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "app:user:1", "x")
    api("SET", "sess:9", "x")
    reader = tb.client("processor", pid=200, client_id=8)
    reader("GET", "app:app:user:1")
    reader("DEL", "sess_9")
    findings = [f for f in run(tb, WATCHED) if f.rule == "key-prefix-mismatch"]
    summaries = " | ".join(f.summary for f in findings)
    assert "a doubled prefix 'app:'" in summaries and "separators differ" in summaries
    assert all(f.culprit is not None and f.culprit.pid == 200 for f in findings)


def test_scan_pattern_without_the_prefix() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    for i in range(3):
        api("SET", f"myapp:job:{i}", "x")
    tb.client("processor", pid=200, client_id=8)("SCAN", 0, "MATCH", "job:*", "COUNT", 100)
    finding = one(tb, "key-prefix-mismatch", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "SCAN 0 MATCH job:*", "matched none")
    assert mentions(finding, "myapp:job:*", "3 key(s)")


def test_a_replaced_prefix_read_systematically_is_a_near_miss() -> None:
    """connect-redis copied with `prefix: 'myapp:'` on one side: every session read misses under a prefix nobody
    writes, while each id exists under `sess:`."""
    tb = TraceBuilder()
    site = tb.client("api", pid=100, client_id=7)
    office = tb.client("processor", pid=200, client_id=8)
    for sid in ("Qx7f0aZk", "Pm3d9LwE", "Ty8c2NvR"):
        site("SET", f"sess:{sid}", "{}", "EX", 86400)
        office("GET", f"myapp:{sid}")
    finding = one(tb, "key-prefix-mismatch", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert "the reader's prefix is 'myapp:', the writer's 'sess:'" in finding.summary
    assert finding.keys[:3] == ["myapp:Qx7f0aZk", "myapp:Pm3d9LwE", "myapp:Ty8c2NvR"]


def test_a_consumer_waiting_under_a_replaced_prefix_is_a_near_miss() -> None:
    """BullMQ without its prefix setting: the worker waits on bull:emails:marker (and keeps its own bookkeeping
    under bull:), the producer pushes to mail:emails:marker; one name, but a consumer sat waiting on it."""
    tb = TraceBuilder()
    producer = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    worker("HSET", "bull:emails:meta", "opts.maxLenEvents", "10000")
    tb.ks("hset", "bull:emails:meta")
    worker("BZPOPMIN", "bull:emails:marker", "1")
    for job in range(3):
        tb.at(0.3 * (job + 1))
        producer("ZADD", "mail:emails:marker", "0", str(job))
        tb.ks("zadd", "mail:emails:marker")
    tb.at(2.5)
    producer("PING")  # the trace goes on past the pop's 1 s timeout: it came back empty
    finding = one(tb, "key-prefix-mismatch", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert "the reader's prefix is 'bull:', the writer's 'mail:'" in finding.summary


def test_a_consumer_waiting_on_its_own_namespace_that_others_write_is_no_near_miss() -> None:
    tb = TraceBuilder()
    producer = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    other = tb.client("keeper", pid=150, client_id=12)
    other("HSET", "bull:emails:meta", "opts.maxLenEvents", "10000")  # another app's queue, under bull:
    tb.ks("hset", "bull:emails:meta")
    worker("BZPOPMIN", "bull:emails:marker", "1")
    producer("ZADD", "mail:emails:marker", "0", "1")
    tb.ks("zadd", "mail:emails:marker")
    tb.at(2.5)
    producer("PING")
    assert not [f for f in run(tb, WATCHED) if f.rule == "key-prefix-mismatch"]


def test_one_id_under_two_prefixes_or_a_prefix_with_keys_of_its_own_is_no_near_miss() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    reader = tb.client("processor", pid=200, client_id=8)
    api("SET", "cart:42001", "x")
    reader("GET", "user:42001")  # one id, two things: a user without a profile, not a misnamed cart
    for n in range(3):  # a cache of its own: most of its reads hit, a few miss
        api("SET", f"order:{n}000", "x")
        api("SET", f"cache:{n}000", "x")
        api("SET", f"cache:{n}111", "x")
        api("SET", f"cache:{n}222", "x")
        reader("GET", f"cache:{n}000")
        reader("GET", f"cache:{n}333")
    api("SET", "order:1333", "x")
    api("SET", "order:2333", "x")
    healthy(tb, WATCHED)


def test_a_part_missing_in_the_middle_of_a_refreshed_name_is_a_near_miss() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    heartbeat = tb.client("keeper", pid=150, client_id=12)
    for user in (17, 18):
        api("SET", f"presence:user:{user}", "online", "EX", 2)
        tb.ks("set", f"presence:user:{user}").ks("expire", f"presence:user:{user}")
    tb.at(0.5)
    for user in (17, 18):
        heartbeat("EXPIRE", f"presence:{user}", 2)
    tb.at(2.1).ks("expired", "presence:user:17").ks("expired", "presence:user:18")
    finding = one(tb, "ttl-refresh-missed")
    assert finding.culprit is not None and finding.culprit.pid == 150
    assert "the reader's name lacks the part 'user:'" in finding.summary


def test_healthy_same_names() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "bull:job:17", "x")
    reader = tb.client("processor", pid=200, client_id=8)
    reader("GET", "bull:job:17")
    reader("SCAN", 0, "MATCH", "bull:job:*")
    reader("GET", "unrelated:thing")  # a plain cache miss is no near-miss
    healthy(tb, WATCHED)


# -- server-restarted -------------------------------------------------------------------------------------------

def test_server_restarted_mid_trace() -> None:
    tb = TraceBuilder()
    tb.server("a" * 40, uptime=500)
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v")
    tb.at(5.0).server("b" * 40, uptime=2)
    api("GET", "k")  # the fold still thinks k exists: only the restart explains the miss
    finding = one(tb, "server-restarted")
    assert finding.culprit is None
    assert mentions(finding, "run_id aaaaaaaaaaaa uptime 500s", "run_id bbbbbbbbbbbb uptime 2s")


def test_healthy_server_keeps_running() -> None:
    tb = TraceBuilder()
    tb.server("a" * 40, uptime=500)
    tb.at(5.0).server("a" * 40, uptime=505)
    healthy(tb)


# -- transaction-not-executed -----------------------------------------------------------------------------------

def test_multi_without_exec() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("MULTI")
    tb.at(2.0).client("api", pid=100, client_id=7, flags="x")
    finding = one(tb, "transaction-not-executed")
    assert finding.culprit is not None and finding.culprit.pid == 100 and finding.culprit.client_id == 7
    assert mentions(finding, "pid 100 (api)", "client id 7", "MULTI", "no EXEC")
    assert mentions(finding, "flags=x")


def test_multi_abandoned_in_an_actors_own_ops() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    api.op("MULTI", reply="OK")
    api.op("SET", "k", "v", reply="QUEUED")
    tb.at(1.0).server()
    finding = one(tb, "transaction-not-executed")
    assert finding.culprit is not None and finding.culprit.pid == 100
    assert mentions(finding, "SET k v", "QUEUED", "never executed")


def test_healthy_multi_exec_and_discard() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("MULTI")
    api("SET", "k", "v")
    api("EXEC")
    api("MULTI")
    api("DISCARD")
    tb.at(2.0)
    api("GET", "k")
    healthy(tb)


# -- shared-connection ------------------------------------------------------------------------------------------

def test_forked_child_uses_the_parents_connection() -> None:
    tb = TraceBuilder()
    parent = tb.actor("api", pid=100, client_id=7)
    parent.op("GET", "a", reply="1")
    tb.add(__import__("redisprobe").trace.Op(t=tb.now, mono=0.0, pid=101, role="api", client_id=7, db=0,
                                             args=[b"GET", b"b"], reply=None, error="Protocol error: crossed reply"))
    finding = one(tb, "shared-connection")
    assert finding.culprit is not None and finding.culprit.pid == 101 and finding.culprit.client_id == 7
    assert mentions(finding, "pid 100", "pid 101") and mentions(finding, "Protocol error")


def test_healthy_each_process_its_own_connection() -> None:
    tb = TraceBuilder()
    tb.actor("api", pid=100, client_id=7).op("GET", "a", reply="1")
    tb.actor("processor", pid=200, client_id=8).op("GET", "a", reply="1")
    healthy(tb)


# -- stale-client-cache -----------------------------------------------------------------------------------------

def test_tracking_client_reads_its_stale_cache() -> None:
    tb = TraceBuilder()
    writer = tb.actor("api", pid=100, client_id=7)
    reader = tb.actor("processor", pid=200, client_id=8)
    reader.op("CLIENT", "TRACKING", "ON", reply="OK")
    writer("SET", "price:1", "10")
    reader.op("GET", "price:1", reply="10")
    reader("GET", "price:1")  # the first read reaches the server
    tb.at(1.0)
    writer("SET", "price:1", "12")
    tb.at(1.5)
    reader.op("GET", "price:1", reply="10")  # served locally: no MONITOR line
    tb.at(3.0)
    finding = one(tb, "stale-client-cache")
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert mentions(finding, "SET price:1 12", "changed it") and mentions(finding, "GET price:1", "client-side cache")


def test_healthy_tracking_client_that_was_invalidated() -> None:
    tb = TraceBuilder()
    writer = tb.actor("api", pid=100, client_id=7)
    reader = tb.actor("processor", pid=200, client_id=8)
    reader.op("CLIENT", "TRACKING", "ON", reply="OK")
    writer("SET", "price:1", "10")
    tb.at(1.0)
    writer("SET", "price:1", "12")
    tb.at(1.5)
    reader.op("GET", "price:1", reply="12")
    reader("GET", "price:1")
    tb.at(3.0)
    healthy(tb)


# -- whole-trace properties -------------------------------------------------------------------------------------

def test_a_healthy_day_yields_no_finding_at_all() -> None:
    """Keys created, refreshed, expired on time, consumed after their purpose: silence."""
    tb = TraceBuilder()
    tb.server("a" * 40, uptime=100)
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8)
    for n in range(3):
        start = n * 2.0
        key = f"batch:{n}"
        _batch(tb, api, start, 3, key=key)
        tb.at(start + 1.4)
        processor("LRANGE", key, 0, -1)
        processor("DEL", key)
        tb.ks("del", key)
        api("SET", f"session:{n}", "v", "EX", 1)
        tb.ks("set", f"session:{n}").ks("expire", f"session:{n}")
        tb.at(start + 1.5)
        processor("GET", f"session:{n}")
    tb.at(9.0).ks("expired", "session:2")
    tb.server("a" * 40, uptime=109)
    analysis = analyze(tb.events, Context(watched=WATCHED))
    assert analysis.findings == [], [to_builtins(f) for f in analysis.findings]
    expired = [life for life in analysis.lifecycle if life.removed_how == "expired"]
    assert expired and all(life.expired_on_time for life in expired)


def test_findings_group_many_keys_into_one() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    processor = tb.client("processor", pid=200, client_id=8)
    for n in range(30):
        key = f"batch:{n}"
        api("RPUSH", key, "a")
        api("EXPIRE", key, 60)
        api("RPUSH", key, "b")
        processor("DEL", key)
        api("RPUSH", key, "c")
    finding = one(tb, "deleted-by-client", WATCHED)
    assert finding.keys[-1] == "... and 20 more" and len(finding.evidence) <= 12
    assert "30 keys like batch:*" in finding.summary


def test_a_finding_counts_each_key_once_even_past_the_listed_ones() -> None:
    from redisprobe.analysis.rules.base import KEYS_LISTED, Group

    group = Group("deleted-by-client", "error", None, lambda g: "")
    for n in range(KEYS_LISTED + 5):
        assert group.add_key(f"batch:{n}")
    assert not group.add_key("batch:3") and not group.add_key(f"batch:{KEYS_LISTED + 2}")
    assert group.key_count == KEYS_LISTED + 5 and len(group.keys) == KEYS_LISTED
    assert group.finding().keys[-1] == "... and 5 more"


# -- job-queue bookkeeping is not a finding ------------------------------------------------------------------------

def test_reads_of_sub_keys_nobody_wrote_are_not_a_prefix_mismatch() -> None:
    """BullMQ's scripts look at `<job>:dependencies` and `<job>:unsuccessful` for every finished job; those keys
    never exist for a job without children. A name with an extra trailing part is a related key, not the written
    key named differently."""
    tb = TraceBuilder()
    producer = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    for job in range(3):
        producer("HSET", f"bull:mail:{job}", "data", "{}")
        worker("SCARD", f"bull:mail:{job}:dependencies")
        worker("ZCARD", f"bull:mail:{job}:unsuccessful")
        worker("HGETALL", f"bull:mail:{job}")
    healthy(tb, WATCHED)


def test_set_nx_that_did_nothing_is_the_set_once_idiom_not_a_missed_refresh() -> None:
    """rate-limiter-flexible opens a window with SET key 0 EX 1 NX: on a live counter it does nothing, by design."""
    tb = TraceBuilder()
    limiter = tb.client("api", pid=100, client_id=7)
    limiter("INCR", "rl:client7")  # a counter made before the capture: first seen here
    limiter("SET", "rl:client7", "0", "EX", "1", "NX")
    tb.at(1.2).ks("expired", "rl:client7")
    findings = run(tb, WATCHED)
    assert not [f for f in findings if f.rule == "ttl-refresh-missed"], [to_builtins(f) for f in findings]


def test_forked_children_of_a_listed_worker_belong_to_it() -> None:
    """Celery's prefork children carry their parent's label (the pid map follows the process tree): their takes
    are the worker's own, not another consumer's."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    parent = tb.client("processor", pid=200, client_id=8, process="celery")
    child = tb.client("processor", pid=201, client_id=9, process="celery")  # not listed itself: a forked child
    for i in range(3):
        api("SET", f"chord:{i}", "part", "EX", 600)
    parent("GETDEL", "chord:0")
    child("GETDEL", "chord:1")
    child("GETDEL", "chord:2")
    healthy(tb, WATCHED)


def test_a_removal_right_after_the_last_write_that_nobody_misses_is_a_hand_over() -> None:
    """rq flushes a finished batch 20 ms after the api's last RPUSH: the api never comes back to it, so nothing
    vanished from under anyone (the symptom deleted-by-client needs)."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    worker = tb.client("processor", pid=200, client_id=8)
    api("RPUSH", "batch:1", "a")
    api("EXPIRE", "batch:1", 60)
    tb.ks("expire", "batch:1")
    for second in (0.1, 0.2, 0.3):
        tb.at(second)
        api("RPUSH", "batch:1", "b")
    tb.at(0.32)
    worker("DEL", "batch:1")
    tb.ks("del", "batch:1")
    tb.at(2.0)
    api("RPUSH", "batch:2", "a")  # the api moves on to the next batch
    healthy(tb, WATCHED)


def _started(tb: TraceBuilder, role: str, pid: int, client_id: int, *, server_role: str, run_id: str) -> None:
    tb.add(trace.ActorStarted(
        t=tb.now, pid=pid, role=role, target=tb.target, client_id=client_id, client_name=f"redisprobe:{role}:{pid}",
        db=0, addr=f"127.0.0.1:{40000 + client_id}", prefix="",
        server=trace.ServerFingerprint(run_id=run_id, host="127.0.0.1", port=6379 if server_role == "master" else 6380,
                                       version="7.0.15", uptime=100, role=server_role, master_replid="r" * 40,
                                       master_host="127.0.0.1", master_port=6379)))
    tb.tick()


def test_a_reader_on_a_replica_is_replica_read_from_any_trace_with_actors() -> None:
    """The doctor names replica-read from the actors' own connections, so `report` and `monitor` name it as
    `isolation` does; a reader on the primary itself is silent."""
    tb = TraceBuilder()
    _started(tb, "api", 100, 11, server_role="master", run_id="a" * 40)
    _started(tb, "processor", 200, 7, server_role="slave", run_id="b" * 40)
    tb.add(trace.Op(t=tb.now, mono=0.0, pid=200, role="processor", client_id=7, db=0, args=[b"SET", b"ack", b"1"],
                    error="READONLY You can't write against a read only replica."))
    finding = one(tb, "replica-read")
    assert finding.culprit is not None and finding.culprit.pid == 200 and finding.severity == "error"
    assert mentions(finding, "reads a replica") and mentions(finding, "SET ack 1", "READONLY")
    same = TraceBuilder()
    _started(same, "api", 100, 11, server_role="master", run_id="a" * 40)
    _started(same, "processor", 200, 7, server_role="master", run_id="a" * 40)
    assert not [f for f in run(same) if f.rule == "replica-read"]


# -- cluster replicas: replica-read, failover-lost-write -----------------------------------------------------------

PRIMARY = "redis://127.0.0.1:7000/0"
REPLICA = "redis://127.0.0.1:7003/0"


def _cluster(tb: TraceBuilder) -> tuple[object, object, object]:
    """A primary (7000) and its replica (7003): roles, the replication link on the replica, a writer, a reader."""
    tb.add(trace.Topology(t=tb.now, target=PRIMARY, role="primary"))
    tb.add(trace.Topology(t=tb.now, target=REPLICA, role="replica", primary="127.0.0.1:7000"))
    writer = tb.client("api", pid=100, client_id=7, port=5001, target=PRIMARY)
    reader = tb.client("processor", pid=200, client_id=8, port=5002, target=REPLICA)
    link = tb.client(client_id=3, addr="127.0.0.1:7000", flags="M", target=REPLICA)
    return writer, reader, link


def test_replica_read_before_the_write_arrived() -> None:
    tb = TraceBuilder(PRIMARY)
    writer, reader, link = _cluster(tb)
    writer("SET", "job:1", "x", "EX", "60")
    tb.at(0.1)
    reader("READONLY")
    reader("GET", "job:1")  # the replica does not have it yet
    tb.add(trace.Replication(t=tb.now, target=PRIMARY, offset=500, replicas={"127.0.0.1:7003": 420}))
    tb.at(0.4)
    link("SET", "job:1", "x", "PXAT", str(int((T0 + 60) * 1000)))  # the replication stream brings it
    finding = one(tb, "replica-read", WATCHED)
    assert finding.culprit is not None and finding.culprit.pid == 200
    assert finding.keys == ["job:1"]
    assert mentions(finding, "GET job:1", "127.0.0.1:7003") and mentions(finding, "80 bytes behind")
    assert mentions(finding, "arrived on 127.0.0.1:7003", "ms after the read")


def test_replica_read_after_the_write_arrived_is_healthy_and_the_stream_counts_once() -> None:
    tb = TraceBuilder(PRIMARY)
    writer, reader, link = _cluster(tb)
    writer("SET", "job:1", "x", "EX", "60")
    tb.ks("set", "job:1", target=PRIMARY)
    link("SET", "job:1", "x", "PXAT", str(int((T0 + 60) * 1000)))
    tb.ks("set", "job:1", target=REPLICA)  # the replica's own event for the replicated write
    tb.at(0.2)
    reader("GET", "job:1")
    writer("DEL", "job:1")
    link("DEL", "job:1")
    healthy(tb, WATCHED)
    folded = fold(tb.events, watched=WATCHED)
    assert [(life.server, life.removed_how) for life in folded.lives_of("job:1")] == [("127.0.0.1:7000", "del")]


def test_failover_before_replication_ends_the_life_and_a_later_miss_names_it() -> None:
    tb = TraceBuilder(PRIMARY)
    writer, _reader, link = _cluster(tb)
    writer("SET", "kept", "x")
    link("SET", "kept", "x")
    tb.at(0.1)
    writer("SET", "job:1", "x")  # never replicated
    tb.at(1.0)
    tb.add(trace.Topology(t=tb.now, target=REPLICA, role="primary", since=T0 + 0.5,
                          text="failover: 127.0.0.1:7003 is now a primary"))
    tb.add(trace.Topology(t=tb.now, target=PRIMARY, role="replica", primary="127.0.0.1:7003", since=T0 + 0.5))
    tb.at(1.5)
    after = tb.client("processor", pid=200, client_id=9, port=5003, target=REPLICA)
    after("GET", "job:1")
    after("GET", "kept")
    finding = one(tb, "failover-lost-write", WATCHED)
    assert finding.keys == ["job:1"] and finding.culprit is None
    assert "127.0.0.1:7003 took over" in finding.summary
    assert mentions(finding, "GET job:1", "missed")
    assert [f.rule for f in run(tb, WATCHED)] == ["failover-lost-write"]  # `kept` went on on the new primary


def test_failover_after_replication_is_healthy() -> None:
    tb = TraceBuilder(PRIMARY)
    writer, _reader, link = _cluster(tb)
    writer("SET", "job:1", "x")
    link("SET", "job:1", "x")
    tb.at(1.0)
    tb.add(trace.Topology(t=tb.now, target=REPLICA, role="primary", since=T0 + 0.5))
    tb.at(1.5)
    after = tb.client("processor", pid=200, client_id=9, port=5003, target=REPLICA)
    after("GET", "job:1")
    healthy(tb, WATCHED)


def _clocked(replica_offset: float, uncertainty: float) -> TraceBuilder:
    """A write on the primary at 0.100 s, then a replica read stamped (by the replica's clock) 30 ms later and the
    write's arrival there 80 ms later; the replica's clock is `replica_offset` ahead of ours."""
    tb = TraceBuilder(PRIMARY)
    tb.add(trace.Topology(t=tb.now, target=PRIMARY, role="primary", clock_uncertainty=uncertainty))
    tb.add(trace.Topology(t=tb.now, target=REPLICA, role="replica", primary="127.0.0.1:7000",
                          clock_offset=replica_offset, clock_uncertainty=uncertainty))
    tb.client("api", pid=100, client_id=7, port=5001, target=PRIMARY)
    tb.client("processor", pid=200, client_id=8, port=5002, target=REPLICA)
    tb.client(client_id=3, addr="127.0.0.1:7000", flags="M", target=REPLICA)
    tb.add(trace.Monitor(t=T0 + 0.100, db=0, peer="127.0.0.1:5001", args=[b"SET", b"job:1", b"x"], target=PRIMARY))
    tb.add(trace.Monitor(t=T0 + 0.130, db=0, peer="127.0.0.1:5002", args=[b"GET", b"job:1"], target=REPLICA))
    tb.add(trace.Monitor(t=T0 + 0.180, db=0, peer="127.0.0.1:7000", args=[b"SET", b"job:1", b"x"], target=REPLICA))
    tb.at(1.0)
    return tb


def test_each_nodes_clock_offset_is_applied_before_events_are_ordered() -> None:
    assert one(_clocked(0.0, 0.0001), "replica-read", WATCHED)  # same clocks: the read came after the write
    # the replica's clock runs 50 ms ahead: its read was at 0.080 s on ours, before the write existed anywhere
    healthy(_clocked(0.050, 0.0001), WATCHED)


def test_events_closer_than_the_clocks_uncertainty_are_said_to_be_of_uncertain_order() -> None:
    sure = one(_clocked(0.0, 0.0001), "replica-read", WATCHED)
    assert not mentions(sure, "order uncertain")
    unsure = one(_clocked(0.025, 0.004), "replica-read", WATCHED)  # 5 ms apart, each clock known to ±4 ms
    assert mentions(unsure, "order uncertain", "5.0 ms apart", "±8.0 ms")


def test_an_offset_within_its_own_uncertainty_is_not_applied() -> None:
    # 40 ms measured ±50 ms (a loaded host): no offset known; the read stays 30 ms after the write, order uncertain
    finding = one(_clocked(0.040, 0.050), "replica-read", WATCHED)
    assert mentions(finding, "order uncertain", "30.0 ms apart")


def test_a_link_under_another_address_before_client_list_shows_it_is_no_promotion() -> None:
    tb = TraceBuilder(PRIMARY)
    tb.add(trace.Topology(t=tb.now, target=PRIMARY, role="primary"))
    tb.add(trace.Topology(t=tb.now, target=REPLICA, role="replica", primary="127.0.0.1:7000"))
    writer = tb.client("api", pid=100, client_id=7, port=5001, target=PRIMARY)
    natted = tb.client(client_id=3, addr="10.0.0.5:7000", target=REPLICA, sample=False)  # the link as NAT shows it
    writer("SET", "job:1", "x", "EX", "60")
    natted("SET", "job:1", "x", "PXAT", str(int((T0 + 60) * 1000)))
    tb.at(0.5)
    writer("DEL", "job:1")
    natted("DEL", "job:1")
    healthy(tb, WATCHED)
    folded = fold(tb.events, watched=WATCHED)
    assert [(life.server, life.removed_how) for life in folded.lives_of("job:1")] == [("127.0.0.1:7000", "del")]
    assert not folded.promotions


def _two_nodes(cluster: bool) -> tuple[TraceBuilder, str, str]:
    """Two servers sampled by the capture, nodes of one Redis Cluster or two unrelated servers."""
    tb = TraceBuilder()
    nodes = ("redis://127.0.0.1:7001/0", "redis://127.0.0.1:7002/0")
    for index, node in enumerate(nodes):
        tb.add(trace.ServerSeen(t=tb.now, target=node, server=trace.ServerFingerprint(
            run_id=str(index) * 40, port=7001 + index, redis_mode="cluster" if cluster else msgspec.UNSET)))
    return tb, nodes[0], nodes[1]


def _near_miss_on_another_node(tb: TraceBuilder, first: str, second: str) -> None:
    api = tb.client("api", pid=100, client_id=7, target=first)
    keeper = tb.client("keeper", pid=150, client_id=12, target=second)
    api("SET", "session:42", "data", "EX", 1)
    tb.ks("set", "session:42", target=first).ks("expire", "session:42", target=first)
    tb.at(0.5)
    keeper("EXPIRE", "session_42", 1)  # the near-miss name hashes to another node of the cluster
    tb.at(1.1).ks("expired", "session:42", target=first)


def test_a_near_miss_name_on_another_node_of_a_cluster_is_a_near_miss() -> None:
    tb, first, second = _two_nodes(cluster=True)
    _near_miss_on_another_node(tb, first, second)
    finding = one(tb, "ttl-refresh-missed")
    assert finding.culprit is not None and finding.culprit.pid == 150
    assert mentions(finding, "session:42 exists")


def test_a_lookalike_name_on_an_unrelated_server_is_no_near_miss() -> None:
    tb, first, second = _two_nodes(cluster=False)
    _near_miss_on_another_node(tb, first, second)
    assert "ttl-refresh-missed" not in {f.rule for f in run(tb)}


def _two_clusters() -> tuple[TraceBuilder, list[str], list[str]]:
    """Four nodes sampled by the capture: two primaries of each of two clusters that look alike."""
    tb = TraceBuilder()
    one, other = ["redis://127.0.0.1:7001/0", "redis://127.0.0.1:7002/0"], ["redis://127.0.0.1:7003/0",
                                                                           "redis://127.0.0.1:7004/0"]
    for index, node in enumerate(one + other):
        tb.add(trace.ServerSeen(t=tb.now, target=node, server=trace.ServerFingerprint(
            run_id=str(index) * 40, port=7001 + index, redis_mode="cluster",
            cluster_id=("a" if node in one else "b") * 40)))
    return tb, one, other


def test_a_scan_over_every_node_of_the_other_cluster_is_different_server_not_scan_one_node() -> None:
    tb, one, other = _two_clusters()
    tb.client("api", pid=100, client_id=7, target=one[0])("RPUSH", "batch:a", "m")
    tb.client("api", pid=100, client_id=8, target=one[1])("RPUSH", "batch:b", "m")
    tb.at(0.2)
    for n, node in enumerate(other):  # a cluster-aware scan, of the wrong cluster
        tb.client("processor", pid=200, client_id=20 + n, target=node)("SCAN", "0", "MATCH", "batch:*")
    findings = run(tb)
    assert [f.rule for f in findings] == ["different-server"], findings
    assert findings[0].culprit is not None and findings[0].culprit.pid == 200
    assert "another cluster" in findings[0].summary


def test_a_key_written_on_a_plain_server_and_missed_on_a_cluster_is_said_as_two_servers() -> None:
    tb, one, _other = _two_clusters()
    plain = "redis://127.0.0.1:6379/0"
    tb.add(trace.ServerSeen(t=tb.now, target=plain, server=trace.ServerFingerprint(run_id="p" * 40, port=6379)))
    tb.client("api", pid=100, client_id=7, target=plain)("SET", "order:9", "x", "EX", 60)
    tb.client("processor", pid=200, client_id=20, target=one[0])("GET", "order:9")
    [finding] = [f for f in run(tb) if f.rule == "different-server"]
    assert "on the cluster of 127.0.0.1:7001, 127.0.0.1:7002, but" in finding.summary, finding.summary
    assert "another server, 127.0.0.1:6379" in finding.summary, finding.summary


def test_a_lookalike_name_on_the_other_cluster_is_no_near_miss() -> None:
    tb, one, other = _two_clusters()
    _near_miss_on_another_node(tb, one[0], other[0])
    assert "ttl-refresh-missed" not in {f.rule for f in run(tb)}


def test_two_clients_that_each_scan_every_node_in_either_order_are_no_scan_one_node() -> None:
    """Each scanner is followed on its own: the first to scan a node must not stand for everyone who scanned it."""
    tb, first, second = _two_nodes(cluster=True)
    writer = tb.client("api", pid=100, client_id=7, target=first)
    elsewhere = tb.client("api", pid=100, client_id=8, target=second)
    writer("RPUSH", "batch:a", "m")
    elsewhere("RPUSH", "batch:b", "m")
    processor = {node: tb.client("processor", pid=200, client_id=20 + n, target=node)
                 for n, node in enumerate((first, second))}
    janitor = {node: tb.client("janitor", pid=300, client_id=30 + n, target=node)
               for n, node in enumerate((first, second))}
    tb.at(0.2)
    processor[first]("SCAN", "0", "MATCH", "batch:*", "COUNT", "1000")
    janitor[first]("SCAN", "0", "MATCH", "batch:*", "COUNT", "1000")
    janitor[second]("SCAN", "0", "MATCH", "batch:*", "COUNT", "1000")
    processor[second]("SCAN", "0", "MATCH", "batch:*", "COUNT", "1000")
    assert "scan-one-node" not in {f.rule for f in run(tb)}


def test_a_scanner_that_asked_one_node_is_named_even_when_another_scanned_that_node_first() -> None:
    tb, first, second = _two_nodes(cluster=True)
    tb.client("api", pid=100, client_id=8, target=second)("RPUSH", "batch:b", "m")
    tb.at(0.2)
    tb.client("auditor", pid=400, client_id=40, target=first)("SCAN", "0", "MATCH", "batch:*")
    tb.client("processor", pid=200, client_id=20, target=first)("SCAN", "0", "MATCH", "batch:*")
    assert {f.culprit.pid for f in run(tb) if f.rule == "scan-one-node" and f.culprit} == {200, 400}


def test_a_key_written_on_another_node_after_the_last_scan_was_not_missed_by_it() -> None:
    tb, first, second = _two_nodes(cluster=True)
    scanner = tb.client("processor", pid=200, client_id=20, target=first)
    scanner("SCAN", "0", "MATCH", "batch:*")
    tb.at(0.5)
    scanner("SCAN", "0", "MATCH", "batch:*")
    tb.at(1.0)
    tb.client("api", pid=100, client_id=8, target=second)("RPUSH", "batch:b", "m")
    assert "scan-one-node" not in {f.rule for f in run(tb)}
    tb.at(1.5)
    scanner("SCAN", "0", "MATCH", "batch:*")  # now the key was there while it scanned one node only
    assert "scan-one-node" in {f.rule for f in run(tb)}


def test_a_node_scanned_by_a_connection_of_unknown_process_may_be_the_scanners_own() -> None:
    tb, first, second = _two_nodes(cluster=True)
    tb.client("api", pid=100, client_id=8, target=second)("RPUSH", "batch:b", "m")
    tb.at(0.2)
    tb.client("processor", pid=200, client_id=20, target=first)("SCAN", "0", "MATCH", "batch:*")
    tb.client(client_id=21, target=second)("SCAN", "0", "MATCH", "batch:*")  # no pid: its own, maybe
    assert "scan-one-node" not in {f.rule for f in run(tb)}


def test_a_connection_of_unknown_process_scanning_one_node_may_be_a_known_scanners_own() -> None:
    tb, first, second = _two_nodes(cluster=True)
    tb.client("api", pid=100, client_id=8, target=second)("RPUSH", "batch:b", "m")
    tb.at(0.2)
    tb.client("processor", pid=200, client_id=20, target=second)("SCAN", "0", "MATCH", "batch:*")
    tb.client(client_id=21, target=first)("SCAN", "0", "MATCH", "batch:*")  # no pid: the processor's, maybe
    assert "scan-one-node" not in {f.rule for f in run(tb)}
