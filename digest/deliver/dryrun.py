"""`digest render` as a library call: an issue composed once and written as one .eml per reader.

An issue already in the state database is not composed again: its copies are rebuilt from the
composition kept with it (``planning.recorded_composition``, the database opened read only), as
every send of it is, so the dry run shows what its readers get whatever the story files say now.
Otherwise the issue is planned and composed as a send would create it.

The copies come from ``copies.copies``, the loop a send uses, and go to an ``EmlDirectory``
instead of a relay, so a dry run holds the bytes a send would put on the wire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..compose.pipeline import ComposedIssue, compose, default_out_dir, issue_out_dir
from ..compose.planning import plan_issue, recorded_composition
from ..compose.render import Renderer
from ..models import Edition, Issue, Settings, Subscriber
from ..readers.subscribers import SubscriberLoad
from ..sources.gathering import broken_story_rule
from ..sources.stories import StoryLoad
from .copies import copies
from .eml import EmlDirectory, clear_dry_run
from .transport import Envelope

#: ``progress(label, total)``: a context manager that yields ``advance(n)`` (``console.progress``).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def _silent(_label: str, _total: int):
    yield lambda n=1: None


@dataclass
class DryRun:
    """What a dry run of one issue wrote: ``folder`` is None for an empty issue (nothing written).

    ``fingerprint`` is set when the copies came from the composition kept with a created issue.
    """

    issue: Issue
    written: int
    folder: Path | None
    message_bytes: int
    stories: int = 0
    fingerprint: str | None = None

    COLUMNS = ("edition", "date", "stories", "minutes", ".eml files", "outcome")

    def row(self) -> tuple:
        """This run's row of the summary table (``COLUMNS``)."""
        if self.folder is None:
            outcome = f"empty: not sent ({self.issue.edition.on_empty})"
        else:
            outcome = "as created" if self.fingerprint else "rendered"
        return (self.issue.edition.slug, self.issue.date.isoformat(), self.stories,
                self.issue.reading_minutes or "-", self.written, outcome)


def dry_run(settings: Settings, edition: Edition, date: dt.date, out: Path | None, stories: StoryLoad,
            subscribers: SubscriberLoad, renderer: Renderer, *, warn: Callable[[str], None],
            progress: Progress = _silent) -> DryRun:
    """Write (edition, date)'s copies under ``out`` (default ``[paths] out``) as a send would make them.

    An issue the state database has is rebuilt from its kept composition. Otherwise it is planned
    from ``stories``: a story left out by ``on_broken_story`` is passed to ``warn``, and an empty
    issue clears the folder's earlier dry run so its files cannot pass for this issue.
    """
    audience = subscribers.audience(edition.slug)
    recorded = recorded_composition(settings, edition, date)  # the stories are not read for it, as a resume reads none
    if recorded is not None:
        folder = issue_out_dir(out, recorded.issue) if out is not None else default_out_dir(settings, recorded.issue)
        return write_copies(recorded, audience, folder, progress)
    issue = plan_issue(settings, edition, date, stories.stories)
    for problem in broken_story_rule(edition, date, stories, note=issue.note_problem):  # as send and the scheduler
        warn(f"{problem}; left out of this issue")
    folder = issue_out_dir(out, issue) if out is not None else default_out_dir(settings, issue)
    if issue.is_empty:
        clear_dry_run(folder)
        return DryRun(issue, 0, None, 0)
    return write_copies(compose(settings, issue, renderer), audience, folder, progress)


def write_copies(composed: ComposedIssue, audience: list[Subscriber], folder: Path,
                 progress: Progress = _silent) -> DryRun:
    """Write one .eml per reader of ``audience`` (plus index.html) of a composed issue in ``folder``."""
    issue = composed.issue
    transport = EmlDirectory(folder, f"{issue.edition.name}, {issue.date.isoformat()}: {composed.rendered.subject}")
    total = 0

    async def run(advance: Callable[[int], None]) -> None:
        nonlocal total
        async for copy in copies(composed, audience, composed.recipient, composed.template.headers.sender.address):
            await transport.deliver(copy.envelope, copy.data)
            total += len(copy.data)
            advance(1)
        await transport.close()

    with progress(f"{issue.edition.slug} {issue.date.isoformat()}", len(audience)) as advance:
        asyncio.run(run(advance))
    return DryRun(issue, len(audience), folder, total, len(composed.story_ids), composed.fingerprint)


async def write_received(folder: Path, title: str, messages: Iterable[tuple[Envelope, bytes]]) -> None:
    """Write messages (a capture server's, say) as a dry-run folder, replacing that folder's earlier run."""
    clear_dry_run(folder)
    writer = EmlDirectory(folder, title)
    for envelope, data in messages:
        await writer.deliver(envelope, data)
    await writer.close()
