"""The fold's semantics found on real apps, on traces shaped like their captures (the commands, peers, timings and
keyspace events each app's capture showed): a stuck MULTI, sub-second PX caches, two PM2 instances racing for a
list, blocking pops, a script that recreates an expired counter, same-millisecond TTL bursts."""

from __future__ import annotations

import msgspec
import pytest

from redisprobe import trace
from redisprobe.analysis import Context, diagnose
from redisprobe.analysis.lifecycle import fold
from redisprobe.findings import Finding, to_builtins
from tests.tracebuild import TARGET, TraceBuilder


def run(tb: TraceBuilder, watched: dict[int, str]) -> list[Finding]:
    return diagnose(tb.events, Context(watched=watched))


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def test_a_connection_stuck_in_multi_is_one_record_whatever_the_later_multis():
    """wallet-multi-left-open: CLIENT LIST flags=x cmd=multi, then a refused MULTI every 100 ms."""
    tb = TraceBuilder()
    wallet = tb.client("wallet", pid=14719, client_id=5, flags="x")
    for _ in range(37):
        wallet("multi")
        tb.tick(0.1)
    findings = run(tb, {14719: "wallet"})
    assert rules(findings) == ["transaction-not-executed"], [to_builtins(f) for f in findings]
    assert any("36 later MULTI on this connection refused" in line for line in findings[0].evidence)


def test_px_30_cache_entries_missed_after_expiry_are_a_unit_slip():
    """cache-manager-ttl-seconds: GET miss, SET ... PX 30, expired 30 ms later, GET miss again."""
    tb = TraceBuilder()
    catalog = tb.client("catalog", pid=15075, client_id=4)
    for round_ in range(2):
        for index, product in enumerate((19, 38, 40)):
            tb.at(round_ * 1.0 + index * 0.1)
            catalog("GET", f"keyv::keyv:product:{product}")
            catalog("SET", f"keyv::keyv:product:{product}", "{}", "PX", 30)
            tb.ks("set", f"keyv::keyv:product:{product}").ks("expire", f"keyv::keyv:product:{product}")
            tb.tick(0.03).ks("expired", f"keyv::keyv:product:{product}")
    findings = run(tb, {15075: "catalog"})
    assert rules(findings) == ["ttl-unit-mismatch"], [to_builtins(f) for f in findings]
    assert findings[0].culprit is not None and findings[0].culprit.pid == 15075
    assert "did you mean 30 seconds?" in findings[0].summary


def test_a_sub_second_lock_retaken_after_it_lapses_is_silent():
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    for job in range(4):
        tb.at(job * 0.5)
        worker("SET", f"lock:job:{job}", "token", "NX", "PX", 100)
        tb.ks("set", f"lock:job:{job}").ks("expire", f"lock:job:{job}")
        tb.tick(0.1).ks("expired", f"lock:job:{job}")
        worker("SET", f"lock:job:{job}", "token2", "NX", "PX", 100)
        tb.ks("set", f"lock:job:{job}").ks("expire", f"lock:job:{job}")
        worker("DEL", f"lock:job:{job}")
        tb.ks("del", f"lock:job:{job}")
    assert run(tb, {300: "worker"}) == []


def test_two_instances_of_one_app_racing_for_a_list_is_consumed_by_other():
    """cluster-flush-every-instance: instance A's LPOP 50 empties events:pending, B's comes away empty 20 ms later."""
    tb = TraceBuilder()
    first = tb.client("tracker", pid=15448, client_id=4)
    second = tb.client("tracker", pid=15456, client_id=5)
    browsers = tb.client("tracker", pid=15448, client_id=6)
    for round_ in range(3):
        tb.at(round_ * 0.5)
        browsers("RPUSH", "events:pending", "{}")
        tb.ks("rpush", "events:pending")
        first("LPOP", "events:pending", 50)
        tb.ks("lpop", "events:pending").ks("del", "events:pending")
        tb.tick(0.02)
        second("LPOP", "events:pending", 50)
    findings = run(tb, {15448: "tracker", 15456: "tracker"})
    assert rules(findings) == ["consumed-by-other"], [to_builtins(f) for f in findings]
    assert findings[0].culprit is not None and findings[0].culprit.pid == 15448
    assert "pid 15456 came away empty" in findings[0].summary


