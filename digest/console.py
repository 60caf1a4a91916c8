"""Terminal output: the only rich import. Tables, findings and a progress bar.

Reports go to standard output; errors and progress to standard error, so a report can be piped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Piped output gets room for whole tables instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
_STYLES = {"error": "bold red", "warning": "yellow", "ok": "green"}


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table to standard output."""
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(Text("" if v is None else str(v)) for v in row))  # values are data, never markup
    out.print(grid)


def line(text: str, level: str | None = None) -> None:
    """Print one line to standard output, coloured by level when it has one."""
    out.print(text, style=_STYLES.get(level or "", ""), markup=False)


def error(text: str) -> None:
    """Print an error to standard error."""
    err.print(f"error: {text}", style="bold red", markup=False)


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error; yields ``advance(n)``. Silent when not on a terminal."""
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def note(text: str) -> None:
    """Print a notice (not an error) to standard error."""
    err.print(f"note: {text}", style="yellow", markup=False)


@contextmanager
def live_counts(description: str) -> Iterator[Callable[[dict[str, int], int], None]]:
    """A progress bar fed with (outcome counts, total): shows sent / failed / deferred, rate, ETA."""
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=None, detail="", rate="")
        started = time.monotonic()

        def update(counts: dict[str, int], total: int) -> None:
            done = sum(counts.values())
            elapsed = max(time.monotonic() - started, 1e-6)
            detail = " ".join(f"{state} {counts[state]}" for state in ("sent", "failed", "deferred", "uncertain", "suppressed") if counts.get(state))
            bar.update(task, total=total or None, completed=done, detail=detail, rate=f"{done / elapsed:,.0f} msg/s")

        yield update
