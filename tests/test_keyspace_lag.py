"""A keyspace link that lags: its events arrive late, and the link's own marks (PINGs answered in order with the
events) say how late. A late `expire` still pairs with its write; silence is a verdict only once a mark sent
after the write has come back; past that, the TTL command's effect stays unknown, never "did nothing"."""

from __future__ import annotations

from collections.abc import Callable

from redisprobe.analysis import Context, diagnose
from redisprobe.analysis.lifecycle import fold
from redisprobe.analysis.lifecycle.expiry import NO_EXPIRE_EVENT
from redisprobe.findings import to_builtins
from tests.tracebuild import T0, TraceBuilder

LAG = 1.2


def received(published: float) -> float:
    """When the link reads what the server published at `published` (seconds): on time, then LAG late from 1.0 s
    to 3.0 s, then the backlog drains at 4.2 s (a FIFO link: never out of order)."""
    if published < 1.0:
        return published + 0.002
    if published < 3.0:
        return published + LAG
    return max(published + 0.002, 4.2 + (published - 3.0) / 1000)


def lagging_trace(extra: Callable[[list[tuple[float, int, Callable[[TraceBuilder], object]]]], None] | None = None,
                  marks_until: float = 6.0, end: float = 6.0) -> TraceBuilder:
    """An app that caches profiles with SET ... EX 3 every 0.2 s while the keyspace link falls behind, then
    catches up; marks sent every 0.5 s until `marks_until`."""
    tb = TraceBuilder()
    login = tb.client("login", pid=100, client_id=7)
    timed: list[tuple[float, int, Callable[[TraceBuilder], object]]] = []
    for index in range(18):
        at = 0.5 + index * 0.2
        key = f"profile:{index}"
        timed.append((at, 0, lambda tb, key=key: login("SET", key, "{}", "EX", 3)))
        timed.append((received(at), 1, lambda tb, key=key: tb.ks("set", key).ks("expire", key)))
    sent = 0.0
    while sent < marks_until:
        timed.append((received(sent), 2, lambda tb, sent=sent: tb.mark(sent)))
        sent += 0.5
    timed.append((end, 3, lambda tb: login("PING")))
    if extra is not None:
        extra(timed)
    for at, _order, add in sorted(timed, key=lambda item: (item[0], item[1])):
        tb.at(max(at, tb.now - T0))  # things read at the same moment: one after the other
        add(tb)
    return tb


def test_a_late_expire_event_pairs_with_its_write_by_the_links_measured_lag() -> None:
    tb = lagging_trace()
    lives = fold(tb.events)
    for index in range(18):
        [life] = lives.lives_of(f"profile:{index}")
        assert not life.ttl_missed, (index, [record.reason for record in life.ttl_missed])
        assert life.ttl_set == 3
    findings = diagnose(tb.events, Context(watched={100: "login"}))
    assert findings == [], [to_builtins(f) for f in findings]


def test_an_expire_that_did_nothing_is_still_judged_once_a_later_mark_came_back() -> None:
    def refresh(timed: list) -> None:
        sync = "127.0.0.1:40008"
        timed.append((0.3, 0, lambda tb: tb.monitor(sync, "SET", "session:x", "v")))
        timed.append((received(0.3), 1, lambda tb: tb.ks("set", "session:x")))
        timed.append((2.0, 0, lambda tb: tb.monitor(sync, "EXPIRE", "session:x", 10)))  # no `expire` event

    lives = fold(lagging_trace(refresh).events)
    [life] = lives.lives_of("session:x")
    assert [record.reason for record in life.ttl_missed] == [NO_EXPIRE_EVENT]


def test_no_verdict_while_no_mark_sent_after_the_write_has_come_back() -> None:
    def refresh(timed: list) -> None:
        sync = "127.0.0.1:40008"
        timed.append((0.3, 0, lambda tb: tb.monitor(sync, "SET", "session:x", "v")))
        timed.append((received(0.3), 1, lambda tb: tb.ks("set", "session:x")))
        timed.append((2.6, 0, lambda tb: tb.monitor(sync, "EXPIRE", "session:x", 10)))

    # marks stop at 2.5 s (the link fell silent): the events read until the end say nothing of the EXPIRE at 2.6
    lives = fold(lagging_trace(refresh, marks_until=2.5).events)
    [life] = lives.lives_of("session:x")
    assert not life.ttl_missed and life.ttl_set == 10


def test_events_read_before_the_readers_first_mark_wait_for_a_mark() -> None:
    """Under load the reader thread may send its first PING seconds after subscribing: the events published
    meanwhile are read before any periodic mark comes back. The subscription's own mark (sent as it began) puts
    the fold in measured mode from the start, so those events' writes are not judged on the receipt clock."""
    tb = TraceBuilder()
    login = tb.client("login", pid=100, client_id=7)
    tb.mark(0.0)  # subscribed
    timed: list[tuple[float, int, Callable[[TraceBuilder], object]]] = []
    for index in range(10):
        at = 0.1 + index * 0.1
        key = f"session:{index}"
        timed.append((at, 0, lambda tb, key=key: login("SET", key, "{}", "EX", 60)))
        timed.append((at + 1.5, 1, lambda tb, key=key: tb.ks("set", key).ks("expire", key)))
    timed.append((2.7, 2, lambda tb: tb.mark(1.2)))  # the reader's first PING, sent late, read after the backlog
    timed.append((4.0, 3, lambda tb: login("PING")))
    for at, _order, add in sorted(timed, key=lambda item: (item[0], item[1])):
        tb.at(max(at, tb.now - T0))
        add(tb)
    lives = fold(tb.events)
    missed = {index: [r.reason for r in life.ttl_missed] for index in range(10)
              for life in lives.lives_of(f"session:{index}") if life.ttl_missed}
    assert not missed


def test_many_writes_of_one_key_while_the_link_lags_each_meet_their_late_event() -> None:
    """Six SET ... EX on one key while the link is 1.2 s behind: the fold keeps every one its link has not read
    that far for (not only the last few, nor those within the fixed window), and each meets its own event."""
    tb = TraceBuilder()
    login = tb.client("login", pid=100, client_id=7)
    timed: list[tuple[float, int, Callable[[TraceBuilder], object]]] = [
        (0.5, 0, lambda tb: login("DEL", "profile:0")), (received(0.5), 1, lambda tb: tb.ks("del", "profile:0"))]
    for index in range(6):
        at = 1.0 + index * 0.3
        timed.append((at, 0, lambda tb: login("SET", "profile:1", "{}", "EX", 30)))
        timed.append((received(at), 1, lambda tb: tb.ks("set", "profile:1").ks("expire", "profile:1")))
    sent = 0.0
    while sent < 6.0:
        timed.append((received(sent), 2, lambda tb, sent=sent: tb.mark(sent)))
        sent += 0.5
    timed.append((6.0, 3, lambda tb: login("PING")))
    for at, _order, add in sorted(timed, key=lambda item: (item[0], item[1])):
        tb.at(max(at, tb.now - T0))
        add(tb)
    [life] = fold(tb.events).lives_of("profile:1")
    assert not life.ttl_missed, [(record.t - T0, record.reason) for record in life.ttl_missed]
