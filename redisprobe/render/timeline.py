"""The live timeline: one line per command or event as it happens, removals and expiries standing out.

A busy server runs far more commands than anyone can read, and parsing each one would take CPU from the server
(and fall behind it). So the timeline prints at most `ROWS_PER_SECOND` rows a second; past that it looks only
at the MONITOR lines that remove a key or change a TTL, or that mention a `--keys` pattern's literal text (found
by plain text search in the lines as the server sent them), and says how many lines it passed over. The trace
and the summary at the end have every command either way.

With `--source wire` each command comes with its reply (a `WireReply` right after its `Monitor`): the row then
says what the server answered where it matters (a read that found nothing is a miss, an EXPIRE or DEL that did
nothing, an error), and a command the server refused (OOM, READONLY...), which MONITOR never shows, gets a row.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from rich.console import Console
from rich.text import Text

from redisprobe import trace
from redisprobe.analysis.connection_roles import ConnectionRoles
from redisprobe.producers.processes.pidmap import JOINED
from redisprobe.render.escape import shown, shown_key
from redisprobe.semantics import command_table as cmds
from redisprobe.trace.monitor_text import MonitorParseError, parse_monitor_line

ROWS_PER_SECOND: Final = 500
_EMPTYING_KEPT: Final = 10_000  # keys a pop or HDEL may have emptied, waiting for their `del` event

_STYLE_BY_KIND = {cmds.TTL: "yellow", cmds.SET: "green", cmds.WRITE: "green", cmds.WRITE_EXISTING: "green",
                  cmds.OVERWRITE: "green", cmds.READ: "dim", cmds.SCAN: "dim"}
_SERVER_EVENTS = {"expired": "expired (server)", "evicted": "evicted (server)"}
_GLOB = re.compile(r"\*|\?|\[[^]]*\]?|\\.")


def _busy_commands() -> re.Pattern[str]:
    """The start of a removing or TTL-changing command in MONITOR's text: `] "DEL"`, upper or lower case.

    Written as a trie of literals (`D(?:EL|...)`), which the regex engine runs about 4x faster than a
    case-insensitive alternation: this pattern meets every line of a busy server.
    """
    names = {c.name for c in cmds.COMMANDS.values() if c.removing or c.kind == cmds.TTL}
    return re.compile(r'\] "(?:' + _trie(names) + "|" + _trie({n.lower() for n in names}) + ')"')


def _trie(words: set[str]) -> str:
    """A regex matching exactly `words`, sharing their common prefixes."""
    heads: dict[str, set[str]] = {}
    for word in words:
        heads.setdefault(word[:1], set()).add(word[1:])
    ends = heads.pop("", None) is not None
    if not heads:
        return ""
    body = "|".join(re.escape(head) + _trie(tails) for head, tails in sorted(heads.items()))
    group = f"(?:{body})" if len(heads) > 1 or ends else body
    return group + "?" if ends else group


def _literal(pattern: bytes) -> str | None:
    """The longest plain text every key matching the glob contains, as MONITOR prints it (None: no such text,
    or one MONITOR would escape)."""
    longest = max(_GLOB.split(pattern.decode("latin-1")), key=len)
    if not longest or any(not " " <= ch <= "~" or ch in '"\\' for ch in longest):
        return None
    return longest


def _text(value: bytes, limit: int = 60) -> str:
    """An argument as a row shows it: escaped, cut with its length."""
    return shown_key(value, limit)


class LiveTimeline:
    """Prints rows for the events it is given; knows clients from the ClientSeen events that pass by."""

    def __init__(self, console: Console, *, key_patterns: Sequence[str] = (), watched: dict[int, str] | None = None,
                 show_reads: bool = True) -> None:
        self.console = console
        self.patterns = [p.encode() for p in key_patterns]
        self.watched = watched or {}
        self.show_reads = show_reads
        self.clients: dict[str, trace.ClientSeen] = {}
        self.said: set[str] = set()  # warnings printed, so that the summary does not repeat them
        self.rows = 0
        self._last_script_peer = ""
        self._emptying: dict[tuple[int, bytes], str] = {}  # (db, key) -> who took from it last (pops, HDEL...)
        self._window = time.monotonic()
        self._shown = 0  # rows printed in the current second
        self._skipped = 0  # MONITOR lines not looked at in the current second
        self._busy = _busy_commands()
        self._pending = Text()  # rows not printed yet
        literals = [_literal(p) for p in self.patterns]
        self._everything = any(text is None for text in literals)  # a pattern with no literal: any line may match
        self._needles = [text for text in literals if text]
        self._roles = ConnectionRoles()  # our own baseline scan and replicas' links: not rows

    def header(self) -> None:
        self.console.print(Text(f"{'time':<12} {'who':<24} {'client':>6} {'db':>3}  {'command':<10} {'key':<40} effect",
                                style="bold"))

    def feed(self, events: Iterable[trace.Recorded]) -> None:
        try:
            self._feed(events)
        finally:
            self._flush()

    def _feed(self, events: Iterable[trace.Recorded]) -> None:
        events = events if isinstance(events, list) else list(events)
        last = len(events) - 1
        for index, event in enumerate(events):
            self._tick()
            if isinstance(event, trace.MonitorLines):
                self._lines(event)
            elif isinstance(event, trace.ClientSeen):
                self.clients[event.addr] = event
                self._roles.learn(event)
            elif isinstance(event, (trace.Topology, trace.Baseline)):
                self._roles.learn(event)
            elif isinstance(event, trace.Monitor):
                if self._shown < ROWS_PER_SECOND or _removes(event.args):
                    reply = events[index + 1] if index < last else None
                    paired = type(reply) is trace.WireReply and reply.peer == event.peer and reply.sent == event.t
                    self._monitor(event, reply if paired else None)  # type: ignore[arg-type]
                else:
                    self._skipped += 1
            elif isinstance(event, trace.Keyspace) and event.target in self._roles.replicas:
                pass  # a cluster replica's events echo its primary's, shown there
            elif isinstance(event, trace.WireReply):
                if event.refused and self._shown < ROWS_PER_SECOND:
                    self._refused(event)
            elif isinstance(event, trace.Keyspace) and event.event in _SERVER_EVENTS:
                if self._wanted([event.key]):  # a removal: shown past the row budget too
                    self._row(event.t, "server", "", event.db, event.event.upper(), event.key,
                              _SERVER_EVENTS[event.event], "bold magenta")
            elif isinstance(event, trace.Keyspace) and event.event == "del":
                who = self._emptying.pop((event.db, event.key), None)
                if who is not None and self._wanted([event.key]):  # a removal: shown past the budget too
                    self._row(event.t, who, "", event.db, "(emptied)", event.key, "REMOVED: its last element was "
                              "taken", "bold red")
            elif isinstance(event, trace.Gap):
                self._print(f"{_clock(event.t)} GAP in {event.source}: {shown(event.reason)}", "bold red")
            elif isinstance(event, trace.Note) and event.text.startswith(JOINED):
                self._print(f"{_clock(event.t)} {shown(event.text[len(JOINED):].strip())}", "cyan")
            elif isinstance(event, trace.Note) and event.level == "warning" and event.text not in self.said:
                self.said.add(event.text)
                self._print(f"! {shown(event.text)}", "yellow")

    def finish(self) -> None:
        """Say how many lines were passed over since the last such note."""
        self._tick(force=True)
        self._flush()

    def _tick(self, force: bool = False) -> None:
        """Once a second: the note about lines passed over, and a fresh row budget."""
        now = time.monotonic()
        if not force and now - self._window < 1.0:
            return
        if self._skipped:
            self._print(f"{_clock(time.time())} … {self._skipped:,} MONITOR lines in {now - self._window:.1f}s not "
                        f"shown (busy server: removals and TTL changes first); the trace and the summary have them all",
                        "dim")
        self._window, self._shown, self._skipped = now, 0, 0

    def _lines(self, block: trace.MonitorLines) -> None:
        """A block of MONITOR lines: all of them while the row budget lasts, else only the lines that matter; once
        the budget is spent too, only the removals (a removal is never left out of the live view)."""
        text = block.lines.decode("latin-1")  # each character one byte: the searches below are on text
        count = text.count("\n")
        if self._shown + count <= ROWS_PER_SECOND:
            self._feed(trace.expand_monitor_lines(block))
            return
        looked = 0
        for start in self._interesting(text):
            try:
                line = parse_monitor_line(text[start:text.find("\r\n", start)])
            except MonitorParseError:
                looked += 1
                continue  # the trace reader reports it as a gap
            if self._shown >= ROWS_PER_SECOND and not _removes(line.args):
                continue
            looked += 1
            self._monitor(trace.Monitor(t=line.ts, db=line.db, peer=line.peer, args=line.args, target=block.target))
        self._skipped += count - looked

    def _interesting(self, text: str) -> Iterator[int]:
        """Where the lines start that remove a key, change a TTL or may name a `--keys` key (found by text search)."""
        if self._everything:
            start = 0
            while start < len(text):
                yield start
                start = text.find("\n", start) + 1 or len(text)
            return
        starts = {text.rfind("\n", 0, m.start()) + 1 for m in self._busy.finditer(text)}
        for needle in self._needles:
            at = text.find(needle)
            while at >= 0:
                start = text.rfind("\n", 0, at) + 1
                starts.add(start)
                end = text.find("\n", at)
                at = text.find(needle, end) if end >= 0 else -1
        yield from sorted(starts)

    def _who(self, peer: str) -> tuple[str, str]:
        seen = self.clients.get(peer)
        if seen is None:
            return peer, ""
        label = seen.label or (f"unlisted {seen.process}" if seen.process else f"unlisted {seen.name or peer}")
        who = f"{label}:{seen.pid}" if seen.pid else label
        return who, str(seen.client_id)

    def _refused(self, reply: trace.WireReply) -> None:
        """A command the server did not run: MONITOR never shows it, the wire does."""
        command = cmds.lookup(reply.refused[0])
        keys = command.keys(reply.refused) or [b""]
        if not self._wanted(keys) and keys != [b""]:
            return
        who, client_id = self._who(reply.peer)
        self._row(reply.sent, who, client_id, reply.db, _text(reply.refused[0].upper(), 10), keys[0],
                  f"REFUSED: {reply.error or 'not run'}", "bold red")

    def _monitor(self, event: trace.Monitor, reply: trace.WireReply | None = None) -> None:
        roles = self._roles
        if not event.args or (roles.scans and roles.in_baseline_scan(event.target, event.peer, event.t)):
            return
        if roles.links and roles.is_link(event.target, event.peer):
            return  # a cluster replica repeating its primary's writes: shown once, on the primary
        command = cmds.lookup(event.args[0])
        kind = command.kind
        if kind == cmds.OTHER and command.first == 0:
            return
        keys = command.keys(event.args)
        if kind == cmds.FLUSH:
            keys = [b"*"]
        if not keys or not self._wanted(keys):
            return
        if kind in (cmds.READ, cmds.SCAN) and not self.show_reads:
            return
        removing = command.removing and not command.when_empty
        style = "bold red" if removing else _STYLE_BY_KIND.get(kind, "")
        effect = cmds.KIND_NAMES.get(kind, "")
        if removing:
            effect = "REMOVES" if kind != cmds.FLUSH else "FLUSHES the db"
        if kind == cmds.TTL:
            effect = "ttl " + " ".join(_text(a, 20) for a in event.args[2:4])
        who, client_id = self._who(event.peer) if event.peer != "lua" else ("lua script", "")
        if command.when_empty:  # HDEL, SREM, pops: the key goes only with its last element (the `del` event says)
            effect = f"{effect}: removes the key when emptied"
            style = "yellow"
            if len(self._emptying) < _EMPTYING_KEPT:
                self._emptying[(event.db, keys[0])] = who
        elif self._emptying:
            for key in keys:  # another command on the key: a later `del` event is its own
                self._emptying.pop((event.db, key), None)
        if reply is not None:
            effect, style = _answered(effect, style, kind, removing, reply)
        if not removing and self._shown >= ROWS_PER_SECOND:
            self._skipped += 1  # a pop or HDEL past the budget: its `del` event, if it emptied the key, is shown
            return
        self._row(event.t, who, client_id, event.db, _text(event.args[0].upper(), 10), keys[0], effect, style)

    def _wanted(self, keys: Sequence[bytes]) -> bool:
        if not self.patterns:
            return True
        return any(fnmatch.fnmatchcase(key, pattern) for key in keys for pattern in self.patterns)

    def _row(self, t: float, who: str, client_id: str, db: int, command: str, key: bytes, effect: str,
             style: str) -> None:
        self.rows += 1
        self._shown += 1
        line = (f"{_clock(t):<12} {shown(who)[:24]:<24} {client_id:>6} {db:>3}  {command:<10} {_text(key, 40):<40} "
                f"{shown(effect)}")
        self._print(line, style)

    def _print(self, line: str, style: str) -> None:
        self._pending.append(line + "\n", style=style)

    def _flush(self) -> None:
        """Print the rows of one `feed` at once: rich costs ~250 µs a `print` call, ~30 µs a row this way."""
        if self._pending:
            self.console.print(self._pending, end="", soft_wrap=True)
            self._pending = Text()


def _removes(args: Sequence[bytes]) -> bool:
    """Whether a command may remove a key (pops and HDEL included: their `del` event needs who sent them)."""
    return bool(args) and cmds.lookup(args[0]).removing


def _answered(effect: str, style: str, kind: int, removing: bool, reply: trace.WireReply) -> tuple[str, str]:
    """A row's effect and style with what the server answered, where the answer tells something."""
    if reply.error is not None:
        return f"{effect}: ERROR {reply.error[:60]}", "red"
    if kind == cmds.READ and reply.reply is None and "no-reply" not in reply.flags:
        return f"{effect}: MISS (nil)", "yellow"
    if kind == cmds.TTL and reply.reply == 0:
        return f"{effect}: did nothing (0)", "yellow"
    if removing and reply.reply == 0:
        return f"{effect}: nothing there (0)", style
    return effect, style


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
