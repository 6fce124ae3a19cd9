"""Exchanges read off the wire as trace events: the command as the `trace.Monitor` event the fold already reads,
its answer as a `trace.WireReply` next to it (for reads, TTL commands and SETs with a TTL, with what the fold needs
of the command to read the reply)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from redisprobe import trace
from redisprobe.producers.wire.conversation import Exchange
from redisprobe.semantics import command_table as C


def exchange_events(exchanges: Iterable[Exchange], target: str | Callable[[str], str] = "",
                    db_of: Callable[[str, str], int | None] | None = None) -> list[trace.Monitor | trace.WireReply]:
    """Per exchange: its `Monitor` (unless the server did not run it) and its `WireReply`. `target`: the label of
    the watched server, or a function from the server's address to it. `db_of(target, client address)`: a
    connection's db as CLIENT LIST showed it, for connections open before the capture that never SELECTed."""
    out: list[trace.Monitor | trace.WireReply] = []
    append = out.append
    label_of = target if callable(target) else None
    label = target if isinstance(target, str) else ""
    monitor, wire_reply, jsonable = trace.Monitor, trace.WireReply, trace.jsonable_reply
    no_flags: list[str] = []
    for ex in exchanges:
        if label_of is not None:
            label = label_of(ex.server)
        known = ex.db if ex.db is not None or db_of is None else db_of(label, ex.client)
        db = known if known is not None else 0
        t, replied, reply = ex.t, ex.replied, ex.reply
        if not ex.refused:
            append(monitor(t=t, db=db, peer=ex.client, args=ex.args, target=label))
        if ex.resynced or ex.queued or known is None or replied is None:
            flags = [name for name, on in (("resynced", ex.resynced), ("queued", ex.queued),
                                           ("db-unknown", known is None), ("no-reply", replied is None)) if on]
        else:
            flags = no_flags
        if ex.error is not None:
            reply = None
        elif type(reply) is bytes:
            reply = reply.decode("utf-8", "backslashreplace")
        elif reply is not None and type(reply) is not int:
            reply = jsonable(reply)
        append(wire_reply(
            t=replied if replied is not None else t, sent=t, peer=ex.client, db=db, reply=reply, error=ex.error,
            latency=replied - t if replied is not None and replied > t else 0.0, target=label,
            refused=ex.args if ex.refused else [], flags=flags, command=[] if ex.refused else _command(ex.args)))
    return out


_REPLY_READ = frozenset({C.READ, C.TTL})
_SET_TTL = frozenset({C.TTL_ARG_S, C.TTL_ARG_MS})


def _command(args: list[bytes]) -> list[bytes]:
    """What of a command its `WireReply` repeats, for the fold to read the reply: a read's, TTL command's or
    blocking pop's arguments (did its key exist, did its TTL take, was it ever served), a SET-with-TTL's name and
    key (it replied: its TTL was set); nothing for the rest."""
    if not args:
        return []
    spec = C.COMMANDS.get(args[0]) or C.lookup(args[0])
    if spec.kind in _REPLY_READ or spec.blocking:
        return args
    if spec.kind == C.SET and (spec.ttl_form in _SET_TTL or (spec.ttl_form == C.TTL_SET_OPTIONS and len(args) > 3)):
        return args[:2]
    return []
