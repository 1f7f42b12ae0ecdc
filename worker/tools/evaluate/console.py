"""The evaluation in the terminal: a progress bar while scoring, then the document."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from .document import Block, Chart, Code, Heading, Para, Table
from .runner import Advance

HEAD_ROWS = 20  # long listings (flips, failures, bad rows) show this many; the report has all


def consoles() -> tuple[Console, Console]:
    """Results on stdout, progress on stderr. Piped output gets room for the wide tables."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=140)
    return out, Console(stderr=True)


@contextmanager
def progress_bar(console: Console, total: int, description: str = "scoring") -> Iterator[Advance]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def print_document(console: Console, blocks: list[Block]) -> None:
    for block in blocks:
        if isinstance(block, Heading):
            _heading(console, block)
        elif isinstance(block, Para):
            console.print(Text(block.text))
        elif isinstance(block, Table):
            _table(console, block)
        elif isinstance(block, Code):
            # Plain text, so the snippet copies cleanly into values.yaml.
            console.print(Text(block.text.rstrip()))
        elif isinstance(block, Chart):
            continue  # charts live in the report files


def _heading(console: Console, heading: Heading) -> None:
    if heading.level == 1:
        console.rule(Text(heading.text, style="bold"))
    else:
        style = "bold underline" if heading.level == 2 else "bold"
        console.print()
        console.print(Text(heading.text, style=style))


def _table(console: Console, table: Table) -> None:
    shown = table.rows[:HEAD_ROWS] if table.long else table.rows
    rich_table = RichTable(show_edge=True, header_style="bold")
    for index, column in enumerate(table.columns):
        rich_table.add_column(column, no_wrap=index == 0)  # row names stay on one line
    for row in shown:
        rich_table.add_row(*(Text(cell) for cell in row))
    console.print(rich_table)
    if len(shown) < len(table.rows):
        console.print(Text(f"... and {len(table.rows) - len(shown)} more in the report"))
