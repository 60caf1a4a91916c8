"""Approval pinned to bytes: what an editor approves is the exact composition the issue goes with.

    compose issue (edition, date) from today's files -> its fingerprint (``approval_fingerprint``)
    -> kept as a proposal (its whole composition) -> an editor approves that fingerprint
    -> at send time, composed again: the same fingerprint creates the issue from the kept proposal;
       any other (a story edited, added or removed, the note or a template changed) is held

An edition with ``approval = "required"`` is created only this way, by the scheduler and by
`digest send` alike; once created, an issue goes as created (approval concerns what is sent, and
that is fixed from then on). An approval may come late, up to the issue's delivery deadline.
"""

from __future__ import annotations

import datetime as dt
from contextlib import closing
from dataclasses import dataclass

from ..compose.editions import send_time
from ..compose.pipeline import ComposedIssue, StoredComposition, compose
from ..compose.planning import plan_issue
from ..compose.preflight import Finding, check_plan, check_rendered
from ..errors import DigestError, InputError, StoryError
from ..models import Edition, Issue, Settings
from ..readers.subscribers import iter_audience
from ..sources.gathering import broken_story_rule, gather_stories
from ..sources.notes import note_path
from ..state.ledger import Approval, Ledger
from .send import issue_deadline

VIAS = ("command", "link", "desk")


class AwaitingApproval(DigestError):
    """An edition that needs approval has none for the fingerprint its issue composes to now."""

    def __init__(self, message: str, *, fingerprint: str, approved: tuple[str, ...]) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.approved = approved  # fingerprints approved earlier, which no longer match

    @property
    def invalidated(self) -> bool:
        """An editor approved this issue, but it has changed since."""
        return bool(self.approved)


@dataclass(frozen=True)
class Proposal:
    """Issue (edition, date) as it would go now: what editors are shown and approve."""

    issue: Issue
    composed: ComposedIssue
    fingerprint: str
    left_out: tuple[StoryError, ...]  # story (or note) files that cannot be read, left out
    findings: tuple[Finding, ...]  # the preflight's, as `digest check` gives them
    readers: int  # active readers in subscribers.csv, less suppressed addresses
    size: int  # bytes of one reader's copy

    @property
    def edition(self) -> Edition:
        return self.issue.edition

    @property
    def date(self) -> dt.date:
        return self.issue.date


def deadline(settings: Settings, edition: Edition, date: dt.date) -> dt.datetime:
    """Until when issue (edition, date) may still be approved and sent: its delivery deadline."""
    return dt.datetime.fromtimestamp(issue_deadline(send_time(edition, date), settings.delivery), dt.timezone.utc)


def propose(settings: Settings, edition: Edition, date: dt.date, ledger: Ledger) -> Proposal | None:
    """Compose issue (edition, date) from today's files, keep it as a proposal; None if it is empty.

    Story files that cannot be read follow ``on_broken_story`` as for the send (``BrokenStories``).
    """
    stories = gather_stories(settings)
    issue = plan_issue(settings, edition, date, stories.stories, ledger)
    left_out = broken_story_rule(edition, date, stories, note=issue.note_problem, log=False)
    if issue.is_empty:
        return None
    composed = compose(settings, issue)
    fingerprint = keep(ledger, composed)
    sample = composed.message(composed.recipients.for_address("reader@example.com", "Sample Reader"))
    note = note_path(settings.paths.notes, edition.slug, date)
    findings = tuple(check_plan(issue, str(note) if note else None) + check_rendered(composed, sample))
    return Proposal(issue, composed, fingerprint, left_out, findings, _readers(settings, edition, ledger), len(sample))


def keep(ledger: Ledger, composed: ComposedIssue) -> str:
    """Keep ``composed`` as a proposal of its issue (the first one of its fingerprint stays); the fingerprint."""
    fingerprint = composed.approval_fingerprint
    stored = StoredComposition.of(composed)
    issue = composed.issue
    ledger.keep_proposal(issue.edition.slug, issue.date, fingerprint, stored.format, stored.body, stored.fingerprint)
    return fingerprint


