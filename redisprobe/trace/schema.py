"""The trace's typed events: msgspec structs in one tagged union, and what each field means."""

from __future__ import annotations

from typing import Any

import msgspec

from redisprobe import __version__

TRACE_FORMAT = 2
"""Format 1 was JSON lines only, and grew by new event types and new fields with defaults. Format 2 stores MONITOR
blocks as the bytes the server sent, after a `MonitorRaw` line that says how many follow (escaping each byte into a
JSON string was most of what copying MONITOR into the trace cost); everything else is as in format 1, which still
reads as it was (traces from the first releases are kept as test data: the `compat-*` files of the golden corpus,
each named after the commit that wrote it). A change that is not additive bumps this number and comes with an
upgrade from the previous format in `read_trace`, tested on those files."""
MAGIC = "redisprobe-trace"

Reply = Any  # a Redis reply made JSON-safe by `jsonable_reply`


class ServerFingerprint(msgspec.Struct, frozen=True, kw_only=True):
    """Who answered a connection: the identity check is `run_id`, not port or version."""

    run_id: str = ""
    host: str = ""
    port: int = 0
    version: str = ""
    role: str = ""  # master / slave
    uptime: int = 0
    master_repl_offset: int = 0
    master_host: str = ""
    master_port: int = 0
    master_replid: str = ""  # shared by a primary and its replicas: tells "replica of" from "another server"
    redis_mode: str | msgspec.UnsetType = msgspec.UNSET  # "cluster" for a cluster node (absent in older traces)
    cluster_id: str | msgspec.UnsetType = msgspec.UNSET  # a cluster node's cluster (`topology.cluster_identity`)


class Header(msgspec.Struct, frozen=True, kw_only=True, tag="header"):
    magic: str = MAGIC
    format: int = TRACE_FORMAT
    redisprobe: str = __version__
    argv: list[str] = []
    command: str = ""
    started: float = 0.0
    targets: dict[str, str] = {}  # label -> redacted URL
    servers: dict[str, ServerFingerprint] = {}  # label -> who answered there when the run started
    options: dict[str, Any] = {}


class ActorStarted(msgspec.Struct, frozen=True, kw_only=True, tag="actor-started"):
    t: float
    pid: int
    role: str
    target: str  # redacted URL
    client_id: int = 0
    client_name: str = ""
    db: int = 0
    addr: str = ""  # the client's address as the server sees it
    laddr: str = ""
    prefix: str = ""
    server: ServerFingerprint = ServerFingerprint()


class Op(msgspec.Struct, frozen=True, kw_only=True, tag="op"):
    """One command an actor sent, with what came back."""

    t: float
    mono: float
    pid: int
    role: str
    client_id: int
    db: int
    args: list[bytes]
    reply: Reply = None
    error: str | None = None
    latency: float = 0.0
    target: str = ""  # the node that ran it, for a cluster actor (its ops go to every primary); else its own server


class Check(msgspec.Struct, frozen=True, kw_only=True, tag="check"):
    """An actor waited for something to become true (a key to be visible, an ack...)."""

    t: float
    pid: int
    role: str
    name: str
    key: str
    ok: bool
    waited: float
    attempts: int
    first_miss: bool = False
    target: str = ""  # the node it polled, for a cluster actor; else its own server


class Inspect(msgspec.Struct, frozen=True, kw_only=True, tag="inspect"):
    """What an actor saw of its server from its own connection (INFO, CLIENT INFO, CONFIG)."""

    t: float
    pid: int
    role: str
    sections: dict[str, dict[str, str]]


class ActorExited(msgspec.Struct, frozen=True, kw_only=True, tag="actor-exited"):
    t: float
    pid: int
    role: str
    returncode: int | None
    crashed: bool = False
    detail: str = ""
    timed_out: bool = False  # still running at the plan's time limit, and stopped (not a crash)


class Monitor(msgspec.Struct, frozen=True, kw_only=True, tag="monitor", gc=False):
    """One MONITOR line: server time, db, peer and the exact argument bytes."""

    t: float
    db: int
    peer: str
    args: list[bytes]
    target: str = ""


class MonitorLines(msgspec.Struct, frozen=True, kw_only=True, tag="monitor-block"):
    """A block of MONITOR lines exactly as the server printed them, stored unparsed.

    A live capture copies what MONITOR sends into the trace instead of parsing it: parsing costs microseconds a
    line, and on a loaded server that CPU is taken from the server itself. A saved trace holds it as raw bytes after
    a `MonitorRaw` line (format 2), or as this JSON record (format 1). Readers of the trace never see this
    record: `read_trace` (and a `TraceWriter` that keeps events or has listeners) turns it into one `Monitor`
    per line, and a line that does not parse into a `Gap` where it was.
    """

    t: float  # server time of the first line
    until: float  # of the last line
    lines: bytes  # complete CRLF-terminated lines, the bytes the server sent
    target: str = ""


