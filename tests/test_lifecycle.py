"""The fold on hand-made traces: MONITOR shapes, keyspace pairing, attribution, bounded memory."""

from __future__ import annotations

import time

import pytest

from redisprobe import trace
from redisprobe.analysis.lifecycle import Lifecycle, fold
from redisprobe.analysis.lifecycle.limits import HISTORY_HEAD, HISTORY_TAIL, LIVES_KEPT, REMARKABLE_KEPT
from redisprobe.analysis.lifecycle.state import normalize_target
from redisprobe.semantics import command_table as C
from tests.tracebuild import T0, TraceBuilder


def only(lives: Lifecycle, key: str, db: int | None = None) -> list:
    return lives.lives_of(key, db)


# -- commands -----------------------------------------------------------------------------------------------------

def test_command_table_keys_and_kinds() -> None:
    assert C.lookup(b"get").kind == C.READ and C.lookup(b"GeT").kind == C.READ
    assert C.keys_of([b"DEL", b"a", b"b"]) == [b"a", b"b"]
    assert C.keys_of([b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert C.keys_of([b"EVAL", b"return 1", b"2", b"k1", b"k2", b"arg"]) == [b"k1", b"k2"]
    assert C.keys_of([b"BLPOP", b"q1", b"q2", b"0"]) == [b"q1", b"q2"]
    assert C.keys_of([b"LMPOP", b"2", b"a", b"b", b"LEFT"]) == [b"a", b"b"]
    assert C.keys_of([b"ZUNIONSTORE", b"d", b"2", b"a", b"b"]) == [b"d", b"a", b"b"]
    assert C.keys_of([b"XREAD", b"COUNT", b"1", b"STREAMS", b"s1", b"s2", b"0", b"0"]) == [b"s1", b"s2"]
    assert C.keys_of([b"PING"]) == [] and C.lookup(b"nosuch").kind == C.OTHER


@pytest.mark.parametrize(("args", "action", "seconds", "unit"), [
    ([b"SET", b"k", b"v"], "clear", None, "s"),
    ([b"SET", b"k", b"v", b"EX", b"10"], "set", 10.0, "s"),
    ([b"set", b"k", b"v", b"px", b"1500"], "set", 1.5, "ms"),
    ([b"SET", b"k", b"v", b"KEEPTTL"], "keep", None, "s"),
    ([b"SET", b"k", b"v", b"NX", b"GET"], "clear", None, "s"),
    ([b"SETEX", b"k", b"5", b"v"], "set", 5.0, "s"),
    ([b"PSETEX", b"k", b"50", b"v"], "set", 0.05, "ms"),
    ([b"GETSET", b"k", b"v"], "clear", None, "s"),
    ([b"EXPIRE", b"k", b"-1"], "past", -1.0, "s"),
    ([b"EXPIRE", b"k", b"0"], "past", 0.0, "s"),
    ([b"PERSIST", b"k"], "clear", None, "s"),
    ([b"GETEX", b"k", b"PERSIST"], "clear", None, "s"),
    ([b"GETEX", b"k"], "keep", None, "s"),
])
def test_ttl_change(args: list[bytes], action: str, seconds: float | None, unit: str) -> None:
    change = C.ttl_change(args, 1000.0)
    assert change is not None
    assert (change.action, change.seconds, change.unit) == (action, seconds, unit)


def test_ttl_change_absolute_and_conditions() -> None:
    past = C.ttl_change([b"EXPIREAT", b"k", b"900"], 1000.0)
    assert past is not None and past.action == "past" and past.absolute
    future = C.ttl_change([b"PEXPIREAT", b"k", b"1005000"], 1000.0)
    assert future is not None and future.action == "set" and future.seconds == pytest.approx(5.0)
    cond = C.ttl_change([b"EXPIRE", b"k", b"10", b"gt"], 0.0)
    assert cond is not None and cond.cond == "GT"
    assert C.set_condition([b"SET", b"k", b"v", b"nx"]) == "NX" and C.set_condition([b"SETNX", b"k", b"v"]) == "NX"
    assert C.scan_pattern([b"SCAN", b"0", b"MATCH", b"job:*", b"COUNT", b"10"]) == b"job:*"
    assert C.scan_pattern([b"KEYS", b"a*"]) == b"a*"


def test_normalize_target() -> None:
    assert normalize_target("redis://:***@localhost:6379/2") == "127.0.0.1:6379"
    assert normalize_target("redis://127.0.0.2:7000/0") == "127.0.0.2:7000"
    assert normalize_target("rediss://user@host") == "host:6379"
    assert normalize_target("unix:///tmp/r.sock?db=1") == "/tmp/r.sock"
    assert normalize_target("") == ""


# -- lives ----------------------------------------------------------------------------------------------------------

def test_created_refreshed_expired_on_time_is_a_fact_not_a_problem() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "sess:1", "v", "EX", 2)
    tb.ks("set", "sess:1").ks("expire", "sess:1")
    tb.at(1.0)
    api("EXPIRE", "sess:1", 2)
    tb.ks("expire", "sess:1")
    tb.at(3.05).ks("expired", "sess:1")
    [life] = only(fold(tb.events), "sess:1")
    data = life.to_json()
    assert data["created_by"] == {"pid": 100, "label": "api", "client_id": 7, "addr": "127.0.0.1:40007"}
    assert data["removed"]["how"] == "expired" and data["removed"]["by"] is None
    assert data["removed"]["at"] == pytest.approx(T0 + 3.0, abs=0.01)  # the TTL moment, not the sweep's
    assert data["ttl_set"] == 2.0 and life.ttl_sets == 2
    assert data["lifetime"] == pytest.approx(3.0, abs=0.01)
    assert life.expired_on_time and "expired on time" in data["verdict"]
    assert any("SET sess:1 v EX 2" in line for line in data["events"])


def test_lazy_expiry_on_access_without_keyspace() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v", "PX", 500)
    tb.at(1.0)
    api("GET", "k")
    lives = fold(tb.events)
    [life] = only(lives, "k")
    assert life.removed_how == "expired" and life.removed_at == pytest.approx(T0 + 0.5, abs=0.01)
    slot = lives.slots[("127.0.0.1:6379", 0, b"k")]
    assert slot.misses == 1 and slot.miss_log[0][3] is True  # certain: the key was known gone


def test_lua_lines_belong_to_the_eval_client() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("SET", "lock", "1")
    worker = tb.client("worker", pid=300, client_id=9)
    worker("EVALSHA", "abc123", 1, "lock")
    tb.lua("DEL", "lock")
    tb.ks("del", "lock")
    [life] = only(fold(tb.events), "lock")
    assert life.removed_how == "del"
    removed = life.to_json()["removed"]
    assert removed["by"]["pid"] == 300 and removed["confirmed"]


def test_multi_exec_commands_appear_at_exec_from_the_client() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("MULTI")
    tb.at(0.5)
    api("INCR", "counter")
    api("EXPIRE", "counter", 10)
    api("EXEC")
    lives = fold(tb.events)
    [life] = only(lives, "counter")
    assert life.to_json()["created_by"]["pid"] == 100 and life.ttl_set == 10
    assert lives.abandoned_multi == []


def test_unix_socket_single_client_attributed_many_ambiguous() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, addr="/tmp/redis.sock:0", peer="unix:/tmp/redis.sock")
    tb.monitor("unix:/tmp/redis.sock", "SET", "a", "1")
    lives = fold(tb.events)
    assert only(lives, "a")[0].to_json()["created_by"]["pid"] == 100

    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, addr="/tmp/redis.sock:0")
    tb.client("worker", pid=200, client_id=8, addr="/tmp/redis.sock:0")
    tb.monitor("unix:/tmp/redis.sock", "SET", "a", "1")
    created = only(fold(tb.events), "a")[0].to_json()["created_by"]
    assert created["pid"] is None and created["label"].startswith("ambiguous: 2 unix-socket clients")


