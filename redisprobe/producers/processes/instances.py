"""Instances of one program: `batch-processor#0` and `batch-processor#1` are two PM2 instances of one app.

Kept apart from `identity` (which reads live processes) so the offline analysis never loads psutil.
"""

from __future__ import annotations


def program_of(name: str) -> str:
    """An identity without its instance (`batch-processor#1` -> `batch-processor`): instances compare equal."""
    head, sep, tail = name.rpartition("#")
    return head if sep and tail.isdigit() else name
