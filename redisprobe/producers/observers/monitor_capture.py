"""A MONITOR capture that keeps up with a loaded server.

A slow MONITOR reader does not slow the server down: the server buffers our output instead, without limit by
default, and we fall seconds behind (redis-py's `Monitor` parses ~60k lines/s). So the reading is done by a
child process of its own (`observers/monitorreader.py`) that does nothing but append the raw bytes
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

from redisprobe import trace
from redisprobe.errors import ConnectionProblem, ProbeError
from redisprobe.producers import procs
from redisprobe.producers.observers.commandcount import monitor_hidden, shown_in_info
from redisprobe.producers.observers.monitorfence import FENCE_NAME, FENCE_PREFIX, _fence_of, _token_lines, lost_commands
from redisprobe.producers.observers.monitorreader import ROTATE_BYTES, SPOOL_FAILED
from redisprobe.targets.url import connect_timeout
from redisprobe.trace.monitor_text import (
    MonitorParseError,
    last_line_start,
    line_time,
    parse_monitor_line,
)

if TYPE_CHECKING:  # the reader child must not pay for importing redis-py (0.3 s, 12 MB)
    import redis

    from redisprobe.targets.url import Target

CONNECTION_NAME = "redisprobe:observer:monitor"
SOURCE = "monitor"

_READ_BLOCK = 1 << 20  # the parent reads the spool this much at a time
_ROTATE_BYTES = ROTATE_BYTES  # the reader starts a new spool file after this much (tests make it smaller)
_RESPAWN_EVERY = 1.0  # at most one reader respawn per this many seconds
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

    BLIND_SPOT = ("commands the server refuses before running them (OOM, READONLY, NOPERM), the admin commands it "
                  "never shows, and keys that expire or are evicted: no command does that")

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

    def pump(self) -> list[Handed]:
        """What the capture must write into the trace now: the spool's new lines and gaps (`poll`)."""
        return self.poll()

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
            # A status line is rare and "!" rarer still in MONITOR's output: memchr finds the first "!" (or none)
            # far faster than a search for the three bytes that begin a status line, which starts from there
            bang = data.find(b"!", start)
            mark = -1 if bang < 0 else data.find(b"\r\n!", max(start, bang - 2))
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
            reader = "redisprobe.producers.observers.monitorreader"
            self.proc = procs.spawn([sys.executable, "-m", reader], stdin=subprocess.PIPE,
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

        from redisprobe.targets.url import describe_redis_error

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

        from redisprobe.targets.url import describe_redis_error, ping

        # RESP2: a reconnect then shows only CLIENT SETNAME (filtered out) in MONITOR, not HELLO too.
        # No retries inside redis-py (its backoff would stall start() and drain() for seconds): drain() resends.
        client = self.target.connect(name=FENCE_NAME, timeout=timeout, protocol=2,
                                     retry=Retry(NoBackoff(), 0))
        try:
            ping(client)
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