class MonitorLinesV1(msgspec.Struct, frozen=True, kw_only=True, tag="monitor-lines"):
    """A MONITOR block as format 1 stored it: a JSON string, Latin-1 decoded (each character one byte the server
    sent). Read into a `MonitorLines`."""

    t: float
    until: float
    lines: str
    target: str = ""


class MonitorRaw(msgspec.Struct, frozen=True, kw_only=True, tag="monitor-raw"):
    """The line before a block of MONITOR lines stored as the server sent them (format 2): `size` bytes of complete
    CRLF-terminated lines follow it, then the next record's line. Read back as a `MonitorLines` block."""

    t: float
    until: float
    target: str = ""
    size: int


class Keyspace(msgspec.Struct, frozen=True, kw_only=True, tag="keyspace"):
    """A keyspace notification, stamped on receipt (the server gives no time and no client)."""

    t: float
    db: int
    event: str
    key: bytes
    target: str = ""


class KeyspaceMark(msgspec.Struct, frozen=True, kw_only=True, tag="keyspace-mark"):
    """The keyspace link's answer to one of its marks (a PING sent on the subscribed connection at `sent`, read
    at `t`). Replies come in order with the events: once it is read, every event the server published before
    `sent` has been read too, and an event read after it was published after `sent` (the link's lag)."""

    t: float
    sent: float
    target: str = ""


class ClientSeen(msgspec.Struct, frozen=True, kw_only=True, tag="client"):
    """A connection seen in CLIENT LIST, with the local process behind it when psutil can tell."""

    t: float
    client_id: int
    addr: str
    db: int = 0
    name: str = ""
    lib: str = ""
    age: int = 0
    flags: str = ""
    cmd: str = ""
    pid: int | None = None
    process: str = ""
    cmdline: str = ""
    label: str = ""
    target: str = ""
    shared_with: tuple[int, ...] = ()  # other pids holding this same socket (inherited across a fork)


class TtlSample(msgspec.Struct, frozen=True, kw_only=True, tag="ttl"):
    t: float
    db: int
    key: bytes
    pttl: int
    target: str = ""


class Gap(msgspec.Struct, frozen=True, kw_only=True, tag="gap"):
    """An observer lost events between `t` and `until`: a hole is never silent.

    `t` is the server time of the last thing the observer received before the hole, `until` the first after it.
    `lost` is how many commands the server ran in the window, where the server tells (INFO stats; for MONITOR,
    less the lines it did deliver); None when it cannot be known (a restart resets the counts).
    """

    t: float
    source: str
    reason: str
    until: float | None = None
    target: str = ""
    lost: int | None = None


class Note(msgspec.Struct, frozen=True, kw_only=True, tag="note"):
    """Something the run did or could not do that the reader of the trace should know."""

    t: float
    level: str  # info / warning
    text: str


class ServerSeen(msgspec.Struct, frozen=True, kw_only=True, tag="server"):
    """A target's identity sampled during the run (restarts show as a new run_id or uptime reset)."""

    t: float
    target: str
    server: ServerFingerprint
    stats: dict[str, int] = {}


class Refusals(msgspec.Struct, frozen=True, kw_only=True, tag="refusals"):
    """What the server says it refused, sampled during a capture: MONITOR never shows a refused command.

    Counts are the server's own totals at `t` (INFO errorstats and commandstats), so any two samples of one
    server run give what was refused between them. `acl` holds ACL LOG entries new since the previous sample
    (each with `count`, `reason`, `object`, `username`, `client-info`...: the server says who). `suspects` are the
    connections whose last command (CLIENT LIST `cmd=`) was one the server had just refused more of. `settings`
    are the facts that explain refusals (maxmemory, maxmemory-policy, used_memory, role, replica-read-only,
    rdb_last_bgsave_status, stop-writes-on-bgsave-error), as far as the server let us read them.
    """

    t: float
    target: str = ""
    run_id: str = ""
    errors: dict[str, int] = {}  # errorstats: error code -> count
    rejected: dict[str, int] = {}  # commandstats: command -> rejected_calls (refused before it ran)
    failed: dict[str, int] = {}  # commandstats: command -> failed_calls (an error while it ran)
    acl: list[dict[str, str]] = []
    suspects: list[dict[str, str]] = []
    settings: dict[str, str] = {}
    final: bool = False  # the sample taken as the capture stopped


