"""Keyspace notifications: what the server actually did to each key.

MONITOR shows commands but no replies; only these events say that an EXPIRE took effect, that a key expired or
was evicted. They are pub/sub, so fire-and-forget: enabling them needs CONFIG (done only with consent, and
undone on exit), and every moment we are not subscribed is written down as a gap.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisprobe import trace
from redisprobe.producers.observers.clients import connect_observer
from redisprobe.producers.observers.commandcount import monitor_hidden, shown_in_info
from redisprobe.producers.observers.protocol import DROPPED, starting
from redisprobe.targets import configledger
from redisprobe.targets.url import Target, connect_timeout, describe_redis_error

PATTERN = "__keyevent@*__:*"
CONNECTION_NAME = "redisprobe:observer:keyspace"
# Keyevent channel (E) plus every class of key event we attribute: generic, string, list, set, hash, zset,
# expired, evicted, stream. `A` is the server's alias for all classes (module events `d` included).
NEEDED = "Eg$lshzxet"
_ALIAS_A = "g$lshzxetd"
LOST = "expiries, evictions and whether an EXPIRE took effect cannot be attributed (MONITOR alone)"
_CHANNEL_PREFIX = b"__keyevent@"
_MARK_PREFIX = b"redisprobe:fence:keyspace:"  # a MONITOR capture leaves our marks out of the trace
_MARKS_KEPT = 64


def expand_flags(flags: str) -> set[str]:
    """The event classes a notify-keyspace-events value turns on (`A` spelled out)."""
    chars = set(flags)
    if "A" in chars:
        chars.discard("A")
        chars |= set(_ALIAS_A)
    return chars


def missing_flags(flags: str) -> str:
    """The flags we need that `flags` lacks ("" when it already covers us)."""
    have = expand_flags(flags)
    return "".join(flag for flag in NEEDED if flag not in have)


def merge_flags(flags: str) -> str:
    """The user's flags plus ours: never drop theirs (K, m, n...)."""
    return flags + missing_flags(flags)


def parse_channel(channel: bytes) -> tuple[int, str] | None:
    """`__keyevent@3__:expired` -> (3, "expired"); None for anything else."""
    if not channel.startswith(_CHANNEL_PREFIX):
        return None
    db_text, sep, event = channel[len(_CHANNEL_PREFIX):].partition(b"__:")
    if not sep or not db_text.isdigit():
        return None
    return int(db_text), event.decode("utf-8", "backslashreplace")


