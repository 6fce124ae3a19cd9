"""How the fold and the doctor read `trace.WireReply` events, on hand-made traces (the real capture is proven in
tests/test_wire_fold_e2e.py): which replies settle a read, which refusals count, and what is left alone."""

from __future__ import annotations

from redisprobe import trace
from redisprobe.analysis import Context, diagnose, fold
from tests.tracebuild import TraceBuilder, _b

WORKER = {100: "worker"}


def _reply(tb: TraceBuilder, peer: str, *, sent: float, reply: object = None, error: str | None = None,
           command: tuple[object, ...] = (), refused: tuple[object, ...] = (), db: int = 0,
           flags: tuple[str, ...] = ()) -> None:
    tb.add(trace.WireReply(t=tb.now, sent=sent, peer=peer, db=db, reply=reply, error=error, target=tb.target,
                           command=[_b(a) for a in command], refused=[_b(a) for a in refused], flags=list(flags)))
    tb.tick()


def _baseline_cut(tb: TraceBuilder) -> None:
    """A baseline that stopped at its bound: keys it lacks are of unknown state."""
    tb.add(trace.Baseline(t=tb.now, until=tb.now + 0.01, db=0, keys=[b"other"], types=["string"], expires_at=[None],
                          complete=False, reason="10000 keys", peer="127.0.0.1:39999", target=tb.target))
    tb.at(0.1)


def test_a_nil_reply_under_both_sources_clock_is_a_miss_beyond_the_baseline() -> None:
    """With --source both the MONITOR line is stamped by the server, a little after the wire saw the request."""
    tb = TraceBuilder()
    _baseline_cut(tb)
    worker = tb.client("worker", pid=100, client_id=7, port=5001)
    sent = tb.now
    tb.tick(0.002)
    worker("GET", "job:42")
    _reply(tb, worker.peer, sent=sent, command=("GET", "job:42"))
    lifecycle = fold(tb.events, watched=WORKER)
    [slot] = [s for s in lifecycle.slot_items() if s.key == b"job:42"]
    assert slot.misses == 1 and slot.miss_log and slot.miss_log[0][3] is True
    assert not [row for row in lifecycle.rows if row[5].startswith("unknown")]


