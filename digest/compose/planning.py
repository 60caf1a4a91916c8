"""Which issue to compose for (edition, date), given what the state database remembers.

An issue already recorded is composed with exactly the stories it was created with, and with
the note kept with it then, so a dry run after a send shows what readers got and a note edited
later changes no copy of it. Otherwise a new plan is made that leaves out stories earlier
issues of the edition already carried, and the note is read from its file (``notes.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import closing

from ..errors import StoryError
from ..models import Edition, Issue, Settings, Story
from ..sources.notes import note_path, parse_note, read_note
from ..state.ledger import Ledger
from .editions import recorded_issue
from .pipeline import plan_issue


def plan(settings: Settings, edition: Edition, date: dt.date, stories: tuple[Story, ...],
         ledger: Ledger | None = None) -> Issue:
    """The issue for (edition, date): the recorded one, else a fresh plan. Reads, never writes.

    A fresh plan whose note file cannot be read has ``note_problem`` set, for
    ``gathering.broken_story_rule``.
    """
    if ledger is None:
        opened = Ledger.read_only(settings.state_db)
        if opened is None:
            return new_issue(settings, edition, date, stories)
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
        issue = recorded_issue(edition, date, tuple(by_id[i] for i in record.story_ids),
                               words_per_minute=settings.newsroom.words_per_minute)
        kept = ledger.issue_note(record.id)
        return dataclasses.replace(issue, note=parse_note(kept[1], kept[0]) if kept is not None else None)
    return new_issue(settings, edition, date, stories, ledger.used_story_ids(edition.slug, date))


def new_issue(settings: Settings, edition: Edition, date: dt.date, stories: tuple[Story, ...],
              already_used: frozenset[str] = frozenset()) -> Issue:
    """A fresh plan: the stories chosen (``compose.plan_issue``) and the note read from its file."""
    issue = plan_issue(settings, edition, date, stories, already_used)
    read = read_note(note_path(settings.paths.notes, edition.slug, date))
    return dataclasses.replace(issue, note=read.note, note_problem=read.problem)
