"""Which issue to compose for (edition, date), given what the state database remembers.

An issue already recorded is composed with exactly the stories it was created with, so a dry
run after a send shows what readers got. Otherwise a new plan is made that leaves out stories
earlier issues of the edition already carried.
"""

from __future__ import annotations

import datetime as dt
from contextlib import closing

from .compose import plan_issue
from .editions import recorded_issue
from .errors import StoryError
from .ledger import Ledger
from .models import Edition, Issue, Settings, Story


def plan(settings: Settings, edition: Edition, date: dt.date, stories: tuple[Story, ...],
         ledger: Ledger | None = None) -> Issue:
    """The issue for (edition, date): the recorded one, else a fresh plan. Reads, never writes."""
    if ledger is None:
        opened = Ledger.read_only(settings.state_db)
        if opened is None:
            return plan_issue(settings, edition, date, stories)
        with closing(opened):
            return plan(settings, edition, date, stories, opened)
    record = ledger.find_issue(edition.slug, date)
    if record is not None:
        by_id = {s.id: s for s in stories}
        missing = [story_id for story_id in record.story_ids if story_id not in by_id]
        if missing:
            raise StoryError(f"issue {edition.slug} {date} was created with story '{missing[0]}', which the "
                             "story source no longer has; restore it to compose this issue again",
                             file=settings.paths.stories)
        return recorded_issue(edition, date, tuple(by_id[i] for i in record.story_ids),
                              words_per_minute=settings.newsroom.words_per_minute)
    return plan_issue(settings, edition, date, stories, ledger.used_story_ids(edition.slug, date))
