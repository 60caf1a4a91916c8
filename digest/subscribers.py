"""subscribers.csv -> a checked audience, with a clear report for every row that is not used.

The file stays the editors' own: nothing in it is rewritten. A bad row is reported with its line
and field and left out; the good rows are still used. Rows are read one at a time, so a list of
a million readers never has to be loaded as dictionaries.

Columns: ``email`` (required), ``name``, ``editions`` (``;``-separated slugs), ``status``
(``active`` when blank, ``unsubscribed``, ``bounced``); any other column is kept as a field.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .addresses import AddressError, address_key, check_address
from .errors import HeaderInjectionError, SubscriberError
from .models import Subscriber

STATUSES = ("active", "unsubscribed", "bounced")
_KNOWN = ("email", "name", "editions", "status")
_MAX_NAME = 200


@dataclass
class SubscriberLoad:
    """The usable subscribers, the rows left out (errors) and rows kept with a remark (warnings)."""

    subscribers: list[Subscriber] = field(default_factory=list)
    errors: list[SubscriberError] = field(default_factory=list)
    warnings: list[SubscriberError] = field(default_factory=list)

    def audience(self, edition: str) -> list[Subscriber]:
        """Active subscribers of one edition, in file order."""
        return [s for s in self.subscribers if s.status == "active" and edition in s.editions]


def load_subscribers(path: Path, known_editions: Iterable[str]) -> SubscriberLoad:
    """Read and check the whole file. Raises ``SubscriberError`` only if the file is unusable."""
    load = SubscriberLoad()
    for item in read_rows(path, frozenset(known_editions)):
        if isinstance(item, Subscriber):
            load.subscribers.append(item)
        elif item.warning:
            load.warnings.append(item.error)
        else:
            load.errors.append(item.error)
    return load


@dataclass(frozen=True, slots=True)
class RowProblem:
    error: SubscriberError
    warning: bool = False


def read_rows(path: Path, known_editions: frozenset[str]) -> Iterator[Subscriber | RowProblem]:
    """Yield each usable subscriber, and a ``RowProblem`` for each row that is not (or only partly)."""
    try:
        # surrogateescape: a stray non-UTF-8 byte becomes a marker in its own row, reported on
        # that row's line, instead of a decode error that would end the whole file early.
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise SubscriberError("subscriber file not found", file=path) from None
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise SubscriberError("file is empty; it needs a header row with an 'email' column", file=path, line=1) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SubscriberError(f"header row cannot be read: {exc}", file=path, line=1) from None
        if _undecodable(header):
            raise SubscriberError(f"header row is not UTF-8 text ({_undecodable(header)})", file=path, line=1)
        columns = [c.strip() for c in header]
        if "email" not in columns:
            raise SubscriberError("header row has no 'email' column", file=path, line=1)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise SubscriberError(f"column '{repeated[0]}' appears twice in the header", file=path, line=1)
        seen: dict[str, int] = {}
        last_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield RowProblem(SubscriberError(f"row cannot be read: {exc}", file=path, line=last_line + 1))
                return  # the csv reader cannot resynchronise after a broken quote or bad bytes
            line = last_line + 1
            last_line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            yield from _check_row(path, line, columns, row, known_editions, seen)


_SETS: dict[frozenset[str], frozenset[str]] = {}


def _interned(editions: frozenset[str]) -> frozenset[str]:
    """One shared set per combination of editions: a million rows hold a few dozen sets."""
    return _SETS.setdefault(editions, editions)


def iter_audience(path: Path, known_editions: frozenset[str], edition: str) -> Iterator[tuple[str, str, str]]:
    """(email, name, key) of each active reader of ``edition``, streamed: nothing else is kept."""
    for item in read_rows(path, known_editions):
        if isinstance(item, Subscriber) and item.status == "active" and edition in item.editions:
            yield item.email, item.name, address_key(item.email)


def _undecodable(cells: list[str]) -> str:
    """'' if every cell decoded as UTF-8, else a description of the first stray byte."""
    for cell in cells:
        for char in cell:
            if "\udc80" <= char <= "\udcff":
                return f"byte 0x{ord(char) - 0xDC00:02X}"
    return ""


def _check_row(path: Path, line: int, columns: list[str], row: list[str],
               known: frozenset[str], seen: dict[str, int]) -> Iterator[Subscriber | RowProblem]:
    def problem(message: str, column: str | None, *, warning: bool = False) -> RowProblem:
        return RowProblem(SubscriberError(message, file=path, line=line, field=column), warning)

    stray = _undecodable(row)
    if stray:
        yield problem(f"row is not UTF-8 text ({stray}); save the file as UTF-8", None)
        return

    if len(row) > len(columns):
        yield problem(f"row has {len(row)} fields but the header has {len(columns)} (an unquoted comma?)", None)
        return
    values = dict(zip(columns, row))
    raw_email = values.get("email", "")
    email = raw_email.strip()
    if not email:
        yield problem("is empty", "email")
        return
    try:
        check_address(email)
    except (AddressError, HeaderInjectionError) as exc:
        reason = "contains a line break or NUL" if isinstance(exc, HeaderInjectionError) else str(exc)
        yield problem(f"'{email}' is not a usable address: {reason}", "email")
        return
    if email != raw_email:
        yield problem(f"spaces around '{email}' ignored", "email", warning=True)
    key = address_key(email)
    if key in seen:
        yield problem(f"'{email}' duplicates line {seen[key]} (addresses compare case-insensitively); row skipped", "email")
        return
    name = values.get("name", "").strip()
    if any(c in name for c in "\r\n\x00"):
        yield problem("contains a line break or NUL", "name")
        return
    if len(name) > _MAX_NAME:
        yield problem(f"is longer than {_MAX_NAME} characters", "name")
        return
    status = values.get("status", "").strip().lower() or "active"
    if status not in STATUSES:
        yield problem(f"'{values.get('status')}' is not one of {', '.join(STATUSES)}; row skipped", "status")
        return
    wanted = [s.strip().lower() for s in values.get("editions", "").split(";") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        yield problem(f"unknown edition {', '.join(repr(s) for s in unknown)} ignored", "editions", warning=True)
    editions = _interned(frozenset(s for s in wanted if s in known))
    if not editions and status == "active":
        yield problem("subscribed to no known edition", "editions", warning=True)
    seen[key] = line
    yield Subscriber(
        email=email,
        name=name,
        editions=editions,
        status=status,  # type: ignore[arg-type]
        line=line,
        fields=tuple((c, values.get(c, "")) for c in columns if c not in _KNOWN),
    )