def approved_composition(ledger: Ledger, composed: ComposedIssue) -> StoredComposition:
    """The composition to create an issue that needs approval with: the kept proposal of the
    fingerprint ``composed`` has, when an editor approved it; ``AwaitingApproval`` otherwise."""
    issue = composed.issue
    edition, date = issue.edition, issue.date
    fingerprint = keep(ledger, composed)
    approvals = ledger.approvals(edition.slug, date)
    if any(a.fingerprint == fingerprint for a in approvals):
        kept = ledger.proposal(edition.slug, date, fingerprint)
        assert kept is not None, "kept above"
        return StoredComposition(*kept)
    earlier = tuple(dict.fromkeys(a.fingerprint for a in approvals))
    name = f"{edition.slug} {date}"
    how = (f"`digest preview {edition.slug} --date {date}` mails the editors a preview; "
           f"`digest approve {edition.slug} --date {date} --fingerprint {fingerprint}` approves it")
    if earlier:
        message = (f"{name} was approved as {', '.join(earlier)}, but it has changed since (a story, the note or a "
                   f"template): it now composes to {fingerprint}, which no editor approved; {how}")
    else:
        message = f"{name} needs an editor's approval (approval = \"required\"); it composes to {fingerprint}; {how}"
    raise AwaitingApproval(message, fingerprint=fingerprint, approved=earlier)


def approve(settings: Settings, edition: Edition, date: dt.date, actor: str, *, fingerprint: str | None = None,
            via: str = "command", now: dt.datetime | None = None) -> tuple[Approval, Proposal]:
    """Approve issue (edition, date) as it composes now; with ``fingerprint``, only if that is it.

    ``InputError`` when the edition needs no approval, the issue was created already, its deadline
    has passed, it has no stories, or it no longer composes to ``fingerprint``.
    """
    name = f"{edition.slug} {date}"
    if edition.approval != "required":
        raise InputError(f"{edition.slug} does not need approval (set approval = \"required\" in digest.toml)")
    if via not in VIAS:
        raise ValueError(f"unknown way to approve: {via}")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now >= deadline(settings, edition, date):
        raise InputError(f"{name} is past its delivery deadline ({deadline(settings, edition, date):%Y-%m-%d %H:%M UTC})")
    with closing(Ledger(settings.state_db)) as ledger:
        if ledger.find_issue(edition.slug, date) is not None:
            raise InputError(f"{name} has been created already: its copies go as created, approval no longer applies")
        proposal = propose(settings, edition, date, ledger)
        if proposal is None:
            raise InputError(f"{name} has no stories: there is nothing to approve")
        if fingerprint is not None and fingerprint != proposal.fingerprint:
            raise InputError(f"{name} now composes to {proposal.fingerprint}, not {fingerprint}: it changed after "
                             "the preview you saw; look at a new one (`digest preview`) before approving")
        return ledger.record_approval(edition.slug, date, proposal.fingerprint, actor, via), proposal


def state_of(ledger: Ledger, edition: Edition, date: dt.date) -> str | None:
    """A line on the approval of issue (edition, date) for `digest status`; None if it needs none."""
    if edition.approval != "required":
        return None
    approvals = ledger.approvals(edition.slug, date)
    previews = ledger.previews(edition.slug, date)
    last_preview = previews[-1].fingerprint if previews else None
    if not approvals:
        return "awaiting approval" + (f" (preview {last_preview} sent)" if last_preview else " (no preview sent yet)")
    last = approvals[-1]
    if last_preview is not None and last_preview != last.fingerprint and previews[-1].at > last.at:
        return f"approved {last.fingerprint} by {last.actor}, since changed: preview {last_preview} awaits approval"
    return f"approved {last.fingerprint} by {last.actor} via {last.via}"


def _readers(settings: Settings, edition: Edition, ledger: Ledger) -> int:
    """Active readers of the edition in subscribers.csv, streamed, less the addresses suppressed for it."""
    suppressed = {key for key, slug, _ in ledger.suppressions() if slug in (edition.slug, "*")}
    slugs = frozenset(e.slug for e in settings.editions)
    return sum(1 for _, _, key, _ in iter_audience(settings.paths.subscribers, slugs, edition.slug) if key not in suppressed)
