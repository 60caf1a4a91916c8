"""Bounces that arrive later: read delivery status notifications, match them to readers, act.

A relay that accepted a copy with 250 may still fail to deliver it; it then mails a delivery
status notification (DSN, RFC 3464) back to the envelope sender. ``digest bounces PATH`` reads
those, and ARF complaints (arf.py), from a Maildir (``cur/`` and ``new/``), an mbox file, one ``.eml`` file or a folder of
``.eml`` files, and::

    mailbox.read_messages(path)  ->  (source, bytes) per message; unreadable items become problems
    dsn.parse_dsn(bytes)         ->  one BounceReport per recipient (at least one per message); the
                                     addresses from RFC 3464 fields, else flufl.bounce (library.py)
    apply.apply(ledger, reports) ->  Summary: matched to a copy of an issue (VERP token first,
                                     returnpath.py), hard bounces and complainers suppressed

``scan`` and ``process`` below run the three in turn. How a report is classified: dsn.py; how it
is matched to a reader and what is then written: apply.py.
"""

from __future__ import annotations

from pathlib import Path

from ...state.ledger import Ledger
from .apply import Outcome, Summary, apply
from .dsn import ACTING, BounceReport, Category, Kind, classify_report, parse_dsn
from .mailbox import Problem, read_messages

classify = classify_report  # the name the bounce tests (and callers before the split) use

__all__ = ["ACTING", "BounceReport", "Category", "Kind", "Outcome", "Problem", "Summary", "apply", "classify",
           "classify_report", "parse_dsn", "process", "read_messages", "scan"]


def scan(path: Path | str) -> tuple[int, list[BounceReport], list[Problem]]:
    """Read and parse every message at ``path``: (messages read, reports, problems)."""
    problems: list[Problem] = []
    reports: list[BounceReport] = []
    messages = 0
    for source, data in read_messages(path, problems):
        messages += 1
        try:
            reports.extend(parse_dsn(data, source))
        except Exception as exc:  # noqa: BLE001 -- one malformed message must not stop the mailbox
            problems.append(Problem(source, f"cannot parse: {type(exc).__name__}: {exc}"))
    return messages, reports, problems


def process(ledger: Ledger | None, path: Path | str, **options) -> Summary:
    """``digest bounces PATH``: scan the mailbox and apply what it says (options as for apply())."""
    messages, reports, problems = scan(path)
    summary = apply(ledger, reports, **options)
    summary.messages = messages
    summary.problems = problems
    return summary