def test_a_value_reply_retracts_the_miss_and_the_key_existed_before() -> None:
    """No baseline (a plain MONITOR log): the fold called the read a miss; its value reply says otherwise."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=100, client_id=7, port=5001)
    sent = tb.now
    worker("GET", "job:42")
    _reply(tb, worker.peer, sent=sent, reply="payload", command=("GET", "job:42"))
    worker("HLEN", "job:43")
    _reply(tb, worker.peer, sent=tb.now - 0.001, reply=0, command=("HLEN", "job:43"))
    lifecycle = fold(tb.events, watched=WORKER)
    [life] = lifecycle.lives_of("job:42")
    assert life.preexisting and life.reads == 1
    assert not [s for s in lifecycle.slot_items() if s.key == b"job:42" and s.misses]
    assert [s.misses for s in lifecycle.slot_items() if s.key == b"job:43"] == [1]


def test_a_reply_whose_db_is_a_guess_is_left_alone_where_client_list_says_another_db() -> None:
    tb = TraceBuilder()
    _baseline_cut(tb)
    worker = tb.client("worker", pid=100, client_id=7, port=5001, db=2)
    sent = tb.now
    worker("GET", "job:42", db=2)
    _reply(tb, worker.peer, sent=sent, command=("GET", "job:42"), flags=("resynced", "db-unknown"))
    lifecycle = fold(tb.events, watched=WORKER)
    assert not [s for s in lifecycle.slot_items() if s.misses]


def test_the_baselines_own_replies_are_not_reads() -> None:
    tb = TraceBuilder()
    _baseline_cut(tb)
    _reply(tb, "127.0.0.1:39999", sent=tb.now, reply="none", command=("TYPE", "gone"))
    assert not [s for s in fold(tb.events).slot_items() if s.key == b"gone"]


def test_busy_refuses_a_write_not_a_read_and_noscript_is_no_refusal() -> None:
    tb = TraceBuilder()
    worker = tb.client("worker", pid=100, client_id=7, port=5001)
    reader = tb.client("reader", pid=200, client_id=8, port=5002)
    busy = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    for n in range(3):
        _reply(tb, worker.peer, sent=tb.now, error=busy, refused=("SET", f"job:{n}", "x"))
        _reply(tb, reader.peer, sent=tb.now, error=busy, refused=("GET", f"job:{n}"))
    reader("EVALSHA", "a" * 40, "0")
    _reply(tb, reader.peer, sent=tb.now - 0.001, error="NOSCRIPT No matching script. Please use EVAL.")
    findings = diagnose(tb.events, Context(watched={100: "worker", 200: "reader"}))
    [finding] = findings
    assert finding.rule == "write-rejected" and finding.culprit is not None and finding.culprit.pid == 100
    assert "3 BUSY error replies read off the wire (SET x3)" in finding.evidence[0], finding.evidence
    assert any("pid 100 (worker)" in line and "SET job:0 x -> refused: BUSY" in line for line in finding.evidence)


def test_refused_commands_of_connection_housekeeping_are_no_finding() -> None:
    tb = TraceBuilder()
    worker = tb.client("worker", pid=100, client_id=7, port=5001)
    _reply(tb, worker.peer, sent=tb.now, error="NOPERM this user has no permissions to run the 'info' command",
           refused=("INFO", "stats"))
    assert diagnose(tb.events, Context(watched=WORKER)) == []


def test_each_reply_settles_its_own_read_of_a_key_read_many_times() -> None:
    """Two reads 100 ms apart, both misses to a fold with no baseline: the first found nothing, the second a value
    (a script made the key in between, out of the wire's sight). Only the second miss is retracted."""
    tb = TraceBuilder()
    worker = tb.client("worker", pid=100, client_id=7, port=5001)
    first = tb.now
    worker("GET", "job:42")
    _reply(tb, worker.peer, sent=first, command=("GET", "job:42"))
    tb.at(0.1)
    second = tb.now
    worker("GET", "job:42")
    _reply(tb, worker.peer, sent=second, reply="payload", command=("GET", "job:42"))
    [slot] = [s for s in fold(tb.events, watched=WORKER).slot_items() if s.key == b"job:42"]
    assert slot.misses == 1 and slot.miss_log is not None and [m[0] for m in slot.miss_log] == [first]


def test_a_set_with_ex_that_replied_ok_took_effect_without_its_keyspace_event() -> None:
    """A wire capture starts before the keyspace subscription: the first SET ... EX has no `expire` event, yet its
    reply says it set the TTL (no 'did nothing' from a missing event)."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    sent = tb.now
    api("SET", "shop:profile:1", "{}", "EX", "30")
    _reply(tb, api.peer, sent=sent, reply="OK", command=("SET", "shop:profile:1"))
    tb.at(0.5)
    for n in range(2, 6):  # the subscription is up: these have their events
        api("SET", f"shop:profile:{n}", "{}", "EX", "30")
        tb.ks("set", f"shop:profile:{n}")
        tb.ks("expire", f"shop:profile:{n}")
        tb.at(0.5 + n / 10)
    tb.at(2.0)
    api("PING")
    assert diagnose(tb.events, Context(watched={100: "api"})) == []
    tb.events = [e for e in tb.events if not isinstance(e, trace.WireReply)]
    assert [f.rule for f in diagnose(tb.events, Context(watched={100: "api"}))] == ["ttl-refresh-missed"]


def test_a_blocking_pop_the_wire_saw_never_served_is_a_miss_even_before_the_baseline_ended() -> None:
    """BullMQ's worker blocks on its marker for 5 s; the wire saw the BZPOPMIN sent just before the baseline scan
    ended, and no reply by the end: the key was absent all along (MONITOR alone cannot say: unknown)."""
    tb = TraceBuilder()
    tb.add(trace.Baseline(t=tb.now, until=tb.now + 0.05, db=0, keys=[], types=[], expires_at=[], complete=True,
                          peer="127.0.0.1:39999", target=tb.target))
    worker = tb.client("mailer", pid=100, client_id=7, port=5001)
    sent = tb.now
    worker("BZPOPMIN", "bull:emails:marker", "5")
    tb.at(3.0)
    worker("PING")
    with_reply = [*tb.events, trace.WireReply(t=tb.now, sent=sent, peer=worker.peer, db=0, target=tb.target,
                                              command=[b"BZPOPMIN", b"bull:emails:marker", b"5"],
                                              flags=["no-reply"])]
    missed = [s for s in fold(with_reply).slot_items() if s.key == b"bull:emails:marker" and s.misses]
    assert len(missed) == 1 and missed[0].miss_log and missed[0].miss_log[0][1][1] == worker.peer
    assert not [s for s in fold(tb.events).slot_items() if s.key == b"bull:emails:marker" and s.misses]


def test_a_slow_ok_reverses_a_did_nothing_already_judged_from_the_keyspace_clock() -> None:
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    sent = tb.now
    api("SET", "user:1:profile", "{}", "EX", "3")  # its events were lost; its reply is slow
    for n in range(2, 8):
        tb.at(n / 5)
        api("SET", f"user:{n}:profile", "{}", "EX", "3")
        tb.ks("set", f"user:{n}:profile")
        tb.ks("expire", f"user:{n}:profile")
    _reply(tb, api.peer, sent=sent, reply="OK", command=("SET", "user:1:profile"))
    tb.at(2.0)
    api("PING")
    assert diagnose(tb.events, Context(watched={100: "api"})) == []


def test_a_set_with_ex_before_the_keyspace_subscription_is_not_judged_by_its_missing_event() -> None:
    """The wire began first: a SET ... EX whose reply it did not see either (the capture began between the two) and
    whose `expire` event came before anyone subscribed is no refresh that 'did nothing'. A MONITOR trace, which
    begins after the subscription, keeps its verdict."""
    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    sent = tb.now
    api("SET", "user:1:profile", "{}", "EX", "3")
    _reply(tb, api.peer, sent=sent, command=("SET", "user:1:profile"), flags=("resynced", "no-reply"))
    tb.at(0.1)
    for n in range(2, 8):
        api("SET", f"user:{n}:profile", "{}", "EX", "3")
        _reply(tb, api.peer, sent=tb.now - 0.001, reply="OK", command=("SET", f"user:{n}:profile"))
        tb.ks("set", f"user:{n}:profile")
        tb.ks("expire", f"user:{n}:profile")
        tb.at(n / 5)
    tb.at(2.0)
    api("PING")
    assert diagnose(tb.events, Context(watched={100: "api"})) == []
    tb.events = [e for e in tb.events if not isinstance(e, trace.WireReply)]
    assert [f.rule for f in diagnose(tb.events, Context(watched={100: "api"}))] == ["ttl-refresh-missed"]