def test_one_instance_flushing_an_empty_list_is_silent():
    tb = TraceBuilder()
    first = tb.client("tracker", pid=15448, client_id=4)
    tb.client("tracker", pid=15456, client_id=5)
    for round_ in range(3):
        tb.at(round_ * 0.5)
        first("RPUSH", "events:pending", "{}")
        tb.ks("rpush", "events:pending")
        first("LPOP", "events:pending", 50)
        tb.ks("lpop", "events:pending").ks("del", "events:pending")
        tb.tick(0.25)
        first("LPOP", "events:pending", 50)
    assert run(tb, {15448: "tracker", 15456: "tracker"}) == []


def test_a_blocked_pop_that_times_out_is_a_miss_and_one_that_is_served_is_not():
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    api = tb.client("api", pid=100, client_id=7)
    worker("BLPOP", "jobs:idle", 1)  # nobody pushes: times out
    worker("BLPOP", "jobs:busy", 5)
    tb.at(0.3)
    api("RPUSH", "jobs:busy", "job-1")  # served at once: the worker takes it
    tb.ks("rpush", "jobs:busy").ks("lpop", "jobs:busy").ks("del", "jobs:busy")
    tb.at(2.0)
    api("PING")
    lifecycle = fold(tb.events)
    idle = lifecycle.slots[("127.0.0.1:6379", 0, b"jobs:idle")]
    assert idle.misses == 1 and idle.miss_log[0][2][0] == b"BLPOP"
    busy = lifecycle.slots[("127.0.0.1:6379", 0, b"jobs:busy")]
    assert busy.misses == 0
    [life] = busy.all_lives()
    assert life.removed_how == "pop" and life.removed_by is not None and life.removed_by[1] == worker.peer


def test_a_worker_blocked_since_before_the_capture_in_another_db_is_different_db():
    """rq-worker-other-db: CLIENT LIST shows db=1 flags=b cmd=blmove; rq:queue:batches fills in db 0."""
    tb = TraceBuilder()
    tb.add(trace.ClientSeen(t=tb.now, client_id=6, addr="127.0.0.1:55080", db=1, age=4, flags="b", cmd="blmove",
                            pid=15816, label="worker", target=TARGET))
    api = tb.client("api", pid=15817, client_id=4)
    for job in range(3):
        tb.at(0.5 + job)
        api("RPUSH", "rq:queue:batches", f"job-{job}")
        api("RPUSH", f"batch:{job}", "{}")
        api("EXPIRE", f"batch:{job}", 10)
    findings = run(tb, {15816: "worker", 15817: "api"})
    assert rules(findings) == ["different-db"], [to_builtins(f) for f in findings]
    finding = findings[0]
    assert finding.culprit is not None and finding.culprit.pid == 15816
    assert finding.keys == ["rq:queue:batches"]  # the queue (no TTL), not the TTL'd batches
    assert "blocked in BLMOVE on db 1" in finding.summary


def test_a_worker_blocked_in_the_same_db_is_silent():
    tb = TraceBuilder()
    tb.add(trace.ClientSeen(t=tb.now, client_id=6, addr="127.0.0.1:55080", db=0, age=4, flags="b", cmd="blmove",
                            pid=15816, label="worker", target=TARGET))
    api = tb.client("api", pid=15817, client_id=4)
    tb.at(0.5)
    api("RPUSH", "rq:queue:batches", "job-1")
    tb.ks("rpush", "rq:queue:batches").ks("lpop", "rq:queue:batches").ks("del", "rq:queue:batches")
    assert run(tb, {15816: "worker", 15817: "api"}) == []
    [life] = fold(tb.events).slots[("127.0.0.1:6379", 0, b"rq:queue:batches")].all_lives()
    removed = life.to_json()["removed"]  # served the worker's BLMOVE sent before the capture
    assert removed["how"] == "pop" and removed["by"]["pid"] == 15816 and "blocked since before" in removed["detail"]


