"""One place that decides how we print: colour on a terminal, plain when piped, errors to stderr."""

from __future__ import annotations

import sys

from rich.console import Console


def stdout_console(*, record: bool = False) -> Console:
    return Console(highlight=False, record=record, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: object) -> None:
    """JSON for machines: one document on stdout, nothing else."""
    import msgspec

    from redisprobe.findings import json_fallback

    # encoded straight from the objects (Structs included): a big report's keys are not copied first
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(data, enc_hook=json_fallback), indent=2).decode() + "\n")
    sys.stdout.flush()
