"""The live timeline's text search over MONITOR lines as the server sent them (busy-server mode)."""

from __future__ import annotations

from redisprobe.analysis import commands as cmds
from redisprobe.render.timeline import _busy_commands, _literal, _trie


def test_busy_pattern_finds_exactly_the_removing_and_ttl_commands_in_either_case() -> None:
    pattern = _busy_commands()
    wanted = {c.name for c in cmds.COMMANDS.values() if c.removing or c.kind == cmds.TTL}
    others = {c.name for c in cmds.COMMANDS.values()} - wanted
    assert {"DEL", "UNLINK", "GETDEL", "EXPIRE", "PERSIST", "FLUSHDB", "RENAME", "LPOP"} <= wanted
    for name in wanted:
        assert pattern.fullmatch(f'] "{name}"') and pattern.fullmatch(f'] "{name.lower()}"'), name
    for name in others:
        assert not pattern.search(f'] "{name}" "k"') and not pattern.search(f'] "{name.lower()}"'), name
    assert not pattern.search('] "DELX"') and not pattern.search('] "EXPIREATX"')


def test_trie_matches_exactly_its_words() -> None:
    import re

    words = {"EXPIRE", "EXPIREAT", "PEXPIRE", "DEL", "D"}
    rx = re.compile(_trie(words))
    assert all(rx.fullmatch(w) for w in words)
    assert not any(rx.fullmatch(w) for w in ("EXPIREA", "EXPIR", "DE", "", "PEXPIREAT"))


def test_literal_of_a_keys_pattern_is_what_monitor_prints() -> None:
    assert _literal(b"batch:*:items") == "batch:"
    assert _literal(b"user:[0-9]*-session") == "-session"
    assert _literal(b"*") is None and _literal(b"??") is None
    assert _literal(b'quote"d*') is None  # MONITOR escapes a quote: plain text search would miss it
    assert _literal("caf\u00e9:*".encode()) is None  # non-ASCII bytes are printed as \xHH