def test_an_expired_event_a_scripts_own_incr_caused_ends_the_earlier_life():
    """A limiter's EVAL: INCR on a counter whose TTL ran out before the trace expires it on access, then recreates
    it with EXPIRE 5; MONITOR shows EVAL, lua INCR, lua EXPIRE, then the events arrive: expired, incrby, expire."""
    tb = TraceBuilder()
    gateway = tb.client("gateway", pid=6222, client_id=13)
    gateway("EVAL", "local n = redis.call('INCR', KEYS[1]) ...", 1, "rl:1")
    tb.lua("INCR", "rl:1")
    tb.lua("EXPIRE", "rl:1", 5)
    tb.ks("expired", "rl:1").ks("incrby", "rl:1").ks("expire", "rl:1")
    tb.at(2.0)
    gateway("GET", "rl:1")
    lifecycle = fold(tb.events)
    old, new = lifecycle.slots[("127.0.0.1:6379", 0, b"rl:1")].all_lives()
    assert old.preexisting and old.removed_how == "expired"
    assert new.removed_how is None and new.ttl_set == 5.0 and new.prev_how == "expired"
    assert new.created_by is not None and new.created_by[1] == gateway.peer
    assert run(tb, {6222: "gateway"}) == []


def test_same_millisecond_ttl_commands_each_meet_their_own_event_when_events_lag():
    """Three writers pipelining SET EX / EXPIRE on one key: 120 commands, then their events 200 ms behind."""
    tb = TraceBuilder()
    writers = [tb.client(f"w{index}", pid=500 + index, client_id=20 + index) for index in range(3)]
    for _ in range(20):
        for writer in writers:
            writer("SET", "item:0", "v", "EX", 10)
            writer("EXPIRE", "item:0", 20)
    tb.tick(0.2)
    for _ in range(120):
        tb.ks("expire", "item:0")
    tb.at(2.0)
    lifecycle = fold(tb.events)
    [life] = lifecycle.slots[("127.0.0.1:6379", 0, b"item:0")].all_lives()
    assert life.ttl_missed_count == 0 and life.ttl_sets == 120


def test_xread_block_on_an_absent_stream_is_a_miss_only_if_nothing_came():
    tb = TraceBuilder()
    reader = tb.client("reader", pid=300, client_id=9)
    writer = tb.client("writer", pid=100, client_id=7)
    reader("XREAD", "BLOCK", 1000, "STREAMS", "events:idle", "$")  # nothing comes: a miss
    reader("XREAD", "BLOCK", 5000, "STREAMS", "events:busy", "$")
    tb.at(0.2)
    writer("XADD", "events:busy", "*", "kind", "click")  # served: not a miss
    tb.at(2.0)
    writer("PING")
    lifecycle = fold(tb.events)
    assert lifecycle.slots[("127.0.0.1:6379", 0, b"events:idle")].misses == 1
    assert lifecycle.slots[("127.0.0.1:6379", 0, b"events:busy")].misses == 0


def test_a_client_list_sample_inside_a_multi_that_then_execs_is_silent():
    """wallet: a sample caught the transfer connection with flags=x during the 30 ms its MULTI was open."""
    tb = TraceBuilder()
    wallet = tb.client("wallet", pid=14719, client_id=5, port=36912)
    wallet("MULTI")
    tb.client("wallet", pid=14719, client_id=5, port=36912, flags="x")
    tb.tick(0.03)
    wallet("INCRBY", "balance:1", 5)
    wallet("EXEC")
    tb.at(2.0)
    wallet("GET", "balance:1")
    assert run(tb, {14719: "wallet"}) == []


