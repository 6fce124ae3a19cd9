"""The one data model: typed trace events, written as JSON lines as they happen and loaded back strictly.

Every producer (actors, observers, a saved file) yields these events; every answer is computed from them.
msgspec gives frozen typed structs, tagged unions and a JSON codec fast enough for the MONITOR path.

The package by concern: `schema` (the events), `codec` (JSON lines), `writer`, `load`, `ordering`; every
public name is here, so `from redisprobe import trace; trace.Op` works as it always did.
"""

from __future__ import annotations

from redisprobe.trace.codec import decode_event, encode, expand_monitor_lines, monitor_lines
from redisprobe.trace.load import line_blocks, load_trace, read_trace
from redisprobe.trace.ordering import REORDER_WINDOW, time_ordered
from redisprobe.trace.schema import (
    MAGIC,
    TRACE_FORMAT,
    ActorExited,
    ActorStarted,
    Baseline,
    Check,
    ClientSeen,
    Event,
    Gap,
    Header,
    Inspect,
    Keyspace,
    KeyspaceMark,
    Monitor,
    MonitorLines,
    Note,
    Op,
    PeerSeen,
    Recorded,
    Refusals,
    Replication,
    Reply,
    ServerFingerprint,
    ServerSeen,
    Topology,
    TtlSample,
    WireReply,
    jsonable_reply,
)
from redisprobe.trace.writer import TraceWriter

__all__ = [
    "MAGIC",
    "REORDER_WINDOW",
    "TRACE_FORMAT",
    "ActorExited",
    "ActorStarted",
    "Baseline",
    "Check",
    "ClientSeen",
    "Event",
    "Gap",
    "Header",
    "Inspect",
    "Keyspace",
    "KeyspaceMark",
    "Monitor",
    "MonitorLines",
    "Note",
    "Op",
    "PeerSeen",
    "Recorded",
    "Refusals",
    "Replication",
    "Reply",
    "ServerFingerprint",
    "ServerSeen",
    "Topology",
    "TraceWriter",
    "TtlSample",
    "WireReply",
    "decode_event",
    "encode",
    "expand_monitor_lines",
    "jsonable_reply",
    "line_blocks",
    "load_trace",
    "monitor_lines",
    "read_trace",
    "time_ordered",
]