class KeyspaceObserver:
    """Subscribes to keyevent notifications of every db and emits a `trace.Keyspace` per event.

    `enable`: True may change notify-keyspace-events (merged with the user's flags, restored on stop); None
    uses them only if already on and warns otherwise; False never changes CONFIG (it still reads it, to say
    what is lost). After `start()` returns, every event the server publishes is captured.
    `active` says whether we are subscribed; `lost` is one line on what attribution is missing, or None.
    """

    BLIND_SPOT = ("who did it: an event names the key and what happened, never the client (MONITOR's lines and "
                  "CLIENT LIST name it); events the server publishes while we are disconnected")

    def __init__(self, target: Target, emit: Callable[[trace.Event], None], *, enable: bool | None,
                 label: str = "", timeout: float | None = None, mark_interval: float = 0.5,
                 give_up_after: float | None = 300.0, config_interval: float = 1.0) -> None:
        self.target = target
        self.emit = emit
        self.enable = enable
        self.where = f"{label} ({target.label})" if label else target.label
        self.timeout = connect_timeout() if timeout is None else timeout
        self.mark_interval = mark_interval
        self.give_up_after = give_up_after
        self.active = False
        self.lost: str | None = None
        self.changed: tuple[str, str] | None = None  # (old, new) notify-keyspace-events while we run
        self._restore_to: str | None = None
        self._config_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._aborted = False
        self._ledger_id: str | None = None  # our change as written down in the config ledger
        self._started = False
        self._stopped = False
        self._conn: Any = None
        self._admin: redis.Redis | None = None
        self._hidden: frozenset[str] | None = None  # admin commands: never an event, not counted as lost
        self._thread: threading.Thread | None = None
        self._run_id = ""
        self._named = True  # False when ACLs refuse CLIENT SETNAME
        self._warned: set[str] = set()
        # Marks: a PING with our time in it, answered in order with the events. Once its answer is read, every
        # event the server published before it has been read too: a lost event was published after the mark.
        self._mark: tuple[float, int | None] = (0.0, None)  # (time, INFO's commands processed) of the last mark read
        self._sent: dict[bytes, tuple[float, int | None]] = {}
        # notify-keyspace-events as others leave it: re-read every `config_interval`; while it lacks what we need,
        # events are lost (a CONFIG SET never shows in MONITOR), and that time becomes a gap.
        self.config_interval = config_interval
        self._config_ok_at: float | None = None  # the last time it covered us
        self._off: tuple[float, str] | None = None  # (since, value) while it does not cover us
        self._config_watched = False  # it was readable at start

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> KeyspaceObserver:
        """Subscribe, settle the config, then read in a background thread. Raises ConnectionProblem."""
        with self._state_lock:
            if self._started:
                return self
            self._started = True
        with starting(self.stop, self.target):
            self._admin, self._named = connect_observer(self.target, CONNECTION_NAME, timeout=self.timeout)
            try:
                self._conn = self._subscribe()
            except rex.ResponseError as exc:  # NOPERM on PSUBSCRIBE: no channel permission
                self.lost = f"cannot subscribe to keyspace events on {self.where} ({_reason(exc)}): {LOST}"
                self._note(self.lost, "warning")
                return self
            self._run_id = self._server_run_id()
            self._settle_config()
            self._start_watching_config()
            self._mark = (time.time(), self._processed())
            # the first mark: subscribed from here on, nothing unread yet (a reader thread slow to start under load
            # would otherwise leave the first events unmeasured)
            self.emit(trace.KeyspaceMark(t=self._mark[0], sent=self._mark[0], target=self.target.label))
            self.active = True
            self._thread = threading.Thread(target=self._run, name="redisprobe-keyspace", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Restore the config first (the part that must survive Ctrl-C), then end the reader. Idempotent."""
        with self._state_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        with _interrupts_deferred():
            self._restore_config()
            if self._thread is not None:
                self._thread.join(self.timeout + 1.0)
            self._close_off_period()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.disconnect()
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
            self.active = False

    def pump(self) -> Sequence[trace.Recorded]:
        return ()  # it writes from its reader thread

    def __enter__(self) -> KeyspaceObserver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- config ----------------------------------------------------------------------------------------------

    def _settle_config(self) -> None:
        """Make notify-keyspace-events cover us if allowed; otherwise say once what is lost."""
        assert self._admin is not None
        with self._config_lock:
            if self._stopping.is_set():
                return
            try:
                current = _config_value(self._admin.config_get("notify-keyspace-events"))
            except rex.ResponseError as exc:
                self._refused(f"cannot read notify-keyspace-events on {self.where} ({_reason(exc)}): keyspace "
                              f"events are recorded only if the server already sends them; otherwise {LOST}")
                return
            lacking = missing_flags(current)
            if not lacking:
                self.lost = None
                return
            if not self.enable:
                how = ("turn them on with --enable-events (restored on exit)" if self.enable is None
                       else "they were not enabled because --no-enable-events was given")
                # Declined on purpose (False): worth knowing, not worth a warning.
                self._refused(f"keyspace events are off on {self.where} (notify-keyspace-events={current!r}, "
                              f"lacks {lacking!r}): {LOST}; {how}", "warning" if self.enable is None else "info")
                return
            new = merge_flags(current)
            # Written down first: if this run is killed before it restores the value, the next one does.
            configledger.forget(self._ledger_id)
            self._ledger_id = configledger.record(self.target, self._run_id, "notify-keyspace-events", current, new)
            try:
                self._admin.config_set("notify-keyspace-events", new)
            except rex.ResponseError as exc:
                configledger.forget(self._ledger_id)
                self._ledger_id = None
                self._refused(f"cannot set notify-keyspace-events on {self.where} ({_reason(exc)}; it is "
                              f"{current!r}, lacking {lacking!r}): {LOST}")
                return
            self._restore_to = current
            self.changed = (current, new)
            self.lost = None
            self._note(f"set notify-keyspace-events on {self.where} from {current!r} to {new!r} for this run; "
                       "it is restored on exit")

    def _start_watching_config(self) -> None:
        assert self._admin is not None
        try:
            current = _config_value(self._admin.config_get("notify-keyspace-events"))
        except (rex.RedisError, OSError):
            return  # refused: what is lost was said once; it cannot be watched
        self._config_watched = True
        now = time.time()
        if missing_flags(current):
            self._off = (now, current)
        else:
            self._config_ok_at = now

    def _watch_config(self) -> None:
        """Re-read notify-keyspace-events: someone else (a user, another tool, a second monitor restoring its
        value) may have changed it, and a CONFIG SET never shows in MONITOR."""
        assert self._admin is not None
        try:
            current = _config_value(self._admin.config_get("notify-keyspace-events"))
        except (rex.RedisError, OSError):
            return  # a dropped link is the reader's to notice
        now = time.time()
        lacking = missing_flags(current)
        if lacking and self._off is None:
            since = self._config_ok_at or now
            self._off = (since, current)
            self._note(f"notify-keyspace-events on {self.where} was changed to {current!r} during the capture "
                       f"(lacks {lacking!r}): keyspace events are lost from then on; {LOST} meanwhile", "warning")
        elif not lacking:
            if self._off is not None:
                self._close_off_period(until=now, back=current)
            self._config_ok_at = now

    def _close_off_period(self, until: float | None = None, back: str = "") -> None:
        """The time notify-keyspace-events did not cover us, as a keyspace gap (open-ended at the end of a run)."""
        off = self._off
        if off is None:
            return
        self._off = None
        since, value = off
        if until is None and self._config_ok_at is None:
            return  # off all along: said at start, and no event ever came to be misread
        reason = (f"notify-keyspace-events was {value!r} (lacking {missing_flags(value)!r}; set by another client): "
                  "keyspace events of this time are lost")
        if until is not None:
            reason += f"; back to {back!r} by {time.strftime('%H:%M:%S', time.localtime(until))}"
            self._note(f"notify-keyspace-events on {self.where} covers us again ({back!r}): keyspace events "
                       "resumed")
        else:
            reason += "; still so when the capture ended"
        self.emit(trace.Gap(t=since, until=until, source="keyspace", reason=reason, target=self.target.label))

    def _refused(self, text: str, level: str = "warning") -> None:
        self.lost = text
        if text not in self._warned:  # a reconnect that finds the same situation says nothing new
            self._warned.add(text)
            self._note(text, level)

    @property
    def pending_restore(self) -> str | None:
        """The user's notify-keyspace-events value while ours is still set on the server (None once restored)."""
        return self._restore_to

    def _restore_config(self) -> None:
        with self._config_lock:
            old = self._restore_to
            if old is None or self._admin is None:
                return
            ours = self.changed[1] if self.changed is not None else None
            try:
                now = _config_value(self._admin.config_get("notify-keyspace-events"))
            except (rex.RedisError, OSError):
                now = ours
            if ours is not None and now is not None and expand_flags(now) != expand_flags(ours):
                # someone set it during the capture: theirs stands (the server spells flags in its own order)
                self._restore_to = None
                configledger.forget(self._ledger_id)
                self._ledger_id = None
                self._note(f"left notify-keyspace-events on {self.where} at {now!r}: another client changed it "
                           f"during the capture (it was {old!r} before, {ours!r} while we ran)")
                return
            try:
                self._admin.config_set("notify-keyspace-events", old)
            except (rex.RedisError, OSError) as exc:
                if self._aborted:  # given up on: whoever gave up says so
                    return
                self._note(f"could not restore notify-keyspace-events on {self.where} to {old!r} "
                           f"({describe_redis_error(exc, self.target)}); run: CONFIG SET notify-keyspace-events "
                           f"{old!r}", "warning")
                return
            self._restore_to = None
            configledger.forget(self._ledger_id)
            self._ledger_id = None
            self._note(f"restored notify-keyspace-events on {self.where} to {old!r}")

    def abort(self) -> None:
        """Stop waiting for the server: close our connections under whoever is blocked on them (see `stop`)."""
        self._aborted = True
        self._stopping.set()
        for closing in (lambda: self._conn.disconnect(), lambda: self._admin.connection_pool.disconnect()):
            with contextlib.suppress(Exception):
                closing()

    # -- the reader ------------------------------------------------------------------------------------------

    def _subscribe(self) -> Any:
        """A dedicated connection (no hidden retries: a drop must surface here) subscribed to every db."""
        client = self.target.connect(name=CONNECTION_NAME if self._named else None, timeout=self.timeout,
                                     retry=Retry(NoBackoff(), 0), protocol=2)  # RESP2: plain arrays
        conn = client.connection_pool.make_connection()
        try:
            conn.connect()
            conn.send_command("PSUBSCRIBE", PATTERN)
            reply = conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        if not (isinstance(reply, list) and reply and reply[0] == b"psubscribe"):
            conn.disconnect()
            raise rex.ConnectionError(f"unexpected reply to PSUBSCRIBE: {reply!r}")
        return conn

    def _run(self) -> None:
        conn = self._conn
        while conn is not None and not self._stopping.is_set():
            try:
                self._pump(conn)
            except DROPPED as exc:
                if self._stopping.is_set():
                    break
                with contextlib.suppress(Exception):
                    conn.disconnect()
                conn = self._conn = self._recover(exc)
            except Exception as exc:  # a protocol surprise, or the parser's on a socket closed under its read
                if self._stopping.is_set():
                    break  # stop() gave up waiting for this read and closed the link: nothing is lost after stop
                self._note(f"keyspace observer on {self.where} stopped: {_reason(exc)}", "warning")
                self.emit(trace.Gap(t=time.time(), source="keyspace", reason=f"observer stopped: {_reason(exc)}",
                                    target=self.target.label))
                self.active = False
                break

    def _pump(self, conn: Any) -> None:
        """Read events until asked to stop; a mark every `mark_interval`, whose answer also proves the link alive
        (a silently dead one is noticed after `timeout` without any answer)."""
        last = time.monotonic()
        next_mark = 0.0
        next_config = time.monotonic() + self.config_interval
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_mark:
                self._send_mark(conn)
                next_mark = now + self.mark_interval
            if now >= next_config and self._config_watched:
                self._watch_config()
                next_config = now + self.config_interval
            if not conn.can_read(timeout=0.2):
                if time.monotonic() - last > self.timeout:
                    raise rex.TimeoutError(f"no answer to PING in {self.timeout:.0f}s")
                continue
            while True:
                try:
                    self._handle(conn.read_response())
                except rex.ResponseError as exc:
                    if not str(exc).startswith("MISCONF"):
                        raise
                    self._mark_refused()
                if not conn.can_read(timeout=0):
                    break
            last = time.monotonic()

    def _send_mark(self, conn: Any) -> None:
        now = time.time()
        token = _MARK_PREFIX + repr(now).encode()
        self._sent[token] = (now, self._processed())
        while len(self._sent) > _MARKS_KEPT:  # sent on a link that then died: never answered
            self._sent.pop(next(iter(self._sent)))
        conn.send_command("PING", token)

    def _mark_refused(self) -> None:
        """A server in MISCONF answers PING with an error, even on a subscribed link; replies come in order, so
        the error answers the oldest mark, which still proves the link alive and counts events."""
        if self._sent:
            self._mark = self._sent.pop(next(iter(self._sent)))

    def _processed(self) -> int | None:
        """The commands the server has run, less the admin ones that raise no event (INFO stats and commandstats;
        None when INFO is refused or the server does not answer)."""
        if self._admin is None:
            return None
        try:
            if self._hidden is None:
                self._hidden = monitor_hidden(self._admin)
            reply = self._admin.execute_command("INFO", "stats", "commandstats", _MARK_PREFIX + b"count")
            return shown_in_info(reply, self._hidden)
        except (rex.RedisError, OSError, TypeError, ValueError):
            return None

    def _handle(self, message: Any) -> None:
        if isinstance(message, list) and len(message) == 2 and message[0] == b"pong":
            mark = self._sent.pop(message[1], None) if isinstance(message[1], bytes) else None
            if mark is not None:
                self._mark = mark
                self.emit(trace.KeyspaceMark(t=time.time(), sent=mark[0], target=self.target.label))
            return
        if not isinstance(message, list) or len(message) != 4 or message[0] != b"pmessage":
            return  # subscription confirmations
        parsed = parse_channel(message[2])
        if parsed is None:
            return
        db, event = parsed
        key = message[3] if isinstance(message[3], bytes) else str(message[3]).encode()
        self.emit(trace.Keyspace(t=time.time(), db=db, event=event, key=key, target=self.target.label))

    def _recover(self, error: BaseException) -> Any:
        """Reconnect with bounded backoff; write the hole as a Gap. None when stopped or given up.

        The hole starts at the last mark read (events published after it may be lost, however late the drop was
        noticed: a slow subscriber is dropped long after the events it never read were published)."""
        lost_at, processed_then = self._mark if self._mark[0] else (time.time(), None)
        started = time.monotonic()
        cause = _reason(error)
        delay = 0.05
        while not self._stopping.wait(delay):
            delay = min(delay * 2, 1.0)
            try:
                conn = self._subscribe()
            except DROPPED:
                if self.give_up_after is not None and time.monotonic() - started > self.give_up_after:
                    reason = (f"lost the keyspace subscription ({cause}) and could not reconnect in "
                              f"{self.give_up_after:.0f}s; no keyspace events after this point")
                    self.emit(trace.Gap(t=lost_at, source="keyspace", reason=reason, target=self.target.label))
                    self._refused(f"keyspace events stopped on {self.where} (server unreachable): {LOST}")
                    self.active = False
                    return None
                continue
            except rex.ResponseError as exc:
                reason = f"lost the keyspace subscription ({cause}); re-subscribing was refused: {_reason(exc)}"
                self.emit(trace.Gap(t=lost_at, source="keyspace", reason=reason, target=self.target.label))
                self._refused(f"keyspace events stopped on {self.where} ({_reason(exc)}): {LOST}")
                self.active = False
                return None
            try:
                run_id = self._server_run_id()
                if run_id and self._run_id and run_id != self._run_id:
                    reason = (f"server restarted (run_id {self._run_id[:8]}… -> {run_id[:8]}…): keyspace events "
                              "while it was down or restarting are lost")
                else:
                    reason = (f"keyspace subscription dropped ({cause}): a CLIENT KILL, a server timeout, or a slow "
                              "subscriber cut off by client-output-buffer-limit pubsub; events meanwhile are lost")
                self._run_id = run_id or self._run_id
                self._settle_config()  # a restarted server has its startup config again: re-apply what we may
            except DROPPED:
                conn.disconnect()
                continue
            processed_now = self._processed()
            lost = None
            if processed_then is not None and processed_now is not None and processed_now >= processed_then:
                lost = processed_now - processed_then
                reason += f"; the server ran {lost:,} commands meanwhile (INFO stats and commandstats, admin aside)"
            self._mark = (time.time(), processed_now)
            self.emit(trace.Gap(t=lost_at, source="keyspace", reason=reason, until=time.time(),
                                target=self.target.label, lost=lost))
            return conn
        self.emit(trace.Gap(t=lost_at, source="keyspace", target=self.target.label,
                            reason=f"keyspace subscription lost ({cause}); still disconnected when the run ended"))
        return None

    def _server_run_id(self) -> str:
        assert self._admin is not None
        try:
            return str(self._admin.info("server").get("run_id", ""))
        except rex.ResponseError:  # INFO refused by ACL: restarts go unnamed, not unnoticed (the gap stays)
            return ""

    def _note(self, text: str, level: str = "info") -> None:
        self.emit(trace.Note(t=time.time(), level=level, text=text))


def _config_value(reply: Any) -> str:
    if isinstance(reply, dict):
        value = next(iter(reply.values()), "")
    elif isinstance(reply, list) and len(reply) >= 2:
        value = reply[1]
    else:
        value = ""
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, rex.NoPermissionError) and not text.startswith("NOPERM"):
        text = f"NOPERM {text}"  # redis-py drops the error code; users search for it
    return text


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM turned into one) until the block is done, then deliver it.

    Restoring the user's config must not be cut in half by a second Ctrl-C. Only the main thread may
    install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}

    def _hold(signum: int, frame: object) -> None:
        held.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, _hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            handler = previous[held[0]]
            if handler is signal.default_int_handler:
                raise KeyboardInterrupt
            handler(held[0], None)