class WireReply(msgspec.Struct, frozen=True, kw_only=True, tag="wire-reply", gc=False):
    """What the server answered to one command read off the network (`monitor --source wire`): MONITOR shows none.

    With `--source wire` the command itself is the `Monitor` event with the same `peer` and `t` = `sent`; with
    `--source both` it is MONITOR's line for that peer (stamped with the server's clock, not the wire's): a peer's
    replies come in the order of its commands. A command the server did not run (refused before running it: OOM,
    READONLY, NOPERM, MOVED...; or its transaction was discarded) has no `Monitor` event, as MONITOR never shows
    one: `refused` holds its arguments instead.
    """

    t: float  # when the reply was complete
    sent: float  # when the command was: the `t` of its `Monitor` event
    peer: str
    db: int
    reply: Reply = None
    error: str | None = None
    latency: float = 0.0
    target: str = ""
    refused: list[bytes] = []  # the arguments of a command the server did not run
    command: list[bytes] = []  # the arguments of a read or TTL command that ran (a SET with a TTL: its name and
    # key): its reply says whether its key existed or its TTL took, read without pairing it to its `Monitor` event
    # (whose clock, with `both`, differs)
    flags: list[str] = []  # resynced (joined mid-stream: open before the capture, or after a hole), queued
    # (ran in MULTI/EXEC), db-unknown (open before the capture, no SELECT seen: `db` says 0), no-reply (none seen)


class Baseline(msgspec.Struct, frozen=True, kw_only=True, tag="baseline"):
    """What existed in one db when the capture began (after MONITOR was attached): SCAN plus TYPE/PTTL, read-only
    and bounded. A key it covers but lacks did not exist; a key it does not cover has an unknown state.

    `t` is when the scan began, `until` when it ended: each key's state is as of a moment in between. `peer` is the
    scanning connection as MONITOR names it: its own SCAN/TYPE/PTTL lines are not the application's.
    """

    t: float
    until: float
    db: int
    keys: list[bytes]
    types: list[str]  # per key; "none" when it went between SCAN and TYPE
    expires_at: list[float | None]  # per key: our clock after its PTTL reply plus the PTTL; None without a TTL
    patterns: list[str] = []  # what it covers: [] is every key
    complete: bool = True  # every key the patterns match is in `keys` (False: cut by a bound)
    reason: str = ""  # why it is not complete
    peer: str = ""
    target: str = ""


class PeerSeen(msgspec.Struct, frozen=True, kw_only=True, tag="peer"):
    """A connection to the watched server the kernel's socket table showed, with its process: found between two
    CLIENT LIST samples, so a connection that comes and goes in 50 ms (a forked job, a one-shot script) still has
    a pid. `addr` is the client's address as MONITOR names it."""

    t: float
    addr: str
    pid: int
    process: str = ""
    cmdline: str = ""
    label: str = ""
    target: str = ""
    shared_with: tuple[int, ...] = ()


class Topology(msgspec.Struct, frozen=True, kw_only=True, tag="topology"):
    """A cluster node's role: each node's at capture start, then every change seen (a failover, a node that joined
    or left). The fold reads a replica's MONITOR by it (lines from `primary` are the replication stream) and ends
    the lives a failover lost; `since` is the previous look at the cluster: the change happened in between."""

    t: float
    target: str  # the node's label
    role: str  # primary / replica / gone
    primary: str = ""  # a replica's primary, host:port
    text: str = ""  # the change as said ("" for the roles at capture start)
    since: float | None = None
    clock_offset: float = 0.0  # the node's clock minus ours, in seconds (TIME): its MONITOR times less this are ours
    clock_uncertainty: float = 0.0  # how far off that measure may be (half its round trip)


class Replication(msgspec.Struct, frozen=True, kw_only=True, tag="replication"):
    """A primary's replication offset and each replica's acknowledged one (INFO replication), sampled during a
    cluster capture: the gap is how far behind a replica read was."""

    t: float
    target: str  # the primary's label
    offset: int
    replicas: dict[str, int] = {}  # replica host:port -> its offset


Event = (
    ActorStarted | Op | Check | Inspect | ActorExited | Monitor | Keyspace | KeyspaceMark | ClientSeen
    | TtlSample | Gap | Note | ServerSeen | Refusals | WireReply | Baseline | PeerSeen
    | Topology | Replication
)
Recorded = Event | MonitorLines
"""What a `TraceWriter` takes: events, and MONITOR lines still unparsed."""

Stored = Event | MonitorLinesV1
"""What a JSON line of a saved trace holds (but for the `MonitorRaw` line before each raw MONITOR block)."""


def jsonable_reply(value: Any) -> Reply:
    """A Redis reply as plain JSON data: bytes become text (undecodable bytes escaped), errors their message."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list | tuple | set):
        return [jsonable_reply(item) for item in value]
    if isinstance(value, dict):
        return {str(jsonable_reply(k)): jsonable_reply(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)