def test_unix_socket_resolved_by_the_actors_own_log() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7, addr="/tmp/redis.sock:0")
    worker = tb.client("worker", pid=200, client_id=8, addr="/tmp/redis.sock:0")
    worker.op("DEL", "a", reply=1)
    tb.monitor("unix:/tmp/redis.sock", "SET", "a", "1")
    tb.monitor("unix:/tmp/redis.sock", "DEL", "a")
    [life] = only(fold(tb.events), "a")
    assert life.to_json()["removed"]["by"]["pid"] == 200


def test_port_reuse_picks_the_client_connected_at_that_time() -> None:
    tb = TraceBuilder()
    first = tb.client("api", pid=100, client_id=7, port=5000)
    first("SET", "a", "1")
    tb.at(10.0)
    tb.client("worker", pid=200, client_id=50, port=5000, age=0)
    tb.monitor("127.0.0.1:5000", "DEL", "a")
    [life] = only(fold(tb.events), "a")
    data = life.to_json()
    assert data["created_by"]["pid"] == 100 and data["removed"]["by"]["pid"] == 200


def test_command_before_the_first_client_list_sample_still_gets_its_pid() -> None:
    tb = TraceBuilder()
    tb.monitor("127.0.0.1:5000", "SET", "a", "1")
    tb.at(0.5)
    tb.client("api", pid=100, client_id=7, port=5000, age=1)
    assert only(fold(tb.events), "a")[0].to_json()["created_by"]["pid"] == 100


