"""Choosing an issue's stories: ``plan_issue``, the one function that says what (edition, date) carries.

An issue already recorded is planned with exactly the stories it was created with, and with
the note kept with it then, so a note edited later changes no copy of it. Its copies, though, come
from the composition kept with it (``recorded_composition``), which reads no story at all: a
story edited or removed since changes nothing. ``plan_issue`` of a recorded issue serves
``digest check`` and issues an older digest created without keeping their composition.
Otherwise a new plan is made (``choose_stories``) that leaves out stories earlier issues of the
edition already carried, and the note is read from its file (``notes.py``).

A fresh plan covers the stories published in the issue's window (``editions.previous_send`` to
``editions.send_time``). They are ordered by priority (1 first), then newest first, and admitted
in that order while they fit the edition's reading-time budget; the lead story is always admitted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from contextlib import closing

from ..errors import StoryError
from ..models import Edition, Issue, Settings, Story
from ..sources.notes import note_path, parse_note, read_note
from ..state.ledger import Ledger
from .editions import is_eligible, previous_send, reading_minutes, send_time
from .pipeline import ComposedIssue, StoredComposition, composed_from_stored


def recorded_composition(settings: Settings, edition: Edition, date: dt.date,
                         ledger: Ledger | None = None) -> ComposedIssue | None:
    """The issue (edition, date) as composed when it was created, rebuilt from the state database
    without reading a story; None when there is no such issue or an older digest created it
    without keeping its composition. Reads, never writes (without ``ledger``: opened read only)."""
    if ledger is None:
        opened = Ledger.read_only(settings.state_db)
        if opened is None:
            return None
        with closing(opened):
            return recorded_composition(settings, edition, date, opened)
    record = ledger.find_issue(edition.slug, date)
    kept = ledger.composition(record.id) if record is not None else None
    if kept is None:
        return None
    return composed_from_stored(settings, edition, StoredComposition(*kept), date=date)


def plan_issue(settings: Settings, edition: Edition, date: dt.date, stories: tuple[Story, ...],
               ledger: Ledger | None = None, *, fresh: bool = False) -> Issue:
    """The issue for (edition, date): the recorded one, else a fresh plan. Reads, never writes.

    ``fresh`` plans it anew (stories chosen, note read from its file) without asking the state
    database. A fresh plan whose note file cannot be read has ``note_problem`` set, for
    ``gathering.broken_story_rule``.
    """
    if fresh:
        return _fresh(settings, edition, date, stories)
    if ledger is None:
        opened = Ledger.read_only(settings.state_db)
        if opened is None:
            return _fresh(settings, edition, date, stories)
        with closing(opened):
            return plan_issue(settings, edition, date, stories, opened)
    record = ledger.find_issue(edition.slug, date)
    if record is None:
        return _fresh(settings, edition, date, stories, ledger.used_story_ids(edition.slug, date))
    by_id = {s.id: s for s in stories}
    missing = [story_id for story_id in record.story_ids if story_id not in by_id]
    if missing:
        raise StoryError(f"issue {edition.slug} {date} was created with story '{missing[0]}', which the "
                         "story source no longer has; restore it to compose this issue again",
                         file=settings.paths.stories)
    issue = _recorded(edition, date, tuple(by_id[i] for i in record.story_ids),
                      words_per_minute=settings.newsroom.words_per_minute)
    kept = ledger.issue_note(record.id)
    return dataclasses.replace(issue, note=parse_note(kept[1], kept[0]) if kept is not None else None)


def _fresh(settings: Settings, edition: Edition, date: dt.date, stories: tuple[Story, ...],
           already_used: frozenset[str] = frozenset()) -> Issue:
    """A fresh plan: the stories chosen and the note read from its file."""
    issue = choose_stories(edition, date, stories, words_per_minute=settings.newsroom.words_per_minute,
                           already_used=already_used)
    read = read_note(note_path(settings.paths.notes, edition.slug, date))
    return dataclasses.replace(issue, note=read.note, note_problem=read.problem)


def choose_stories(edition: Edition, date: dt.date, stories: Iterable[Story], *, words_per_minute: int,
                   already_used: frozenset[str] = frozenset()) -> Issue:
    """``plan_issue``'s rule for a fresh issue: choose, order and budget its stories. Pure: no clock, no I/O.

    Public for the tests of the rule and the benchmarks; the package calls ``plan_issue``.
    """
    end = send_time(edition, date)
    start = previous_send(edition, date)
    candidates = sorted(
        (
            s for s in stories
            if is_eligible(edition, s) and start.timestamp() < s.published.timestamp() <= end.timestamp()
            and s.id not in already_used
        ),
        key=lambda s: (s.priority, -s.published.timestamp(), s.id),
    )
    budget_words = edition.reading_minutes * words_per_minute
    chosen: list[Story] = []
    held: list[Story] = []
    words = 0
    for story in candidates:
        if not chosen or words + story.words <= budget_words:
            chosen.append(story)
            words += story.words
        else:
            held.append(story)
    return Issue(
        edition=edition,
        date=date,
        send_time=end,
        window_start=start,
        stories=tuple(chosen),
        held_over_budget=tuple(held),
        reading_minutes=reading_minutes(words, words_per_minute) if chosen else 0,
    )


def _recorded(edition: Edition, date: dt.date, stories: tuple[Story, ...], *, words_per_minute: int) -> Issue:
    """An issue whose stories were fixed earlier (in this order), as the ledger recorded them."""
    words = sum(s.words for s in stories)
    return Issue(
        edition=edition,
        date=date,
        send_time=send_time(edition, date),
        window_start=previous_send(edition, date),
        stories=stories,
        reading_minutes=reading_minutes(words, words_per_minute) if stories else 0,
    )
