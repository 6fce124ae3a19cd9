"""The work behind each CLI command, free of Typer: each returns a result the renderers show."""