def test_unlisted_client_keeps_addr_name_and_lib() -> None:
    tb = TraceBuilder()
    tb.client(client_id=9, port=6000, name="billing", lib="redis-py")("DEL", "x")
    tb.ks("del", "x")
    by = only(fold(tb.events), "x")[0].to_json()["removed"]["by"]
    assert by == {"pid": None, "label": "name=billing lib=redis-py", "client_id": 9, "addr": "127.0.0.1:6000"}


def test_flushall_removes_every_db_with_no_per_key_event() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1")
    api("SET", "b", "1", db=3)
    tests = tb.client("tests", pid=400, client_id=20)
    tests("FLUSHALL", "ASYNC")
    lives = fold(tb.events)
    for key, db in (("a", 0), ("b", 3)):
        [life] = only(lives, key, db)
        removed = life.to_json()["removed"]
        assert removed["how"] == "flush" and removed["by"]["pid"] == 400
    assert lives.flushes[0].removed_count == 2 and lives.flushes[0].db is None


def test_flushdb_only_its_db() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1")
    api("SET", "b", "1", db=1)
    api("FLUSHDB", db=1)
    lives = fold(tb.events)
    assert only(lives, "a")[0].removed_how is None
    assert only(lives, "b")[0].removed_how == "flush"


def test_rename_onto_existing_key_removes_the_destination_without_del() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "src", "1", "EX", 100)
    api("SET", "dst", "old")
    mover = tb.client("mover", pid=300, client_id=9)
    mover("RENAME", "src", "dst")
    tb.ks("rename_from", "src").ks("rename_to", "dst")
    lives = fold(tb.events)
    [src] = only(lives, "src")
    old, new = only(lives, "dst")
    assert src.removed_how == "rename" and src.to_json()["removed"]["by"]["pid"] == 300
    assert old.removed_how == "rename" and "overwritten by RENAME src" in old.removed_detail
    assert new.removed_how is None and new.to_json()["created_by"]["pid"] == 300
    assert new.expires_at == src.expires_at  # the TTL moves with the key


def test_expire_in_the_past_fires_del_not_expire() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v")
    tb.ks("set", "k")
    api("EXPIREAT", "k", int(T0) - 30)
    tb.ks("del", "k")
    [life] = only(fold(tb.events), "k")
    removed = life.to_json()["removed"]
    assert removed["how"] == "del" and removed["by"]["pid"] == 100 and removed["confirmed"]
    assert life.removed_detail == "expire time in the past"


def test_pops_remove_the_key_when_the_list_empties() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    worker = tb.client("worker", pid=200, client_id=8)
    api("RPUSH", "q", "a", "b")
    worker("LPOP", "q")
    lives = fold(tb.events)
    assert only(lives, "q")[0].removed_how is None
    worker("RPOP", "q")
    [life] = only(fold(tb.events), "q")
    assert life.removed_how == "pop" and life.to_json()["removed"]["by"]["pid"] == 200


def test_blocking_pop_served_later_is_paired_by_the_del_event() -> None:
    tb = TraceBuilder()
    worker = tb.client("worker", pid=200, client_id=8)
    worker("BLPOP", "jobs", 0)
    tb.at(3.0)
    tb.client("api", pid=100, client_id=7)("SADD", "jobs", "x")  # not a list: length unknown
    tb.ks("sadd", "jobs").ks("del", "jobs")
    [life] = only(fold(tb.events), "jobs")
    assert life.removed_how == "pop" and life.to_json()["removed"]["by"]["pid"] == 200


