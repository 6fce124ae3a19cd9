"""Hand-made traces in a few lines: a clock, clients that send MONITOR lines, keyspace events, samples.

    tb = TraceBuilder()
    api = tb.client("api", pid=100, client_id=7, port=5001)
    api("RPUSH", "batch:1", "a")          # a MONITOR line now, then the clock moves 1 ms
    tb.ks("rpush", "batch:1")            # the keyspace event it caused
    tb.at(2.0)                           # seconds since the start
"""

from __future__ import annotations

from redisprobe import trace

T0 = 1_700_000_000.0
TARGET = "redis://127.0.0.1:6379/0"
STEP = 0.001


def _b(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class Client:
    """A connection: calling it sends one command (a MONITOR line from its address)."""

    def __init__(self, tb: TraceBuilder, peer: str, db: int, target: str, pid: int | None, client_id: int,
                 label: str) -> None:
        self.tb = tb
        self.peer = peer
        self.db = db
        self.target = target
        self.pid = pid
        self.client_id = client_id
        self.label = label

    def __call__(self, *args: object, db: int | None = None) -> Client:
        self.tb.monitor(self.peer, *args, db=self.db if db is None else db, target=self.target)
        return self

    def op(self, *args: object, reply: object = None, error: str | None = None) -> Client:
        """Our actor's own record of a command (pid, client id, reply)."""
        self.tb.add(trace.Op(t=self.tb.now, mono=0.0, pid=self.pid or 0, role=self.label, client_id=self.client_id,
                             db=self.db, args=[_b(a) for a in args], reply=reply, error=error))
        self.tb.tick()
        return self


class TraceBuilder:
    def __init__(self, target: str = TARGET) -> None:
        self.events: list[trace.Event] = []
        self.now = T0
        self.target = target

    # -- clock --------------------------------------------------------------------------------------------------

    def at(self, seconds: float) -> TraceBuilder:
        """Jump to `seconds` after the start (never backwards)."""
        assert T0 + seconds >= self.now - 1e-9, "time goes forward"
        self.now = T0 + seconds
        return self

    def tick(self, dt: float = STEP) -> TraceBuilder:
        self.now += dt
        return self

    def add(self, event: trace.Event) -> None:
        self.events.append(event)

    # -- participants -------------------------------------------------------------------------------------------

    def client(self, label: str = "", *, pid: int | None = None, client_id: int, port: int | None = None,
               db: int = 0, name: str = "", process: str = "", lib: str = "", flags: str = "N", age: int = 0,
               addr: str | None = None, target: str | None = None, peer: str | None = None,
               sample: bool = True) -> Client:
        """A client seen in CLIENT LIST (with its pid when given); returns a callable sender."""
        address = addr or f"127.0.0.1:{port or 40000 + client_id}"
        where = self.target if target is None else target
        if sample:
            self.add(trace.ClientSeen(t=self.now, client_id=client_id, addr=address, db=db, name=name, lib=lib,
                                      age=age, flags=flags, pid=pid, process=process, label=label, target=where))
        return Client(self, peer or address, db, where, pid, client_id, label)

    def actor(self, role: str, *, pid: int, client_id: int, port: int | None = None, db: int = 0,
              run_id: str = "a" * 40, host: str = "127.0.0.1", server_port: int = 6379, version: str = "7.0.15",
              uptime: int = 100, target: str | None = None, prefix: str = "") -> Client:
        """One of our actors: an ActorStarted record (pid, client id, address, server fingerprint)."""
        address = f"127.0.0.1:{port or 40000 + client_id}"
        where = self.target if target is None else target
        self.add(trace.ActorStarted(
            t=self.now, pid=pid, role=role, target=where, client_id=client_id, client_name=f"redisprobe:{role}:{pid}",
            db=db, addr=address, prefix=prefix,
            server=trace.ServerFingerprint(run_id=run_id, host=host, port=server_port, version=version,
                                           uptime=uptime, role="master")))
        return Client(self, address, db, where, pid, client_id, role)

    # -- events -------------------------------------------------------------------------------------------------

    def monitor(self, peer: str, *args: object, db: int = 0, target: str | None = None) -> TraceBuilder:
        self.add(trace.Monitor(t=self.now, db=db, peer=peer, args=[_b(a) for a in args],
                               target=self.target if target is None else target))
        return self.tick()

    def lua(self, *args: object, db: int = 0) -> TraceBuilder:
        """A command run by a script (MONITOR peer `lua`, right after the EVAL line)."""
        return self.monitor("lua", *args, db=db)

    def ks(self, event: str, key: object, *, db: int = 0, target: str | None = None) -> TraceBuilder:
        self.add(trace.Keyspace(t=self.now, db=db, event=event, key=_b(key),
                                target=self.target if target is None else target))
        return self.tick(STEP / 10)

    def mark(self, sent: float, *, target: str | None = None) -> TraceBuilder:
        """The keyspace link reads now the answer to its mark sent at `sent` seconds after the start."""
        self.add(trace.KeyspaceMark(t=self.now, sent=T0 + sent, target=self.target if target is None else target))
        return self.tick(STEP / 10)

    def server(self, run_id: str = "a" * 40, uptime: int = 100, *, target: str | None = None,
               **stats: int) -> TraceBuilder:
        self.add(trace.ServerSeen(t=self.now, target=self.target if target is None else target,
                                  server=trace.ServerFingerprint(run_id=run_id, uptime=uptime), stats=dict(stats)))
        return self

    def check(self, actor: Client, key: str, ok: bool, *, first_miss: bool = False) -> TraceBuilder:
        self.add(trace.Check(t=self.now, pid=actor.pid or 0, role=actor.label, name=key, key=key, ok=ok,
                             waited=1.0, attempts=3, first_miss=first_miss))
        return self

    def ttl_sample(self, key: str, pttl: int, db: int = 0) -> TraceBuilder:
        self.add(trace.TtlSample(t=self.now, db=db, key=_b(key), pttl=pttl, target=self.target))
        return self

    def gap(self, source: str, until: float | None = None) -> TraceBuilder:
        self.add(trace.Gap(t=self.now, source=source, reason="test", until=until, target=self.target))
        return self
