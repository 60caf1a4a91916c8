"""subscribers.csv -> a checked audience, with a clear report for every row that is not used.

The file stays the editors' own: nothing in it is rewritten. A bad row is reported with its line
and field and left out; the good rows are still used. Rows are read one at a time, so a list of
a million readers never has to be loaded as dictionaries.

Columns: ``email`` (required), ``name``, ``first_name`` (what the greeting calls the reader),
``editions`` (``;``-separated slugs), ``status`` (``active`` when blank, ``unsubscribed``,
``bounced``); any other column is kept as a field.

A row the csv module cannot read (a stray quote) costs that row only: records are cut from the
file's physical lines here, each fed to the csv module alone, and after a broken one reading
starts again at the next physical line. Every line is counted as header, kept, skipped or blank.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from typing import TextIO
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeaderInjectionError, SubscriberError
from ..models import Subscriber
from .addresses import AddressError, address_key, check_address
from .names import greeting_name
from .seen import SeenAddresses

STATUSES = ("active", "unsubscribed", "bounced")
_KNOWN = ("email", "name", "first_name", "editions", "status")
_MAX_NAME = 200
# A quoted field may span lines (an address in a notes column); one still open after this many
# lines is taken for a broken quote, so a stray '"' cannot swallow the rest of the file.
MAX_RECORD_LINES = 10


@dataclass
class LineCount:
    """Every physical line of the file, by what became of it: total = header + kept + skipped + blank."""

    total: int = 0
    header: int = 0
    kept: int = 0  # lines of rows that became subscribers (warnings included)
    skipped: int = 0  # lines of rows left out, each with an error
    blank: int = 0


@dataclass
class SubscriberLoad:
    """The usable subscribers, the rows left out (errors) and rows kept with a remark (warnings)."""

    subscribers: list[Subscriber] = field(default_factory=list)
    errors: list[SubscriberError] = field(default_factory=list)
    warnings: list[SubscriberError] = field(default_factory=list)
    lines: LineCount = field(default_factory=LineCount)
    lost: dict[str, int] = field(default_factory=dict)  # edition -> rows left out that were meant for it
    lost_unknown: int = 0  # rows left out whose editions cannot be made out

    def audience(self, edition: str) -> list[Subscriber]:
        """Active subscribers of one edition, in file order."""
        return [s for s in self.subscribers if reads(s, edition)]

    def lost_for(self, edition: str) -> list[SubscriberError]:
        """The errors of rows that were, or may have been, meant for ``edition``."""
        return [e for e, p in zip(self.errors, self._problems) if p.meant_for(edition)]

    _problems: list[RowProblem] = field(default_factory=list, repr=False)


def reads(subscriber: Subscriber, edition: str) -> bool:
    """Whether ``subscriber`` is in ``edition``'s audience: active and subscribed to it. The one audience rule."""
    return subscriber.status == "active" and edition in subscriber.editions