def test_preexisting_key_removed_is_known_from_its_del_event() -> None:
    tb = TraceBuilder()
    tb.client("janitor", pid=500, client_id=30)("UNLINK", "old:1")
    tb.ks("del", "old:1")
    [life] = only(fold(tb.events), "old:1")
    assert life.preexisting and life.removed_how == "unlink"
    assert life.to_json()["removed"]["by"]["pid"] == 500 and life.to_json()["created_by"] is None


def test_expire_event_promotes_a_refresh_on_a_key_the_trace_never_saw_created() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("EXPIRE", "old", 30)
    tb.ks("expire", "old")
    lives = fold(tb.events)
    [life] = only(lives, "old")
    assert life.preexisting and life.ttl_set == 30
    assert not lives.slots[("127.0.0.1:6379", 0, b"old")].absent_ttl


def test_refresh_without_its_keyspace_event_did_not_take_effect() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v")
    tb.ks("set", "k")
    api("EXPIRE", "k", 10)  # no `expire` event follows
    tb.at(2.0).ks("del", "other")
    [life] = only(fold(tb.events), "k")
    assert life.ttl_set is None and life.expires_at is None
    assert life.ttl_missed_count == 1 and "no keyspace" in life.ttl_missed[0].reason


def test_no_refutation_inside_a_keyspace_gap_or_without_keyspace() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    tb.ks("del", "x")
    tb.gap("keyspace", until=T0 + 5)
    api("SET", "k", "v")
    api("EXPIRE", "k", 10)
    tb.at(2.0).monitor("127.0.0.1:1", "PING")
    assert only(fold(tb.events), "k")[0].ttl_set == 10

    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v")
    api("EXPIRE", "k", 10)
    tb.at(2.0)
    api("GET", "k")
    assert only(fold(tb.events), "k")[0].ttl_set == 10


@pytest.mark.parametrize(("cond", "ttl_before", "new", "effective"), [
    ("NX", None, 10, True), ("NX", 5, 10, False), ("XX", None, 10, False), ("XX", 5, 10, True),
    ("GT", None, 10, False), ("GT", 5, 10, True), ("GT", 50, 10, False), ("LT", None, 10, True),
    ("LT", 5, 10, False), ("LT", 50, 10, True),
])
def test_expire_conditions(cond: str, ttl_before: int | None, new: int, effective: bool) -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "k", "v", *(("EX", ttl_before) if ttl_before else ()))
    api("EXPIRE", "k", new, cond)
    [life] = only(fold(tb.events), "k")
    assert (life.ttl_set == new) is effective
    assert (life.ttl_missed_count == 1) is not effective


def test_set_without_ttl_option_clears_keepttl_keeps() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1", "EX", 100)
    api("SET", "a", "2", "KEEPTTL")
    api("SET", "b", "1", "EX", 100)
    api("SET", "b", "2")
    lives = fold(tb.events)
    assert only(lives, "a")[0].expires_at is not None and only(lives, "a")[0].ttl_cleared is None
    [b] = only(lives, "b")
    assert b.expires_at is None and b.ttl_cleared is not None


def test_move_and_swapdb_carry_the_key() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1", "EX", 100)
    api("MOVE", "a", 2)
    api("SET", "b", "1", db=4)
    api("SWAPDB", 4, 5)
    lives = fold(tb.events)
    assert only(lives, "a", 0)[0].removed_how == "move"
    assert only(lives, "a", 2)[0].expires_at is not None
    assert only(lives, "b", 4)[0].removed_how == "move" and only(lives, "b", 5)[0].removed_how is None


def test_evicted_has_no_client() -> None:
    tb = TraceBuilder()
    tb.client("api", pid=100, client_id=7)("SET", "k", "v", "EX", 100)
    tb.at(1).ks("evicted", "k")
    [life] = only(fold(tb.events), "k")
    assert life.to_json()["removed"] == {"how": "evicted", "at": pytest.approx(T0 + 1), "by": None,
                                         "command": None, "detail": None, "confirmed": True}


