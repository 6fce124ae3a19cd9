"""`python -m redisprobe` runs the CLI."""

from redisprobe.cli import console_main

console_main()
