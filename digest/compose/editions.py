"""When an edition's issues are due, which stories an edition may carry, and how long they take to read.

An issue of edition E for date D covers the stories published after E's previous scheduled send
and up to (and including) D's send time, both in E's own time zone (``previous_send``,
``send_time``). ``planning.plan_issue`` chooses the stories of an issue with these rules.
"""

from __future__ import annotations

import datetime as dt
import math

from ..models import Edition, Story

_MAX_GAP_DAYS = 7


def send_time(edition: Edition, date: dt.date) -> dt.datetime:
    """The aware local datetime at which the issue for ``date`` is due.

    A send time inside a spring-forward gap resolves as zoneinfo does (fold=0: the clock time
    read with the offset in force before the change, i.e. an hour later on the wall clock), and
    inside a repeated fall-back hour it means the first occurrence. Either way: one issue a date.
    """
    local = dt.datetime.combine(date, edition.send_at, tzinfo=edition.zone)
    # Through UTC and back, so a time in a skipped hour reads as the wall clock does (03:30 EDT,
    # not a 02:30 EST that never existed); the instant is the same.
    return local.astimezone(dt.timezone.utc).astimezone(edition.zone)


def sends_on(edition: Edition, date: dt.date) -> bool:
    """Whether ``date`` is one of the edition's publishing days."""
    return date.weekday() in edition.days


def previous_send(edition: Edition, date: dt.date) -> dt.datetime:
    """The scheduled send before the one for ``date``."""
    for back in range(1, _MAX_GAP_DAYS + 1):
        earlier = date - dt.timedelta(days=back)
        if sends_on(edition, earlier):
            return send_time(edition, earlier)
    return send_time(edition, date - dt.timedelta(days=_MAX_GAP_DAYS))


def next_sends(edition: Edition, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` scheduled sends strictly after ``after`` (an aware datetime)."""
    found: list[dt.datetime] = []
    day = after.astimezone(edition.zone).date()
    while len(found) < count:
        if sends_on(edition, day):
            when = send_time(edition, day)
            # Compare instants: two datetimes in the same zone compare by wall clock, which is
            # wrong inside a repeated fall-back hour.
            if when.timestamp() > after.timestamp():
                found.append(when)
        day += dt.timedelta(days=1)
    return found


def today_in(edition: Edition, now: dt.datetime | None = None) -> dt.date:
    """Today's date in the edition's time zone."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(edition.zone).date()


def is_eligible(edition: Edition, story: Story) -> bool:
    """A story belongs to an edition by slug, by a shared tag, or by a shared city."""
    return (
        edition.slug in story.editions
        or not edition.tags.isdisjoint(story.tags)
        or not edition.cities.isdisjoint(story.cities)
    )


def reading_minutes(words: int, words_per_minute: int) -> int:
    """Whole minutes to read ``words``, rounded up, never less than one."""
    return max(1, math.ceil(words / words_per_minute))
