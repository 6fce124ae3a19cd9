"""Tables that stay readable at any width: a table when every word fits in its column, else one record per row.

rich squeezes a table that is too wide for the terminal (80 columns, or a CI log) until words break in the
middle (`scenarios/dif` / `ferent-server.toml`). `Records` measures the table first: when its narrowest layout
that breaks no word fits, it is drawn as a table (long cells fold at spaces); otherwise each row becomes a short
block, its first cell as a heading and the others as `name: value` lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

Cell = str | Text
FOLDED = 24  # the narrowest a foldable column (key names) is allowed to become


class Records:
    """`headers` and `rows` (cells: text), shown as a table when it fits the width, else as records."""

    def __init__(self, headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, title: str = "",
                 caption: str | None = None, column_options: dict[str, dict[str, Any]] | None = None,
                 foldable: Sequence[str] = ()) -> None:
        self.headers = list(headers)
        self.rows = [list(row) for row in rows]
        self.title = title
        self.caption = caption
        self.column_options = column_options or {}
        self.foldable = set(foldable)  # columns of identifiers (key names) that may fold anywhere

    def table(self) -> Table:
        table = Table(title=self.title or None, title_justify="left", caption=self.caption)
        for header in self.headers:
            table.add_column(header, **{"overflow": "fold", **self.column_options.get(header, {})})
        for row in self.rows:
            table.add_row(*row)
        return table

    def records(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.title:
            parts.append(Text(self.title, style="italic"))
        for row in self.rows:
            head, *rest = row
            parts.append(_text(head).copy().stylize("bold") if isinstance(head, Text) else Text(head, style="bold"))
            for header, cell in zip(self.headers[1:], rest, strict=False):
                value = _text(cell)
                if value.plain.strip() in ("", "-"):
                    continue
                line = Text.assemble((f"{header}: ", "dim"), value)
                parts.append(Padding(line, (0, 0, 0, 2), expand=False))
        if self.caption:
            parts.append(Text(self.caption, style="dim"))
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.rows or self.narrowest() <= options.max_width:
            yield self.table()
        else:
            yield self.records()

    def narrowest(self) -> int:
        """The width of the table when every column is as narrow as its longest word (a foldable column: at
        most FOLDED), borders and padding included."""
        total = 3 * len(self.headers) + 1
        for index, header in enumerate(self.headers):
            cells = [header, *(row[index] for row in self.rows if index < len(row))]
            widest = max((cell_len(word) for cell in cells for word in _text(cell).plain.split()), default=1)
            total += min(widest, FOLDED) if header in self.foldable else widest
        return total

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)
