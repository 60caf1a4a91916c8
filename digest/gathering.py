"""All of an issue's candidate stories: the Markdown folder plus the configured feeds.

A feed that fails is reported (``digest check``, the issue's log) and the issue is composed from
the sources that answered. A story id seen twice keeps its first source (Markdown first).
"""

from __future__ import annotations

import logging

from .events import event
from .feeds import FeedReport, gather
from .models import Settings
from .stories import StoryLoad, load_folder


def gather_stories(settings: Settings) -> StoryLoad:
    """Markdown stories and feed stories together; feed trouble goes into ``.feeds``."""
    markdown = load_folder(settings.paths.stories)
    if not settings.sources:
        return markdown
    report: FeedReport = gather(settings.sources, settings.paths.state / "feeds")
    seen = {story.id for story in markdown.stories}
    extra = tuple(story for story in report.stories if story.id not in seen)
    for row in report.sources:
        level = logging.WARNING if row.status == "failed" else logging.INFO
        event("feed.fetched", level, source=row.name, status=row.status, entries=row.entries, kept=row.kept,
              detail=row.detail or None)
    return StoryLoad(markdown.stories + extra, markdown.problems, report)
