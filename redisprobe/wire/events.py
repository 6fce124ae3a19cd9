"""Exchanges read off the wire as trace events: the command as the `trace.Monitor` event the fold already reads,
its answer as a `trace.WireReply` next to it (for reads, TTL commands and SETs with a TTL, with what the fold needs
of the command to read the reply)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from redisprobe import trace
from redisprobe.analysis import commands as C
from redisprobe.wire.conversation import Exchange


def exchange_events(exchanges: Iterable[Exchange], target: str | Callable[[str], str] = "",
                    dbs: Mapping[tuple[str, str], int] | None = None) -> list[trace.Monitor | trace.WireReply]:
    """Per exchange: its `Monitor` (unless the server did not run it) and its `WireReply`. `target`: the label of
    the watched server, or a function from the server's address to it. `dbs`: each connection's db as CLIENT LIST
    showed it, by (target, client address), for connections open before the capture that never SELECTed."""
    out: list[trace.Monitor | trace.WireReply] = []
    label_of = target if callable(target) else None
    for ex in exchanges:
        if label_of is not None:
            target = label_of(ex.server)
        assert isinstance(target, str)
        known = ex.db if ex.db is not None else dbs.get((target, ex.client)) if dbs else None
        db = known if known is not None else 0
        if not ex.refused:
            out.append(trace.Monitor(t=ex.t, db=db, peer=ex.client, args=ex.args, target=target))
        flags = [name for name, on in (("resynced", ex.resynced), ("queued", ex.queued),
                                       ("db-unknown", known is None), ("no-reply", ex.replied is None)) if on]
        out.append(trace.WireReply(
            t=ex.replied if ex.replied is not None else ex.t, sent=ex.t, peer=ex.client, db=db,
            reply=None if ex.error is not None else trace.jsonable_reply(ex.reply), error=ex.error,
            latency=ex.latency or 0.0, target=target, refused=ex.args if ex.refused else [], flags=flags,
            command=[] if ex.refused else _command(ex.args)))
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
