"""Exchanges read off the wire as trace events: the command as the `trace.Monitor` event the fold already reads,
its answer as a `trace.WireReply` next to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from redisprobe import trace
from redisprobe.wire.conversation import Exchange


def exchange_events(exchanges: Iterable[Exchange], target: str | Callable[[str], str] = ""
                    ) -> list[trace.Monitor | trace.WireReply]:
    """Per exchange: its `Monitor` (unless the server did not run it) and its `WireReply`. `target`: the label of
    the watched server, or a function from the server's address to it."""
    out: list[trace.Monitor | trace.WireReply] = []
    append = out.append
    label_of = target if callable(target) else None
    label = target if isinstance(target, str) else ""
    monitor, wire_reply, jsonable = trace.Monitor, trace.WireReply, trace.jsonable_reply
    no_flags: list[str] = []
    for ex in exchanges:
        if label_of is not None:
            label = label_of(ex.server)
        db = ex.db if ex.db is not None else 0
        t, replied, reply = ex.t, ex.replied, ex.reply
        if not ex.refused:
            append(monitor(t=t, db=db, peer=ex.client, args=ex.args, target=label))
        if ex.resynced or ex.queued or ex.db is None or replied is None:
            flags = [name for name, on in (("resynced", ex.resynced), ("queued", ex.queued),
                                           ("db-unknown", ex.db is None), ("no-reply", replied is None)) if on]
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
            refused=ex.args if ex.refused else [], flags=flags))
    return out
