"""One issue's send, end to end, for `digest send`, the scheduler and `digest demo`.

    lock (edition, date) -> find the issue, or: load inputs, plan it, compose it once and create it
    with its audience frozen and its composition kept -> rebuild the copies from the kept
    composition -> dispatch -> report

A second call for the same issue finds it in the ledger and resumes it from its kept
composition, reading no story file, so every copy of an issue has the bytes it was created with.
While another process holds the lock, the call stops with a clear message and sends nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

from ..compose.archive import public_page
from ..compose.personalise import Recipient
from ..compose.pipeline import StoredComposition, compose
from ..compose.planning import plan_issue, recorded_composition
from ..errors import StoryError
from ..models import Edition, Issue, Settings, Subscriber
from ..readers.subscribers import RowProblem, iter_audience
from ..sources.gathering import broken_story_rule, gather_stories
from ..state.ledger import IssueRecord, Ledger
from .alerts import Alert, send_alert
from .approval import approved_composition
from .control import IssueStopped, why_stopped
from .copies import copies, ledger_envelope_sender
from .locks import issue_lock
from .relays import RelayPool, connection_factory, first_answering
from .helpers import Helpers, helpers_for, run_counts, settled, watch
from .send import Dispatcher, Notice, Notify, Progress, SendReport
from .transport import RelayUnreachable, SmtpConnection, always_send

__all__ = ["EmptyIssue", "connection_factory", "send_issue", "send_test_copies"]


@dataclass(frozen=True, slots=True)
class EmptyIssue:
    """The issue had no stories: nothing was created and nothing sent."""

    edition: Edition
    date: dt.date


async def send_issue(settings: Settings, edition: Edition, date: dt.date, *,
                     stop: asyncio.Event | None = None, progress: Progress | None = None,
                     wait_for_retries: bool = True, relays: RelayPool | None = None,
                     notify: Notify | None = None, deadline: dt.datetime | None = None,
                     warn: Callable[[str], None] | None = None, workers: int | None = 1) -> SendReport | EmptyIssue:
    """Create-or-resume issue (edition, date) and deliver it. Raises AlreadyRunning if locked.

    ``notify`` hears what the operator must know while the send goes on (an unreachable relay).
    ``relays`` replaces the pool of the configured relays (``Settings.smtp_relays``).
    ``deadline`` replaces the issue's delivery deadline, in the ledger, for this run and later ones.
    ``workers`` is how many local processes send the issue's copies: this one and ``workers`` - 1
    `digest worker --issue` helpers (None: "auto", see helpers.helpers_for).
    When the issue is composed (it is new, or an older digest created it without keeping its
    composition), a story file that cannot be read follows the edition's ``on_broken_story``: left
    out (and passed to ``warn``, and logged) or the issue refused with ``BrokenStories``. A resume
    of an issue with a kept composition reads no story file; one it cannot use is a
    ``StoredCompositionError`` and nothing is sent. An edition with ``approval = "required"`` is
    created only from the composition an editor approved (``AwaitingApproval`` otherwise).
    """
    relays = relays or RelayPool(settings.smtp_relays(), settings.delivery)
    with issue_lock(settings.state_db, edition.slug, date.isoformat()), closing(Ledger(settings.state_db)) as ledger:
        stopped = why_stopped(ledger, edition.slug, date)
        if stopped is not None:
            raise IssueStopped(f"{edition.slug} {date}: {stopped}; nothing sent")
        record = ledger.find_issue(edition.slug, date)
        added = 0
        if record is not None:
            added = _add_fixed_readers(settings, ledger, record, edition)
        if record is None or ledger.composition(record.id) is None:
            # A new issue, or one an older digest created without keeping its composition: composed
            # from the story files this once, and kept, so every later run sends the same bytes.
            stories = gather_stories(settings)
            issue = plan_issue(settings, edition, date, stories.stories, ledger)  # a created issue: its kept note
            for problem in broken_story_rule(edition, date, stories, note=issue.note_problem):  # as check and render
                if warn is not None:
                    warn(f"{problem}; left out of this issue")
            if record is None:
                if issue.is_empty:
                    return EmptyIssue(edition, date)
                composed_now = compose(settings, issue)
                # An edition that needs approval goes only as an editor approved it, byte for byte.
                kept = (approved_composition(ledger, composed_now) if edition.approval == "required"
                        else StoredComposition.of(composed_now))
                record = _create_issue(settings, ledger, issue, kept, public_page(settings, issue))
            else:
                if not ledger.has_archive_page(record.id):
                    ledger.keep_archive_page(record.id, public_page(settings, issue))
                kept = StoredComposition.of(compose(settings, issue))
                ledger.keep_composition(record.id, kept.format, kept.body, kept.fingerprint)
        # Every run, the first one too, sends what the ledger keeps, as any other sender of the issue would.
        composed = recorded_composition(settings, edition, date, ledger)
        assert composed is not None, "the issue's composition was kept above"
        if deadline is not None:
            ledger.set_deadline(record.id, deadline.timestamp())
        before = ledger.counts(record.id)
        due = before["pending"] + before["deferred"] + (before["uncertain"] if settings.delivery.uncertain == "resend" else 0)
        helpers = helpers_for(workers, due, settings.delivery.batch, shared_state=ledger.shared)
        dispatcher = Dispatcher(composed, ledger, record, relays, settings.delivery,
                                envelope_sender=ledger_envelope_sender(settings, composed), stop=stop,
                                progress=None if helpers else progress, wait_for_retries=wait_for_retries,
                                notify=notify, deadline=ledger.deadline(record.id))
        if helpers:
            report = await _send_with_helpers(settings, ledger, record, dispatcher, helpers, before, due,
                                              progress=progress, notify=notify)
        else:
            report = await dispatcher.run()
        if report.stopped == "paused":
            await send_alert(settings, Alert("paused", edition, date, (
                "The circuit breaker paused the send: too many policy rejections (5.7.x) from the relay. Check the "
                f"relay and the sender's reputation, then `digest send {edition.slug} --date {date}` resumes it. "
                f"Sent so far: {report.counts['sent']}.")))
        report.added = added
        report.left_out = tuple((line, reason) for line, _, reason, _ in ledger.left_out(record.id, pending_only=True))
        return report


async def _send_with_helpers(settings: Settings, ledger: Ledger, record: IssueRecord, dispatcher: Dispatcher,
                             count: int, before: dict[str, int], due: int, *, progress: Progress | None,
                             notify: Notify | None) -> SendReport:
    """Run ``dispatcher`` beside ``count`` helper processes; one progress over all of them; the
    report counts every sender's outcomes. A stop (signal) reaches the helpers at once."""
    def tell(text: str) -> None:
        if notify is not None:
            notify(Notice("worker.output", text))

    group = await Helpers.start(settings, record.id, count, tell)
    watching = asyncio.create_task(watch(ledger, record.id, before, due, progress)) if progress else None
    forwarding = asyncio.create_task(_forward_stop(dispatcher.stop, group))
    try:
        report = await dispatcher.run()
    finally:
        if watching is not None:
            watching.cancel()
        forwarding.cancel()
        if dispatcher.stop.is_set():
            group.stop()
        failed = await group.wait()
    for pid, code in failed:
        tell(f"worker {pid} exited with code {code}; the copies it held were taken over by the others")
    report.counts = ledger.counts(record.id)
    report.this_run = run_counts(before, report.counts)
    if progress is not None:
        progress(settled(report.this_run), due)
    return report