def test_a_client_list_sample_inside_a_multi_opened_just_before_the_end_is_silent():
    tb = TraceBuilder()
    wallet = tb.client("wallet", pid=14719, client_id=5, port=36912)
    wallet("GET", "balance:1")
    tb.at(2.0)
    wallet("MULTI")
    tb.client("wallet", pid=14719, client_id=5, port=36912, flags="x")  # the capture stops before its EXEC
    assert run(tb, {14719: "wallet"}) == []


def _two_servers(replid_b: str) -> TraceBuilder:
    primary, other = "redis://127.0.0.1:7001/0", "redis://127.0.0.1:7002/0"
    tb = TraceBuilder()
    for target, run_id, role, replid in ((primary, "a" * 40, "master", "r" * 40), (other, "b" * 40, "slave", replid_b)):
        tb.add(trace.ServerSeen(t=tb.now, target=target, server=trace.ServerFingerprint(
            run_id=run_id, port=int(target.rsplit(":", 1)[1].split("/")[0]), role=role, master_replid=replid)))
    api = tb.client("api", pid=100, client_id=7, target=primary)
    reader = tb.client("reader", pid=200, client_id=8, target=other)
    api("SET", "order:9", "x", "EX", 60)
    reader("GET", "order:9")
    return tb


def test_a_key_missed_on_the_replica_of_its_server_is_not_different_server():
    assert "different-server" not in rules(run(_two_servers("r" * 40), {100: "api", 200: "reader"}))
    assert "different-server" in rules(run(_two_servers("q" * 40), {100: "api", 200: "reader"}))


def _two_cluster_nodes(cluster_b: str | None) -> TraceBuilder:
    """A key written on a node of one cluster and missed on a node of `cluster_b` (None: an older trace, which
    does not say which cluster a node is in)."""
    node_a, node_b = "redis://127.0.0.1:7001/0", "redis://127.0.0.1:7002/0"
    tb = TraceBuilder()
    for target, run_id, cluster in ((node_a, "a" * 40, "c" * 40), (node_b, "b" * 40, cluster_b)):
        tb.add(trace.ServerSeen(t=tb.now, target=target, server=trace.ServerFingerprint(
            run_id=run_id, port=int(target.rsplit(":", 1)[1].split("/")[0]), role="master", master_replid=run_id,
            redis_mode="cluster", cluster_id=cluster if cluster is not None else msgspec.UNSET)))
    tb.client("api", pid=100, client_id=7, target=node_a)("SET", "order:9", "x", "EX", 60)
    tb.client("reader", pid=200, client_id=8, target=node_b)("GET", "order:9")
    return tb


def test_a_key_missed_on_another_cluster_is_different_server_and_on_its_own_cluster_not():
    assert "different-server" in rules(run(_two_cluster_nodes("d" * 40), {100: "api", 200: "reader"}))
    assert "different-server" not in rules(run(_two_cluster_nodes("c" * 40), {100: "api", 200: "reader"}))
    assert "different-server" not in rules(run(_two_cluster_nodes(None), {100: "api", 200: "reader"}))


