"""All of an issue's candidate stories: the Markdown folder plus the configured feeds.

A feed that fails is reported (``digest check``, the issue's log) and the issue is composed from
the sources that answered. A story id seen twice keeps its first source (Markdown first). A story
file that cannot be read follows its edition's ``on_broken_story`` (``broken_story_rule``), and so
does an issue's note file.
"""

from __future__ import annotations

import datetime as dt
import logging

from ..errors import StoryError
from ..events import event
from ..models import Edition, Settings
from .feeds import FeedReport
from .stories import StoryLoad, load_folder


def gather_stories(settings: Settings) -> StoryLoad:
    """Markdown stories and feed stories together; feed trouble goes into ``.feeds``."""
    markdown = load_folder(settings.paths.stories)
    if not settings.sources:
        return markdown
    from .feeds.gather import gather  # httpx and feedparser load only for a newsroom that has feeds

    report: FeedReport = gather(settings.sources, settings.paths.state / "feeds")
    seen = {story.id for story in markdown.stories}
    extra = tuple(story for story in report.stories if story.id not in seen)
    for row in report.sources:
        level = logging.WARNING if row.status == "failed" else logging.INFO
        event("feed.fetched", level, source=row.name, status=row.status, entries=row.entries, kept=row.kept,
              detail=row.detail or None)
    return StoryLoad(markdown.stories + extra, markdown.problems, report)


class BrokenStories(StoryError):
    """Story files cannot be read and the edition's ``on_broken_story = "fail"`` refuses the issue."""


def broken_story_rule(edition: Edition, date: dt.date, stories: StoryLoad, *, note: StoryError | None = None,
                      log: bool = True) -> tuple[StoryError, ...]:
    """The one rule for story files that cannot be read, used by check, render, send and the scheduler.

    With the edition's ``on_broken_story = "skip"`` (the default) the issue is composed without
    them and they are returned, for the caller to show as warnings; with ``"fail"`` the issue is
    refused (``BrokenStories``). Either way each one is logged (``log``) at error level as
    ``event=story.unreadable``: someone's story is missing from the issue, or the issue is.

    ``note`` is the issue's note file when it cannot be read (``Issue.note_problem``): the same
    rule applies to it (logged as ``event=note.unreadable``), and it is returned last.
    """
    problems = stories.problems + ((note,) if note is not None else ())
    if not problems:
        return ()
    refuse = edition.on_broken_story == "fail"
    if log:
        for problem in problems:
            event("note.unreadable" if problem is note else "story.unreadable", logging.ERROR,
                  edition=edition.slug, date=date.isoformat(),
                  file=problem.file, line=problem.line, field=problem.field, detail=problem.message,
                  action="issue refused" if refuse else "left out")
    if refuse:
        first = problems[0]
        count = len(stories.problems)
        what = " and ".join(part for part in (
            f"{count} story file(s)" if count else "",
            "the issue's note" if note is not None else "") if part)
        raise BrokenStories(f"{edition.slug} {date}: {what} cannot be read (first: {first}) "
                            'and on_broken_story = "fail" refuses the issue; fix them, or set it to "skip" to send without them')
    return problems
