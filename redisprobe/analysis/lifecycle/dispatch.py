"""Which handler folds each kind of command (the kind comes from the command table, `analysis/commands.py`)."""

from __future__ import annotations

from collections.abc import Callable

from redisprobe.analysis.lifecycle import connection, expiry, keys, migration
from redisprobe.analysis.lifecycle.state import FoldState
from redisprobe.semantics import command_table as C

Handler = Callable[[FoldState, str, int, str, int, float, list[bytes], C.Command], None]
"""(state, server, db, peer, hint, t, args, spec): one command line folded."""

HANDLERS: dict[int, Handler] = {
    C.READ: keys.cmd_read, C.WRITE: keys.cmd_write, C.WRITE_EXISTING: keys.cmd_write_existing, C.SET: keys.cmd_set,
    C.OVERWRITE: keys.cmd_overwrite, C.REMOVE: keys.cmd_remove, C.POP: keys.cmd_pop, C.TRIM: keys.cmd_trim,
    C.MOVE_ELEMENT: keys.cmd_move_element, C.TTL: expiry.cmd_ttl, C.RENAME: keys.cmd_rename, C.MOVE: keys.cmd_move,
    C.COPY: keys.cmd_copy, C.FLUSH: keys.cmd_flush, C.SWAPDB: keys.cmd_swapdb, C.SELECT: connection.cmd_select,
    C.SCAN: connection.cmd_scan, C.SCRIPT: connection.cmd_script, C.MULTI: connection.cmd_multi,
    C.EXEC: connection.cmd_exec, C.DISCARD: connection.cmd_exec, C.MIGRATE: migration.cmd_migrate,
    C.MIGRATED_IN: migration.cmd_restore_asking,
}
