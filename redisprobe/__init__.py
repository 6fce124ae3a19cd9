"""redisprobe: find out why one process can't see another's Redis keys, and who removed them."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