def test_a_pop_on_a_list_made_before_the_trace_is_no_miss():
    """The worker's BLPOP and LPOP find a list pushed before the capture: MONITOR shows the pops, the keyspace
    stream shows them take elements (lpop, no del: the list is not empty yet)."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    worker("BLPOP", "jobs:old", 0)
    tb.ks("lpop", "jobs:old")
    worker("LPOP", "jobs:old")
    tb.ks("lpop", "jobs:old")
    tb.at(3.0)
    worker("PING")
    lifecycle = fold(tb.events)
    slot = lifecycle.slots[("127.0.0.1:6379", 0, b"jobs:old")]
    assert slot.misses == 0
    [life] = slot.all_lives()
    assert life.preexisting and life.removed_how is None


def test_a_counter_made_before_the_trace_that_expires_right_after_an_incrby_ends_there():
    """ratelimit: INCRBY on a counter whose window (TTL set before the capture) closes a moment later: the events
    say incrby, then expired; that client sends nothing more during the capture."""
    tb = TraceBuilder()
    gateway = tb.client("gateway", pid=13584, client_id=4)
    gateway("INCRBY", "ratelimit:client7", 5)
    tb.ks("incrby", "ratelimit:client7").ks("expired", "ratelimit:client7")
    tb.at(3.5)
    gateway("INCRBY", "ratelimit:client8", 1)
    lifecycle = fold(tb.events)
    [life] = lifecycle.slots[("127.0.0.1:6379", 0, b"ratelimit:client7")].all_lives()
    assert life.removed_how == "expired"
    assert run(tb, {13584: "gateway"}) == []


def test_a_blocked_pop_that_timed_out_before_a_key_was_made_is_not_a_look_after_its_removal():
    """The miss of a timed-out BLPOP is decided at the end of the fold; it is older than the key's later life."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=300, client_id=9)
    api = tb.client("api", pid=100, client_id=7)
    worker("BLPOP", "jobs:1", 1)  # times out at 1 s
    tb.at(2.0)
    api("RPUSH", "jobs:1", "job")
    api("RENAME", "jobs:1", "jobs:archived")
    tb.at(3.0)
    api("PING")
    findings = run(tb, {300: "worker", 100: "api"})
    assert "renamed-away" not in rules(findings), [to_builtins(f) for f in findings]
    assert fold(tb.events).slots[("127.0.0.1:6379", 0, b"jobs:1")].misses == 1


def _horse_job(tb: TraceBuilder, horse: int, own: int, job: int, *, job_seen: bool, job_sampled: bool = False) -> None:
    """rq's work horse `horse` (forked by the listed worker): its bookkeeping connection, which the fork watcher
    names, and inside it the job's own connection, open 2 ms: named too, or caught by nothing (a starved watcher),
    or by a CLIENT LIST sample without its pid (the process had gone when the pid map looked)."""
    bookkeeping = tb.client(port=own, client_id=0, sample=False)
    job_client = tb.client(port=own + 1, client_id=own, sample=job_sampled)
    tb.add(trace.PeerSeen(t=tb.now, addr=f"127.0.0.1:{own}", pid=horse, process="python -m rq.cli worker",
                          label="worker", target=TARGET))
    bookkeeping("HSET", f"rq:job:{job}", "status", "started")
    if job_seen:
        tb.add(trace.PeerSeen(t=tb.now, addr=f"127.0.0.1:{own + 1}", pid=horse, process="python -m rq.cli worker",
                              label="worker", target=TARGET))
    job_client("LRANGE", f"batch:{job}", 0, -1)
    job_client("DEL", f"batch:{job}")
    bookkeeping("HSET", f"rq:job:{job}", "status", "finished")
    tb.tick(0.05)
    tb.add(trace.PeerSeen(t=tb.now, addr=f"127.0.0.1:{own}", pid=horse, process="python -m rq.cli worker",
                          label="worker", target=TARGET))


@pytest.mark.parametrize("job_sampled", [False, True])
def test_a_work_horse_job_connection_no_watcher_caught_is_the_listed_workers_not_another_consumer(job_sampled):
    """rq-batches under CPU starvation: the fork watcher named the horse's bookkeeping connection but not the
    job's own (open 2 ms, inside the horse's life). It took batch:2 as every job does: the listed worker's tree,
    not an unknown consumer."""
    tb = TraceBuilder()
    tb.client("worker", pid=500, client_id=3, process="python -m rq.cli worker")
    api = tb.client("api", pid=600, client_id=4, process="python batches_api.py")
    for job, own in ((1, 44300), (2, 44400)):
        for message in range(3):
            api("RPUSH", f"batch:{job}", f"m{message}")
            tb.ks("rpush", f"batch:{job}")
        tb.tick(0.2)
        _horse_job(tb, 700 + job, own, job, job_seen=job == 1, job_sampled=job_sampled and job == 2)
        tb.ks("del", f"batch:{job}")
        tb.tick(0.5)
    findings = run(tb, {500: "worker", 600: "api"})
    assert findings == [], [to_builtins(f) for f in findings]


