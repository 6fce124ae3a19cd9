"""One place that decides how we print: colour on a terminal, plain when piped, errors to stderr."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from rich.console import Console
from rich.segment import Segment

from redisprobe.render.escape import escape
from redisprobe.targets.url import redact

# Characters a terminal acts on, other than the line breaks rich lays out: never written from text.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# In JSON: what msgspec leaves raw but a terminal may still act on (DEL, C1 controls, line separators, bidi).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class RedactingStream:
    """A text stream that hides URL passwords in everything written through it (stdout, stderr, files)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


class SafeConsole(Console):
    """A rich Console that never writes a control character taken from text (ESC, CR, NUL, BEL...).

    Renderers escape what they show before layout (`render.escape`); this is the backstop for anything that
    slipped through: text segments are escaped as they are written, rich's own styles and cursor moves are not.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            Segment(_escape_controls(text), style, control) if control is None and _CONTROL.search(text)
            else Segment(text, style, control) for text, style, control in buffer)


def _escape_controls(text: str) -> str:
    return "\n".join(escape(part) for part in text.split("\n"))


def stdout_console(*, record: bool = False) -> Console:
    return SafeConsole(file=RedactingStream(sys.stdout), highlight=False, record=record, soft_wrap=False)


def stderr_console() -> Console:
    return SafeConsole(file=RedactingStream(sys.stderr), stderr=True, highlight=False, soft_wrap=True)


def save_svg(console: Console, path: str, title: str) -> None:
    """The recorded output as an SVG image, with passwords hidden as on the terminal."""
    from redisprobe.errors import ProbeError

    svg = redact(console.export_svg(title=title))
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(svg)
    except OSError as exc:
        raise ProbeError(f"cannot write {path!r}: {exc.strerror}") from None


def print_json(data: object) -> None:
    """JSON for machines: one document on stdout, nothing else."""
    import msgspec

    from redisprobe.findings import json_fallback

    # encoded straight from the objects (Structs included): a big report's keys are not copied first
    text = msgspec.json.format(msgspec.json.encode(data, enc_hook=json_fallback), indent=2).decode()
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)  # inside strings only: still JSON
    with _whole_despite_one_interrupt():
        _write_whole(redact(text) + "\n")


def _write_whole(text: str) -> None:
    """Every byte, in UTF-8 as JSON must be: a signal can cut a write to a pipe short, and a text stream over an
    unbuffered file (PYTHONUNBUFFERED, -u) drops the rest, so the loop over the descriptor is ours."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's captured stream)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    sys.stdout.flush()
    view = memoryview(text.encode())
    while view:
        view = view[os.write(fd, view):]


@contextlib.contextmanager
def _whole_despite_one_interrupt() -> Iterator[None]:
    """A Ctrl-C (or SIGTERM) while a document is written waits until it is whole (a cut one is no JSON at all),
    then interrupts as usual; a second one, for a reader that stopped reading, interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if pending:
        raise KeyboardInterrupt
