"""What the commands print: readable in a terminal, a pipe, a file or a CI log alike.

Rich sizes its output to the terminal, and to 80 columns when stdout is not one: a table wider
than that has every cell cut to an ellipsis, and a long line (a path) is broken in two. So lines
are never wrapped here (``soft_wrap``), and a table is drawn with rich only on a terminal wide
enough for all of it; anywhere else it is printed as a markdown table, every cell in full. And
``--help``: Typer's rich panels cut long option names and paths to an ellipsis at 80 columns, so
off a terminal they are drawn at least ``RICH_HELP_MIN_WIDTH`` wide.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``columns`` and ``rows`` as the lines of a markdown table (cells as given, never cut)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def boxed_width(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """Columns a rich box table of these cells needs: each cell plus one space either side, and
    one border character between and around the columns."""
    widths = [max([len(c), *(len(str(row[i])) for row in rows)]) for i, c in enumerate(columns)]
    return sum(widths) + 3 * len(widths) + 1


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], out: Console | None = None) -> None:
    """A titled table on ``out`` (default: stdout): rich's box table on a terminal wide enough for
    every cell, otherwise the title and a markdown table."""
    out = out or console
    if out.is_terminal and max(boxed_width(columns, rows), len(title)) <= out.width:
        from rich.table import Table

        view = Table(title=title)
        for col in columns:
            view.add_column(col, justify="right", no_wrap=True)
        for row in rows:
            view.add_row(*(str(cell) for cell in row))
        out.print(view)
        return
    text = "\n".join([title, "", *markdown_table(columns, rows)])
    out.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)


# Typer's help panels at 80 columns cut some option names and paths (`cifar10 --help` lost
# "--no-parallel-seeds" and "cifar-10-batches-py/"); at 100 no command's help loses anything.
RICH_HELP_MIN_WIDTH = 100


def wide_help_off_a_terminal() -> None:
    """``--help`` into a pipe, a file or a CI log: panels ``RICH_HELP_MIN_WIDTH`` wide at least
    (longer lines there cost nothing; a cut word is lost)."""
    if not console.is_terminal:
        import typer.rich_utils

        typer.rich_utils.MAX_WIDTH = max(console.width, RICH_HELP_MIN_WIDTH)