def load_subscribers(path: Path, known_editions: Iterable[str]) -> SubscriberLoad:
    """Read and check the whole file. Raises ``SubscriberError`` only if the file is unusable."""
    load = SubscriberLoad()
    for item in read_rows(path, frozenset(known_editions), load.lines):
        if isinstance(item, Subscriber):
            load.subscribers.append(item)
        elif item.warning:
            load.warnings.append(item.error)
        else:
            load.errors.append(item.error)
            load._problems.append(item)
            if item.lost is None:
                load.lost_unknown += 1
            for slug in item.lost or ():
                load.lost[slug] = load.lost.get(slug, 0) + 1
    return load


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row left out (``warning`` False) or kept with a remark.

    ``lost``: the editions a left-out row was meant for, as far as they can be made out (None:
    they cannot); ``key``: its address, casefolded, when that can be read.
    """

    error: SubscriberError
    warning: bool = False
    lost: frozenset[str] | None = frozenset()
    key: str | None = None

    def meant_for(self, edition: str) -> bool:
        """Whether this left-out row was, or may have been, meant for ``edition``."""
        return not self.warning and (self.lost is None or edition in self.lost)


def read_rows(path: Path, known_editions: frozenset[str],
              lines: LineCount | None = None) -> Iterator[Subscriber | RowProblem]:
    """Yield each usable subscriber, and a ``RowProblem`` for each row that is not (or only partly).

    ``lines``, when given, is filled in with what became of every physical line.
    """
    lines = lines if lines is not None else LineCount()
    try:
        # surrogateescape: a stray non-UTF-8 byte becomes a marker in its own row, reported on
        # that row's line, instead of a decode error that would end the whole file early.
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise SubscriberError("subscriber file not found", file=path) from None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        yield from _read_open(handle, path, known_editions, lines)
    except OSError as exc:  # a read that fails half way (a device, a network mount): name the file
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _read_open(handle: TextIO, path: Path, known_editions: frozenset[str],
               lines: LineCount) -> Iterator[Subscriber | RowProblem]:
    """The rows of an opened file after its header, each line counted in ``lines``."""
    with handle:
        physical = _Lines(handle)
        columns, header_end = _read_header(physical, path)
        lines.header = header_end
        seen = SeenAddresses()
        for record in records_after(physical, header_end):
            yield from _read_record(record, path, columns, known_editions, seen, lines)
        lines.total = physical.count


def _read_header(physical: _Lines, path: Path) -> tuple[list[str], int]:
    """The header's column names and the line index after it; ``SubscriberError`` if it is unusable."""
    header_end = physical.record_end(0)
    if physical.count == 0:
        raise SubscriberError("file is empty; it needs a header row with an 'email' column", file=path, line=1)
    try:
        if header_end is None:
            raise csv.Error("a quoted field is never closed")
        header = _parse(physical.take(0, header_end))
    except csv.Error as exc:
        raise SubscriberError(f"header row cannot be read: {exc}", file=path, line=1) from None
    if _undecodable(header):
        raise SubscriberError(f"header row is not UTF-8 text ({_undecodable(header)})", file=path, line=1)
    columns = [c.strip() for c in header]
    if "email" not in columns:
        raise SubscriberError("header row has no 'email' column", file=path, line=1)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise SubscriberError(f"column '{repeated[0]}' appears twice in the header", file=path, line=1)
    return columns, header_end


def _read_record(record: Record, path: Path, columns: list[str], known_editions: frozenset[str],
                 seen: SeenAddresses, lines: LineCount) -> Iterator[Subscriber | RowProblem]:
    """One record's subscriber and problems; its lines counted as kept, skipped or blank."""
    line = record.line
    if record.fields is None:
        # Unreadable: this line alone is left out and reading starts again at the next one.
        lines.skipped += 1
        lost, key = _guess(record.raw[0], columns, known_editions)
        yield RowProblem(SubscriberError(f"row cannot be read: {record.reason}; row skipped", file=path, line=line),
                         lost=lost, key=key)
        return
    row, span = record.fields, len(record.raw)
    if not row or all(not cell.strip() for cell in row):
        lines.blank += span
        return
    kept = False
    for item in _check_row(path, line, columns, row, known_editions, seen):
        kept = kept or isinstance(item, Subscriber)
        yield _with_span(item, path, line, span) if span > 1 else item
    if kept:
        lines.kept += span
    else:
        lines.skipped += span


