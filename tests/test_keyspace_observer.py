"""KeyspaceObserver on real servers: events, consent and restore of notify-keyspace-events, refusals, gaps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from redisprobe import trace
from redisprobe.errors import ConnectionProblem
from redisprobe.producers.observers.keyspace import (
    CONNECTION_NAME,
    KeyspaceObserver,
    expand_flags,
    merge_flags,
    missing_flags,
    parse_channel,
)
from redisprobe.targets.sandbox import Sandbox, sandbox
from redisprobe.targets.url import parse_target
from tests.sink import Sink


def flags(r: redis.Redis) -> str:
    return str(r.config_get("notify-keyspace-events")["notify-keyspace-events"])


@pytest.fixture
def admin(private_server: Sandbox) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(private_server.urls[0], socket_timeout=10)
    yield client
    client.close()


def test_flag_helpers() -> None:
    assert missing_flags("") == "Eg$lshzxet"
    assert missing_flags("AE") == ""
    assert missing_flags("AKE") == ""
    assert missing_flags("Ex") == "g$lshzet"
    assert merge_flags("K") == "KEg$lshzxet"
    assert "K" in expand_flags(merge_flags("Km")) and "m" in merge_flags("Km")
    assert parse_channel(b"__keyevent@12__:rename_from") == (12, "rename_from")
    assert parse_channel(b"__keyspace@0__:foo") is None
    assert parse_channel(b"__keyevent@x__:set") is None


def test_events_with_db_and_key(private_server: Sandbox, admin: redis.Redis) -> None:
    sink = Sink()
    url = private_server.urls[0]
    db1 = redis.Redis.from_url(url.replace("/0", "/1"))
    db2 = redis.Redis.from_url(url.replace("/0", "/2"))
    try:
        with KeyspaceObserver(private_server.target("api"), sink, enable=True) as observer:
            assert observer.active and observer.lost is None
            admin.set(b"k:\xff", "v")
            admin.expire(b"k:\xff", 100)
            admin.delete(b"k:\xff")
            db1.set("old", "v")
            db1.rename("old", "new")
            db2.set("short", "v", px=30)
            sink.keyspace("set", b"k:\xff")
            sink.keyspace("expire", b"k:\xff")
            sink.keyspace("del", b"k:\xff")
            sink.keyspace("rename_from", b"old", db=1)
            sink.keyspace("rename_to", b"new", db=1)
            sink.keyspace("expired", b"short", db=2)
            # An EXPIRE that does not take effect (missing key) publishes nothing.
            admin.expire("absent", 100)
            admin.set("marker", "v")
            sink.keyspace("set", b"marker")
            assert not [e for e in sink.of(trace.Keyspace) if e.key == b"absent"]
        events = sink.of(trace.Keyspace)
        assert all(e.target == private_server.target("api").label for e in events)
        stamps = [e.t for e in events]
        assert stamps == sorted(stamps)
    finally:
        db1.close()
        db2.close()


def test_marks_answered_in_order_with_the_events(private_server: Sandbox, admin: redis.Redis) -> None:
    """Each mark's answer is a trace event: read after every event the server published before it was sent, so
    the fold can tell how late the link reads and when a missing event is a fact."""
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True, mark_interval=0.1):
        admin.set("before", "v")
        written = time.time()
        mark = sink.wait(lambda e: isinstance(e, trace.KeyspaceMark) and e.sent > written)
        assert isinstance(mark, trace.KeyspaceMark) and mark.t >= mark.sent
        assert mark.target == private_server.target("api").label
        with sink._lock:
            order = list(sink.events)
        [event] = [e for e in order if isinstance(e, trace.Keyspace) and e.key == b"before"]
        assert order.index(event) < order.index(mark)


def test_evicted_event(private_server: Sandbox, admin: redis.Redis) -> None:
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True):
        admin.config_set("maxmemory-policy", "volatile-ttl")
        admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 512 * 1024)
        value = b"x" * 10_000
        for index in range(1000):
            admin.set(f"ev:{index}", value, ex=1000 + index)
            if int(admin.info("stats")["evicted_keys"]):
                break
        assert int(admin.info("stats")["evicted_keys"]) > 0
        event = sink.wait(lambda e: isinstance(e, trace.Keyspace) and e.event == "evicted")
        assert isinstance(event, trace.Keyspace)
        assert event.db == 0 and event.key.startswith(b"ev:")
        admin.config_set("maxmemory", 0)


def test_flags_merged_with_the_users_and_restored(private_server: Sandbox, admin: redis.Redis) -> None:
    admin.config_set("notify-keyspace-events", "Km")
    before = flags(admin)
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True) as observer:
        during = flags(admin)
        assert {"K", "m"} <= expand_flags(during) and missing_flags(during) == ""
        assert observer.changed == (before, merge_flags(before))
    assert flags(admin) == before
    notes = [n.text for n in sink.of(trace.Note)]
    assert any("from 'Km'" in text for text in notes)
    assert any("restored" in text and "'Km'" in text for text in notes)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_flags_restored_when_the_caller_fails(private_server: Sandbox, admin: redis.Redis,
                                              error: type[BaseException]) -> None:
    admin.config_set("notify-keyspace-events", "K")
    observer = KeyspaceObserver(private_server.target("api"), Sink(), enable=True)
    with pytest.raises(error):
        try:
            observer.start()
            assert missing_flags(flags(admin)) == ""
            raise error()
        finally:
            observer.stop()
            observer.stop()  # idempotent
    assert flags(admin) == "K"


def test_enable_none_with_flags_off_warns_and_touches_nothing(private_server: Sandbox, admin: redis.Redis) -> None:
    admin.config_set("notify-keyspace-events", "K")
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=None) as observer:
        assert flags(admin) == "K"
        assert observer.active
        assert observer.lost is not None and "--enable-events" in observer.lost
    assert flags(admin) == "K"
    warnings = [n for n in sink.of(trace.Note) if n.level == "warning"]
    assert len(warnings) == 1
    text = warnings[0].text
    assert "\n" not in text and "expiries" in text and "evictions" in text and "EXPIRE" in text
    assert "--enable-events" in text


def test_enable_none_with_flags_on_just_listens(private_server: Sandbox, admin: redis.Redis) -> None:
    admin.config_set("notify-keyspace-events", "KEA")
    before = flags(admin)
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=None) as observer:
        assert observer.lost is None
        admin.set("x", 1)
        sink.keyspace("set", b"x")
    assert flags(admin) == before
    assert sink.of(trace.Note) == []


def test_enable_false_never_sets(private_server: Sandbox, admin: redis.Redis) -> None:
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=False) as observer:
        assert flags(admin) == ""
        assert observer.lost is not None
    assert flags(admin) == ""
    assert [n.level for n in sink.of(trace.Note)] == ["info"]


def test_config_refused_by_acl_still_listens(private_server: Sandbox, admin: redis.Redis) -> None:
    admin.execute_command("ACL", "SETUSER", "probe", "on", ">pw", "~*", "&*", "+@all", "-config", "-client")
    admin.config_set("notify-keyspace-events", "KEA")
    host, port = admin.connection_pool.connection_kwargs["host"], admin.connection_pool.connection_kwargs["port"]
    target = parse_target(f"redis://probe:pw@{host}:{port}/0")
    sink = Sink()
    with KeyspaceObserver(target, sink, enable=True) as observer:
        assert observer.active
        assert observer.lost is not None and "NOPERM" in observer.lost
        admin.set("acl-key", 1)
        sink.keyspace("set", b"acl-key")
    warnings = [n.text for n in sink.of(trace.Note) if n.level == "warning"]
    assert len(warnings) == 1 and "notify-keyspace-events" in warnings[0] and "pw" not in warnings[0]
    assert flags(admin) == "AKE"


def test_subscribe_refused_degrades_cleanly(private_server: Sandbox, admin: redis.Redis) -> None:
    admin.execute_command("ACL", "SETUSER", "nochan", "on", ">pw", "~*", "resetchannels", "+@all", "-config")
    kwargs = admin.connection_pool.connection_kwargs
    target = parse_target(f"redis://nochan:pw@{kwargs['host']}:{kwargs['port']}/0")
    sink = Sink()
    with KeyspaceObserver(target, sink, enable=True) as observer:
        assert not observer.active
        assert observer.lost is not None and "subscribe" in observer.lost
    assert [n.level for n in sink.of(trace.Note)] == ["warning"]
    assert flags(admin) == ""


def test_renamed_config_command() -> None:
    with sandbox("single", extra=["--rename-command", "CONFIG", ""]) as box:
        sink = Sink()
        with KeyspaceObserver(box.target("api"), sink, enable=True) as observer:
            assert observer.active
            assert observer.lost is not None and "unknown command" in observer.lost.lower()
        assert [n.level for n in sink.of(trace.Note)] == ["warning"]


def test_client_kill_makes_a_gap_then_events_resume(private_server: Sandbox, admin: redis.Redis) -> None:
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True):
        admin.set("before", 1)
        sink.keyspace("set", b"before")
        names = [c["name"] for c in admin.client_list(_type="pubsub")]
        assert names == [CONNECTION_NAME]
        assert admin.client_kill_filter(_type="pubsub") == 1
        gap = sink.wait(lambda e: isinstance(e, trace.Gap))
        assert isinstance(gap, trace.Gap) and gap.source == "keyspace"
        assert gap.until is not None and gap.until >= gap.t
        assert "client-output-buffer-limit" in gap.reason
        admin.set("after", 1)
        event = sink.keyspace("set", b"after")
        assert event.t >= gap.until
        assert [c["name"] for c in admin.client_list(_type="pubsub")] == [CONNECTION_NAME]


def test_server_restart_makes_a_gap_and_reapplies_flags(private_server: Sandbox) -> None:
    server = private_server.servers[0]
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True) as observer:
        server.stop()
        server.start()
        gap = sink.wait(lambda e: isinstance(e, trace.Gap) and e.until is not None)
        assert isinstance(gap, trace.Gap) and "restarted" in gap.reason
        fresh = redis.Redis.from_url(private_server.urls[0], socket_timeout=10)
        try:
            assert missing_flags(flags(fresh)) == ""  # the fresh server got our flags again
            fresh.set("after-restart", 1)
            sink.keyspace("set", b"after-restart")
            assert observer.active
        finally:
            fresh.close()
    fresh = redis.Redis.from_url(private_server.urls[0], socket_timeout=10)
    try:
        assert flags(fresh) == ""
    finally:
        fresh.close()


def test_unreachable_server_is_a_connection_problem() -> None:
    with sandbox("single") as box:
        target = box.target("api")
    with pytest.raises(ConnectionProblem, match="cannot connect"):
        KeyspaceObserver(target, Sink(), enable=True, timeout=1).start()


def test_slow_subscriber_cut_off_by_buffer_limit_is_a_gap(private_server: Sandbox, admin: redis.Redis) -> None:
    # One MSET publishes thousands of events in a single server tick: far past a 64kb pubsub hard limit.
    admin.config_set("client-output-buffer-limit", "pubsub 64kb 0 0")
    sink = Sink()
    with KeyspaceObserver(private_server.target("api"), sink, enable=True):
        burst = {f"burst:{index}:{'x' * 100}": 1 for index in range(3000)}
        admin.mset(burst)
        gap = sink.wait(lambda e: isinstance(e, trace.Gap) and e.until is not None)
        assert isinstance(gap, trace.Gap) and "client-output-buffer-limit pubsub" in gap.reason
        received = [e for e in sink.of(trace.Keyspace) if e.key.startswith(b"burst:")]
        assert len(received) < len(burst)  # the rest was lost, and the gap says so
        admin.set("after-cut", 1)
        sink.keyspace("set", b"after-cut")


def test_a_read_cut_by_stop_closing_the_link_ends_the_thread_quietly(private_server: Sandbox,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Under load the reader can outlive `stop`'s wait; `stop` then closes the link under its read. The reader
    must end without a traceback (the parser raises whatever it raises on a socket taken from under it)."""
    import threading

    crashed: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    observer = KeyspaceObserver(private_server.target("api"), Sink(), enable=True)
    observer.start()
    conn = observer._conn
    assert conn is not None
    cut = threading.Event()
    real_can_read = conn.can_read

    def can_read_cut_by_stop(timeout: float = 0) -> bool:
        if cut.is_set():
            def stop_gives_up_waiting() -> None:
                observer._stopping.set()
                conn.disconnect()  # what stop() does once its wait for the reader has run out

            threading.Timer(0.05, stop_gives_up_waiting).start()
            return bool(conn._parser.can_read(0.5))  # the read under way when the socket is taken
        return bool(real_can_read(timeout))

    monkeypatch.setattr(conn, "can_read", can_read_cut_by_stop)
    cut.set()
    assert observer._thread is not None
    observer._thread.join(10)
    observer.stop()
    assert not observer._thread.is_alive()
    assert crashed == []
