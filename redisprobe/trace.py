"""The one data model: typed trace events, written as JSON lines as they happen and loaded back strictly.

Every producer (actors, observers, a saved file) yields these events; every answer is computed from them.
msgspec gives frozen typed structs, tagged unions and a JSON codec fast enough for the MONITOR path.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from redisprobe import __version__
from redisprobe.errors import TraceFormatError

TRACE_FORMAT = 1
"""Format 1 has only grown: new event types and new fields with defaults, so a trace written by any earlier
release reads as it was (traces from the first releases are kept as test data: the `compat-*` files of the golden
corpus, each named after the commit that wrote it). A change that is not additive (a field renamed or given a new
meaning) bumps this number and comes with an upgrade from the previous format in `read_trace`, tested on those
files."""
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


class MonitorLines(msgspec.Struct, frozen=True, kw_only=True, tag="monitor-lines"):
    """A block of MONITOR lines exactly as the server printed them, stored unparsed.

    A live capture copies what MONITOR sends into the trace instead of parsing it: parsing costs microseconds a
    line, and on a loaded server that CPU is taken from the server itself. Readers of the trace never see this
    record: `read_trace` (and a `TraceWriter` that keeps events or has listeners) turns it into one `Monitor`
    per line, and a line that does not parse into a `Gap` where it was.
    """

    t: float  # server time of the first line
    until: float  # of the last line
    lines: str  # complete CRLF-terminated lines, Latin-1 decoded: each character is one byte the server sent
    target: str = ""


class Keyspace(msgspec.Struct, frozen=True, kw_only=True, tag="keyspace"):
    """A keyspace notification, stamped on receipt (the server gives no time and no client)."""

    t: float
    db: int
    event: str
    key: bytes
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


Event = (
    ActorStarted | Op | Check | Inspect | ActorExited | Monitor | Keyspace | ClientSeen
    | TtlSample | Gap | Note | ServerSeen | Refusals | WireReply | Baseline | PeerSeen
)
Recorded = Event | MonitorLines
"""What a `TraceWriter` takes: events, and MONITOR lines still unparsed."""

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_stored_decoder = msgspec.json.Decoder(Recorded)
_BLOCK_TAG = b'"monitor-lines"'


def encode(event: Header | Recorded) -> bytes:
    """One JSON line (with its newline)."""
    return _encoder.encode(event) + b"\n"


def decode_event(line: bytes | str) -> Event:
    """The inverse of `encode` for events (children stream these to their parent)."""
    return _event_decoder.decode(line)


def monitor_lines(data: bytes, target: str = "", default_t: float | None = None) -> MonitorLines:
    """Complete CRLF-terminated MONITOR lines as one trace record, times read off the first and last line only.

    `default_t` stands for a time no line gives (every line malformed); by default, now.
    """
    from redisprobe.monitor_parse import last_line_start, line_time

    first, last = line_time(data), line_time(data, last_line_start(data))
    t = first if first is not None else last if last is not None else \
        time.time() if default_t is None else default_t
    until = t if last is None else max(t, last)
    return MonitorLines(t=t, until=until, lines=data.decode("latin-1"), target=target)


def expand_monitor_lines(block: MonitorLines) -> list[Monitor | Gap]:
    """One `Monitor` per line of the block; lines that do not parse become one `Gap` each run, where they were."""
    from redisprobe.monitor_parse import parse_complete_lines

    target = block.target

    def make(ts: float, db: int, peer: str, args: list[bytes]) -> Monitor:
        return Monitor(t=ts, db=db, peer=peer, args=args, target=target)

    data = block.lines.encode("latin-1")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    errors: list[tuple[bytes, str]] = []
    events: list[Monitor | Gap] = list(parse_complete_lines(data, make, errors))
    if errors:
        events = _expand_line_by_line(data, make, block)
    return events


def _expand_line_by_line(data: bytes, make: Any, block: MonitorLines) -> list[Monitor | Gap]:
    """The rare block with a bad line: parse line by line so that each run of bad lines is a Gap in its place."""
    from redisprobe.monitor_parse import MonitorParseError, parse_monitor_line

    out: list[Monitor | Gap] = []
    bad: list[str] = []
    last_t = block.t

    def close_run() -> None:
        out.append(Gap(t=last_t, until=last_t, source="monitor", target=block.target,
                       reason=f"{len(bad)} MONITOR line(s) from {block.target or 'the server'} could not be "
                              f"parsed; first: {bad[0]}"))
        bad.clear()

    for raw in data.split(b"\r\n")[:-1]:
        try:
            line = parse_monitor_line(raw)
        except MonitorParseError as exc:
            bad.append(str(exc))
            continue
        if bad:
            close_run()
        last_t = line.ts
        out.append(make(line.ts, line.db, line.peer, line.args))
    if bad:
        close_run()
    return out


def _expanded(records: Sequence[Recorded]) -> list[Event]:
    out: list[Event] = []
    for record in records:
        if type(record) is MonitorLines:
            out.extend(expand_monitor_lines(record))
        else:
            out.append(record)  # type: ignore[arg-type]
    return out


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


def _encode_shown(record: Header | Recorded) -> bytes:
    """`encode`, with URL passwords hidden in what people write (notes, errors, targets, the command line).

    Commands are stored as the server saw them (MONITOR already hides AUTH and HELLO secrets)."""
    line = encode(record)
    if type(record) is MonitorLines or type(record) is Monitor or type(record) is Op:
        return line
    from redisprobe.target import redact

    return redact(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


class TraceWriter:
    """Appends events to a file as they happen (flushed per event) and keeps them for this run's analysis.

    Thread-safe: actor pipes and observers emit from their own threads; one owner writes.
    """

    def __init__(self, path: Path | None, header: Header, *, keep: bool = True) -> None:
        self.path = path
        self.header = header
        self.events: list[Event] = []
        self._keep = keep
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._listeners: list[Any] = []
        self._raw_listeners: list[Any] = []
        self.transform: Any = None  # e.g. value redaction, applied before anything is kept or written
        self.failed: TraceFormatError | None = None  # the write that failed (disk full...): see `check()`
        if path is not None:
            try:
                self._file = path.open("wb")
            except OSError as exc:
                raise TraceFormatError(f"cannot write the trace {str(path)!r}: {exc.strerror}") from None
            self._write(_encode_shown(header))
            self.check()

    def subscribe(self, listener: Any, *, raw: bool = False) -> None:
        """Call `listener(event)` for every event emitted from now on (under the writer's lock).

        `raw=True`: MONITOR lines come as the `MonitorLines` blocks they were emitted as, for a listener that
        parses only what it needs (the live timeline of a busy server).
        """
        (self._raw_listeners if raw else self._listeners).append(listener)

    def emit(self, event: Recorded) -> None:
        self.emit_many([event])

    def emit_many(self, records: Sequence[Recorded]) -> None:
        """Emit a batch with one flush: the MONITOR path sends thousands at once.

        `MonitorLines` blocks go to the file as they are; whoever needs events (the kept list, listeners, a
        transform) gets them parsed, so a capture with none of these never parses a line.
        """
        if not records:
            return
        stored: Sequence[Recorded] = records
        events: Sequence[Event] = records  # type: ignore[assignment]
        if any(type(r) is MonitorLines for r in records) and \
                (self._keep or self._listeners or self.transform is not None):
            events = _expanded(records)
        if self.transform is not None:  # what is stored is what is shown: redacted events, never raw lines
            stored = events = [self.transform(e) for e in events]
        with self._lock:
            if self._keep:
                self.events.extend(events)
            if self._file is not None:
                self._write(b"".join(map(_encode_shown, stored)))
            for listener in self._listeners:
                for event in events:
                    listener(event)
            for listener in self._raw_listeners:
                for record in stored:
                    listener(record)

    def _write(self, data: bytes) -> None:
        """Write and flush; a failure (disk full, file too large) stops the writing and is kept for `check()`:
        observers write from their own threads, where raising would only end the thread."""
        assert self._file is not None
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self.failed = TraceFormatError(f"cannot write the trace {str(self.path)!r}: {exc.strerror}")
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def check(self) -> None:
        """Raise the one-line error of a write that failed, if one did (call from the main thread)."""
        if self.failed is not None:
            raise self.failed

    def note(self, text: str, level: str = "info") -> None:
        self.emit(Note(t=time.time(), level=level, text=text))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_trace(path: Path) -> tuple[Header, Iterator[Event]]:
    """Open a saved trace: the header now (so format problems surface at once), events as a stream.

    A truncated last line (the writer was killed mid-write) is skipped; any other bad line is an error
    naming the file and line.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TraceFormatError(f"cannot read trace {str(path)!r}: {exc.strerror}") from None
    first = handle.readline()
    header = _read_header(path, first)

    def events() -> Iterator[Event]:
        with handle:
            lineno = 1  # lines before this block
            for block in line_blocks(handle):
                # a last line without its newline: a torn final write, or a whole event
                yield from _decode_lines(path, block, lineno, last=not block.endswith(b"\n"))
                lineno += block.count(b"\n")

    return header, events()


def line_blocks(handle: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """A file as blocks of whole lines (each ends with a newline), about `size` bytes at a time; then what follows
    the last newline, if it is more than whitespace (a line cut short, or the last one written without it)."""
    rest = b""
    while True:
        block = handle.read(size)
        if not block:
            if rest.strip():
                yield rest
            return
        data = rest + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]


def _decode_lines(path: Path, data: bytes, lineno: int, *, last: bool) -> list[Event]:
    """The events of whole lines (one msgspec call for the block); line by line only to name a bad line.

    `last`: `data` is the end of the file without a final newline; if it does not decode it is a torn write,
    tolerated (a killed writer), and skipped.
    """
    records: list[Recorded]
    try:
        records = _stored_decoder.decode_lines(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        records = []
        for offset, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append(_stored_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if last:
                    break  # the torn final write
                raise TraceFormatError(f"{path}:{lineno + offset}: malformed trace line: {exc}") from None
    if _BLOCK_TAG in data:
        return _expanded(records)
    return records  # type: ignore[return-value]


def _read_header(path: Path, first: bytes) -> Header:
    try:
        raw = msgspec.json.decode(first) if first.strip() else None
    except msgspec.DecodeError:
        raw = None
    if not isinstance(raw, dict) or raw.get("magic") != MAGIC:
        raise TraceFormatError(f"{path}: not a redisprobe trace (no header line)")
    version = raw.get("format")
    if not isinstance(version, int) or version > TRACE_FORMAT:
        raise TraceFormatError(
            f"{path}: trace format {version} is newer than this redisprobe understands ({TRACE_FORMAT});"
            " please upgrade redisprobe"
        )
    try:
        return msgspec.convert(raw, Header)
    except msgspec.ValidationError as exc:
        raise TraceFormatError(f"{path}:1: malformed trace header: {exc}") from None


REORDER_WINDOW = 5.0
"""Seconds by which events may reach the trace out of time order: observers write from their own threads
(keyspace events at once, MONITOR lines after the spool is parsed), so the file is only nearly sorted."""


def time_ordered(events: Iterator[Event] | list[Event], window: float = REORDER_WINDOW) -> Iterator[Event]:
    """Events in time order, streaming: a buffer holds `window` seconds of events (memory stays small).

    Exactly a heap of (t, arrival) released once `window` older than the newest event, but while events
    arrive in order (the usual case) the buffer is a plain FIFO; the heap is only built for out-of-order runs.
    """
    import heapq
    from collections import deque

    heappush, heappop = heapq.heappush, heapq.heappop
    fifo: deque[Event] = deque()  # sorted by (t, arrival): events came in order
    append, popleft = fifo.append, fifo.popleft
    heap: list[tuple[float, int, Event]] | None = None  # out-of-order mode
    index = 0
    last = float("-inf")  # t of the newest event in `fifo`
    newest = float("-inf")
    for event in events:
        t = event.t
        if t > newest:  # max(newest, t), without the call
            newest = t
        if heap is None:
            if not fifo or t >= last:
                append(event)
                last = t
                limit = newest - window
                while fifo and fifo[0].t < limit:
                    yield popleft()
                continue
            heap = [(e.t, n, e) for n, e in enumerate(fifo)]  # sorted, so already a heap
            index = len(heap)
            fifo.clear()
        heappush(heap, (t, index, event))
        index += 1
        limit = newest - window
        while heap and heap[0][0] < limit:
            yield heappop(heap)[2]
        if not heap:
            heap = None
    if heap is not None:
        while heap:
            yield heappop(heap)[2]
    else:
        while fifo:
            yield popleft()


def load_trace(path: Path) -> tuple[Header, list[Event]]:
    """The whole trace in memory (small traces: isolation, info)."""
    header, stream = read_trace(path)
    return header, list(stream)
