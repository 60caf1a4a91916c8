"""Write subscribers.csv back with the state database's suppressions applied.

The editors' file stays the source of truth: after unsubscribes and hard bounces, `digest
subscribers export` folds them into it. Only the rows that change are rewritten; every other
line (header, other rows' quoting, rows with errors) is kept byte for byte. The old file is kept
as a timestamped backup and the new one replaces it atomically.

    bounced ('*')        -> status = bounced
    unsubscribed ('*')   -> status = unsubscribed
    unsubscribed (one edition) -> that slug leaves the editions column; none left -> unsubscribed
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SubscriberError
from ..files import write_atomically
from ..state.ledger import Ledger
from .addresses import address_key
from .subscribers import csv_records


@dataclass
class WriteBack:
    """What an export changed (or would change)."""

    changes: list[tuple[int, str, str, str]] = field(default_factory=list)  # (line, email, before, after)
    backup: Path | None = None


def _suppressions(ledger: Ledger) -> dict[str, dict[str, str]]:
    """key -> {edition or '*': reason}."""
    found: dict[str, dict[str, str]] = {}
    for key, edition, reason in ledger.suppressions():
        found.setdefault(key, {})[edition] = reason
    return found


def _records(text: str) -> list[tuple[int, str, list[str] | None]]:
    """(first line number, raw text, fields or None when unreadable) for each record, raw text exactly
    as in the file. Records are split as ``subscribers`` splits them, so a row that ``check`` reports
    as unreadable is kept here byte for byte and the rows after it are still written back."""
    return [(r.line, "".join(r.raw), r.fields) for r in csv_records(io.StringIO(text, newline=""))]


def export(path: Path, ledger: Ledger, *, write: bool = True, now: dt.datetime | None = None) -> WriteBack:
    """Apply the ledger's suppressions to ``path``; ``write=False`` only reports the changes."""
    text, bom = _read_text(path)
    records = _records(text)
    column = _header_columns(records, path)
    result = WriteBack()
    out = _rewrite(records, column, _suppressions(ledger), result)
    if write and result.changes:
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        result.backup = path.with_name(f"{path.name}.{stamp}.bak")
        shutil.copy2(path, result.backup)
        write_atomically(path, (b"\xef\xbb\xbf" if bom else b"") + "".join(out).encode("utf-8"))
    return result


def _read_text(path: Path) -> tuple[str, bool]:
    """The file's text and whether it starts with a byte-order mark (kept when it is written back)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SubscriberError("subscriber file not found", file=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"not UTF-8 text (byte {exc.start}); export rewrites nothing until it is", file=path) from None
    return text, raw.startswith(b"\xef\xbb\xbf")


def _header_columns(records: list[tuple[int, str, list[str] | None]], path: Path) -> dict[str, int]:
    """Column name -> index, from the header record; ``SubscriberError`` when there is none to go by."""
    if not records:
        raise SubscriberError("file is empty", file=path, line=1)
    if records[0][2] is None:
        raise SubscriberError("header row cannot be read; export rewrites nothing until it is", file=path, line=1)
    header = [c.strip() for c in records[0][2]]
    if "email" not in header:
        raise SubscriberError("header row has no 'email' column", file=path, line=1)
    return {name: i for i, name in enumerate(header)}


def _rewrite(records: list[tuple[int, str, list[str] | None]], column: dict[str, int],
             suppressed: dict[str, dict[str, str]], result: WriteBack) -> list[str]:
    """The file's records with suppressions applied, each change noted in ``result``; the rest as they were."""
    newline = "\r\n" if "\r\n" in records[0][1] else "\n"
    out = [records[0][1]]
    for line, raw_record, fields in records[1:]:
        changed = None if fields is None else _apply(fields, column, suppressed)
        if changed is None:
            out.append(raw_record)
            continue
        before, after, new_fields = changed
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerow(new_fields)
        row = buffer.getvalue()
        out.append(row if raw_record.endswith(("\n", "\r")) else row.rstrip("\r\n"))  # last line without newline
        result.changes.append((line, fields[column["email"]].strip(), before, after))
    return out


def _apply(fields: list[str], column: dict[str, int], suppressed: dict[str, dict[str, str]]) -> tuple[str, str, list[str]] | None:
    """(before, after, new fields) of a row whose reader is suppressed; None when the row stays as it is."""
    email = fields[column["email"]].strip() if len(fields) > column["email"] else ""
    if not email or address_key(email) not in suppressed:
        return None
    fields = list(fields) + [""] * (len(column) - len(fields))
    status_i, editions_i = column.get("status"), column.get("editions")
    status, editions = _row_state(fields, status_i, editions_i)
    new_status, new_editions = _suppressed(status, editions, suppressed[address_key(email)])
    if new_status == status and new_editions == editions:
        return None
    if status_i is None and new_status != status:
        return None  # no status column to write to; the ledger still suppresses this reader
    if status_i is not None:
        fields[status_i] = new_status
    if editions_i is not None:
        fields[editions_i] = ";".join(new_editions)
    # Parentheses, not brackets: a terminal table would read "[am;pm]" as markup and drop it.
    before = f"{status} ({';'.join(editions)})"
    after = f"{new_status} ({';'.join(new_editions)})"
    return before, after, fields


def _row_state(fields: list[str], status_i: int | None, editions_i: int | None) -> tuple[str, list[str]]:
    """A row's status (blank: active) and editions, as read from its columns when it has them."""
    status = (fields[status_i].strip().lower() if status_i is not None else "") or "active"
    editions = [s.strip() for s in fields[editions_i].split(";") if s.strip()] if editions_i is not None else []
    return status, editions


def _suppressed(status: str, editions: list[str], rules: dict[str, str]) -> tuple[str, list[str]]:
    """A row's (status, editions) after its reader's suppressions: the table in this module's docstring."""
    if "*" in rules:
        return ("bounced" if rules["*"] == "bounced" else "unsubscribed"), editions
    left = [s for s in editions if s.lower() not in rules]
    return ("unsubscribed" if editions and not left else status), left
