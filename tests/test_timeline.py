"""The live timeline's text search over MONITOR lines as the server sent them (busy-server mode)."""

from __future__ import annotations

from redisprobe.render.timeline import _busy_commands, _literal, _trie
from redisprobe.semantics import command_table as cmds


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


def _rows(events: list) -> list[str]:
    import io

    from rich.console import Console

    from redisprobe.render.timeline import LiveTimeline

    out = io.StringIO()
    timeline = LiveTimeline(Console(file=out, width=200, color_system=None))
    timeline.feed(events)
    return out.getvalue().splitlines()


def test_a_command_that_removes_only_what_it_empties_is_not_shown_as_a_removal() -> None:
    """HDEL h f1 leaves h when other fields remain: the timeline must not say REMOVES (the fold keeps h); when
    the server's `del` event says the key went, that is shown as the removal."""
    from redisprobe import trace

    t = 1_700_000_000.0
    mon = [trace.Monitor(t=t + i, db=0, peer="127.0.0.1:5000", args=args, target="t") for i, args in enumerate([
        [b"HSET", b"h", b"f1", b"a", b"f2", b"b"], [b"HDEL", b"h", b"f1"], [b"HDEL", b"h", b"f2"], [b"DEL", b"x"]])]
    events = [*mon[:3], trace.Keyspace(t=t + 2.001, db=0, key=b"h", event="del", target="t"), mon[3]]
    rows = _rows(events)
    hdel = [row for row in rows if "HDEL" in row]
    assert len(hdel) == 2 and not any("REMOVES" in row for row in hdel)
    assert all("when emptied" in row for row in hdel)
    emptied = [row for row in rows if "emptied" in row and "HDEL" not in row]
    assert len(emptied) == 1 and " h " in emptied[0]
    assert "REMOVES" in next(row for row in rows if " DEL " in row)


def _block(t: float, commands: list[str]) -> object:
    from redisprobe import trace

    lines = "".join(f'+{t + i / 1e6:.6f} [0 127.0.0.1:5000] {command}\r\n' for i, command in enumerate(commands))
    return trace.MonitorLines(t=t, until=t + len(commands) / 1e6, lines=lines.encode("latin-1"), target="t")


def test_a_removal_is_shown_once_the_second_s_row_budget_is_spent() -> None:
    """A loaded capture hands the timeline fewer, bigger blocks: one that fills the budget exactly, then one with
    the DEL among many SETs. The DEL (and a pop's emptying of its key) must still be shown, the
    SETs passed over."""
    from redisprobe import trace
    from redisprobe.render.timeline import ROWS_PER_SECOND

    t = 1_700_000_000.0
    fill = _block(t, [f'"SET" "fill:{i}" "v"' for i in range(ROWS_PER_SECOND)])
    busy = _block(t + 1, ['"SET" "busy:a" "v"'] * 600 + ['"DEL" "busy:victim"', '"LPOP" "busy:queue"'])
    emptied = trace.Keyspace(t=t + 1.5, db=0, key=b"busy:queue", event="del", target="t")
    rows = _rows([fill, busy, emptied])
    assert sum("fill:" in row for row in rows) == ROWS_PER_SECOND
    assert not any("busy:a" in row for row in rows)
    assert any(" DEL " in row and "busy:victim" in row and "REMOVES" in row for row in rows), rows[-5:]
    assert any("emptied" in row and "busy:queue" in row for row in rows), rows[-5:]