def _with_span(item: Subscriber | RowProblem, path: Path, line: int, span: int) -> Subscriber | RowProblem:
    """A left-out row's error, saying where the record ends: a stray quote may have joined the next rows to it."""
    if not isinstance(item, RowProblem) or item.warning:
        return item
    error = item.error
    return RowProblem(SubscriberError(f"{error.message} (this row runs over lines {line}-{line + span - 1})",
                                      file=path, line=line, field=error.field), False, item.lost, item.key)


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV record as the file holds it: where it starts, its physical lines, its fields.

    ``fields`` is None for a line that cannot be read (``reason`` says why); reading goes on
    with the next physical line, so a stray quote costs its own row only.
    """

    line: int  # first physical line, counting from 1
    raw: list[str]  # the physical lines, exactly as in the file (line endings included)
    fields: list[str] | None
    reason: str = ""


def records_after(physical: _Lines, start: int) -> Iterator[Record]:
    """The records from physical line index ``start`` on, resynchronising after a bad one."""
    while physical.has(start):
        end = physical.record_end(start)
        fields: list[str] | None = None
        reason = ""
        if end is None:
            reason = ("a quoted field is still open at the end of the file" if not physical.has(start + MAX_RECORD_LINES)
                      else f"a quoted field is still open after {MAX_RECORD_LINES} lines")
        else:
            try:
                fields = _parse(physical.peek(start, end))
            except csv.Error as exc:
                reason = str(exc)
        if fields is None:
            yield Record(start + 1, physical.take(start, start + 1), None, reason)
            start += 1
        else:
            yield Record(start + 1, physical.take(start, end), fields)
            start = end


def csv_records(lines: Iterable[str]) -> Iterator[Record]:
    """Every record of a subscriber file's text (header first), read the way ``read_rows`` reads it."""
    yield from records_after(_Lines(lines), 0)


# C0 and C1 controls (a tab included), DEL, and the bidirectional embeddings, overrides and
# isolates, which reorder what follows them on screen: nothing a name is written with. The marks
# U+200E/U+200F that right-to-left names may need are allowed.
_HIDDEN_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class _Lines:
    """The file's physical lines, read lazily with a lookahead of at most ``MAX_RECORD_LINES``."""

    def __init__(self, handle: Iterable[str]) -> None:
        self._source = iter(handle)
        self._buffer: list[str] = []
        self._first = 0  # line index of self._buffer[0]
        self._done = False

    @property
    def count(self) -> int:
        """Lines read so far (all of them, once the end has been reached)."""
        return self._first + len(self._buffer)

    def has(self, index: int) -> bool:
        while not self._done and index >= self.count:
            try:
                self._buffer.append(next(self._source))
            except StopIteration:
                self._done = True
        return index < self.count

    def peek(self, start: int, end: int) -> list[str]:
        self.has(end - 1)
        return self._buffer[start - self._first:end - self._first]

    def take(self, start: int, end: int) -> list[str]:
        """Lines start..end-1, and forget every line before ``end``."""
        taken = self.peek(start, end)
        del self._buffer[:end - self._first]
        self._first = end
        return taken

    def record_end(self, start: int) -> int | None:
        """Index after the last line of the record starting at ``start``; None when a quote is
        still open after ``MAX_RECORD_LINES`` lines or at the end of the file.

        Follows the csv module's rule: a quote opens a quoted field only at the start of a field,
        and inside one a doubled quote stands for a quote.
        """
        quoted = False
        index = start
        while index < start + MAX_RECORD_LINES and self.has(index):
            text = self._buffer[index - self._first]
            if quoted or '"' in text:  # most lines hold no quote at all: no need to scan them
                quoted = _still_quoted(text, quoted)
            if not quoted:
                return index + 1
            index += 1
        return None


def _still_quoted(text: str, quoted: bool) -> bool:
    """Whether a quoted field is open at the end of ``text``, given whether one was at its start."""
    at_field_start = not quoted
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if quoted:
            if char == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 1
                else:
                    quoted = False
        elif char == '"' and at_field_start:
            quoted = True
        at_field_start = not quoted and char == ","
        i += 1
    return quoted


def _parse(record: list[str]) -> list[str]:
    """One record's fields, read strictly by the csv module."""
    rows = list(csv.reader(record, strict=True))
    if len(rows) != 1:
        raise csv.Error(f"{len(rows)} records where one was expected")
    return rows[0]


