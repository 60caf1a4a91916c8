"""Where one issue stands, for `digest status`: read from the ledger, never written.

    open the ledger read only -> the issue's record, or the scheduler's missed send ->
    copies per state (failed ones per reason) -> per relay, and per sender process, with more
    than one -> workers heard from lately -> rows left out of the audience -> copies not sent

The CLI prints an ``IssueStanding``; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from contextlib import closing
from dataclasses import dataclass, field

from ..models import Edition, Settings
from ..outcomes import FAILURE_CLASSES
from ..readers.export import deliveries_csv
from ..state.ledger import FINAL, STATES, Action, Delivery, IssueRecord, Ledger
from .approval import state_of

# Copies not sent, the ones that need a person first; pending ones too (README promises it).
_NOT_SENT_ORDER = {"failed": 0, "uncertain": 1, "deferred": 2, "sending": 3, "pending": 4}
RELAY_STATES = ("sent", "deferred", "failed", "uncertain")  # the columns of the per-relay table
WORKERS_SEEN = 60.0  # seconds: a worker heard from within this is listed as running


@dataclass(frozen=True, slots=True)
class Event:
    """One line of an issue's history: an editor's action, a preview or an approval."""

    at: float  # epoch seconds
    what: str  # hold | pause | resume | cancel | preview | approve
    by: str
    detail: str  # the reason; the fingerprint of a preview or approval
    delivered: int | None = None  # copies sent when it took effect


@dataclass(frozen=True, slots=True)
class IssueStanding:
    """What `digest status` shows of one issue; ``record`` is None when nothing is recorded."""

    edition: Edition
    date: dt.date
    database: bool  # a state database exists (else there is no such file yet)
    record: IssueRecord | None = None
    missed: str | None = None  # no record: the scheduler's detail when it missed this send
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, int]] = field(default_factory=list)  # (state shown, copies), failed ones per reason
    left_out: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) of rows still left out
    added: int = 0  # readers added since the freeze, their rows fixed
    not_sent: list[Delivery] = field(default_factory=list)
    relays: list[tuple[str, ...]] = field(default_factory=list)  # (relay, *RELAY_STATES counts), when more than one
    senders: list[tuple[str, int]] = field(default_factory=list)  # (sender process, copies sent), when more than one
    workers: list[tuple[str, str, str]] = field(default_factory=list)  # (worker, issue, seen ago) heard from lately
    complaints: int = 0  # readers who marked this issue as spam (ARF reports read by `digest bounces`)
    bounced_later: int = 0  # copies accepted by the relay that bounced afterwards (DSNs read by `digest bounces`)
    csv: str | None = None  # every copy's outcome, when asked for
    actions: list[Action] = field(default_factory=list)  # holds, pauses, resumes and cancels, oldest first
    history: list[Event] = field(default_factory=list)  # those, previews and approvals, oldest first
    approval: str | None = None  # where approval stands, for an edition that needs it

    @property
    def ok(self) -> bool:
        """Every copy settled, none failed, no subscriber row still left out: exit 0."""
        if self.record is None:
            return False
        unsettled = sum(self.counts[s] for s in STATES if s not in FINAL)
        return unsettled == 0 and self.counts["failed"] == self.counts["cancelled"] == 0 and not self.left_out


def state_shown(state: str, failure: str | None) -> str:
    """``failed (hard bounce)`` for a failed copy, else the state itself."""
    if state != "failed":
        return state
    return f"failed ({FAILURE_CLASSES.get(failure or 'permanent', failure)})"


def issue_standing(settings: Settings, edition: Edition, date: dt.date, *, with_csv: bool = False) -> IssueStanding:
    """Where issue (edition, date) stands in the state database; ``with_csv`` adds every copy as CSV."""
    ledger = Ledger.read_only(settings.state_db)
    if ledger is None:
        return IssueStanding(edition, date, database=False)
    with closing(ledger):
        record = ledger.find_issue(edition.slug, date)
        actions = ledger.actions(edition.slug, date)
        known = {"actions": actions, "history": _history(ledger, edition, date, actions),
                 "approval": state_of(ledger, edition, date) if record is None else None}
        if record is None:
            return IssueStanding(edition, date, database=True, missed=_missed(ledger, edition, date), **known)
        standing = _recorded(ledger, edition, date, record, with_csv, _relay_rows(ledger, record, settings))
        return dataclasses.replace(standing, **known)


def _history(ledger: Ledger, edition: Edition, date: dt.date, actions: list[Action]) -> list[Event]:
    """The issue's actions, previews and approvals in the order they happened."""
    found = [Event(a.at, a.action, a.actor, a.reason or "", a.delivered) for a in actions]
    found += [Event(p.at, "preview", "digest", f"{p.fingerprint} to {', '.join(p.to)}") for p in ledger.previews(edition.slug, date)]
    found += [Event(a.at, "approve", a.actor, f"{a.fingerprint} (via {a.via})") for a in ledger.approvals(edition.slug, date)]
    return sorted(found, key=lambda e: e.at)


