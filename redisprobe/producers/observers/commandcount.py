"""How many commands a server ran that MONITOR shows: the count a gap's `lost` is measured in.

INFO's total_commands_processed counts every command, but MONITOR never shows those flagged `admin` (CONFIG,
CLIENT LIST/KILL, ACL, DEBUG...): counted in, our own CLIENT LIST samples and a CLIENT KILL would be reported as
lost. INFO commandstats says how many of each ran, COMMAND which ones are admin.
"""

from __future__ import annotations

from typing import Any


def monitor_hidden(client: Any) -> frozenset[str]:
    """The commands (`client|list` for a subcommand) the server runs but never shows to MONITOR: those flagged
    `admin` (CONFIG, CLIENT LIST/KILL, ACL, DEBUG...). Counted out of a gap's lost commands, which would otherwise
    report our own CLIENT LIST samples and a CLIENT KILL as lost. Empty when COMMAND is refused."""
    try:
        table = client.command()
    except Exception:
        return frozenset()
    hidden = set()
    for name, facts in table.items():
        if "admin" in (facts.get("flags") or ()):
            hidden.add(str(name).lower())
        for sub in facts.get("subcommands") or ():
            if isinstance(sub, list) and len(sub) > 2 and b"admin" in (sub[2] or ()):
                hidden.add(sub[0].decode("utf-8", "replace").lower() if isinstance(sub[0], bytes) else str(sub[0]))
    return frozenset(hidden)


def shown_commands(body: bytes, hidden: frozenset[str] | set[str]) -> int | None:
    """From an `INFO stats commandstats` reply: the commands run that MONITOR shows (all, less the hidden ones)."""
    total = info_int(body, b"total_commands_processed")
    if total is None:
        return None
    for line in body.split(b"\r\n"):
        if not line.startswith(b"cmdstat_"):
            continue
        name, _, fields = line[8:].partition(b":")
        if name.decode("utf-8", "replace") in hidden:
            calls = fields.split(b",", 1)[0].partition(b"=")[2]
            if calls.isdigit():
                total -= int(calls)
    return total


def shown_in_info(reply: dict[str, Any], hidden: frozenset[str] | set[str]) -> int:
    """The same count from redis-py's parsed `INFO stats commandstats` reply."""
    return int(reply["total_commands_processed"]) - sum(
        int(stats["calls"]) for name, stats in reply.items()
        if name.startswith("cmdstat_") and isinstance(stats, dict) and name[8:] in hidden)


def info_int(body: bytes, field: bytes) -> int | None:
    """One integer field of a raw INFO reply."""
    for line in body.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == field and value.strip().isdigit():
            return int(value)
    return None
