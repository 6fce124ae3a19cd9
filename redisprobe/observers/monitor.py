"""A MONITOR capture that keeps up with a loaded server.

A slow MONITOR reader does not slow the server down: the server buffers our output instead, without limit by
default, and we fall seconds behind (redis-py's `Monitor` parses ~60k lines/s). So the reading is done by a
child process of its own (`python -m redisprobe.observers.monitor`) that does nothing but append the raw bytes
it receives to a spool file, with big receive buffers and no parsing; capture speed is then bounded by the
socket, like `redis-cli monitor`. The parent hands the spooled lines on unparsed, as `trace.MonitorLines`
blocks, a bounded number at a time (the rest waits on disk: memory stays flat however many commands go by):
parsing costs microseconds a line, CPU that on a loaded server is taken from the server itself, so it waits
until the trace is read.

The spool is a series of files: every `_ROTATE_BYTES` the reader writes a `rotate` status line naming the next
file, as the last line of the current one, and goes on there; the parent follows it and deletes the file it
has read, so a long capture does not keep a second copy of the trace on disk.

Spool format: complete MONITOR lines (`+<time> [<db> <peer>] "arg" ...\\r\\n`) exactly as the server sent them,
interleaved with the reader's own status lines `!{json}\\r\\n` (never confused with MONITOR lines, which always
start with `+`). The reader writes only whole lines, so a connection lost mid-line leaves no fragment behind.
When the connection is lost (CLIENT KILL, restart, output buffer limit, network) the reader says so, reconnects
with backoff and goes on; the parent turns that into a `trace.Gap` covering the time in between.

Credentials reach the child on stdin as JSON, never in argv (argv is world-readable in /proc).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from redisprobe import procs, trace
from redisprobe.errors import ConnectionProblem, ProbeError
from redisprobe.monitor_parse import (
    MonitorParseError,
    last_line_start,
    line_time,
    parse_monitor_line,
)
from redisprobe.observers.commandcount import monitor_hidden, shown_commands, shown_in_info
from redisprobe.target import connect_timeout

if TYPE_CHECKING:  # the reader child must not pay for importing redis-py (0.3 s, 12 MB)
    import redis

    from redisprobe.target import Target

CONNECTION_NAME = "redisprobe:observer:monitor"
FENCE_NAME = "redisprobe:observer:monitor-fence"
FENCE_PREFIX = b"redisprobe:fence:"
_FENCE_NAME = FENCE_NAME.encode()
_FENCE_WORD = b"fence"
_FENCE_WORD_AT = (FENCE_PREFIX.index(_FENCE_WORD), _FENCE_NAME.index(_FENCE_WORD))
SOURCE = "monitor"

_RECV_BUFFER = 4 << 20  # the reader's receive buffer (grows for a longer line)
_SOCKET_RCVBUF = 4 << 20  # asked of the kernel (capped by net.core.rmem_max)
_READ_BLOCK = 1 << 20  # the parent reads the spool this much at a time
_ROTATE_BYTES = 64 << 20  # the reader starts a new spool file after this much; the parent deletes read ones
_RETRY_MAX = 1.0  # reconnect backoff cap, seconds
_RESPAWN_EVERY = 1.0  # at most one reader respawn per this many seconds
SPOOL_FAILED = 3  # the reader's exit code when it cannot write its spool
_READER_START = 10.0  # seconds allowed for the reader process to start (Python on a loaded 2-core machine)
_MARK_EVERY = 1.0  # seconds between marks: the server's command count, pinned to a place in the stream
_MARK_PREFIX = FENCE_PREFIX + b"mark:"
_MARKS_KEPT = 16


@dataclass
class MonitorStats:
    """What the capture has done so far (for the run summary and the benchmark)."""

    lines: int = 0  # MONITOR lines read from the spool (fences excluded)
    bytes: int = 0  # spool bytes read
    reconnects: int = 0  # times the reader lost MONITOR and got it back
    rotations: int = 0  # spool files read to the end and deleted
    reader_restarts: int = 0  # times the reader process died and was started again
    gaps: int = 0  # Gap events emitted


@dataclass(frozen=True)
class _Fence:
    """Where a fence ECHO was seen in the stream (internal: never returned)."""

    token: bytes


@dataclass(frozen=True)
class _Raw:
    """Complete MONITOR lines not handed out yet."""

    data: bytes
    lines: int

    def split(self, count: int) -> tuple[_Raw, _Raw]:
        """The first `count` lines, and the rest."""
        cut = -1
        for _ in range(count):
            cut = self.data.index(b"\n", cut + 1)
        return _Raw(self.data[:cut + 1], count), _Raw(self.data[cut + 1:], self.lines - count)


Handed = trace.MonitorLines | trace.Gap


class MonitorCapture:
    """MONITOR on one target, read by a child process into a spool, handed on here unparsed.

    `poll()` and `drain()` return `trace.MonitorLines` blocks (the lines exactly as the server sent them, our
    fences taken out; `trace.expand_monitor_lines` parses one into `trace.Monitor` events) and `trace.Gap` events
    for every stretch during which MONITOR was not connected. Counts (`max_lines`, `batch`) are in lines. One
    thread at a time may call them. Use as a context manager, or call `start()` and then `stop()` in a `finally`.
    """

    def __init__(self, target: Target, spool_dir: Path, *, label: str = "", keep_spool: bool = False) -> None:
        self.target = target
        self.spool_dir = Path(spool_dir)
        self.where = f"{label} ({target.label})" if label else target.label
        self.keep_spool = keep_spool
        self.stats = MonitorStats()
        self.spool: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._label = target.label
        self._stderr: Path | None = None
        self._file: Any = None
        self._tail = b""
        self._pending: deque[_Raw | trace.Gap | _Fence] = deque()  # read, not yet handed out
        self._fence: redis.Redis | None = None
        self._started = False
        self._stopped = False
        self._monitoring = False  # the last status the reader wrote says MONITOR is on
        self._epoch = 0  # how many times MONITOR was acknowledged (fences sent before a reconnect are resent)
        self._lost: dict[str, Any] | None = None  # the reader's last "lost" status, until it reconnects
        self._fatal: dict[str, Any] | None = None
        self._last_t = 0.0  # latest time known to be covered (server time of the last line, or a status)
        self._spawned_at = 0.0
        self._stem = ""
        # Marks: every _MARK_EVERY s, `INFO stats commandstats <token>` (an unknown section name is ignored): its
        # reply is the server's command count less the admin commands MONITOR never shows, and where its line shows
        # in the stream the server had run that many; a gap's lost count is measured from there. Servers before 7.0
        # refuse it: their gaps come without a count.
        self._hidden: frozenset[str] = frozenset()  # commands the server runs but MONITOR never shows (admin)
        self._marks: dict[bytes, int] = {}  # sent, not seen yet: token -> commands processed when sent
        self._mark: tuple[int, int] | None = None  # the last mark seen: (commands processed, lines since)
        self._next_mark = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        """Check the connection, spawn the reader, and return once the server has acknowledged MONITOR (each wait
        for the server bounded by `timeout`, default `--connect-timeout`; the reader's own start on top).

        Raises `ConnectionProblem` (a `ProbeError`, one line, no secrets) on a refused connection, a wrong
        password or a user without permission for MONITOR.
        """
        if self._started:
            return
        self._started = True
        try:
            timeout = connect_timeout() if timeout is None else timeout
            self._fence = self._fence_client(timeout)  # also proves the address and the credentials
            self._hidden = monitor_hidden(self._fence)
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            stem = f"monitor-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._stem = stem
            self.spool = self.spool_dir / f"{stem}.spool"
            self._stderr = self.spool_dir / f"{stem}.stderr"
            for path in (self.spool, self._stderr):  # commands carry values: readable by us only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._file = self.spool.open("rb")
            self._spawn(retry_forever=False)
            deadline = time.monotonic() + timeout * 4 + _READER_START  # AUTH, SETNAME, INFO, MONITOR
            while not self._monitoring:
                self._read_available()
                if self._monitoring:
                    break
                if self._fatal is not None:
                    raise ConnectionProblem(self._fatal_message(self._fatal))
                assert self.proc is not None
                if self.proc.poll() is not None and not self._read_available():
                    raise ProbeError(f"the MONITOR reader for {self.where} exited at start "
                                     f"(code {self.proc.returncode}): {self._stderr_tail()}")
                if time.monotonic() > deadline:
                    raise ConnectionProblem(f"MONITOR on {self.where} was not acknowledged in time")
                time.sleep(0.005)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the reader (always reaped), close connections, remove the spool unless kept. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc is not None:
            procs.stop(self.proc)
        if self._fence is not None:
            with contextlib.suppress(Exception):
                self._fence.close()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if not self.keep_spool and self._stem:
            for path in self.spool_dir.glob(f"{self._stem}.*"):  # the stderr, the spool and any newer one
                with contextlib.suppress(OSError):
                    path.unlink()

    def abort(self) -> None:
        """Stop waiting for the server (a drain blocked on the fence connection), then `stop()`."""
        if self._fence is not None:
            with contextlib.suppress(Exception):
                self._fence.connection_pool.disconnect()
        self.stop()

    def __enter__(self) -> MonitorCapture:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """Whether, as far as the spool read so far tells, MONITOR is currently on."""
        return self._monitoring

    # -- reading ---------------------------------------------------------------------------------------------

    def poll(self, max_lines: int | None = None) -> list[Handed]:
        """What the spool gained since the last call (non-blocking; at most `max_lines` lines and gaps)."""
        if not self._started or self._stopped:
            return []
        out: list[Handed] = []
        self._watch_reader()
        self._send_mark()
        taken = 0
        while True:
            taken += self._take(out, None if max_lines is None else max_lines - taken)[1]
            if max_lines is not None and taken >= max_lines:
                return out
            if not self._read_available(once=True):
                self._take(out, None if max_lines is None else max_lines - taken)
                return out

    def drain(self, timeout: float | None = None) -> list[Handed]:
        """Everything the server executed before this call: the rest of the spool up to a fence.

        The fence is `ECHO redisprobe:fence:<uuid>` sent on a connection of our own once MONITOR is on; since
        the server runs commands one at a time and MONITOR shows them in order, seeing it in the spool proves
        that every earlier command is there too. The fence itself is never returned. If the fence does not
        show up in time, a Gap says so instead of a silent hole. `timeout` bounds the wait for progress: a long
        backlog that is being read does not time out.

        The list holds the whole unpolled backlog; `drain_batches` hands it out in bounded pieces instead.
        """
        return [event for batch in self.drain_batches(timeout) for event in batch]

    def drain_batches(self, timeout: float | None = None, batch: int = 16384) -> Iterator[list[Handed]]:
        """`drain()` in lists of at most `batch` lines and gaps, so that memory stays flat however long the backlog."""
        if not self._started or self._stopped:
            return
        timeout = connect_timeout() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        token = FENCE_PREFIX + uuid.uuid4().hex.encode()
        sent_epoch = -1
        out: list[Handed] = []
        size = 0  # lines and gaps in `out`
        while True:
            if size >= batch:
                yield out
                out, size = [], 0
                deadline = time.monotonic() + timeout
            self._watch_reader()
            # (Re)send after every MONITOR acknowledgement: a fence sent while disconnected is never seen.
            if self._monitoring and sent_epoch != self._epoch and self._send_fence(token):
                sent_epoch = self._epoch
            fenced, taken = self._take(out, batch - size, token)
            size += taken
            if fenced:
                if out:
                    yield out  # whatever follows the fence stays pending for the next poll()
                return
            if size >= batch:
                continue
            if self._read_available(once=True):
                continue
            if time.monotonic() > deadline:
                self.stats.gaps += 1
                why = "MONITOR is disconnected" if not self._monitoring else "the fence command did not show up"
                out.append(trace.Gap(t=self._last_t or time.time(), source=SOURCE, target=self._label,
                                     reason=f"could not confirm that MONITOR on {self.where} captured everything "
                                            f"within {timeout:g}s ({why}): later commands may be missing"))
                yield out
                return
            time.sleep(0.002)

    def _take(self, out: list[Handed], room: int | None, fence: bytes | None = None) -> tuple[bool, int]:
        """Move pending lines and gaps to `out`, at most `room` of them (None: all); returns (whether the `fence`
        was reached, how many were moved).

        The rest of a split block goes back on the left, so the order is kept.
        """
        pending = self._pending
        moved = 0
        while pending and (room is None or moved < room):
            item = pending.popleft()
            if isinstance(item, _Raw):
                if room is not None and item.lines > room - moved:
                    item, rest = item.split(room - moved)
                    pending.appendleft(rest)
                moved += item.lines
                out.append(trace.monitor_lines(item.data, self._label, default_t=self._last_t or None))
            elif isinstance(item, _Fence):
                if fence is not None and item.token == fence:
                    return True, moved
            else:
                out.append(item)
                moved += 1
        return False, moved

    def _read_available(self, once: bool = False) -> bool:
        """Queue the complete lines newly in the spool (`once`: one block of them); False when nothing was new."""
        got = False
        while True:
            if self._file is None:
                return got
            chunk = self._file.read(_READ_BLOCK)
            if not chunk:
                return got
            data = self._tail + chunk
            cut = data.rfind(b"\r\n") + 2
            if cut < 2:
                self._tail = data
            else:
                self._tail = data[cut:]
                self.stats.bytes += cut
                self._process(data[:cut])
            got = True
            if once and cut >= 2:
                return True

    def _process(self, data: bytes) -> None:
        """Split a block of complete lines at the reader's status lines and queue the MONITOR lines between."""
        start, size = 0, len(data)
        while start < size:
            if data[start] == 0x21:  # "!": a status line
                end = data.index(b"\r\n", start) + 2
                self._status(data[start:end])
                start = end
                continue
            mark = data.find(b"\r\n!", start)
            if mark < 0:
                self._lines(data[start:] if start else data)
                return
            self._lines(data[start:mark + 2])
            start = mark + 2

    def _lines(self, data: bytes) -> None:
        """Queue the lines as they are; only the lines holding a fence token are looked at, one by one (found with
        `bytes.find`: a block of a megabyte holds about ten thousand lines, and a mark comes every second)."""
        last = line_time(data, last_line_start(data))
        if last is not None:
            self._last_t = max(self._last_t, last)
        start = 0  # the first byte not yet queued
        for begin, end in _token_lines(data):
            fence = None
            with contextlib.suppress(MonitorParseError):
                fence = _fence_of(parse_monitor_line(data[begin:end - 2]).args)
            if fence is None:
                continue  # a user's line that happens to hold the token: queued with its neighbours
            if begin > start:
                self._queue_raw(data[start:begin])
            start = end
            processed = self._marks.pop(fence, None)
            if processed is not None:
                self._mark = (processed, 0)
                continue
            if self._mark is not None:
                self._mark = (self._mark[0], self._mark[1] + 1)
            self._pending.append(_Fence(fence))
        if start < len(data):
            self._queue_raw(data[start:] if start else data)

    def _queue_raw(self, data: bytes) -> None:
        lines = data.count(b"\n")
        self.stats.lines += lines
        if self._mark is not None:
            self._mark = (self._mark[0], self._mark[1] + lines)
        self._pending.append(_Raw(data, lines))

    def _status(self, line: bytes) -> None:
        """A status line from the reader: MONITOR acknowledged, lost, or refused for good."""
        try:
            status = json.loads(line[1:])
        except ValueError:  # never written so: say it, rather than guess what the reader meant
            self.stats.gaps += 1
            self._pending.append(trace.Gap(t=self._last_t or time.time(), source=SOURCE, target=self._label,
                                           reason=f"unreadable status from the MONITOR reader of {self.where}: "
                                                  f"{line[:80]!r}"))
            return
        event = status.get("ev")
        if event == "monitoring":
            self._monitoring = True
            self._epoch += 1
            lost, self._lost = self._lost, None
            if lost is not None:
                self.stats.reconnects += 1
                self._gap(lost, until=float(status["t"]), processed=status.get("processed"))
            self._mark = None
            self._last_t = max(self._last_t, float(status["t"]))
        elif event == "lost":
            self._monitoring = False
            if self._lost is None:
                # From the server time of the last line received, not the reader's receive time: a reader that
                # fell behind receives lines long after the server ran them, and the lost ones came after those.
                self._lost = {**status, "t": self._last_t or status.get("t"), "mark": self._mark}
        elif event == "retrying":
            if self._lost is not None:
                self._lost["last_error"] = str(status.get("text", ""))
        elif event == "rotate":
            self._rotate(Path(str(status["next"])))
        elif event == "fatal":
            self._monitoring = False
            self._fatal = status
            if self._started and self._epoch and self._lost is None:
                self._lost = {"t": self._last_t, "reason": self._fatal_message(status), "mark": self._mark}

    def _rotate(self, following: Path) -> None:
        """The reader moved on to `following`: this file is read to its end (the status was its last line)."""
        if following.parent != self.spool_dir or not following.name.startswith(self._stem):
            raise ProbeError(f"the MONITOR reader named an unexpected spool file: {following}")
        with contextlib.suppress(FileExistsError):  # a reader killed right after saying so: start it ourselves
            os.close(os.open(following, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        previous, self.spool = self.spool, following
        self._file.close()
        self._file = following.open("rb")
        self.stats.rotations += 1
        if previous is not None and not self.keep_spool:
            with contextlib.suppress(OSError):
                previous.unlink()

    def _gap(self, lost: dict[str, Any], until: float | None, processed: object = None) -> None:
        self.stats.gaps += 1
        reason = str(lost.get("reason", "MONITOR connection lost"))
        dropped = int(lost.get("dropped", 0) or 0)
        if dropped:
            reason += f" (a partial line of {dropped} bytes was dropped)"
        if lost.get("last_error"):
            reason += f"; reconnecting failed for a while: {lost['last_error']}"
        missed = lost_commands(lost.get("mark"), processed)
        if missed is not None:
            reason += (f"; the server ran {missed:,} commands meanwhile that MONITOR did not deliver (INFO stats and "
                       "commandstats, less the admin commands MONITOR never shows)")
        self._pending.append(trace.Gap(t=float(lost.get("t") or self._last_t or time.time()), until=until,
                                       source=SOURCE, target=self._label, lost=missed,
                                       reason=f"MONITOR on {self.where}: {reason}"))

    # -- the reader process ----------------------------------------------------------------------------------

    def _spawn(self, *, retry_forever: bool) -> None:
        assert self.spool is not None and self._stderr is not None
        config = {
            "target": dataclasses.asdict(self.target),
            "spool": str(self.spool),
            "rotate_bytes": _ROTATE_BYTES,
            "name": CONNECTION_NAME,
            "retry_forever": retry_forever,
            "timeout": connect_timeout(),
            "hidden": sorted(self._hidden),
        }
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # so `-m` finds this package even when not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        with self._stderr.open("ab") as errors:
            self.proc = procs.spawn([sys.executable, "-m", "redisprobe.observers.monitor"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=errors, env=env, close_fds=True)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(config).encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: reported by whoever waits for it
        self._spawned_at = time.monotonic()

    def _watch_reader(self) -> None:
        """Restart a reader that died (after reading all it wrote); the time without one becomes a Gap."""
        if self.proc is None or self._stopped or self.proc.poll() is None:
            return
        while self._read_available():
            pass
        if self.proc.returncode == SPOOL_FAILED:  # a new reader would fail the same way
            raise ProbeError(f"{self._stderr_tail()} (in {self.spool_dir}; see $TMPDIR)")
        if time.monotonic() - self._spawned_at < _RESPAWN_EVERY:
            return
        if self._lost is None:
            self._lost = {"t": self._last_t or time.time(), "mark": self._mark,
                          "reason": f"the MONITOR reader process exited (code {self.proc.returncode}): "
                                    f"{self._stderr_tail()}"}
        self._monitoring = False
        self.stats.reader_restarts += 1
        self._fatal = None
        self._spawn(retry_forever=True)

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            if self._stderr is not None:
                lines = [x for x in self._stderr.read_text(errors="replace").splitlines() if x.strip()]
                if lines:
                    return lines[-1].strip()
        return "no error output"

    def _fatal_message(self, status: dict[str, Any]) -> str:
        """The reader's refusal in the words `describe_redis_error` uses for every other connection."""
        import redis.exceptions as rex

        from redisprobe.target import describe_redis_error

        text = str(status.get("text", "unknown error"))
        kind = status.get("kind")
        exc: BaseException
        if kind == "resp":
            exc = rex.ResponseError(text)
        elif kind == "timeout":
            exc = rex.TimeoutError(text)
        else:
            exc = rex.ConnectionError(text)
        message = describe_redis_error(exc, self.target)
        if kind == "resp" and "NOPERM" in text:
            message += " (redisprobe needs MONITOR: e.g. ACL SETUSER <user> +monitor)"
        return message

    # -- the fence connection --------------------------------------------------------------------------------

    def _fence_client(self, timeout: float) -> redis.Redis:
        import redis.exceptions as rex
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from redisprobe.target import describe_redis_error

        # RESP2: a reconnect then shows only CLIENT SETNAME (filtered out) in MONITOR, not HELLO too.
        # No retries inside redis-py (its backoff would stall start() and drain() for seconds): drain() resends.
        client = self.target.connect(name=FENCE_NAME, timeout=timeout, protocol=2,
                                     retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
        except (rex.RedisError, OSError) as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise ConnectionProblem(describe_redis_error(exc, self.target)) from None
        return client

    def _send_mark(self) -> None:
        """Every _MARK_EVERY s while MONITOR is on: the server's command count, then a token in the stream."""
        now = time.monotonic()
        if not self._monitoring or self._fence is None or now < self._next_mark:
            return
        self._next_mark = now + _MARK_EVERY
        token = _MARK_PREFIX + uuid.uuid4().hex.encode()
        try:
            reply = self._fence.execute_command("INFO", "stats", "commandstats", token)
            self._marks[token] = shown_in_info(reply, self._hidden)
        except Exception:  # a mark is a bonus: without one, a gap's count is unknown, its window still right
            return
        while len(self._marks) > _MARKS_KEPT:  # tokens sent while MONITOR was away never show up
            self._marks.pop(next(iter(self._marks)))

    def _send_fence(self, token: bytes) -> bool:
        if self._fence is None:
            return False
        try:
            self._fence.execute_command("ECHO", token)
        except Exception:  # retried on the next round; a Gap on timeout
            return False
        return True


def lost_commands(mark: object, processed: object) -> int | None:
    """How many commands the server ran between the last mark seen before a loss and the reconnection that MONITOR
    did not deliver: INFO's count at reconnection, less the count at the mark, the mark itself, and the lines
    delivered after it. None without a mark, or when the count went down (a restart resets it)."""
    if not isinstance(mark, tuple) or not isinstance(processed, int):
        return None
    at_mark, delivered = mark
    missed = processed - at_mark - 1 - delivered
    return missed if processed >= at_mark else None


def _token_lines(data: bytes) -> list[tuple[int, int]]:
    """(start, end after its CRLF) of each line of a block of complete lines that holds a fence token or the fence
    connection's name, in order."""
    found: list[tuple[int, int]] = []
    at = data.find(_FENCE_WORD)  # one pass for both tokens: each holds the word
    while at >= 0:
        prefix_at, name_at = at - _FENCE_WORD_AT[0], at - _FENCE_WORD_AT[1]
        if (prefix_at >= 0 and data.startswith(FENCE_PREFIX, prefix_at)) or (
                name_at >= 0 and data.startswith(_FENCE_NAME, name_at)):
            begin = data.rfind(b"\r\n", 0, at) + 2
            begin = 0 if begin == 1 else begin  # no CRLF before it: the block's first line
            end = data.index(b"\r\n", at) + 2
            found.append((begin, end))
            at = data.find(_FENCE_WORD, end)
        else:
            at = data.find(_FENCE_WORD, at + 1)
    return found


def _fence_of(args: list[bytes]) -> bytes | None:
    """Our fence ECHOs and marks, and the fence connection naming itself again after a reconnect, are not the
    user's: the fence or mark token (b"" for the renaming), or None for a user's command."""
    if len(args) == 2 and args[1].startswith(FENCE_PREFIX) and args[0].upper() in (b"ECHO", b"PING"):
        return args[1]
    if len(args) == 3 and args[2] == _FENCE_NAME and args[0].upper() == b"CLIENT":
        return b""
    if len(args) in (3, 4) and args[-1].startswith(FENCE_PREFIX) and args[0].upper() == b"INFO":
        return args[-1]
    return None


# -- the reader child --------------------------------------------------------------------------------------------


class _Refused(Exception):
    """The server answered our handshake with an error (wrong password, NOPERM...)."""


class _Spool:
    """The file the reader appends to, moved on to a new one (`<path>.1`, `.2`...) every `rotate_bytes`."""

    def __init__(self, path: str, rotate_bytes: int) -> None:
        base, _, number = path.rpartition(".")
        self.base, self.number = (base, int(number)) if number.isdigit() else (path, 0)
        self.rotate_bytes = rotate_bytes
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        """Whole lines only, so that a rotation never splits one."""
        _write_all(self.fd, data)
        self.written += len(data)
        if self.written >= self.rotate_bytes:
            self.rotate()

    def status(self, **status: Any) -> None:
        _write_all(self.fd, b"!" + json.dumps(status).encode() + b"\r\n")

    def rotate(self) -> None:
        self.number += 1
        following = f"{self.base}.{self.number}"
        fd = os.open(following, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.status(ev="rotate", next=following)  # the last line of the old file: the parent moves on after it
        os.close(self.fd)
        self.fd, self.written = fd, 0


class _SpoolFailed(Exception):
    """The spool cannot be written (disk full, file too large): nothing the reader can do about it."""


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        raise _SpoolFailed(exc.strerror or str(exc)) from None


def _connect(target: dict[str, Any], name: str, timeout: float,
             hidden: frozenset[str] = frozenset()) -> tuple[socket.socket, bytes, int | None]:
    """Open the connection, authenticate, name it, read the server's command count, and send MONITOR; returns the
    socket, the bytes after +OK, and the count of commands run that MONITOR shows, just before MONITOR (None if
    refused)."""
    if target.get("unix_path"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(target["unix_path"])
        except BaseException:
            sock.close()
            raise
    else:
        host = target.get("host") or "localhost"
        sock = socket.create_connection((host, target.get("port") or 6379), timeout=timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        if target.get("tls"):
            import ssl

            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_RCVBUF)
    try:
        buffered = b""
        if target.get("password") is not None:
            words = ["AUTH"] + ([target["username"]] if target.get("username") else []) + [target["password"]]
            reply, buffered = _command(sock, words, buffered)
            if not reply.startswith(b"+"):
                raise _Refused(reply[1:].decode("utf-8", "replace"))
        reply, buffered = _command(sock, ["CLIENT", "SETNAME", name], buffered)  # refusal is harmless
        reply, buffered = _command(sock, ["INFO", "stats", "commandstats"], buffered)
        processed = None
        if reply.startswith(b"$"):
            body, buffered = _bulk(sock, int(reply[1:]), buffered)
            processed = shown_commands(body, hidden)
        reply, buffered = _command(sock, ["MONITOR"], buffered)
        if not reply.startswith(b"+"):
            raise _Refused(reply[1:].decode("utf-8", "replace"))
        sock.settimeout(None)  # an idle server sends nothing for hours; keepalive notices a dead peer
        return sock, buffered, processed
    except BaseException:
        sock.close()
        raise


def _command(sock: socket.socket, words: list[str], buffered: bytes) -> tuple[bytes, bytes]:
    """Send one command as RESP and read a one-line reply (all our handshake gets back)."""
    encoded = [word.encode() for word in words]
    sock.sendall(b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded))
    while b"\r\n" not in buffered:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("connection closed by the server during the handshake")
        buffered += more
    line, _, rest = buffered.partition(b"\r\n")
    return line, rest


def _bulk(sock: socket.socket, size: int, buffered: bytes) -> tuple[bytes, bytes]:
    """The body of a bulk reply of `size` bytes (its header line already read), and the bytes after it."""
    while len(buffered) < size + 2:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("connection closed by the server during the handshake")
        buffered += more
    return buffered[:size], buffered[size + 2:]


def _pump(sock: socket.socket, spool: _Spool, leftover: bytes) -> tuple[str, float, int]:
    """Append whole lines to the spool until the connection ends; returns (why, last receive time, dropped)."""
    buf = bytearray(max(_RECV_BUFFER, len(leftover) * 2))
    buf[:len(leftover)] = leftover
    filled = len(leftover)
    last_rx = time.time()
    view = memoryview(buf)
    try:
        scanned = 0  # buf[:scanned] holds no newline: search only the bytes just received
        while True:
            cut = buf.rfind(b"\n", scanned, filled) + 1
            if cut:
                spool.write(view[:cut])
                rest = filled - cut
                if rest:
                    buf[:rest] = bytes(view[cut:filled])
                filled = rest
            scanned = filled
            if filled == len(buf):  # one line longer than the buffer (a big value): grow
                view.release()
                buf.extend(bytes(len(buf)))
                view = memoryview(buf)
            try:
                received = sock.recv_into(view[filled:])
            except OSError as exc:
                return f"MONITOR connection lost: {exc.strerror or exc}", last_rx, filled
            if not received:
                return ("MONITOR connection closed by the server (CLIENT KILL, restart, timeout or "
                        "client-output-buffer-limit)"), last_rx, filled
            last_rx = time.time()
            filled += received
    finally:
        view.release()


def _describe(exc: BaseException) -> tuple[str, str]:
    """(kind, text) of a handshake failure, for the parent to phrase."""
    if isinstance(exc, _Refused):
        return "resp", str(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout", "timed out"
    if isinstance(exc, OSError):
        return "os", (exc.strerror or str(exc))
    return "os", str(exc) or type(exc).__name__


def reader_main() -> int:
    """The child: connect, MONITOR, spool; on loss write a status line, reconnect with backoff, repeat."""
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when we stop (it drains
    # first), so ignore it. SIGTERM (procs.stop, or the parent's death) ends us at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    try:
        return _read_forever(config)
    except _SpoolFailed as exc:
        sys.stderr.write(f"cannot write the MONITOR spool: {exc}\n")
        return SPOOL_FAILED


def _read_forever(config: dict[str, Any]) -> int:
    target, name = config["target"], config["name"]
    spool = _Spool(config["spool"], int(config.get("rotate_bytes") or _ROTATE_BYTES))
    retry_forever = bool(config.get("retry_forever"))
    timeout = float(config.get("timeout") or 10)
    hidden = frozenset(config.get("hidden") or ())
    first = True
    delay = 0.05
    last_error = ""
    while True:
        try:
            sock, leftover, processed = _connect(target, name, timeout, hidden)
        except Exception as exc:  # every failure is reported or retried
            kind, text = _describe(exc)
            if first and not retry_forever:
                spool.status(ev="fatal", t=time.time(), kind=kind, text=text)
                return 2
            if text != last_error:
                last_error = text
                spool.status(ev="retrying", t=time.time(), kind=kind, text=text)
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)
            continue
        spool.status(ev="monitoring", t=time.time(), reconnect=not first, processed=processed)
        first, delay, last_error = False, 0.05, ""
        try:
            reason, last_rx, dropped = _pump(sock, spool, leftover)
        finally:
            sock.close()
        spool.status(ev="lost", t=last_rx, at=time.time(), reason=reason, dropped=dropped)


if __name__ == "__main__":
    sys.exit(reader_main())