def _guess(text: str, columns: list[str], known: frozenset[str]) -> tuple[frozenset[str] | None, str | None]:
    """(editions, address key) an unreadable line was probably meant for; None where unknown."""
    for options in ({}, {"quoting": csv.QUOTE_NONE}):
        try:
            cells = next(csv.reader([text], **options), [])
        except csv.Error:
            continue
        if len(cells) > len(columns):
            continue
        values = dict(zip(columns, cells))
        wanted = {s.strip().lower() for s in values.get("editions", "").split(";") if s.strip()}
        if not wanted or not wanted <= known:
            continue
        key = None
        try:
            email = values.get("email", "").strip()
            check_address(email)
            key = address_key(email)
        except (AddressError, HeaderInjectionError):
            pass
        status = values.get("status", "").strip().lower()
        return (frozenset() if status in ("unsubscribed", "bounced") else frozenset(wanted)), key
    return None, None


_SETS: dict[frozenset[str], frozenset[str]] = {}


def _interned(editions: frozenset[str]) -> frozenset[str]:
    """One shared set per combination of editions: a million rows hold a few dozen sets."""
    return _SETS.setdefault(editions, editions)


def iter_audience(path: Path, known_editions: frozenset[str], edition: str,
                  left_out: list[RowProblem] | None = None) -> Iterator[tuple[str, str, str, str]]:
    """(email, name, key, greeting name) of each active reader of ``edition``, streamed.

    Nothing else is kept, except that ``left_out``, when given, collects the rows left out
    that were (or may have been) meant for ``edition``.
    """
    for item in read_rows(path, known_editions):
        if isinstance(item, Subscriber):
            if reads(item, edition):
                yield item.email, item.name, address_key(item.email), item.greet_name
        elif left_out is not None and item.meant_for(edition):
            left_out.append(item)


def _undecodable(cells: list[str]) -> str:
    """'' if every cell decoded as UTF-8, else a description of the first stray byte."""
    for cell in cells:
        for char in cell:
            if "\udc80" <= char <= "\udcff":
                return f"byte 0x{ord(char) - 0xDC00:02X}"
    return ""


@dataclass(slots=True)
class _Row:
    """One data row under check: where it is, its cells by column, and what each check found.

    The checks below run in order; each reads what the earlier ones set (``key``, ``first``...).
    """

    path: Path
    line: int
    cells: list[str]
    values: dict[str, str]
    wanted: list[str]  # the editions column's slugs, lower-case, in file order
    lost: frozenset[str]  # what leaving the row out would cost: its known editions, unless it had left
    key: str | None = None
    email: str = ""
    name: str = ""
    first: str = ""
    greet: str = ""
    status: str = ""
    editions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, path: Path, line: int, columns: list[str], cells: list[str], known: frozenset[str]) -> _Row:
        """A row about to be checked, with what leaving it out would cost worked out first."""
        values = dict(zip(columns, cells))
        wanted = [s.strip().lower() for s in values.get("editions", "").split(";") if s.strip()]
        inactive = values.get("status", "").strip().lower() in ("unsubscribed", "bounced")
        return cls(path, line, cells, values, wanted, frozenset() if inactive else frozenset(s for s in wanted if s in known))

    def problem(self, message: str, column: str | None, *, warning: bool = False) -> RowProblem:
        """A finding on this row: an error leaves it out, a warning keeps it with a remark."""
        return RowProblem(SubscriberError(message, file=self.path, line=self.line, field=column), warning,
                          frozenset() if warning else self.lost, self.key)


def _check_text(row: _Row, columns: list[str]) -> Iterator[RowProblem]:
    """The whole row: UTF-8 text, and no more fields than the header has."""
    stray = _undecodable(row.cells)
    if stray:
        yield row.problem(f"row is not UTF-8 text ({stray}); save the file as UTF-8", None)
    elif len(row.cells) > len(columns):
        yield row.problem(f"row has {len(row.cells)} fields but the header has {len(columns)} (an unquoted comma?)", None)