def _missed(ledger: Ledger, edition: Edition, date: dt.date) -> str | None:
    """The scheduler's detail of its missed send of this issue, if it recorded one."""
    if not ledger.has_table("missed_sends"):  # an older database, opened read only
        return None
    return next((detail for _, day, _, detail in ledger.missed(edition.slug) if day == date), None)


def _recorded(ledger: Ledger, edition: Edition, date: dt.date, record: IssueRecord, with_csv: bool,
              relays: list[tuple]) -> IssueStanding:
    left_out = ledger.left_out(record.id)
    still_out = [(line, reason) for line, _, reason, added in left_out if added is None]
    not_sent = sorted(ledger.deliveries(record.id, list(_NOT_SENT_ORDER)), key=lambda d: _NOT_SENT_ORDER[d.state])
    counts = ledger.counts(record.id)
    failures = ledger.failure_counts(record.id)
    return IssueStanding(edition, date, True, record, counts=counts, rows=_state_rows(counts, failures),
                         left_out=still_out, added=len(left_out) - len(still_out), not_sent=not_sent,
                         csv=deliveries_csv(ledger.deliveries(record.id)) if with_csv else None, relays=relays,
                         senders=_sender_rows(ledger.sender_counts(record.id)), workers=_worker_rows(ledger),
                         complaints=ledger.complaint_count(record.id) if ledger.has_table("complaints") else 0,
                         bounced_later=failures.get("dsn", 0))


def _sender_rows(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Copies sent per process (host:pid, or a worker's name), when more than one sent the issue."""
    by_process: dict[str, int] = {}
    for sender, n in counts.items():
        process = sender.rsplit("#", 1)[0] if "#" in sender else sender.rsplit(":", 1)[0]
        by_process[process] = by_process.get(process, 0) + n
    return sorted(by_process.items()) if len(by_process) > 1 else []


def _worker_rows(ledger: Ledger, now: float | None = None) -> list[tuple[str, str, str]]:
    """Workers heard from in the last WORKERS_SEEN seconds: (name, the issue they were on, seen ago)."""
    now = time.time() if now is None else now
    rows = []
    for name, seen, issue_id, _ in ledger.workers(now - WORKERS_SEEN):
        found = ledger.issue_by_id(issue_id) if issue_id is not None else None
        issue = f"{found[0].edition} {found[0].issue_date}" if found else "idle"
        rows.append((name, issue, f"{max(0.0, now - seen):.0f} s ago"))
    return rows


def _state_rows(counts: dict[str, int], failures: dict[str, int]) -> list[tuple[str, int]]:
    """One row per state present, and after 'failed' one per reason, so a hard bounce is not read as a relay hiccup."""
    rows: list[tuple[str, int]] = []
    for state in STATES:
        if counts[state]:
            rows.append((state, counts[state]))
        if state == "failed":
            rows += [(state_shown(state, failure), n) for failure, n in sorted(failures.items())]
    return rows


def _relay_rows(ledger: Ledger, record: IssueRecord, settings: Settings) -> list[tuple]:
    """(relay, sent, deferred, failed, uncertain) per relay: the configured ones in their order, then
    any other the ledger names (renamed or removed since); none when only one relay is in play."""
    counts = ledger.relay_counts(record.id)
    names = [relay.relay_name for relay in settings.smtp_relays()]
    names += [name for name in counts if name not in names]
    if len(settings.smtp_relays()) < 2 and len(counts) < 2:
        return []
    return [(name, *(counts.get(name, {}).get(state, 0) for state in RELAY_STATES)) for name in names]
