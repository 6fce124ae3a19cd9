"""The command table: one row of facts per command, coherent with itself, and what its readers take from it."""

from __future__ import annotations

import pytest

from redisprobe.semantics import command_table as C
from redisprobe.trace.redact import redact_args

ROWS = {command.name: command for command in C.COMMANDS.values()}


def test_every_row_is_coherent() -> None:
    removing_kinds = {C.REMOVE, C.POP, C.TRIM, C.MOVE_ELEMENT, C.RENAME, C.MOVE, C.FLUSH}
    for name, row in ROWS.items():
        assert bool(row.removes) == (row.kind in removing_kinds), name
        assert row.when_empty == (row.kind in (C.POP, C.TRIM, C.MOVE_ELEMENT)), name
        if row.blocking:
            assert row.removes and name.startswith("B"), name
        if row.kind == C.TTL:
            assert row.ttl_form, name
        assert C.lookup(name.lower().encode()) is row


@pytest.mark.parametrize(("args", "timeout"), [
    ([b"BLPOP", b"a", b"b", b"5"], b"5"), ([b"BLMPOP", b"2.5", b"1", b"q", b"LEFT"], b"2.5"),
    ([b"BRPOPLPUSH", b"src", b"dst", b"0"], b"0"), ([b"BZPOPMIN", b"z", b"1"], b"1"),
])
def test_blocking_commands_say_where_their_timeout_is(args: list[bytes], timeout: bytes) -> None:
    assert args[C.lookup(args[0]).blocking] == timeout


@pytest.mark.parametrize(("args", "expected"), [
    ([b"SET", b"k", b"v", b"EX", b"10"], ("set", 10.0)), ([b"SET", b"k", b"v"], ("clear", None)),
    ([b"SETEX", b"k", b"10", b"v"], ("set", 10.0)), ([b"PSETEX", b"k", b"1500", b"v"], ("set", 1.5)),
    ([b"EXPIRE", b"k", b"10", b"NX"], ("set", 10.0)), ([b"PERSIST", b"k"], ("clear", None)),
    ([b"GETEX", b"k"], ("keep", None)), ([b"GETEX", b"k", b"PERSIST"], ("clear", None)),
    ([b"GETSET", b"k", b"v"], ("clear", None)), ([b"MSET", b"a", b"1"], ("clear", None)),
    ([b"INCR", b"k"], ("keep", None)),
])
def test_ttl_forms(args: list[bytes], expected: tuple[str, float | None]) -> None:
    change = C.ttl_change(args, 1000.0)
    assert change is not None and (change.action, change.seconds) == expected
    if args[0] == b"EXPIRE":
        assert change.cond == "NX"  # EXPIRE's condition, where SETEX's fourth argument is a value


def test_facts_that_replace_name_comparisons() -> None:
    assert C.lookup(b"RENAMENX").cond == "NX" and C.lookup(b"RENAME").cond == ""
    assert C.lookup(b"MSETNX").pairs and C.lookup(b"MSETNX").cond == "NX"
    assert C.lookup(b"SORT").source_first and C.keys_of([b"SORT", b"src", b"STORE", b"dst"]) == [b"src", b"dst"]
    assert C.lookup(b"GET").value_reply and not C.lookup(b"STRLEN").value_reply
    assert C.pop_count([b"LPOP", b"q", b"3"]) == 3 and C.pop_count([b"BLPOP", b"q", b"3"]) == 1
    assert C.push_count([b"RPUSH", b"q", b"a", b"b"]) == 2 and C.push_count([b"SADD", b"s", b"a"]) is None
    assert C.scan_pattern([b"scan", b"0", b"match", b"a*"]) == b"a*" and C.scan_pattern([b"SCAN", b"0"]) is None
    assert C.flush_all_dbs([b"flushall"]) and not C.flush_all_dbs([b"FLUSHDB"])
    assert C.move_target_db([b"MOVE", b"k", b"3"]) == 3 and C.move_target_db([b"COPY", b"a", b"b", b"DB", b"2"]) == 2
    assert C.removal_how(b"unlink") == "unlink" and C.removal_how(b"EXPIRE") == "del"


def test_client_tracking_is_read_from_its_row() -> None:
    """The fold learns that a connection caches on the client side from CLIENT's row, not from its name."""
    client = C.lookup(b"client")
    assert client.tracking_word == b"TRACKING" and client.kind == C.OTHER and not C.keys_of([b"CLIENT", b"LIST"])
    assert C.tracking_switch(client, [b"CLIENT", b"tracking", b"on"]) is True
    assert C.tracking_switch(client, [b"client", b"TRACKING", b"OFF", b"BCAST"]) is False
    assert C.tracking_switch(client, [b"CLIENT", b"SETNAME", b"x"]) is None
    assert C.tracking_switch(C.lookup(b"GET"), [b"GET", b"TRACKING", b"ON"]) is None


def test_redaction_keeps_the_declared_option_words() -> None:
    shown = redact_args([b"ZADD", b"board", b"CH", b"10", b"alice"])
    assert shown[:4] == [b"ZADD", b"board", b"CH", b"10"] and shown[4].startswith(b"<redacted")


def test_hgetdel_one_row_is_all_a_new_command_needs() -> None:
    """Redis 8's HGETDEL (read fields and delete them; the key goes with its last field): the worked example of
    CONTRIBUTING.md. Its row alone makes the fold, the timeline and redaction treat it right."""
    from redisprobe.render.timeline import _busy_commands

    row = C.lookup(b"hgetdel")
    assert row.kind == C.TRIM and row.removes == "pop" and row.when_empty
    assert C.keys_of([b"HGETDEL", b"h", b"FIELDS", b"1", b"f"]) == [b"h"]
    assert _busy_commands().search('] "HGETDEL" "h"')
    assert redact_args([b"HGETDEL", b"h", b"FIELDS", b"1", b"f"])[2] == b"FIELDS"
