"""One exception family for everything a user can get wrong: the CLI turns each into one line and exit 2."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a redisprobe command tells the shell."""

    HEALTHY = 0
    FINDING = 1
    USAGE = 2
    INTERRUPTED = 130


class ProbeError(Exception):
    """A problem the user can fix (bad URL, refused connection, missing permission...).

    The message is one line, already free of secrets.
    """

    exit_code = ExitCode.USAGE


class ConnectionProblem(ProbeError):
    """The server could not be reached or refused us."""


class ServerNotFound(ProbeError):
    """No redis-server / valkey-server binary could be found for the sandbox."""


class TraceFormatError(ProbeError):
    """A trace file is malformed, truncated in its header, or from a newer redisprobe."""
