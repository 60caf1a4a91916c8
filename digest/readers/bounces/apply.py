"""What digest does with bounce reports: match each to a copy it sent, suppress hard bounces and complaints.

A report is matched to a copy by the VERP return path it was delivered to first
(``bounce+TOKEN@domain``, returnpath.py: the token names the copy and is signed), then by the
original message's Message-ID (from the attached ``message/rfc822`` or ``text/rfc822-headers``
part, else from headers quoted in the text), and only then by the recipient address alone. A
report whose token does not verify is refused outright (a forged bounce suppresses nobody); one
whose Message-ID is not one digest recorded, or whose address never received a copy, is counted
as unmatched and changes nothing: an address that is not one of our readers is never suppressed.
Hard bounces suppress the reader for every edition (``'*'``, reason ``bounced``), complaints too
(reason ``complained``, and the complaint is recorded with its copy for `digest status`); a
failed report matched by its token or Message-ID also marks that copy ``failed`` when the ledger
still had it as ``sent`` or ``uncertain``. Applying the same reports twice changes nothing the
second time.

Every read and write goes through the ``Ledger``'s named methods (``copies_by_message_id``,
``copies_to_addresses``, ``apply_bounce``); nothing here speaks to the database itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...state.ledger import Ledger, SentCopy
from .dsn import ACTING, BounceReport, Category, Kind
from .mailbox import Problem


@dataclass(frozen=True, slots=True)
class Outcome:
    """What apply() did with one report."""

    source: str
    recipient: str | None
    category: Category
    kind: Kind
    status: str | None
    matched_by: str | None      # verp | message-id | address | None
    edition: str | None
    issue_date: str | None
    result: str                 # suppressed | already suppressed | counted | ignored | unmatched
    reason: str
    copy_id: int | None = None  # the ledger row of the copy it was matched to
    email: str | None = None    # the address that copy went to


@dataclass
class Summary:
    messages: int = 0            # messages read
    reports: int = 0             # recipient reports in them (= hard + soft + policy + complaints + ignored)
    hard: int = 0
    soft: int = 0
    policy: int = 0
    complaints: int = 0
    ignored: int = 0
    unmatched: int = 0           # hard or soft reports that match no copy digest sent
    suppressed: int = 0          # readers newly suppressed by this run
    failed: int = 0              # copies newly marked failed by this run
    problems: list[Problem] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    COLUMNS = ("messages", "reports", "hard", "soft", "policy", "complaints", "ignored", "unmatched", "newly suppressed",
               "problems")
    OUTCOME_COLUMNS = ("source", "recipient", "class", "status", "issue", "result", "reason")

    def totals(self) -> tuple[int, ...]:
        """One row under COLUMNS."""
        return (self.messages, self.reports, self.hard, self.soft, self.policy, self.complaints, self.ignored,
                self.unmatched, self.suppressed, len(self.problems))

    def records(self, *, include_ignored: bool = False) -> list[dict[str, object]]:
        """One dict per report for ``--json`` (the same reports ``rows`` lists). The keys are a
        promise to operators' scripts (README): add new ones, never rename or drop one."""
        return [{"file": o.source, "recipient": o.recipient, "class": o.category, "status": o.status,
                 "matched": ({"issue": {"edition": o.edition, "date": o.issue_date}, "reader": o.email, "by": o.matched_by}
                             if o.edition else None),
                 "kind": o.kind, "result": o.result, "reason": o.reason}
                for o in self.outcomes if include_ignored or o.category in ACTING or o.kind == "unrecognised"]

    def rows(self, *, include_ignored: bool = False) -> list[tuple[str, ...]]:
        """Rows under OUTCOME_COLUMNS, one per report (ignored ones only when asked, or when they
        look like bounces digest could not read)."""
        return [(o.source, o.recipient or "", o.category, o.status or "",
                 f"{o.edition} {o.issue_date}" if o.edition else "", o.result, o.reason)
                for o in self.outcomes if include_ignored or o.category in ACTING or o.kind == "unrecognised"]


def apply(ledger: Ledger | None, reports: Iterable[BounceReport], *, verp: Callable[[str], int | None] | None = None,
          mark_failed: bool = True, dry_run: bool = False) -> Summary:
    """Match reports to the copies digest sent; suppress hard bounces and complaints; count the rest.

    ``verp`` turns a VERP token into the ledger id of the copy it names, None when it does not
    verify (returnpath.copy_id with the configured keys); without it tokens are not read. With
    ``dry_run`` nothing is written and the counts say what would have changed. Without a ledger
    (no state database yet) the reports are classified and none is matched.
    """
    reports = list(reports)
    summary = Summary(messages=len({r.source for r in reports}), reports=len(reports))
    acting_reports = [r for r in reports if r.category in ACTING]
    by_token = _by_token(ledger, acting_reports, verp) if ledger is not None else {}
    by_id, by_key = _candidates(ledger, acting_reports) if ledger is not None else ({}, {})
    acting = _Acting(ledger, summary, mark_failed=mark_failed, write=not dry_run)
    for report in reports:
        if report.category not in ACTING:
            summary.ignored += 1
            summary.outcomes.append(_outcome(report, None, None, "ignored", report.reason))
            continue
        _count(summary, report.category)
        copy, matched_by, why_not = (_match(report, by_token, by_id, by_key) if ledger is not None
                                     else (None, None, "no state database: nothing has been sent, so nothing can match"))
        if copy is None:
            summary.unmatched += 1
            summary.outcomes.append(_outcome(report, None, None, "unmatched", why_not))
            continue
        result = acting.act(report, copy, matched_by)
        summary.outcomes.append(_outcome(report, copy, matched_by, result, report.reason))
    return summary


