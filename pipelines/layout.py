"""Tables that fit the width they are printed at, for the text report.

A word is never broken across lines. When a table's columns cannot all fit, in this order: ids are shortened in the
middle (``051c2af2…5d80``, still unique within their column); low-value columns are left out, with a note saying
which; and last, the table is stacked, one block of ``column  value`` lines per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

Kind = Literal["text", "figure", "id"]
ELLIPSIS = "…"
SHORT_ID = (8, 4)  # characters kept at the start and the end of a shortened id


@dataclass(frozen=True)
class Column:
    """A column: ``text`` wraps between words, a ``figure`` (right-aligned) and an ``id`` never wrap; an ``optional``
    column is the first to be left out."""

    header: str
    kind: Kind = "text"
    optional: bool = False


@dataclass
class Grid:
    """A titled table of strings, before it is fitted to a width."""

    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)


def longest_word(value: str) -> int:
    return max((len(word) for word in value.split()), default=0)


def table_overhead(columns: int) -> int:
    """Characters a heavy-head rich table adds to its columns' widths: the edges, separators and padding."""
    return 3 * columns + 1


def shortened(values: list[str]) -> list[str]:
    """Ids cut in the middle, keeping as much of each end as makes them unique within the column again."""
    head, tail = SHORT_ID
    while True:
        cut = [v if len(v) <= head + tail + 1 else f"{v[:head]}{ELLIPSIS}{v[-tail:]}" for v in values]
        longest = max((len(v) for v in values), default=0)
        if len(set(cut)) == len(set(values)) or head + tail + 1 >= longest:
            return cut
        head, tail = head + 2, tail + 2


def narrowest(column: Column, cells: list[str]) -> int:
    """The least width a column can have without breaking a word or wrapping a figure or an id."""
    whole = column.kind in ("figure", "id")
    return max(longest_word(column.header), *((len(c) if whole else longest_word(c)) for c in cells), 1)


def widest(column: Column, cells: list[str]) -> int:
    return max(len(column.header), *(len(c) for c in cells), 1)


def widths_within(least: list[int], most: list[int], room: int) -> list[int]:
    """Each column's width: its least, then spare room given first to the columns that need least to stop wrapping."""
    widths = list(least)
    spare = room - sum(least)
    for index in sorted(range(len(least)), key=lambda i: most[i] - least[i]):
        grant = min(most[index] - widths[index], spare)
        widths[index] += grant
        spare -= grant
    return widths


def fit(grid: Grid, width: int) -> list[RenderableType]:
    """The grid as renderables that never pass ``width`` characters: a table, or a stacked list, and any note."""
    keep = list(range(len(grid.columns)))
    cells = [[row[i] for row in grid.rows] for i in range(len(grid.columns))]
    notes: list[str] = []
    for attempt in ("as is", "short ids", *("drop" for _ in grid.columns)):
        if attempt == "short ids":
            ids = [i for i in keep if grid.columns[i].kind == "id"]
            before = [list(cells[i]) for i in ids]
            for i in ids:
                cells[i] = shortened(cells[i])
            if any(cells[i] != old for i, old in zip(ids, before, strict=True)):
                notes.append("ids shortened in the middle; `--format json` has them whole")
        elif attempt == "drop":
            optional = [i for i in keep if grid.columns[i].optional]
            if not optional:
                break
            keep.remove(optional[-1])
        least = [narrowest(grid.columns[i], cells[i]) for i in keep]
        room = width - table_overhead(len(keep))
        if sum(least) <= room:
            most = [widest(grid.columns[i], cells[i]) for i in keep]
            left_out = [c.header for i, c in enumerate(grid.columns) if i not in keep]
            if left_out:
                notes.append(f"left out at this width: {', '.join(left_out)}")
            table = as_table(grid, keep, cells, widths_within(least, most, room))
            return [table, *(Text(f"({note})", style="dim") for note in notes)]
    return [stacked(grid, width)]


def as_table(grid: Grid, keep: list[int], cells: list[list[str]], widths: list[int]) -> Table:
    table = Table(title=grid.title, title_justify="left", box=box.HEAVY_HEAD)
    for index, column_width in zip(keep, widths, strict=True):
        column = grid.columns[index]
        justify: JustifyMethod = "right" if column.kind == "figure" else "left"
        table.add_column(column.header, justify=justify, width=column_width, overflow="fold")
    for row in range(len(grid.rows)):
        table.add_row(*(cells[i][row] for i in keep))
    return table


def stacked(grid: Grid, width: int) -> RenderableType:
    """One block per row, each line a column's name and its value, for a table too wide to stand side by side.

    Where even that is too wide for the longest word, each value goes on its own line under its name.
    """
    label_width = max(len(c.header) for c in grid.columns)
    longest = max((longest_word(cell) for row in grid.rows for cell in row), default=0)
    beside = label_width + 2 + longest <= width
    parts: list[RenderableType] = [Text(grid.title, style="italic")]
    for row in grid.rows:
        block = Table.grid(padding=(0, 2) if beside else (0, 0))
        if beside:
            block.add_column(width=label_width, style="bold")
            block.add_column(width=width - label_width - 2, overflow="fold")
            for column, value in zip(grid.columns, row, strict=True):
                block.add_row(column.header, value)
        else:
            block.add_column(width=width, overflow="fold")
            for column, value in zip(grid.columns, row, strict=True):
                block.add_row(Text(column.header, style="bold"))
                block.add_row(Text(f"  {value}"))
        parts += [Text(""), block]
    return Group(*parts)
