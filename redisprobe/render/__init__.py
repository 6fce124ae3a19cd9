"""Showing results: rich for terminals, plain JSON for machines. Only this package and the CLI import rich."""
