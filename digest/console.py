"""Terminal output: the only rich import. Tables, findings and a progress bar.

Reports go to standard output; errors and progress to standard error, so a report can be piped.
Everything printed passes through ``visible``: a value from a user's file (a subscriber row, a
story, digest.toml, a relay's reply) can hold control characters that a terminal would act on
(clear the screen, retitle the window, reorder the text) or a line feed that would split one
finding over two lines; they are shown as escapes instead, and rich markup is never parsed.
"""

from __future__ import annotations

import re
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
# C0 controls (line feed and tab included: one value, one line), DEL, C1, the bidirectional
# marks, embeddings, overrides and isolates, the Unicode line separators, and the lone
# surrogates that stand for undecodable bytes (read with errors="surrogateescape").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte that could not be decoded
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character a terminal would act on written as an escape (``\\x1b``,
    ``\\n``, ``\\u202e``), so it prints as one inert line."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def _cell(value: object) -> Text:
    """A table cell: escaped, and a ``Text`` so that rich reads no markup in it."""
    return Text(visible("" if value is None else str(value)))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table to standard output."""
    grid = Table(title=_cell(title), title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(_cell(column))
    for row in rows:
        grid.add_row(*(_cell(v) for v in row))  # values are data, never markup
    out.print(grid)


def line(text: str, level: str | None = None) -> None:
    """Print one line to standard output, coloured by level when it has one."""
    out.print(visible(text), style=_STYLES.get(level or "", ""), markup=False)


def error(text: str) -> None:
    """Print an error to standard error."""
    err.print(f"error: {visible(text)}", style="bold red", markup=False)


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error; yields ``advance(n)``. Silent when not on a terminal."""
    bar = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(visible(description), total=total)
        yield lambda n=1: bar.advance(task, n)


def warning(text: str) -> None:
    """Print a warning to standard error (above a progress bar when one is showing)."""
    err.print(f"warning: {text}", style="yellow", markup=False)


def note(text: str) -> None:
    """Print a notice (not an error) to standard error."""
    err.print(f"note: {visible(text)}", style="yellow", markup=False)


@contextmanager
def live_counts(description: str) -> Iterator[Callable[[dict[str, int], int], None]]:
    """A progress bar fed with (outcome counts, total): shows sent / failed / deferred, rate, ETA."""
    bar = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    )
    with bar:
        task = bar.add_task(visible(description), total=None, detail="", rate="")
        started = time.monotonic()
        shown = [0.0]  # when the bar was last redrawn

        def update(counts: dict[str, int], total: int) -> None:
            now = time.monotonic()
            done = sum(counts.values())
            if now - shown[0] < 0.1 and done < total:
                return  # ten redraws a second are plenty; building one per copy cost a send ~2% of its CPU
            shown[0] = now
            elapsed = max(now - started, 1e-6)
            detail = " ".join(f"{state} {counts[state]}" for state in ("sent", "failed", "deferred", "uncertain", "suppressed") if counts.get(state))
            bar.update(task, total=total or None, completed=done, detail=detail, rate=f"{done / elapsed:,.0f} msg/s")

        yield update