def test_ops_are_the_command_source_when_nobody_monitored() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    api.op("SET", "k", "v", reply="OK")
    api.op("EXPIRE", "k", 10, reply=1)
    api.op("EXPIRE", "nokey", 10, reply=0)
    api.op("MULTI", reply="OK")
    api.op("DEL", "k", reply="QUEUED")
    api.op("DISCARD", reply="OK")
    lives = fold(tb.events)
    [life] = only(lives, "k")
    assert life.removed_how is None and life.ttl_set == 10
    assert life.to_json()["created_by"] == {"pid": 100, "label": "api", "client_id": 7, "addr": "127.0.0.1:40007"}


def test_ops_reply_zero_means_the_expire_did_nothing() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    api.op("SET", "k", "v", reply="OK")
    api.op("EXPIRE", "k", 10, "XX", reply=0)
    [life] = only(fold(tb.events), "k")
    assert life.ttl_set is None and life.ttl_missed_count == 1


def test_ops_on_a_monitored_server_are_not_applied_twice() -> None:
    tb = TraceBuilder()
    api = tb.actor("api", pid=100, client_id=7)
    api.op("RPUSH", "q", "a", reply=1)
    api("RPUSH", "q", "a")
    tb.ks("rpush", "q")
    api.op("EXPIRE", "q", 10, reply=0)
    api("EXPIRE", "q", 10)
    [life] = only(fold(tb.events), "q")
    assert life.writes == 1
    assert life.ttl_set is None and life.ttl_missed_count == 1  # the reply said 0


def test_timeline_flags_removals_and_expiries() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("SET", "a", "1", "EX", 1)
    api("SET", "b", "1")
    api("DEL", "b")
    tb.at(1.2).ks("expired", "a")
    rows = fold(tb.events).timeline().rows
    flags = [(row.key, row.flag) for row in rows]
    assert ("b", "removed") in flags and ("a", "expired") in flags and ("a", "created") in flags
    removed = next(row for row in rows if row.flag == "removed")
    assert removed.actor is not None and removed.actor.pid == 100 and removed.client_id == 7
    assert removed.command == "DEL b" and removed.db == 0
    only_a = fold(tb.events).timeline(keys=["a"]).rows
    assert {row.key for row in only_a} == {"a"}


def test_memory_is_bounded_per_key() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    for _ in range(300):
        api("SET", "lock", "1", "NX", "PX", 100)
        api("DEL", "lock")
    for i in range(200):
        api("RPUSH", "log", i)
    lives = fold(tb.events)
    slot = lives.slots[("127.0.0.1:6379", 0, b"lock")]
    assert slot.count == 300 and len(slot.all_lives()) <= LIVES_KEPT + REMARKABLE_KEPT
    [log] = only(lives, "log")
    assert len(log.history()) <= HISTORY_HEAD + HISTORY_TAIL and log.n_events == 200
    assert "more" in " ".join(log.history_lines())


FOLD_MIN_RATE = 100_000
"""Lines/s of CPU time the fold must sustain on a TTL-heavy mix even on a slow shared CI box (it does ~2x)."""


def test_fold_is_fast() -> None:
    """The fold must keep up with MONITOR (this mix is a worst case: half the lines change a TTL)."""
    events: list[trace.Event] = [trace.ClientSeen(t=T0, client_id=i, addr=f"127.0.0.1:{5000 + i}", pid=100 + i)
                                 for i in range(20)]
    t = T0
    for i in range(200_000):
        t += 0.00001
        peer = f"127.0.0.1:{5000 + i % 20}"
        key = b"key:%d" % (i % 5000)
        op = i % 4
        args = ([b"SET", key, b"v", b"EX", b"100"] if op == 0 else [b"GET", key] if op == 1
                else [b"INCR", b"ctr:%d" % (i % 100)] if op == 2 else [b"EXPIRE", key, b"100"])
        events.append(trace.Monitor(t=t, db=0, peer=peer, args=args))
    started = time.process_time()
    fold(events)
    elapsed = time.process_time() - started
    assert 200_000 / elapsed > FOLD_MIN_RATE, f"{200_000 / elapsed:.0f} lines/s"


