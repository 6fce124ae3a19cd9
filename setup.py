"""Builds redisprobe, compiling the modules every MONITOR line goes through with mypyc when it can.

The offline `report` folds millions of lines in pure Python; compiled, the fold runs about twice as fast. Where
mypyc or a C compiler is missing (or REDISPROBE_PURE_PYTHON is set), the same modules run as plain Python:
same behaviour, only slower (tests/test_compiled.py checks both give the same analysis).
"""

import os
import sys

from setuptools import setup

HOT_MODULES = [
    "redisprobe/semantics/command_table.py",
    "redisprobe/analysis/attribution.py",
    "redisprobe/text.py",
    "redisprobe/analysis/lifecycle/limits.py",
    "redisprobe/analysis/lifecycle/records.py",
    "redisprobe/analysis/lifecycle/state.py",
    "redisprobe/analysis/lifecycle/lives.py",
    "redisprobe/analysis/lifecycle/expiry.py",
    "redisprobe/analysis/lifecycle/keys.py",
    "redisprobe/analysis/lifecycle/pairing.py",
    "redisprobe/analysis/lifecycle/linklag.py",
    "redisprobe/analysis/lifecycle/connection.py",
    "redisprobe/analysis/lifecycle/dispatch.py",
    "redisprobe/analysis/lifecycle/replies.py",
    "redisprobe/analysis/lifecycle/wirereplies.py",
    "redisprobe/analysis/lifecycle/replica_stream.py",
    "redisprobe/analysis/lifecycle/migration.py",
    "redisprobe/analysis/lifecycle/preexisting.py",
    "redisprobe/analysis/lifecycle/coverage.py",
    "redisprobe/analysis/lifecycle/refusal_samples.py",
    "redisprobe/analysis/lifecycle/engine.py",
    "redisprobe/analysis/doctor.py",
    # Not the rules: they name the fold's classes for type checking only (so `--help` never loads the fold), and a
    # compiled module whose classes name another compiled module's classes needs that module loaded first.
    # the wire capture's offline parse (every packet and command of `monitor --source wire` goes through these)
    "redisprobe/producers/wire/tcp.py",
    "redisprobe/producers/wire/packets.py",
    "redisprobe/producers/wire/spool.py",
    "redisprobe/producers/wire/conversation.py",
    "redisprobe/producers/wire/offline.py",
    "redisprobe/producers/wire/events.py",
]


def compiled_extensions() -> list:
    if os.environ.get("REDISPROBE_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # only the compiled modules are type-checked as strictly as mypyc needs; their imports are read, not judged
    try:
        extensions = mypycify(["--follow-imports=silent", *HOT_MODULES], opt_level="3")
    except (Exception, SystemExit) as exc:  # e.g. a newer mypy that rejects something: install as plain Python
        print(f"redisprobe: not compiling the analysis ({exc!r}); it runs as plain Python", file=sys.stderr)
        return []
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure-Python module in place, never a failed install
    return extensions


setup(ext_modules=compiled_extensions())
