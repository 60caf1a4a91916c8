"""`digest render` as a library call: an issue planned, composed once and written as one .eml per reader.

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

from ..compose.pipeline import compose, default_out_dir, issue_out_dir
from ..compose.planning import plan_issue
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
    """What a dry run of one issue wrote: ``folder`` is None for an empty issue (nothing written)."""

    issue: Issue
    written: int
    folder: Path | None
    message_bytes: int

    COLUMNS = ("edition", "date", "stories", "minutes", ".eml files", "outcome")

    def row(self) -> tuple:
        """This run's row of the summary table (``COLUMNS``)."""
        outcome = "rendered" if self.folder else f"empty: not sent ({self.issue.edition.on_empty})"
        return (self.issue.edition.slug, self.issue.date.isoformat(), len(self.issue.stories),
                self.issue.reading_minutes or "-", self.written, outcome)


def dry_run(settings: Settings, edition: Edition, date: dt.date, out: Path | None, stories: StoryLoad,
            subscribers: SubscriberLoad, renderer: Renderer, *, warn: Callable[[str], None],
            progress: Progress = _silent) -> DryRun:
    """Plan (edition, date) as a send would and write its copies under ``out`` (default ``[paths] out``).

    A story left out by ``on_broken_story`` is passed to ``warn``; an empty issue clears the
    folder's earlier dry run so its files cannot pass for this issue.
    """
    issue = plan_issue(settings, edition, date, stories.stories)
    for problem in broken_story_rule(edition, date, stories, note=issue.note_problem):  # as send and the scheduler
        warn(f"{problem}; left out of this issue")
    folder = issue_out_dir(out, issue) if out is not None else default_out_dir(settings, issue)
    if issue.is_empty:
        clear_dry_run(folder)
        return DryRun(issue, 0, None, 0)
    return render_issue(settings, issue, subscribers.audience(edition.slug), folder, renderer, progress)


def render_issue(settings: Settings, issue: Issue, audience: list[Subscriber], folder: Path,
                 renderer: Renderer, progress: Progress = _silent) -> DryRun:
    """Compose a non-empty issue once and write one .eml per reader of ``audience`` (plus index.html) in ``folder``."""
    composed = compose(settings, issue, renderer)
    transport = EmlDirectory(folder, f"{issue.edition.name}, {issue.date.isoformat()}: {composed.rendered.subject}")
    total = 0

    async def run(advance: Callable[[int], None]) -> None:
        nonlocal total
        async for copy in copies(composed, audience, composed.recipient, issue.edition.sender.address):
            await transport.deliver(copy.envelope, copy.data)
            total += len(copy.data)
            advance(1)
        await transport.close()

    with progress(f"{issue.edition.slug} {issue.date.isoformat()}", len(audience)) as advance:
        asyncio.run(run(advance))
    return DryRun(issue, len(audience), folder, total)


async def write_received(folder: Path, title: str, messages: Iterable[tuple[Envelope, bytes]]) -> None:
    """Write messages (a capture server's, say) as a dry-run folder, replacing that folder's earlier run."""
    clear_dry_run(folder)
    writer = EmlDirectory(folder, title)
    for envelope, data in messages:
        await writer.deliver(envelope, data)
    await writer.close()
