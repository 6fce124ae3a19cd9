"""The live timeline: one line per command or event as it happens, removals and expiries standing out."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.text import Text

from redisprobe import trace
from redisprobe.analysis import commands as cmds

_REMOVING = {cmds.REMOVE, cmds.POP, cmds.TRIM, cmds.MOVE_ELEMENT, cmds.RENAME, cmds.MOVE, cmds.FLUSH}
_STYLE_BY_KIND = {cmds.TTL: "yellow", cmds.SET: "green", cmds.WRITE: "green", cmds.WRITE_EXISTING: "green",
                  cmds.OVERWRITE: "green", cmds.READ: "dim", cmds.SCAN: "dim"}
_SERVER_EVENTS = {"expired": "expired (server)", "evicted": "evicted (server)"}


def _text(value: bytes, limit: int = 60) -> str:
    text = value.decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LiveTimeline:
    """Prints rows for the events it is given; knows clients from the ClientSeen events that pass by."""

    def __init__(self, console: Console, *, key_patterns: Sequence[str] = (), watched: dict[int, str] | None = None,
                 show_reads: bool = True) -> None:
        self.console = console
        self.patterns = [p.encode() for p in key_patterns]
        self.watched = watched or {}
        self.show_reads = show_reads
        self.clients: dict[str, trace.ClientSeen] = {}
        self.rows = 0
        self._last_script_peer = ""

    def header(self) -> None:
        self.console.print(Text(f"{'time':<12} {'who':<24} {'client':>6} {'db':>3}  {'command':<10} {'key':<40} effect",
                                style="bold"))

    def feed(self, events: Iterable[trace.Event]) -> None:
        for event in events:
            if isinstance(event, trace.ClientSeen):
                self.clients[event.addr] = event
            elif isinstance(event, trace.Monitor):
                self._monitor(event)
            elif isinstance(event, trace.Keyspace) and event.event in _SERVER_EVENTS:
                if self._wanted([event.key]):
                    self._row(event.t, "server", "", event.db, event.event.upper(), event.key,
                              _SERVER_EVENTS[event.event], "bold magenta")
            elif isinstance(event, trace.Gap):
                self.console.print(Text(f"{_clock(event.t)} GAP in {event.source}: {event.reason}", style="bold red"))
            elif isinstance(event, trace.Note) and event.level == "warning":
                self.console.print(Text(f"! {event.text}", style="yellow"))

    def _who(self, peer: str) -> tuple[str, str]:
        seen = self.clients.get(peer)
        if seen is None:
            return peer, ""
        label = seen.label or (f"unlisted {seen.process}" if seen.process else f"unlisted {seen.name or peer}")
        who = f"{label}:{seen.pid}" if seen.pid else label
        return who, str(seen.client_id)

    def _monitor(self, event: trace.Monitor) -> None:
        if not event.args:
            return
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
        removing = kind in _REMOVING
        style = "bold red" if removing else _STYLE_BY_KIND.get(kind, "")
        effect = cmds.KIND_NAMES.get(kind, "")
        if removing:
            effect = "REMOVES" if kind != cmds.FLUSH else "FLUSHES the db"
        if kind == cmds.TTL:
            effect = "ttl " + " ".join(_text(a, 20) for a in event.args[2:4])
        who, client_id = self._who(event.peer) if event.peer != "lua" else ("lua script", "")
        self._row(event.t, who, client_id, event.db, _text(event.args[0], 10).upper(), keys[0], effect, style)

    def _wanted(self, keys: Sequence[bytes]) -> bool:
        if not self.patterns:
            return True
        return any(fnmatch.fnmatchcase(key, pattern) for key in keys for pattern in self.patterns)

    def _row(self, t: float, who: str, client_id: str, db: int, command: str, key: bytes, effect: str,
             style: str) -> None:
        self.rows += 1
        line = f"{_clock(t):<12} {who[:24]:<24} {client_id:>6} {db:>3}  {command:<10} {_text(key, 40):<40} {effect}"
        self.console.print(Text(line, style=style))


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
