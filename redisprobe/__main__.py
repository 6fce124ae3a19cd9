"""`python -m redisprobe` runs the CLI."""

from redisprobe.cli import main

raise SystemExit(main())