def _check_email(row: _Row, seen: SeenAddresses) -> Iterator[RowProblem]:
    """The email column: present, a usable address, not one an earlier row already has."""
    raw_email = row.values.get("email", "")
    email = raw_email.strip()
    if not email:
        yield row.problem("is empty", "email")
        return
    try:
        check_address(email)
    except (AddressError, HeaderInjectionError) as exc:
        reason = "contains a line break or NUL" if isinstance(exc, HeaderInjectionError) else str(exc)
        yield row.problem(f"'{email}' is not a usable address: {reason}", "email")
        return
    row.email, row.key = email, address_key(email)
    if email != raw_email:
        yield row.problem(f"spaces around '{email}' ignored", "email", warning=True)
    first = seen.line_of(row.key)
    if first is not None:
        yield row.problem(f"'{email}' duplicates line {first} (addresses compare case-insensitively); row skipped",
                          "email")


def _check_names(row: _Row) -> Iterator[RowProblem]:
    """The name and first_name columns, then the name the greeting will use."""
    row.name = row.values.get("name", "").strip()
    row.first = row.values.get("first_name", "").strip()
    for column, value in (("name", row.name), ("first_name", row.first)):
        problem = _name_problem(value)
        if problem:
            yield row.problem(problem, column)
            return
    first = row.first
    if first and not (first[0].isalnum() and first[-1].isalnum()):
        # The greeting adds its own punctuation: 'Hello, Ana,.' is worse than 'Hello.'
        yield row.problem(f"'{first}' begins or ends with punctuation; the greeting leaves the name out", "first_name",
                          warning=True)
        row.greet = ""
    else:
        row.greet = first or greeting_name(row.name)


def _name_problem(value: str) -> str:
    """Why a name cell cannot be used ('' when it can)."""
    if "\n" in value or "\r" in value or "\x00" in value:
        return "contains a line break or NUL"
    hidden = _HIDDEN_CONTROL.search(value)
    if hidden is not None:
        # It would reach the To header, the greeting and every export: ask for the name as meant.
        return f"contains the control character U+{ord(hidden.group()):04X}; row skipped"
    if len(value) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} characters"
    return ""


def _check_status(row: _Row) -> Iterator[RowProblem]:
    """The status column: blank (active) or one of ``STATUSES``."""
    row.status = row.values.get("status", "").strip().lower() or "active"
    if row.status not in STATUSES:
        yield row.problem(f"'{row.values.get('status')}' is not one of {', '.join(STATUSES)}; row skipped", "status")


def _check_editions(row: _Row, known: frozenset[str]) -> Iterator[RowProblem]:
    """The editions column: unknown slugs are dropped with a remark, as is an active row left with none."""
    unknown = [s for s in row.wanted if s not in known]
    if unknown:
        yield row.problem(f"unknown edition {', '.join(repr(s) for s in unknown)} ignored", "editions", warning=True)
    row.editions = _interned(frozenset(s for s in row.wanted if s in known))
    if not row.editions and row.status == "active":
        yield row.problem("subscribed to no known edition", "editions", warning=True)


def _check_row(path: Path, line: int, columns: list[str], row: list[str],
               known: frozenset[str], seen: SeenAddresses) -> Iterator[Subscriber | RowProblem]:
    """Each problem of one data row, in the order found, then its ``Subscriber`` if it is kept.

    The columns are checked one after another; the first error (not a warning) leaves the row out.
    """
    checked = _Row.of(path, line, columns, row, known)
    values = checked.values
    for findings in (_check_text(checked, columns), _check_email(checked, seen), _check_names(checked),
                     _check_status(checked), _check_editions(checked, known)):
        for problem in findings:
            yield problem
            if not problem.warning:
                return
    seen.add(checked.key, line)  # type: ignore[arg-type]  # _check_email set it
    yield Subscriber(
        email=checked.email,
        name=checked.name,
        editions=checked.editions,
        status=checked.status,  # type: ignore[arg-type]
        line=line,
        fields=tuple((c, values.get(c, "")) for c in columns if c not in _KNOWN),
        greet_name=checked.greet,
    )
