"""Output files (`--out`, `--svg`, `--junit`) checked before anything starts: a capture that runs for an hour must
not end in "cannot write" at the last second."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from redisprobe.errors import ProbeError


def check_output(path: Path | None, option: str, *, regular: bool = False, make_folders: bool = False) -> None:
    """Raise a one-line `ProbeError` unless `path` can be written.

    `regular`: it must be (or become) a regular file; the trace is read back for the summary, so a device such as
    /dev/null is refused. `make_folders`: missing folders on the way are created when it is written (JUnit).
    """
    if path is None:
        return
    shown = f"{option} {str(path)!r}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ProbeError(f"{shown}: {exc.strerror}") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise ProbeError(f"{shown} is a folder: give a file name")
        if regular and not stat.S_ISREG(mode):
            raise ProbeError(f"{shown} is not a regular file (the trace is read back for the summary): give a file "
                             "name")
        if not os.access(path, os.W_OK):
            raise ProbeError(f"{shown} is not writable")
        return
    folder = path.absolute().parent
    while make_folders and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise ProbeError(f"{shown}: {str(folder)!r} {why}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProbeError(f"{shown}: cannot create files in {str(folder)!r}")