def _a_seen_horse_job_then_a_second_batch() -> TraceBuilder:
    """A listed rq worker whose first horse the watcher saw, and an api that then fills batch:2."""
    tb = TraceBuilder()
    tb.client("worker", pid=500, client_id=3, process="python -m rq.cli worker")
    api = tb.client("api", pid=600, client_id=4, process="python batches_api.py")
    for message in range(3):
        api("RPUSH", "batch:1", f"m{message}")
    _horse_job(tb, 701, 44300, 1, job_seen=True)
    tb.at(3.0)
    for message in range(3):
        api("RPUSH", "batch:2", f"m{message}")
    return tb


def test_a_work_horse_no_watcher_saw_at_all_is_still_the_forking_workers():
    """Heavier starvation: the watcher saw none of this horse's connections (only earlier horses'). The worker is
    the one listed process that forks short-lived children here: the job connection is its tree's, said as such."""
    tb = _a_seen_horse_job_then_a_second_batch()
    unseen = tb.client(port=44999, client_id=0, sample=False)
    unseen("LRANGE", "batch:2", 0, -1)
    unseen("DEL", "batch:2")
    findings = run(tb, {500: "worker", 600: "api"})
    assert findings == [], [to_builtins(f) for f in findings]


def test_a_horse_whose_pid_the_sample_caught_but_not_its_parent_is_the_workers():
    """CLIENT LIST named the horse's pid, but it had exited before the pid map read its parent: no label, no
    program. A listed worker forks such children here: it is the worker's, not an unexpected consumer."""
    tb = _a_seen_horse_job_then_a_second_batch()
    gone = tb.client(pid=9306, client_id=29, port=44999)
    gone("LRANGE", "batch:2", 0, -1)
    gone("DEL", "batch:2")
    findings = run(tb, {500: "worker", 600: "api"})
    assert findings == [], [to_builtins(f) for f in findings]


