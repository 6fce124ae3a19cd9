"""The end-of-run summary: each key's life (who created it, TTL, who or what removed it), findings, gaps."""

from __future__ import annotations

import base64
import time
from collections.abc import Collection
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from redisprobe.analysis.digest import Summary
from redisprobe.render.escape import shown, shown_key
from redisprobe.render.layout import Records
from redisprobe.render.verdicts import findings_block

_SPARKS = "▁▂▃▄▅▆▇█"
_REMOVED_STYLE = {"expired": "magenta", "evicted": "bold magenta", "flush": "bold red"}


def sparkline(values: list[int], width: int = 24) -> str:
    """A TTL curve: each character is a PTTL sample (downsampled to `width`), relative to the largest."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    top = max(max(values), 1)
    return "".join(_SPARKS[min(len(_SPARKS) - 1, max(0, int(v / top * (len(_SPARKS) - 1))))] if v >= 0 else "∞"
                   for v in values)


def who(by: dict[str, Any] | None) -> str:
    if not by:
        return "server"
    label = by.get("label") or "unlisted"
    pid = by.get("pid")
    client = by.get("client_id")
    return shown(f"{label}") + (f" pid {pid}" if pid else "") + (f" (client {client})" if client is not None else "")


def key_of(life: dict[str, Any]) -> bytes:
    """A key's exact bytes: from `key_base64` when its name is not UTF-8, else its (exact UTF-8) text."""
    exact = life.get("key_base64")
    return base64.b64decode(exact) if exact else str(life.get("key")).encode("utf-8", "surrogateescape")


def _before(life: dict[str, Any]) -> str:
    """Who created a key the capture did not see created: the baseline saw it at the start, or nobody knows."""
    if life.get("before_capture"):
        return "before the capture"
    return "unknown (before the capture)" if life.get("preexisting") else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def keys_table(summary: Summary, *, limit: int = 50) -> Records:
    curves = bool(summary.ttl_curves)
    headers = ("key", "db", "created by", "TTL set", "lifetime", "removed", "by", "TTL curve")[:8 if curves else 7]
    # Keys on several servers (a cluster's nodes): each row says the node that owns the key (now, after a failover)
    nodes = summary.cluster or len({life.get("server") for life in summary.keys}) > 1
    if nodes:
        headers = (headers[0], "node", *headers[1:])
    rows = []
    for life in summary.keys[:limit]:
        removed = life.get("removed") or {}
        how = removed.get("how", "") if removed else "alive"
        style = _REMOVED_STYLE.get(how, "bold red" if how not in ("alive", "") else "")
        creator = who(life.get("created_by")) if life.get("created_by") else _before(life)
        cells = [shown_key(key_of(life)), str(life.get("db", "")), creator, _seconds(life.get("ttl_set")),
                 _seconds(life.get("lifetime")), Text(how, style=style), who(removed.get("by")) if removed else ""]
        if curves:
            cells.append(sparkline(summary.ttl_curves.get(str(life.get("key")), [])))
        if nodes:
            cells.insert(1, shown(str(life.get("server") or "")))
        rows.append(cells)
    caption = f"{len(summary.keys) - limit} more keys in --json / the trace" if len(summary.keys) > limit else None
    return Records(headers, rows, title="Each key's life", caption=caption, foldable=("key", "TTL curve"))


def _who_cell(client: dict[str, Any]) -> Text | str:
    """The label the user gave, with the process's identity when it says more (`api (node api.js)`)."""
    label, process = client.get("label", ""), client.get("process", "")
    if label == "unlisted":
        return Text(shown(f"unlisted {process}" if process else "unlisted"), style="yellow")
    if process and label and process not in label:
        return shown(f"{label} ({process})")
    return shown(label or process)


def summary_view(summary: Summary, *, trace_path: str | None = None,
                 already_said: Collection[str] = ()) -> RenderableType:
    """The summary; warnings in `already_said` (printed by the live timeline) are not repeated."""
    parts: list[RenderableType] = []
    if summary.clients:
        rows = [(str(c["client_id"]), shown(c["addr"]), str(c["db"]), shown_key(c["name"]),
                 shown_key(c.get("lib", "")), str(c["pid"] or "?"), _who_cell(c)) for c in summary.clients]
        parts.append(Records(("client id", "addr", "db", "name", "library", "pid", "process / label"), rows,
                             title="Clients seen", foldable=("name", "library")))
    if summary.keys:
        parts.append(keys_table(summary))
    parts.append(findings_block(summary.findings))
    for gap in summary.gaps:
        until = time.strftime("%H:%M:%S", time.localtime(gap.until)) if gap.until else "the end"
        parts.append(Text(f"GAP: {gap.source} lost events from {time.strftime('%H:%M:%S', time.localtime(gap.t))} "
                          f"to {until}: {shown(gap.reason)}", style="bold red"))
    for note in summary.notes:
        if note.level == "warning" and note.text not in already_said:
            parts.append(Text(f"! {shown(note.text)}", style="yellow"))
    stats = summary.stats
    parts.append(Text(f"{stats.get('commands', 0)} commands, {stats.get('keyspace_events', 0)} keyspace events, "
                      f"{len(summary.gaps)} gaps" + (f"; trace: {trace_path}" if trace_path else ""), style="dim"))
    return Group(*parts)


def print_summary(console: Console, summary: Summary, *, trace_path: str | None = None,
                  already_said: Collection[str] = ()) -> None:
    console.print(summary_view(summary, trace_path=trace_path, already_said=already_said))