async def _forward_stop(stop: asyncio.Event, group: Helpers) -> None:
    await stop.wait()
    group.stop()


def _create_issue(settings: Settings, ledger: Ledger, issue: Issue, composition: StoredComposition,
                  archive_page: str) -> IssueRecord:
    """Record a new issue with its audience frozen, its stories and its note as read for this plan,
    its composition and its public page (kept before the first copy goes: the archive shows the
    issue as sent, from state)."""
    slug = issue.edition.slug
    # Streamed from the CSV straight into the ledger: a million readers are never all in memory.
    # The rows it cannot use are recorded with the issue, so the loss stays visible.
    problems: list[RowProblem] = []
    audience = iter_audience(settings.paths.subscribers, _edition_slugs(settings), slug, problems)
    # The note is kept with the issue, as read for this plan: resumes and dry runs of it show this text.
    note = (issue.note.source, issue.note.markdown) if issue.note is not None else None
    record, _ = ledger.create_issue(slug, issue.date, issue.send_time, [s.id for s in issue.stories],
                                    audience=audience, note=note,
                                    composition=(composition.format, composition.body, composition.fingerprint),
                                    archive_page=archive_page,
                                    left_out=((p.error.line or 0, p.key, p.error.message) for p in problems))
    return record


def _add_fixed_readers(settings: Settings, ledger: Ledger, record: IssueRecord, edition: Edition) -> int:
    """Rows left out at the freeze may have been fixed since: those readers get this issue too."""
    if not any(key for _, key, _, _ in ledger.left_out(record.id, pending_only=True)):
        return 0
    audience = iter_audience(settings.paths.subscribers, _edition_slugs(settings), edition.slug)
    return ledger.add_fixed_readers(record.id, edition.slug, audience)


def _edition_slugs(settings: Settings) -> frozenset[str]:
    """The configured editions' slugs, which each subscriber row's editions are read against."""
    return frozenset(e.slug for e in settings.editions)


async def send_test_copies(settings: Settings, edition: Edition, date: dt.date, addresses: list[str],
                           reader: Subscriber | None = None,
                           connect: Callable[[], SmtpConnection] | None = None,
                           warn: Callable[[StoryError], None] | None = None) -> list[tuple[str, int, str]]:
    """Send a copy marked as a test to each address; the ledger is neither read for it nor written.

    The copy is rendered as ``reader`` would get it (name and greeting), or for a synthetic reader.
    It goes through ``connect``'s connection, else the first configured relay that takes a connection.
    A story or note file that cannot be read follows ``on_broken_story`` as for the real send
    (``warn`` is told of each one left out). Returns (address, SMTP code, reply) per address.
    """
    factories = [connect] if connect else [connection_factory(relay) for relay in settings.smtp_relays()]
    stories = gather_stories(settings)
    issue = plan_issue(settings, edition, date, stories.stories)
    for problem in broken_story_rule(edition, date, stories, note=issue.note_problem, log=False):
        if warn is not None:
            warn(problem)
    if issue.is_empty:
        raise StoryError(f"{edition.slug} {date} has no stories; there is nothing to test")
    composed = compose(settings, issue, test_copy=True)

    def recipient_of(address: str) -> Recipient:
        # Never the real copy's Message-ID: a client that saw the test would drop the real issue.
        test_id = f"<test.{secrets.token_hex(16)}@{settings.newsroom.domain}>"
        return composed.recipients.for_address(address, reader.name if reader else "Test Reader", message_id=test_id,
                                               greet_name=reader.greet_name if reader else None)

    connection = await first_answering(factories)
    results = []
    try:
        async for copy in copies(composed, addresses, recipient_of, edition.sender.address):
            reply = await connection.deliver(copy.envelope, copy.data, before_body=always_send)
            assert reply is not None  # before_body never declines
            results.append((copy.reader, reply.code, reply.text))
    finally:
        await connection.close()
    return results