def _count(summary: Summary, category: Category) -> None:
    if category == "complaint":
        summary.complaints += 1
    else:
        setattr(summary, category, getattr(summary, category) + 1)


def _by_token(ledger: Ledger, reports: list[BounceReport], verp: Callable[[str], int | None] | None
              ) -> dict[str, SentCopy | None]:
    """Each VERP token the reports carry -> the copy it names; None for a token that does not verify."""
    if verp is None:
        return {}
    ids = {token: verp(token) for token in {r.verp_token for r in reports if r.verp_token}}
    copies = ledger.copies_by_id(i for i in ids.values() if i is not None)
    return {token: copies.get(i) if i is not None else None for token, i in ids.items()}


def _candidates(ledger: Ledger, acting: list[BounceReport]) -> tuple[dict[str, list[SentCopy]], dict[str, list[SentCopy]]]:
    """The copies the reports may be about, by Message-ID and by address: two lookups for the whole run."""
    by_id = ledger.copies_by_message_id(r.message_id for r in acting if r.message_id)
    keys: set[str] = set()
    for report in acting:
        if not report.message_id:
            keys |= report.addresses
    return by_id, ledger.copies_to_addresses(keys)


@dataclass
class _Acting:
    """What one run has done so far, so a reader bounced twice in one mailbox counts once (dry runs too)."""

    ledger: Ledger | None
    summary: Summary
    mark_failed: bool
    write: bool
    suppressed: set[str] = field(default_factory=set)   # readers this run suppressed
    marked: set[int] = field(default_factory=set)       # copies this run marked failed

    def act(self, report: BounceReport, copy: SentCopy, matched_by: str) -> str:
        """Suppress a hard bounce's or a complaint's reader and mark the copy failed, as the report
        warrants; the result in words."""
        suppressing = report.category in ("hard", "complaint")
        reason = "complained" if report.category == "complaint" else "bounced"
        suppress = _detail(report) if suppressing and copy.key not in self.suppressed else None
        # Only a token or a Message-ID says which copy bounced; an address alone does not.
        fail = (self.mark_failed and matched_by in ("verp", "message-id") and report.action == "failed"
                and copy.id not in self.marked)
        assert self.ledger is not None
        change = self.ledger.apply_bounce(
            copy, suppress=suppress, reason=reason, write=self.write,
            complaint=(report.action or "abuse", report.source) if report.category == "complaint" else None,
            fail=(report.smtp_code, f"bounced after it was sent: {_detail(report)}") if fail else None)
        if change.failed:
            self.marked.add(copy.id)
            self.summary.failed += 1
        if not suppressing:
            return "counted"
        if change.suppressed:
            self.suppressed.add(copy.key)
            self.summary.suppressed += 1
            return "suppressed"
        return f"already suppressed ({change.earlier_reason or reason})"


def _match(report: BounceReport, by_token: dict[str, SentCopy | None], by_id: dict[str, list[SentCopy]],
           by_key: dict[str, list[SentCopy]]) -> tuple[SentCopy | None, str | None, str]:
    """(the copy, how it was found, why not when it was not)."""
    addresses = report.addresses
    if report.verp_token and report.verp_token in by_token:
        copy = by_token[report.verp_token]
        if copy is not None:
            return copy, "verp", ""
        return None, None, f"its VERP token {report.verp_token} does not verify (forged, or no longer ours); not acted on"
    if report.message_id:
        copies = by_id.get(report.message_id, [])
        if not copies:
            return None, None, f"Message-ID {report.message_id} is not a copy digest recorded"
        for copy in copies:
            if not addresses or copy.key in addresses:
                return copy, "message-id", ""
        return None, None, (f"the bounce is for {', '.join(sorted(addresses))} but {report.message_id} went to "
                            f"{copies[0].email} (forwarded?); not acted on")
    for key in sorted(addresses):
        if by_key.get(key):
            return by_key[key][0], "address", ""
    if not addresses:
        return None, None, "no VERP token, no Message-ID and no recipient address in the report"
    return None, None, f"no Message-ID, and {', '.join(sorted(addresses))} never received a copy"


def _detail(report: BounceReport) -> str:
    return f"{report.status or 'no status'}: {report.diagnostic or report.reason}"[:300]


def _outcome(report: BounceReport, copy: SentCopy | None, matched_by: str | None, result: str, reason: str) -> Outcome:
    return Outcome(report.source, report.recipient, report.category, report.kind, report.status, matched_by,
                   copy.edition if copy else None, copy.issue_date if copy else None, result, reason,
                   copy.id if copy else None, copy.email if copy else None)
