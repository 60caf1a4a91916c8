"""Per-reader outcomes as CSV that is safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a
formula by Excel, LibreOffice or Google Sheets (CSV injection); such cells get a leading ``'``,
which spreadsheets show as text. SMTP replies come from other people's servers, so this matters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ..outcomes import FAILURE_CLASSES
from ..state.ledger import Delivery

# ``failure`` is why a failed copy failed (hard bounce, policy rejection, ...); empty otherwise.
COLUMNS = ("email", "name", "state", "failure", "attempts", "last_code", "last_reply", "message_id", "updated_at")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The value as text, defused if a spreadsheet would evaluate it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def deliveries_csv(deliveries: Iterable[Delivery]) -> str:
    """CSV text with a header row, one row per copy."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for d in deliveries:
        failure = FAILURE_CLASSES.get(d.failure, d.failure) if d.state == "failed" and d.failure else ""
        writer.writerow([safe_cell(v) for v in (d.email, d.name, d.state, failure, d.attempts, d.last_code, d.last_text,
                                               d.message_id, d.updated_at)])
    return out.getvalue()