def test_a_short_lived_consumer_where_no_listed_process_forks_is_still_another_consumer():
    """The same unnamed short-lived connection, in an app whose listed processes fork nothing: nothing ties it to
    them, so it stays an unexpected consumer."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=500, client_id=3, process="node worker.mjs")
    api = tb.client("api", pid=600, client_id=4, process="node api.mjs")
    for job in (1, 2):
        for message in range(3):
            api("RPUSH", f"batch:{job}", f"m{message}")
        tb.tick(0.2)
    worker("LRANGE", "batch:1", 0, -1)
    worker("DEL", "batch:1")
    stranger = tb.client(port=44999, client_id=0, sample=False)
    stranger("LRANGE", "batch:2", 0, -1)
    stranger("DEL", "batch:2")
    findings = run(tb, {500: "worker", 600: "api"})
    assert rules(findings) == ["consumed-by-other"], [to_builtins(f) for f in findings]
    assert findings[0].culprit is not None and findings[0].culprit.addr == "127.0.0.1:44999"


def _mailer_blocked_since_before(prefix: str) -> TraceBuilder:
    """bullmq: the mail worker was blocked in BZPOPMIN <prefix>:emails:marker 5 when the capture began (CLIENT
    LIST alone shows it), the api enqueues on mail:emails:*; the worker's wait runs out 3.8 s in and it waits
    again, 0.2 s before the end."""
    tb = TraceBuilder()
    tb.add(trace.Baseline(t=tb.now, until=tb.now + 0.01, db=0, keys=[b"mail:emails:marker"], types=["zset"],
                          expires_at=[None], target=TARGET))
    api = tb.client("api", pid=600, client_id=4, process="node producer.mjs", age=14)
    mailer = tb.client("mailer", pid=700, client_id=5, port=40005, sample=False)
    tb.add(trace.ClientSeen(t=tb.now, client_id=5, addr="127.0.0.1:40005", db=0, flags="b", cmd="bzpopmin",
                            pid=700, process="node worker.mjs", label="mailer", age=14, target=TARGET))
    for job in range(1, 19):
        tb.at(job * 0.2)
        api("ZADD", "mail:emails:marker", 0, 0)
        tb.ks("zadd", "mail:emails:marker")
        if prefix == "mail" and job == 3:
            tb.ks("zpopmin", "mail:emails:marker")  # the blocked worker took it: served
    tb.at(3.8)
    mailer("bzpopmin", f"{prefix}:emails:marker", 5)
    tb.at(4.0)
    api("PING")
    return tb


def test_a_wait_blocked_since_before_the_capture_that_ran_out_is_a_miss():
    """bullmq-prefix: MONITOR shows the mailer's BZPOPMIN only once, 0.2 s before the end; the one it replaces
    was there from the start (CLIENT LIST) and came back empty: bull:emails:marker was never written."""
    findings = run(_mailer_blocked_since_before("bull"), {600: "api", 700: "mailer"})
    assert rules(findings) == ["key-prefix-mismatch"], [to_builtins(f) for f in findings]
    assert findings[0].culprit is not None and findings[0].culprit.pid == 700


def test_a_wait_blocked_since_before_the_capture_that_was_served_is_no_miss():
    findings = run(_mailer_blocked_since_before("mail"), {600: "api", 700: "mailer"})
    assert findings == [], [to_builtins(f) for f in findings]


def test_a_rate_limiters_set_nx_on_a_counter_made_before_the_capture_is_no_failed_refresh():
    """rate-limiter-flexible: each request runs SET rl:<client> 0 EX 1 NX then INCRBY. On a counter made before the
    capture (and outside the baseline), the SET NX is the server's no-op: no `expire` event follows, and the key
    expires on the TTL set before. The fold cannot know the key was there: the NX is the "open a window once"
    idiom, never a refresh that failed."""
    tb = TraceBuilder()
    gateway = tb.client("gateway", pid=100, client_id=7)
    sha = "a1de965f42e177aa339706bd580f049065eca79a"
    for at in (0.1, 0.4):
        tb.at(at)
        gateway("evalsha", sha, 1, "rl:client8", 5, 1, 40, 1)
        tb.lua("set", "rl:client8", 0, "EX", 1, "NX")
        tb.lua("incrby", "rl:client8", 5)
        tb.ks("incrby", "rl:client8")
    tb.at(0.7).ks("expired", "rl:client8")  # the window opened before the capture closes
    tb.at(0.9)
    gateway("evalsha", sha, 1, "rl:client8", 5, 1, 40, 1)
    tb.lua("set", "rl:client8", 0, "EX", 1, "NX")
    tb.lua("incrby", "rl:client8", 5)
    tb.ks("set", "rl:client8").ks("expire", "rl:client8").ks("incrby", "rl:client8")
    tb.at(3.0).ks("expired", "rl:client8")
    tb.at(3.5)
    gateway("PING")
    findings = run(tb, {100: "gateway"})
    assert findings == [], [to_builtins(f) for f in findings]


@pytest.mark.parametrize(("read_at", "missed"), [(1.2075, 0), (1.2079, 0), (1.2081, 1)])
def test_a_key_expires_when_the_server_says_so_to_the_millisecond(read_at, missed):
    """The server keeps a TTL in whole milliseconds from the command's millisecond and expires a key only once the
    clock is past it: SET ... PX 1000 at .2071 (its ms 207) lives through ms 1207, so a read at 1.2075 still finds
    it (a counter a rate limiter's script touches right at the end of its window is not recreated)."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    tb.at(0.2071)
    api("SET", "rl:client1", 0, "PX", 1000)
    tb.at(read_at)
    api("GET", "rl:client1")
    slot = fold(tb.events).slots[("127.0.0.1:6379", 0, b"rl:client1")]
    assert slot.misses == missed
