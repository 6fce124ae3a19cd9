"""`WireCapture`: the wire reader process, started and stopped from the parent.

The reader (`python -m redisprobe.producers.wire.reader`) needs root or CAP_NET_RAW; without them `start()` raises a
`ProbeError` with its one line. Its spool is read while it runs (`follower()`, which deletes each segment it has
read) or afterwards (`result()`); `remove()` deletes what is left unless `keep_spool`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

from redisprobe.errors import ProbeError
from redisprobe.producers import procs
from redisprobe.producers.wire.offline import WireResult, parse_spool
from redisprobe.producers.wire.reader import BUDGET_BYTES, NO_PRIVILEGE, SEGMENT_BYTES
from redisprobe.producers.wire.spool import STATUS, SpoolFollower, read_spool

_READER_START = 10.0


class PrivilegeMissing(ProbeError):
    """No root and no CAP_NET_RAW: the one line says what to do."""


class WireCapture:
    """Captures TCP to and from `port` (on every interface, or `interface`) into a spool under `spool_dir`."""

    def __init__(self, port: int, spool_dir: Path, *, interface: str | None = None, target: str = "",
                 keep_spool: bool = False, rcvbuf: int | None = None, segment_bytes: int = SEGMENT_BYTES,
                 budget_bytes: int = BUDGET_BYTES) -> None:
        self.port = port
        self.segment_bytes = segment_bytes
        self.budget_bytes = budget_bytes  # the unparsed spool on disk at most (past it: packets counted, a gap)
        self.rcvbuf = rcvbuf  # the kernel's buffer for packets not read yet (default: the reader's 64 MiB)
        self.interface = interface
        self.target = target
        self.spool_dir = Path(spool_dir)
        self.keep_spool = keep_spool
        stem = f"wire-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.spool = self.spool_dir / f"{stem}.spool"
        self._stderr = self.spool_dir / f"{stem}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def start(self, timeout: float = _READER_START) -> None:
        """Spawn the reader; return once its socket is open and filtered (the `started` record is written)."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        argv = [sys.executable, "-m", "redisprobe.producers.wire.reader", "--port", str(self.port),
                "--spool", str(self.spool)]
        if self.interface:
            argv += ["--interface", self.interface]
        if self.rcvbuf:
            argv += ["--rcvbuf", str(self.rcvbuf)]
        argv += ["--segment-bytes", str(self.segment_bytes), "--budget-bytes", str(self.budget_bytes)]
        with self._stderr.open("wb") as errors:
            self.proc = procs.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                    env=env, close_fds=True)
        deadline = time.monotonic() + timeout
        try:
            while not self._started():
                code = self.proc.poll()
                if code is not None:
                    message = self._stderr_tail()
                    raise (PrivilegeMissing if code == NO_PRIVILEGE else ProbeError)(message)
                if time.monotonic() > deadline:
                    raise ProbeError("the wire capture process did not start in time")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise

    def _started(self) -> bool:
        if not self.spool.exists():
            return False
        with contextlib.suppress(ProbeError):
            for kind, _t, body in read_spool(self.spool):
                return kind == STATUS and body.get("ev") == "started"
        return False

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = [x for x in self._stderr.read_text(errors="replace").splitlines() if x.strip()]
            if lines:
                return lines[-1].strip()
        return "the wire capture process exited without a word"

    def stop(self) -> None:
        """Stop the reader (it spools what its socket still holds first). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc is not None:
            procs.stop(self.proc, timeout=10)
        with contextlib.suppress(OSError):
            self._stderr.unlink()

    def result(self) -> WireResult:
        """The spool parsed: exchanges, gaps, notes."""
        return parse_spool(self.spool, self.port, self.target)

    def follower(self) -> SpoolFollower:
        """Reads the spool as it is written, deleting each segment read (unless `keep_spool`)."""
        return SpoolFollower(self.spool, keep=self.keep_spool)

    def segments(self) -> list[Path]:
        """The spool's segment files still on disk."""
        return sorted(self.spool_dir.glob(self.spool.name + "*"))

    def remove(self) -> None:
        if not self.keep_spool:
            for path in self.segments():
                with contextlib.suppress(OSError):
                    path.unlink()

    def __enter__(self) -> WireCapture:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