def test_big_values_are_cut_in_what_the_fold_keeps_but_read_the_same() -> None:
    from redisprobe.text import ARG_KEPT, command_text

    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    big = "é" * 600_000  # 1.2 MB of two-byte characters
    api("SET", "blob", big, "EX", "60")
    api("SET", "blob", big, "KEEPTTL")
    api("RPUSH", "queue", big, big)
    api("DEL", "blob")
    long_key = "k" * 500
    api("SET", long_key, big)
    lives = fold(tb.events)
    kept: list[list[bytes]] = []
    for life in lives.lives():
        kept += [args for _t, _who, args, _effect in life.history() if args]
        kept += [a for a in (life.created_args, life.removed_args) if a]
        kept += [r.args for r in (life.ttl_first, life.ttl_last) if r is not None]
    assert kept and all(len(arg) <= ARG_KEPT for args in kept for arg in args if arg != long_key.encode())
    (blob,) = lives.lives_of("blob")
    assert blob.removed_how == "del" and blob.ttl_set == 60 and blob.writes == 2
    assert command_text(blob.created_args) == command_text([b"SET", b"blob", big.encode(), b"EX", b"60"])
    assert len(lives.lives_of(long_key)) == 1  # keys are never cut
    assert len(lives.lives_of("queue")[0].created_args or []) == 4


def test_restore_sets_the_ttl_its_argument_gives() -> None:
    """RESTORE key ttl value [REPLACE] [ABSTTL]: ttl in ms (0: none), absolute with ABSTTL."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7)
    api("RESTORE", "a", "5000", "blob")
    api("RESTORE", "b", "0", "blob")
    api("RESTORE", "c", str(int((T0 + 60) * 1000)), "blob", "ABSTTL")
    api("SET", "d", "v", "EX", "100")
    api("RESTORE", "d", "0", "blob", "REPLACE")
    lives = fold(tb.events)
    [a], [b], [c], [d] = (only(lives, key) for key in "abcd")
    assert a.expires_at == pytest.approx(T0 + 5.0, abs=0.01) and a.ttl_set == 5.0
    assert b.expires_at is None
    assert c.expires_at == pytest.approx(T0 + 60.0, abs=0.01)
    assert d.expires_at is None  # REPLACE with no TTL: the old one is gone


# -- MIGRATE: a key handed to another node ------------------------------------------------------------------------

SOURCE, TARGET_NODE = "redis://127.0.0.1:7000/0", "redis://127.0.0.1:7001/0"


def test_migrate_keys_are_its_key_argument_or_those_after_keys() -> None:
    assert C.keys_of([b"MIGRATE", b"h", b"7001", b"k", b"0", b"5000", b"COPY"]) == [b"k"]
    assert C.keys_of([b"MIGRATE", b"h", b"7001", b"", b"0", b"5000", b"AUTH", b"pw", b"KEYS", b"a", b"b"]) == [b"a",
                                                                                                                b"b"]


def test_a_migrated_key_goes_on_on_its_new_node_whichever_line_comes_first() -> None:
    tb = TraceBuilder(SOURCE)
    app = tb.client("app", pid=100, client_id=7, port=5001)
    tool = tb.client("", client_id=9, port=5009)
    app("SET", "{t}:a", "v", "EX", "100")
    app("SET", "{t}:b", "v", "EX", "100")
    tool("MIGRATE", "127.0.0.1", "7001", "", "0", "5000", "AUTH2", "admin", "s3cret", "KEYS", "{t}:a", "{t}:b")
    tb.ks("del", "{t}:a").ks("del", "{t}:b")
    link = tb.client("", client_id=3, port=6001, target=TARGET_NODE)
    link("RESTORE-ASKING", "{t}:a", "99000", "payload")
    link("RESTORE-ASKING", "{t}:b", "99000", "payload")
    app2 = tb.client("app", pid=100, client_id=8, port=5002, target=TARGET_NODE)
    app2("GET", "{t}:a")
    lives = fold(tb.events, watched={100: "app"})
    for key in ("{t}:a", "{t}:b"):
        (life,) = only(lives, key)
        assert life.server == "127.0.0.1:7001" and life.removed_how is None, (life.server, life.removed_how)
        assert life.created_by is not None and life.created_by[1] == "127.0.0.1:5001"
        assert life.expires_at is not None and life.expires_at > T0 + 90  # its TTL went with it
        text = " ".join(life.history_lines())
        assert "migrated from 127.0.0.1:7000 to 127.0.0.1:7001" in text, text
        assert "s3cret" not in text and "admin" not in text, text
    assert only(lives, "{t}:a")[0].reads == 1
