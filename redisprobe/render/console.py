"""One place that decides how we print: colour on a terminal, plain when piped, errors to stderr."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console

from redisprobe.target import redact


class RedactingStream:
    """A text stream that hides URL passwords in everything written through it (stdout, stderr, files)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


def stdout_console(*, record: bool = False) -> Console:
    return Console(file=RedactingStream(sys.stdout), highlight=False, record=record, soft_wrap=False)


def stderr_console() -> Console:
    return Console(file=RedactingStream(sys.stderr), stderr=True, highlight=False, soft_wrap=True)


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
    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()
