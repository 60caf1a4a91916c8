"""The scheduler (issue 4): triggers across DST, never twice, never silently missed, resume, lock.

Time is never waited for: trigger tests ask for fire times, and the daemon runs with a ``clock=``
the test controls, against a CaptureServer on 127.0.0.1. APScheduler itself keeps real time, so
while a test runs its jobs are due at the real next send time and never fire; every send a test
sees comes from the scheduler's start (catch-up, resume) or from an explicit ``fire``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pickle
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from conftest import ROOT, isolate, run
from smtp_faults import (
    AM_READERS,
    FAR_DEADLINE_HOURS,
    FaultHandler,
    ThreadedServer,
    check_consistent,
    message_id,
    stored_by_reader,
    wait_for,
    write_newsroom,
)

from digest.cli import main
from digest.compose.editions import send_time, today_in
from digest.config import load_settings
from digest.deliver.capture import CaptureServer
from digest.deliver.locks import AlreadyRunning
from digest.deliver.runner import send_issue
from digest.models import DeliverySettings, Edition, Settings, SmtpSettings
from digest.schedule import (
    LAST_SEEN,
    LEASE,
    EditionTrigger,
    Scheduler,
    fire_times,
    issue_date,
    latest_send,
    scheduler_health,
)
from digest.state.ledger import Ledger

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
DATE = dt.date(2026, 12, 1)  # the sample day
AM_FROM = "am@northline.example.org"
TAMPA_FROM = "tampabay@northline.example.org"
ALL_DAYS = frozenset(range(7))
WEEKDAYS = frozenset(range(5))


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


# --- fixtures and helpers ---------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_hang")  # a scheduler that never stops fails its test after a minute


def parse_event(line: str) -> dict[str, str]:
    """A logfmt event line -> its fields (plus 'time' for the leading stamp)."""
    parts = shlex.split(line)
    fields = {"time": parts[0]}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        fields[key] = value
    return fields


def find_events(lines: list[str], name: str, **wanted: str) -> list[dict[str, str]]:
    found = []
    for line in lines:
        fields = parse_event(line)
        if fields.get("event") == name and all(fields.get(k) == v for k, v in wanted.items()):
            found.append(fields)
    return found


def make_settings(base: Settings, state_db: Path, port: int, **changes) -> Settings:
    return dataclasses.replace(
        base, state_db=state_db,
        smtp=SmtpSettings("127.0.0.1", port, "none", pool_size=2, timeout=5, data_timeout=5),
        delivery=DeliverySettings(retry_base=0.01, retry_cap=0.05, deadline_hours=FAR_DEADLINE_HOURS),
        **changes)


def edition_like(base: Edition, timezone: str, send_at: dt.time, days: frozenset[int] = ALL_DAYS) -> Edition:
    return dataclasses.replace(base, timezone=timezone, send_at=send_at, days=days)


def set_mark(state_db: Path, when: dt.datetime) -> None:
    with closing(Ledger(state_db)) as ledger:
        ledger.set_mark(LAST_SEEN, when.timestamp())


def copies_from(received, sender: str) -> Counter[str]:
    """Copies the server stored per reader (casefolded) for one edition's envelope sender."""
    return Counter(r.recipients[0].casefold() for r in received if r.sender == sender and not is_alert(r))


def is_alert(message) -> bool:
    """An alert to an edition's editors (deliver/alerts.py), not a copy of an issue."""
    return b"\r\nX-Digest-Alert: " in message.data


async def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def run_until_idle(daemon: Scheduler, events: list[str], timeout: float = 20.0) -> list[str]:
    """Start ``daemon.run()``; once it has started and the sends it started are done, stop it.

    Catch-up and resumed sends are started before 'scheduler.started' is logged, so started and
    nothing running means they are over. Returns the event lines logged during this run."""
    start = len(events)
    task = asyncio.create_task(daemon.run())
    try:
        await until(lambda: task.done() or (find_events(events[start:], "scheduler.started") and not daemon.running),
                    timeout, "the scheduler to start and finish its sends")
    finally:
        daemon.stop.set()
    await asyncio.wait_for(task, 15)
    return events[start:]


def issues_in(state_db: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(state_db)) as db:
        return list(db.execute("SELECT edition, issue_date FROM issues ORDER BY edition, issue_date"))


def write_story(folder: Path, name: str, published: str, edition: str = "am") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(
        f'---\nheadline: "Story {name}"\npublished: {published}\neditions: [{edition}]\n---\n'
        "A short story body with enough words to read.\n", encoding="utf-8")


# --- 1. triggers across every DST change of 2026 and 2027 ----------------------------------------------

# zone: (standard offset, daylight offset, spring-forward dates, fall-back dates, local hour the
# repeated hour starts at on fall-back day). Independent of zoneinfo: the rules as published.
ZONES = {
    "America/New_York": (-5, -4, (dt.date(2026, 3, 8), dt.date(2027, 3, 14)), (dt.date(2026, 11, 1), dt.date(2027, 11, 7)), 1),
    "America/Chicago": (-6, -5, (dt.date(2026, 3, 8), dt.date(2027, 3, 14)), (dt.date(2026, 11, 1), dt.date(2027, 11, 7)), 1),
    "America/Denver": (-7, -6, (dt.date(2026, 3, 8), dt.date(2027, 3, 14)), (dt.date(2026, 11, 1), dt.date(2027, 11, 7)), 1),
    "Europe/Berlin": (1, 2, (dt.date(2026, 3, 29), dt.date(2027, 3, 28)), (dt.date(2026, 10, 25), dt.date(2027, 10, 31)), 2),
}
SEND_TIMES = (dt.time(6, 0), dt.time(2, 30), dt.time(1, 30))  # normal; skipped (spring); repeated (fall, US) / skipped+repeated (Berlin)
FIRST_DAY, LAST_DAY = dt.date(2026, 1, 1), dt.date(2027, 12, 31)
DAYS_IN_TWO_YEARS = (LAST_DAY - FIRST_DAY).days + 1  # 730

# The exact instants on every transition day (what the README promises: a skipped time goes an
# hour later on the wall clock, a repeated one at its first occurrence).
TRANSITION_DAY_UTC = {
    # New York: EST -5 / EDT -4
    ("America/New_York", "06:00", "2026-03-08"): "2026-03-08T10:00Z",
    ("America/New_York", "02:30", "2026-03-08"): "2026-03-08T07:30Z",  # skipped: 03:30 EDT
    ("America/New_York", "01:30", "2026-03-08"): "2026-03-08T06:30Z",
    ("America/New_York", "06:00", "2026-11-01"): "2026-11-01T11:00Z",
    ("America/New_York", "02:30", "2026-11-01"): "2026-11-01T07:30Z",
    ("America/New_York", "01:30", "2026-11-01"): "2026-11-01T05:30Z",  # repeated: first (EDT)
    ("America/New_York", "06:00", "2027-03-14"): "2027-03-14T10:00Z",
    ("America/New_York", "02:30", "2027-03-14"): "2027-03-14T07:30Z",
    ("America/New_York", "01:30", "2027-03-14"): "2027-03-14T06:30Z",
    ("America/New_York", "06:00", "2027-11-07"): "2027-11-07T11:00Z",
    ("America/New_York", "02:30", "2027-11-07"): "2027-11-07T07:30Z",
    ("America/New_York", "01:30", "2027-11-07"): "2027-11-07T05:30Z",
    # Chicago: CST -6 / CDT -5
    ("America/Chicago", "06:00", "2026-03-08"): "2026-03-08T11:00Z",
    ("America/Chicago", "02:30", "2026-03-08"): "2026-03-08T08:30Z",
    ("America/Chicago", "01:30", "2026-03-08"): "2026-03-08T07:30Z",
    ("America/Chicago", "06:00", "2026-11-01"): "2026-11-01T12:00Z",
    ("America/Chicago", "02:30", "2026-11-01"): "2026-11-01T08:30Z",
    ("America/Chicago", "01:30", "2026-11-01"): "2026-11-01T06:30Z",
    ("America/Chicago", "06:00", "2027-03-14"): "2027-03-14T11:00Z",
    ("America/Chicago", "02:30", "2027-03-14"): "2027-03-14T08:30Z",
    ("America/Chicago", "01:30", "2027-03-14"): "2027-03-14T07:30Z",
    ("America/Chicago", "06:00", "2027-11-07"): "2027-11-07T12:00Z",
    ("America/Chicago", "02:30", "2027-11-07"): "2027-11-07T08:30Z",
    ("America/Chicago", "01:30", "2027-11-07"): "2027-11-07T06:30Z",
    # Denver: MST -7 / MDT -6
    ("America/Denver", "06:00", "2026-03-08"): "2026-03-08T12:00Z",
    ("America/Denver", "02:30", "2026-03-08"): "2026-03-08T09:30Z",
    ("America/Denver", "01:30", "2026-03-08"): "2026-03-08T08:30Z",
    ("America/Denver", "06:00", "2026-11-01"): "2026-11-01T13:00Z",
    ("America/Denver", "02:30", "2026-11-01"): "2026-11-01T09:30Z",
    ("America/Denver", "01:30", "2026-11-01"): "2026-11-01T07:30Z",
    ("America/Denver", "06:00", "2027-03-14"): "2027-03-14T12:00Z",
    ("America/Denver", "02:30", "2027-03-14"): "2027-03-14T09:30Z",
    ("America/Denver", "01:30", "2027-03-14"): "2027-03-14T08:30Z",
    ("America/Denver", "06:00", "2027-11-07"): "2027-11-07T13:00Z",
    ("America/Denver", "02:30", "2027-11-07"): "2027-11-07T09:30Z",
    ("America/Denver", "01:30", "2027-11-07"): "2027-11-07T07:30Z",
    # Berlin: CET +1 / CEST +2; 02:30 is skipped in March and repeated in October
    ("Europe/Berlin", "06:00", "2026-03-29"): "2026-03-29T04:00Z",
    ("Europe/Berlin", "02:30", "2026-03-29"): "2026-03-29T01:30Z",  # skipped: 03:30 CEST
    ("Europe/Berlin", "01:30", "2026-03-29"): "2026-03-29T00:30Z",
    ("Europe/Berlin", "06:00", "2026-10-25"): "2026-10-25T05:00Z",
    ("Europe/Berlin", "02:30", "2026-10-25"): "2026-10-25T00:30Z",  # repeated: first (CEST)
    ("Europe/Berlin", "01:30", "2026-10-25"): "2026-10-24T23:30Z",  # the UTC date is the day before
    ("Europe/Berlin", "06:00", "2027-03-28"): "2027-03-28T04:00Z",
    ("Europe/Berlin", "02:30", "2027-03-28"): "2027-03-28T01:30Z",
    ("Europe/Berlin", "01:30", "2027-03-28"): "2027-03-28T00:30Z",
    ("Europe/Berlin", "06:00", "2027-10-31"): "2027-10-31T05:00Z",
    ("Europe/Berlin", "02:30", "2027-10-31"): "2027-10-31T00:30Z",
    ("Europe/Berlin", "01:30", "2027-10-31"): "2027-10-30T23:30Z",
}


def expected_fire(zone: str, day: dt.date, at: dt.time) -> dt.datetime:
    """The instant an edition at ``at`` local must fire on ``day``, from the published rules alone."""
    std, dst, springs, falls, repeat_from = ZONES[zone]
    spring = next(d for d in springs if d.year == day.year)
    fall = next(d for d in falls if d.year == day.year)
    minutes = at.hour * 60 + at.minute
    if day < spring or day > fall:
        offset = std
    elif spring < day < fall:
        offset = dst
    elif day == spring:
        offset = dst if minutes >= 3 * 60 else std  # before the gap, or in it (fold=0): standard time
    else:
        offset = std if minutes >= (repeat_from + 1) * 60 else dst  # before or in the repeated hour: daylight
    local = dt.datetime.combine(day, at)
    return (local - dt.timedelta(hours=offset)).replace(tzinfo=UTC)


def two_years(edition: Edition) -> list[dt.datetime]:
    start = dt.datetime.combine(FIRST_DAY, dt.time(0, 0), tzinfo=edition.zone)
    fires = fire_times(edition, start, DAYS_IN_TWO_YEARS * len(edition.days) // 7 + 10)
    return [f for f in fires if f.astimezone(edition.zone).date() <= LAST_DAY]


def test_the_transition_table_agrees_with_the_published_rules():
    # The literal table above and expected_fire() are two independent statements of the same rules.
    assert len(TRANSITION_DAY_UTC) == 4 * 3 * 4
    for (zone, at, day), instant in TRANSITION_DAY_UTC.items():
        assert expected_fire(zone, dt.date.fromisoformat(day), dt.time.fromisoformat(at)) == utc(instant), (zone, at, day)


@pytest.mark.parametrize("at", SEND_TIMES, ids=lambda t: t.strftime("%H%M"))
@pytest.mark.parametrize("zone", ZONES)
def test_daily_edition_fires_exactly_once_every_local_date_for_two_years(sample_settings, zone, at):
    edition = edition_like(sample_settings.edition("am"), zone, at)
    fires = two_years(edition)
    local_dates = [f.astimezone(edition.zone).date() for f in fires]

    # exactly one fire per local date, none missing, in order
    assert len(fires) == DAYS_IN_TWO_YEARS
    assert local_dates == [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS_IN_TWO_YEARS)]
    assert len(set(local_dates)) == len(local_dates)
    assert all(a.timestamp() < b.timestamp() for a, b in pairwise(fires)), "fire times must strictly increase"
    for a, b in pairwise(fires):
        assert dt.timedelta(hours=23) <= b - a <= dt.timedelta(hours=25), (a, b)

    # every instant as the rules say (transition days included), and the issue window agrees
    for fire, day in zip(fires, local_dates):
        assert fire.astimezone(UTC) == expected_fire(zone, day, at), (zone, at, day, fire)
        assert fire.timestamp() == send_time(edition, day).timestamp()
        assert issue_date(edition, fire) == day
    for (z, a, day), instant in TRANSITION_DAY_UTC.items():
        if z == zone and a == at.strftime("%H:%M"):
            fire = fires[local_dates.index(dt.date.fromisoformat(day))]
            assert fire.astimezone(UTC) == utc(instant), (zone, at, day, fire.astimezone(UTC))

    # the wall clock shows send_at, except a skipped time, which goes an hour later that day only
    _, _, springs, _, _ = ZONES[zone]
    for fire, day in zip(fires, local_dates):
        wall = fire.astimezone(UTC).astimezone(edition.zone).time()  # the wall clock at that instant
        skipped = day in springs and dt.time(2, 0) <= at < dt.time(3, 0)
        assert wall == (dt.time(at.hour + 1, at.minute) if skipped else at), (day, wall)


@pytest.mark.parametrize("at", SEND_TIMES, ids=lambda t: t.strftime("%H%M"))
@pytest.mark.parametrize("zone", ZONES)
def test_trigger_asked_as_apscheduler_asks_agrees_with_fire_times(sample_settings, zone, at):
    edition = edition_like(sample_settings.edition("am"), zone, at)
    fires = two_years(edition)
    trigger = EditionTrigger(edition)
    eps = dt.timedelta(microseconds=1)

    # first call (previous=None) from any "now": the next fire at or after now
    for n, fire in enumerate(fires[:-1]):
        assert trigger.get_next_fire_time(None, fire) == fire
        assert trigger.get_next_fire_time(None, fire - dt.timedelta(hours=5)) == fire
        assert trigger.get_next_fire_time(None, fire + eps) == fires[n + 1]
        # later calls: previous = the last fire, whatever "now" is
        assert trigger.get_next_fire_time(fire, fire + dt.timedelta(minutes=1)) == fires[n + 1]

    # APScheduler's own loop over the trigger (Job._get_run_times, what its scheduler runs)
    job = Job(AsyncIOScheduler(timezone=UTC), id="edition:test", func="digest.schedule:_fire", args=["am"], kwargs={},
              trigger=trigger, executor="default", name="send", misfire_grace_time=7200, coalesce=True,
              max_instances=1, next_run_time=fires[0])
    assert job._get_run_times(fires[-1]) == fires

    # the trigger survives the job store (pickled into the state database)
    restored = pickle.loads(pickle.dumps(trigger))
    assert [restored.get_next_fire_time(None, f) for f in fires[::37]] == fires[::37]


@pytest.mark.parametrize("zone", ZONES)
def test_no_second_fire_when_asked_from_inside_the_repeated_hour(sample_settings, zone):
    """A scheduler (re)started at any minute of the fall-back day after the send never fires it again."""
    _, _, _, falls, repeat_from = ZONES[zone]
    at = dt.time(repeat_from, 30)  # inside the repeated hour
    edition = edition_like(sample_settings.edition("am"), zone, at)
    trigger = EditionTrigger(edition)
    for day in falls:
        first = expected_fire(zone, day, at)
        tomorrow = expected_fire(zone, day + dt.timedelta(days=1), at)
        for minutes in range(1, 24 * 60):  # through the second 01:30 (one hour later) and the rest of the day
            now = first + dt.timedelta(minutes=minutes)
            if now < tomorrow:
                assert trigger.get_next_fire_time(None, now) == tomorrow, (day, now)
        assert trigger.get_next_fire_time(first, first + dt.timedelta(hours=1)) == tomorrow
        # a firing an hour late is still this date's (compared as instants: an aware datetime in
        # the repeated hour never compares equal across zones, PEP 495)
        assert latest_send(edition, first + dt.timedelta(hours=1)).timestamp() == first.timestamp()


@pytest.mark.parametrize("zone,at", [
    ("America/New_York", dt.time(6, 0)), ("America/New_York", dt.time(23, 30)),  # 23:30 NY is the next UTC day
    ("America/Chicago", dt.time(2, 30)), ("America/Denver", dt.time(1, 30)),
    ("Europe/Berlin", dt.time(0, 30)), ("Europe/Berlin", dt.time(2, 30)),  # 00:30 Berlin is the previous UTC day
])
def test_weekday_edition_never_fires_on_a_local_weekend(sample_settings, zone, at):
    edition = edition_like(sample_settings.edition("am"), zone, at, WEEKDAYS)
    fires = two_years(edition)
    local_dates = [f.astimezone(edition.zone).date() for f in fires]
    weekdays = [FIRST_DAY + dt.timedelta(days=n) for n in range(DAYS_IN_TWO_YEARS)]
    weekdays = [d for d in weekdays if d.weekday() < 5]
    assert local_dates == weekdays, "every Mon-Fri exactly once, never a Saturday or Sunday"
    assert all(f.astimezone(edition.zone).weekday() < 5 for f in fires)
    for fire, day in zip(fires, local_dates):
        assert fire.astimezone(UTC) == expected_fire(zone, day, at)
    # from a Saturday the next fire is Monday's
    saturday = dt.datetime(2026, 11, 7, 12, 0, tzinfo=edition.zone)
    assert EditionTrigger(edition).get_next_fire_time(None, saturday).astimezone(edition.zone).date() == dt.date(2026, 11, 9)


@pytest.fixture
def tokyo():
    """The process runs in Asia/Tokyo (UTC+9, no DST): nothing may depend on it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "Asia/Tokyo")
        time.tzset()
        assert time.strftime("%Z") in ("JST", "+09")
        yield
    time.tzset()


@pytest.mark.parametrize("zone", ZONES)
def test_fire_times_use_the_edition_zone_whatever_the_process_zone(sample_settings, tokyo, zone):
    for at in SEND_TIMES:
        edition = edition_like(sample_settings.edition("am"), zone, at)
        fires = two_years(edition)
        assert len(fires) == DAYS_IN_TWO_YEARS
        for fire in fires:
            day = fire.astimezone(edition.zone).date()
            assert fire.astimezone(UTC) == expected_fire(zone, day, at)
        # naive "local" arithmetic would land on Tokyo time; the trigger and the catch-up helpers never do
        now = expected_fire(zone, dt.date(2026, 11, 1), at) + dt.timedelta(minutes=5)
        assert latest_send(edition, now).astimezone(UTC) == expected_fire(zone, dt.date(2026, 11, 1), at)
        assert issue_date(edition, now) == now.astimezone(ZoneInfo(zone)).date()


def test_schedule_list_shows_local_and_utc_times_in_the_edition_zone_under_tokyo(capsys, tmp_path, monkeypatch, tokyo):
    isolate(monkeypatch, key=None, state_db=tmp_path / "s.db")
    assert main(["--config", str(ROOT / "digest.toml"), "schedule", "--list", "--count", "3"]) == 0
    out = capsys.readouterr().out
    settings = load_settings(ROOT / "digest.toml", environ={})
    now = dt.datetime.now(UTC)
    for edition in settings.editions:
        for when in fire_times(edition, now, 2):  # the first two of the three listed
            assert f"{when:%a %Y-%m-%d %H:%M %Z}" in out, (edition.slug, f"{when:%a %Y-%m-%d %H:%M %Z}", out)
            assert f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in out


# --- 2. exactly one issue per edition per local date -------------------------------------------------


def test_every_firing_on_the_repeated_hour_day_makes_one_issue_and_one_copy_per_reader(sample_settings, tmp_path, events):
    """New York 2026-11-01, an edition at 01:30: fired at 01:30 EDT, again at 01:30 EST (an hour
    later, as a fall-back duplicate would), again by a restarted scheduler, and concurrently with a
    manual send: one issue for that date, each reader exactly once."""
    stories = tmp_path / "stories"
    write_story(stories, "clocks-go-back", "2026-11-01T00:45:00-04:00")
    am = edition_like(sample_settings.edition("am"), "America/New_York", dt.time(1, 30))
    day = dt.date(2026, 11, 1)
    start = dt.datetime(2026, 11, 1, 0, 0, tzinfo=NY)
    todays = [f for f in fire_times(am, start, 3) if f.astimezone(NY).date() == day]
    assert [f.astimezone(UTC) for f in todays] == [utc("2026-11-01T05:30Z")], "one fire on the repeated-hour day"
    duplicate = todays[0].astimezone(UTC) + dt.timedelta(hours=1)  # 01:30 EST, the wall clock's second 01:30
    assert duplicate.astimezone(NY).strftime("%H:%M %Z") == "01:30 EST"

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(
                sample_settings, tmp_path / "s.db", server.port,
                editions=tuple(am if e.slug == "am" else e for e in sample_settings.editions),
                paths=dataclasses.replace(sample_settings.paths, stories=stories))
            for when in [*todays, duplicate]:
                # an APScheduler firing at `when` (the job asks for the latest due send) ...
                await Scheduler(settings, clock=lambda when=when: when).fire("am")
                # ... and one handed the scheduled run time itself
                await Scheduler(settings, clock=lambda when=when: when).fire("am", when)
            # a firing and a manual `digest send` for the same date at the same moment
            late = duplicate + dt.timedelta(minutes=10)
            results = await asyncio.gather(Scheduler(settings, clock=lambda: late).fire("am"),
                                           send_issue(settings, am, day), return_exceptions=True)
            assert all(not isinstance(r, BaseException) or isinstance(r, AlreadyRunning) for r in results), results
            return list(server.handler.received), settings

    received, settings = asyncio.run(scenario())
    assert issues_in(settings.state_db) == [("am", "2026-11-01")]
    per_reader = copies_from(received, AM_FROM)
    assert sorted(per_reader) == sorted(r.casefold() for r in AM_READERS)
    assert set(per_reader.values()) == {1}, per_reader
    with closing(Ledger(settings.state_db)) as ledger:
        record = ledger.find_issue("am", day)
        assert ledger.counts(record.id)["sent"] == len(AM_READERS)
        check_consistent(ledger.deliveries(record.id), received)
    assert find_events(events, "issue.finished", edition="am", date="2026-11-01")


def test_down_through_the_repeated_hour_the_restart_sends_that_date_once(sample_settings, tmp_path, events):
    """Alive until 01:00 EDT on 2026-11-01, back at 01:45 EST (an hour and three quarters later):
    the 01:30 edition is caught up once; a restart at the second 01:50 sends nothing."""
    stories = tmp_path / "stories"
    write_story(stories, "clocks-go-back", "2026-11-01T00:45:00-04:00")
    am = edition_like(sample_settings.edition("am"), "America/New_York", dt.time(1, 30))
    state_db = tmp_path / "s.db"
    set_mark(state_db, utc("2026-11-01T05:00Z"))  # 01:00 EDT
    back = utc("2026-11-01T06:45Z")  # 01:45 EST
    assert back.astimezone(NY).strftime("%H:%M %Z") == "01:45 EST"

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(
                sample_settings, state_db, server.port,
                editions=tuple(am if e.slug == "am" else e for e in sample_settings.editions),
                paths=dataclasses.replace(sample_settings.paths, stories=stories))
            first = await run_until_idle(Scheduler(settings, clock=lambda: back), events)
            again = await run_until_idle(Scheduler(settings, clock=lambda: back + dt.timedelta(minutes=5)), events)
            return first, again, list(server.handler.received)

    first, again, received = asyncio.run(scenario())
    catch_up = find_events(first, "issue.catch_up", edition="am")
    assert [(e["date"], e["late_seconds"]) for e in catch_up] == [("2026-11-01", str(75 * 60))]
    assert not find_events(again, "issue.started", edition="am")
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
    assert [i for i in issues_in(state_db) if i[0] == "am"] == [("am", "2026-11-01")]


# --- 3. end to end with a controllable clock --------------------------------------------------------


NOW = utc("2026-12-01T11:00:05Z")  # 06:00:05 in New York


def test_scheduler_sends_due_editions_at_start_and_a_second_firing_sends_nothing(sample_settings, tmp_path, events):
    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, tmp_path / "s.db", server.port)
            received = server.handler.received
            daemon = Scheduler(settings, clock=lambda: NOW)
            task = asyncio.create_task(daemon.run())
            try:
                await until(lambda: task.done() or (len(received) >= 18 and not daemon.running
                                                    and find_events(events, "scheduler.started")), 20, "18 copies")
            finally:
                daemon.stop.set()
            await asyncio.wait_for(task, 15)
            first = list(received)
            first_events = list(events)

            # the same date fired again: by a new scheduler's job, and by a restarted scheduler
            await Scheduler(settings, clock=lambda: NOW).fire("am")
            await Scheduler(settings, clock=lambda: NOW + dt.timedelta(minutes=1)).fire("tampa-bay")
            rerun = await run_until_idle(Scheduler(settings, clock=lambda: NOW + dt.timedelta(minutes=2)), events)
            return first, list(received), first_events, rerun, settings

    first, received, first_events, rerun, settings = asyncio.run(scenario())
    assert not find_events(rerun, "issue.started"), rerun
    assert copies_from(first, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
    assert len(copies_from(first, TAMPA_FROM)) == 7 and set(copies_from(first, TAMPA_FROM).values()) == {1}
    assert len(first) == 11 + 7, "only the editions due at 06:00 New York go"
    assert received == first, "a second firing for the same date sent something"
    assert issues_in(settings.state_db) == [("am", "2026-12-01"), ("tampa-bay", "2026-12-01")]

    started = find_events(first_events, "issue.started", edition="am", date="2026-12-01")
    finished = find_events(first_events, "issue.finished", edition="am", date="2026-12-01")
    assert len(started) == 1 and len(finished) == 1, first_events
    assert finished[0]["level"] == "info" and finished[0]["sent"] == "11"
    assert find_events(first_events, "issue.finished", edition="tampa-bay", sent="7")
    assert find_events(first_events, "issue.catch_up", edition="am")
    assert find_events(first_events, "scheduler.started") and find_events(first_events, "scheduler.stopped")
    for line in first_events:  # one line per event, logfmt with a UTC time stamp
        assert "\n" not in line and parse_event(line)["time"].endswith("Z") and "event=" in line


def _jobs(state_db: Path) -> dict[str, float]:
    """APScheduler's job store in the state database: job id -> next run time (epoch seconds)."""
    with closing(sqlite3.connect(state_db)) as db:
        return dict(db.execute("SELECT id, next_run_time FROM apscheduler_jobs"))


def _start_and_stop(settings: Settings, events: list[str]) -> None:
    asyncio.run(run_until_idle(Scheduler(settings, clock=lambda: NOW), events))


def test_jobs_persist_in_the_state_database_and_a_changed_send_time_is_used_at_the_next_start(
        sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    set_mark(state_db, NOW)  # nothing to catch up: only the jobs matter here
    settings = make_settings(sample_settings, state_db, 1)
    _start_and_stop(settings, events)
    stored = _jobs(state_db)
    assert set(stored) == {f"edition:{e.slug}" for e in settings.editions} | {"resume-unfinished"}
    now = dt.datetime.now(UTC)
    for edition in settings.editions:  # APScheduler keeps real time: the next real send of each edition
        assert stored[f"edition:{edition.slug}"] == fire_times(edition, now, 1)[0].timestamp(), edition.slug

    later_am = dataclasses.replace(settings.edition("am"), send_at=dt.time(7, 15))
    _start_and_stop(dataclasses.replace(settings, editions=tuple(later_am if e.slug == "am" else e for e in settings.editions)),
                    events)
    assert _jobs(state_db)["edition:am"] == fire_times(later_am, dt.datetime.now(UTC), 1)[0].timestamp()


def test_a_job_of_an_edition_removed_from_the_config_is_not_kept_at_the_next_start(sample_settings, tmp_path, events):
    """Jobs are rebuilt from digest.toml at start: an edition that is no longer there has no job
    (a kept one fires `_fire('climate')` for an edition the settings no longer know)."""
    state_db = tmp_path / "s.db"
    set_mark(state_db, NOW)
    settings = make_settings(sample_settings, state_db, 1)
    _start_and_stop(settings, events)
    assert "edition:climate" in _jobs(state_db)
    _start_and_stop(dataclasses.replace(settings, editions=tuple(e for e in settings.editions if e.slug != "climate")), events)
    stored = _jobs(state_db)
    assert "edition:climate" not in stored, "the job of an edition removed from digest.toml is still scheduled"
    assert set(stored) == {f"edition:{e.slug}" for e in settings.editions if e.slug != "climate"} | {"resume-unfinished"}


# --- 3b. the daily path: APScheduler's own job fires the edition (real time, a few seconds ahead) -----


def _due_in_seconds(sample_settings: Settings, tmp_path: Path, port: int, seconds: float) -> tuple[Settings, dt.datetime]:
    """Settings whose 'am' edition is due ``seconds`` from now (send_at with seconds), with a story
    published ten minutes ago, and a heartbeat mark of now so nothing else is caught up."""
    due = (dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0) + dt.timedelta(seconds=1)
    am = dataclasses.replace(sample_settings.edition("am"), send_at=due.astimezone(NY).time())
    stories = tmp_path / "stories"
    write_story(stories, "just-in", (due - dt.timedelta(minutes=10)).isoformat())
    settings = make_settings(sample_settings, tmp_path / "s.db", port,
                             editions=tuple(am if e.slug == "am" else e for e in sample_settings.editions),
                             paths=dataclasses.replace(sample_settings.paths, stories=stories))
    set_mark(settings.state_db, dt.datetime.now(UTC))
    return settings, due


def test_the_edition_job_fires_at_its_send_time_and_sends_the_issue_once(sample_settings, tmp_path, events):
    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings, due = _due_in_seconds(sample_settings, tmp_path, server.port, 1.5)
            daemon = Scheduler(settings)  # the real clock: APScheduler fires on real time
            task = asyncio.create_task(daemon.run())
            try:
                await until(lambda: task.done() or find_events(events, "issue.finished", edition="am"), 15,
                            "the edition's job to fire and finish")
                fired_at = dt.datetime.now(UTC)
            finally:
                daemon.stop.set()
            await asyncio.wait_for(task, 15)
            return settings, due, fired_at, list(server.handler.received)

    settings, due, fired_at, received = asyncio.run(scenario())
    assert due <= fired_at, "the edition fired before its send time"
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
    date = due.astimezone(NY).date()
    assert issues_in(settings.state_db) == [("am", date.isoformat())]
    started = find_events(events, "issue.started", edition="am")
    assert len(started) == 1 and started[0]["date"] == date.isoformat()
    assert dt.datetime.fromisoformat(started[0]["time"]) >= due


def test_stop_during_a_send_the_job_fired_finishes_the_copies_in_flight(sample_settings, tmp_path, events):
    """SIGTERM (stop) while the daily job's send is on the wire: the copies in flight finish and
    are recorded; none is left 'sending' (which the next start would resend as uncertain)."""
    async def scenario():
        handler = FaultHandler(data_delay=lambda: 0.4)  # stored at once, answered 0.4 s later
        async with CaptureServer(handler) as server:
            settings, due = _due_in_seconds(sample_settings, tmp_path, server.port, 1.5)
            daemon = Scheduler(settings)
            task = asyncio.create_task(daemon.run())
            try:
                await until(lambda: task.done() or len(handler.received) >= 2, 15, "the job's send to start")
            finally:
                daemon.stop.set()
            await asyncio.wait_for(task, 15)
            # run() has returned: `digest schedule` now leaves asyncio.run(), which cancels whatever
            # is still running. So the copies in flight must be settled already.
            with closing(Ledger(settings.state_db)) as ledger:
                record = ledger.find_issue("am", due.astimezone(NY).date())
                rows = ledger.deliveries(record.id)
            return list(handler.received), rows

    received, rows = asyncio.run(scenario())
    assert [d.email for d in rows if d.state == "sending"] == [], "copies in flight at the stop were abandoned"
    assert len(received) < len(AM_READERS), "the stop came too late to matter"
    check_consistent(rows, received)  # every stored copy is recorded 'sent'
    assert find_events(events, "issue.stopped", edition="am"), "the stopped send was not logged"


# --- 4. missed sends --------------------------------------------------------------------------------


def test_down_past_the_send_time_but_within_grace_sends_once_on_start(sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    set_mark(state_db, dt.datetime(2026, 12, 1, 5, 0, tzinfo=NY))  # alive until 05:00 New York
    start = dt.datetime(2026, 12, 1, 6, 30, tzinfo=NY).astimezone(UTC)  # back at 06:30: am is 30 min late

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            log = await run_until_idle(Scheduler(settings, clock=lambda: start), events)
            first = list(server.handler.received)
            await run_until_idle(Scheduler(settings, clock=lambda: start + dt.timedelta(minutes=5)), events)
            return first, log, list(server.handler.received)

    first, log, received = asyncio.run(scenario())
    assert copies_from(first, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
    assert received == first, "the restart sent the caught-up issue again"
    catch_up = find_events(log, "issue.catch_up", edition="am", date="2026-12-01")
    assert len(catch_up) == 1 and catch_up[0]["late_seconds"] == str(30 * 60)
    assert not find_events(log, "issue.missed")
    with closing(Ledger(state_db)) as ledger:
        assert ledger.missed() == []
        assert ledger.find_issue("am", DATE) is not None


def test_after_three_weeks_down_the_send_within_grace_still_goes_and_the_older_ones_are_reported(
        sample_settings, tmp_path, events):
    """A newsroom server off for three weeks (a holiday): at start, today's send, 30 min late, is
    within grace and goes; every send of the weeks before is reported missed, not silently dropped."""
    state_db = tmp_path / "s.db"
    set_mark(state_db, utc("2026-11-10T12:00Z"))
    start = dt.datetime(2026, 12, 1, 6, 30, tzinfo=NY).astimezone(UTC)

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            log = await run_until_idle(Scheduler(settings, clock=lambda: start), events)
            return log, list(server.handler.received)

    log, received = asyncio.run(scenario())
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS}), "today's send was dropped"
    assert find_events(log, "issue.catch_up", edition="am", date="2026-12-01")
    assert len(find_events(log, "issue.missed", edition="am")) == 20
    with closing(Ledger(state_db)) as ledger:
        missed = {d for _, d, _, _ in ledger.missed("am")}
    assert dt.date(2026, 11, 30) in missed and dt.date(2026, 11, 11) in missed
    assert missed == {dt.date(2026, 11, 11) + dt.timedelta(days=n) for n in range(20)}, sorted(missed)
    # the editors hear of it once per edition, not twenty times; an edition without editors only logs
    alerts = [m for m in received if is_alert(m)]
    assert [m.recipients for m in alerts] == [("am-desk@northline.example.org",), ("denver-desk@northline.example.org",)]
    assert b"20 issue(s)" in alerts[0].data and b"2026-11-30" in alerts[0].data and b"10 earlier" in alerts[0].data
    assert len(find_events(log, "alert", kind="missed")) == len(sample_settings.editions)


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """The test key and a state database at tmp_path/s.db, run from tmp_path; returns that database's path."""
    isolate(monkeypatch, state_db=tmp_path / "s.db").chdir(tmp_path)
    return tmp_path / "s.db"


def cli(capsys, *args: str) -> tuple[int, str]:
    code, out, err = run(capsys, *args)
    return code, out + err


def test_down_beyond_grace_is_not_sent_is_reported_and_can_be_sent_by_hand(sample_settings, tmp_path, events, capsys, cli_env):
    state_db = cli_env
    set_mark(state_db, utc("2026-11-30T20:00Z"))
    start = utc("2026-12-01T14:00Z")  # am (06:00 New York = 11:00Z) is 3 h late; grace is 120 min
    with ThreadedServer(FaultHandler()) as server:
        config = write_newsroom(tmp_path / "newsroom", port=server.port, pool_size=2)
        settings = load_settings(config)
        assert settings.state_db == state_db and settings.edition("am").grace_minutes == 120

        asyncio.run(run_until_idle(Scheduler(settings, clock=lambda: start), events))
        received = list(server.handler.received)
        assert not copies_from(received, AM_FROM), "am was sent 3 h late, beyond its grace"
        with closing(Ledger(state_db)) as ledger:
            assert ledger.find_issue("am", DATE) is None
            assert [(d, t) for _, d, t, _ in ledger.missed("am")] == [(DATE, "2026-12-01T06:00:00-05:00")]
            assert ("pm", dt.date(2026, 11, 30)) in [(e, d) for e, d, _, _ in ledger.missed()]  # 16 h late

        code, out = cli(capsys, "--config", str(config), "status", "am", "--date", "2026-12-01")
        assert code == 1 and "MISSED" in out, out
        assert "digest send am --date 2026-12-01" in out
        code, out = cli(capsys, "--config", str(config), "schedule", "--list")
        assert code == 0 and "missed: am 2026-12-01" in out, out

        code, out = cli(capsys, "--config", str(config), "send", "am", "--date", "2026-12-01")
        assert code == 0, out
        assert copies_from(server.handler.received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
        with closing(Ledger(state_db)) as ledger:
            assert ledger.missed("am") == []
        code, out = cli(capsys, "--config", str(config), "status", "am", "--date", "2026-12-01")
        assert code == 0 and "MISSED" not in out, out
        code, out = cli(capsys, "--config", str(config), "schedule", "--list")
        assert "missed: am" not in out, out


def test_down_beyond_grace_logs_an_error_event_for_the_miss(sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    set_mark(state_db, utc("2026-11-30T20:00Z"))
    start = utc("2026-12-01T14:00Z")

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            daemon = Scheduler(settings, clock=lambda: start)
            task = asyncio.create_task(daemon.run())
            try:
                await until(lambda: task.done() or (find_events(events, "scheduler.started") and not daemon.running), 20)
            finally:
                daemon.stop.set()
            await task
            log = list(events)
            # a second start reports nothing twice and still sends nothing
            again = await run_until_idle(Scheduler(settings, clock=lambda: start + dt.timedelta(minutes=1)), events)
            return log, again, list(server.handler.received)

    log, again, received = asyncio.run(scenario())
    assert not find_events(again, "issue.missed"), "the same miss was reported again at the next start"
    missed = find_events(log, "issue.missed", edition="am", date="2026-12-01")
    assert len(missed) == 1, log
    assert missed[0]["level"] == "error"
    assert utc(missed[0]["send_time"]) == utc("2026-12-01T11:00Z")
    assert "digest send" in missed[0]["detail"]
    assert not find_events(log, "issue.started", edition="am")
    assert not copies_from(received, AM_FROM)


def test_first_ever_start_beyond_grace_sends_nothing_and_records_no_miss_since_no_scheduler_was_meant_to_run(
        sample_settings, tmp_path, events):
    """No 'scheduler.last_seen' mark: the scheduler never ran here, so a send before its first
    start was nobody's to make. Beyond grace it is neither sent nor reported as missed."""
    state_db = tmp_path / "s.db"
    start = utc("2026-12-01T14:00Z")  # am 3 h ago

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            await run_until_idle(Scheduler(settings, clock=lambda: start), events)
            return list(server.handler.received)

    received = asyncio.run(scenario())
    assert not copies_from(received, AM_FROM)
    with closing(Ledger(state_db)) as ledger:
        assert ledger.missed() == []
        assert ledger.find_issue("am", DATE) is None
        assert ledger.mark_value(LAST_SEEN) == start.timestamp()  # from now on, misses are reported


def test_a_send_apscheduler_reports_missed_while_running_is_recorded_and_logged(sample_settings, tmp_path, events):
    """The daemon was alive but could not run the job within its grace (a suspended host, a blocked
    loop): APScheduler reports EVENT_JOB_MISSED and the miss is recorded like one found at start."""
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    state_db = tmp_path / "s.db"
    settings = make_settings(sample_settings, state_db, 1)
    with closing(Ledger(state_db)) as ledger:  # tampa-bay's issue exists: it was not missed
        ledger.create_issue("tampa-bay", DATE, utc("2026-12-01T11:00Z"), ["x"], audience=[("a@example.com", "A", "a@example.com")])
    daemon = Scheduler(settings, clock=lambda: utc("2026-12-01T14:00Z"))
    for job_id in ("edition:am", "edition:tampa-bay", "resume-unfinished"):
        daemon._on_missed(JobExecutionEvent(EVENT_JOB_MISSED, job_id, "default", utc("2026-12-01T11:00Z")))
    with closing(Ledger(state_db)) as ledger:
        assert [(e, d) for e, d, _, _ in ledger.missed()] == [("am", DATE)]
    missed = find_events(events, "issue.missed")
    assert [(m["edition"], m["date"], m["level"]) for m in missed] == [("am", "2026-12-01", "error")]


def test_a_send_that_cannot_be_made_is_logged_as_failed_at_error_level(sample_settings, tmp_path, events):
    """With on_broken_story = "fail", a story file that cannot be read stops the issue: the firing
    logs event=issue.failed level=error naming the file, sends nothing, and a later firing once the
    story is fixed sends the issue. (The default, "skip", is covered in test_dryrun.py.)"""
    stories = tmp_path / "stories"
    stories.mkdir()
    for story in sample_settings.paths.stories.glob("*.md"):
        (stories / story.name).write_text(story.read_text(encoding="utf-8"), encoding="utf-8")
    broken = stories / "zz-broken.md"
    broken.write_text("no front matter here\n", encoding="utf-8")

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, tmp_path / "s.db", server.port,
                                     paths=dataclasses.replace(sample_settings.paths, stories=stories),
                                     editions=tuple(dataclasses.replace(e, on_broken_story="fail")
                                                    for e in sample_settings.editions))
            log = await run_until_idle(Scheduler(settings, clock=lambda: NOW), events)
            sent_while_broken = list(server.handler.received)
            broken.unlink()
            await Scheduler(settings, clock=lambda: NOW + dt.timedelta(minutes=3)).fire("am")
            return log, sent_while_broken, list(server.handler.received)

    log, sent_while_broken, received = asyncio.run(scenario())
    failed = find_events(log, "issue.failed", edition="am", date="2026-12-01")
    assert len(failed) == 1 and failed[0]["level"] == "error", log
    assert "zz-broken.md" in failed[0]["detail"]
    assert not find_events(log, "issue.finished", edition="am")
    assert sent_while_broken == []
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})


def test_schedule_list_shows_the_state_of_todays_issues(sample_settings, tmp_path, capsys, cli_env):
    """`digest schedule --list` (real clock): today's issue per edition: its state, or MISSED."""
    state_db = cli_env
    config = ROOT / "digest.toml"
    settings = load_settings(config)
    am, pm = settings.edition("am"), settings.edition("pm")
    now = dt.datetime.now(UTC)
    with closing(Ledger(state_db)) as ledger:
        ledger.create_issue("am", today_in(am, now), send_time(am, today_in(am, now)), ["x"],
                            audience=[("a@example.com", "A", "a@example.com"), ("b@example.com", "B", "b@example.com")])
        ledger.record_missed("pm", today_in(pm, now), send_time(pm, today_in(pm, now)), "scheduler was not running")
    code, out = cli(capsys, "--config", str(config), "schedule", "--list", "--count", "2")
    assert code == 0, out
    assert re.search(r"^\W*am\W.*open: 2 pending", out, re.MULTILINE), out
    assert re.search(r"^\W*pm\W.*MISSED", out, re.MULTILINE), out
    assert f"missed: pm {today_in(pm, now)}" in out
    assert "no scheduler is running" in out


# --- 5. one scheduler per state database --------------------------------------------------------------


def test_a_second_scheduler_on_the_same_state_database_is_refused(sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    set_mark(state_db, NOW)

    async def scenario():
        settings = make_settings(sample_settings, state_db, 1)
        first = Scheduler(settings, clock=lambda: NOW)
        task = asyncio.create_task(first.run())
        try:
            await until(lambda: task.done() or find_events(events, "scheduler.started"), 20, "the first scheduler")
            assert not task.done()
            assert scheduler_health(settings, NOW)[0]
            with pytest.raises(AlreadyRunning, match="already running"):
                await Scheduler(settings, clock=lambda: NOW).run()
            assert not task.done(), "the refused second scheduler stopped the first"
            assert scheduler_health(settings, NOW)[0]
        finally:
            first.stop.set()
        await task
        assert not scheduler_health(settings, NOW)[0], "the lease was not released at stop"
        # once the first has stopped, a new one starts
        await run_until_idle(Scheduler(settings, clock=lambda: NOW), events)

    asyncio.run(scenario())


def test_the_database_lease_refuses_a_live_holder_and_yields_after_expiry(tmp_path):
    with closing(Ledger(tmp_path / "s.db")) as ledger:
        t = 1_000_000.0
        assert ledger.acquire_lease(LEASE, "host-a:1", 60, t) is None
        assert ledger.acquire_lease(LEASE, "host-b:2", 60, t + 1) == "host-a:1"
        assert ledger.acquire_lease(LEASE, "host-a:1", 60, t + 30) is None  # renewal: now expires at t + 90
        assert ledger.acquire_lease(LEASE, "host-b:2", 60, t + 89) == "host-a:1"
        assert ledger.lease(LEASE) == ("host-a:1", t + 90)
        ledger.release_lease(LEASE, "host-b:2")  # only the owner may release
        assert ledger.lease(LEASE) == ("host-a:1", t + 90)
        assert ledger.acquire_lease(LEASE, "host-b:2", 60, t + 91) is None  # expired: taken over
        assert ledger.acquire_lease(LEASE, "host-a:1", 60, t + 92) == "host-b:2"
        ledger.release_lease(LEASE, "host-b:2")
        assert ledger.lease(LEASE) is None
        assert ledger.acquire_lease(LEASE, "host-a:1", 60, t + 93) is None


def test_a_live_lease_of_another_host_refuses_the_scheduler_even_without_the_os_lock(sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    set_mark(state_db, NOW)
    settings = make_settings(sample_settings, state_db, 1)
    with closing(Ledger(state_db)) as ledger:
        ledger.acquire_lease(LEASE, "other-host:4242", 60, NOW.timestamp() - 10)
    with pytest.raises(AlreadyRunning, match="already running.*other-host:4242"):
        asyncio.run(Scheduler(settings, clock=lambda: NOW).run())
    assert not find_events(events, "issue.started")
    with closing(Ledger(state_db)) as ledger:
        assert ledger.lease(LEASE) == ("other-host:4242", NOW.timestamp() + 50), "a refused scheduler took the lease"
    # once that lease has expired (its holder died), the scheduler starts
    later = NOW + dt.timedelta(seconds=61)
    asyncio.run(run_until_idle(Scheduler(settings, clock=lambda: later), events))


def test_a_lease_left_by_a_killed_scheduler_on_this_host_does_not_block_the_restart(sample_settings, tmp_path, events):
    """A scheduler killed with SIGKILL leaves its lease live for up to 60 s. The restart holds the
    OS lock, so no scheduler on this host is alive: the lease of this host's dead process must not
    make it exit with "already running" (systemd restarts after 10 s; the issue must be resumed)."""
    state_db = tmp_path / "s.db"
    set_mark(state_db, NOW)
    settings = make_settings(sample_settings, state_db, 1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_owner = f"{socket.gethostname()}:{int(dead.stdout)}"
    with closing(Ledger(state_db)) as ledger:
        ledger.acquire_lease(LEASE, dead_owner, 60, NOW.timestamp() - 5)  # renewed 5 s before the kill
    asyncio.run(run_until_idle(Scheduler(settings, clock=lambda: NOW), events))  # raises AlreadyRunning if refused
    with closing(Ledger(state_db)) as ledger:
        assert ledger.lease(LEASE) is None  # taken over, then released at stop


# --- 6. an unfinished issue is resumed at start -----------------------------------------------------


def test_an_issue_a_crash_left_unfinished_is_resumed_at_start(sample_settings, tmp_path, events):
    state_db = tmp_path / "s.db"
    am = sample_settings.edition("am")

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            # a first run sends a few copies, then stops like a crash would leave it
            stop = asyncio.Event()
            report = await send_issue(settings, am, DATE, stop=stop,
                                      progress=lambda counts, total: counts.get("sent", 0) >= 4 and stop.set())
            assert report.counts["pending"] > 0
            with closing(sqlite3.connect(state_db, isolation_level=None)) as db:
                # the last copy the server accepted never got its 'sent' committed: the crash hit first
                row_id, email, in_flight_id = db.execute(
                    "SELECT id, email, message_id FROM deliveries WHERE state = 'sent' ORDER BY id DESC LIMIT 1").fetchone()
                db.execute("UPDATE deliveries SET state = 'sending' WHERE id = ?", (row_id,))
            before = list(server.handler.received)
            with closing(sqlite3.connect(state_db)) as db:
                pending = [r[0] for r in db.execute("SELECT email FROM deliveries WHERE state = 'pending' ORDER BY id")]
            set_mark(state_db, utc("2026-12-01T11:25Z"))  # nothing else is due at the restart

            later = utc("2026-12-01T11:30Z")
            with closing(Ledger(state_db)) as ledger:
                assert ledger.unfinished_issues() == [("am", DATE)]
            await run_until_idle(Scheduler(settings, clock=lambda: later), events)
            return before, list(server.handler.received), email, in_flight_id, pending

    before, received, in_flight, in_flight_id, pending = asyncio.run(scenario())
    after = received[len(before):]
    resent = copies_from(after, AM_FROM)
    assert resent == Counter({e.casefold(): 1 for e in [in_flight, *pending]}), "resume sent the wrong copies"
    in_flight_copies = stored_by_reader(received)[in_flight.casefold()]
    assert len(in_flight_copies) == 2
    assert {message_id(c.data) for c in in_flight_copies} == {in_flight_id}, "the uncertain copy was resent with a new Message-ID"
    with closing(Ledger(state_db)) as ledger:
        record = ledger.find_issue("am", DATE)
        rows = ledger.deliveries(record.id)
        assert {d.state for d in rows} == {"sent"}
        assert record.status == "done"
        assert ledger.unfinished_issues() == []
        check_consistent(rows, received)
    assert sorted(stored_by_reader(received)) == sorted(r.casefold() for r in AM_READERS)


def test_an_issue_left_with_deferred_copies_is_finished_at_start(sample_settings, tmp_path, events):
    """A run that ended with copies deferred (the relay said 451) leaves the issue open; the next
    scheduler start retries them."""
    state_db = tmp_path / "s.db"
    am = sample_settings.edition("am")
    busy = {AM_READERS[2], AM_READERS[5]}

    async def scenario():
        handler = FaultHandler(rcpt_default=lambda a: "451 4.3.0 try later" if a.strip("<>") in busy and not handler.open else None)
        handler.open = False
        async with CaptureServer(handler) as server:
            settings = make_settings(sample_settings, state_db, server.port)
            report = await send_issue(settings, am, DATE, wait_for_retries=False)
            assert report.counts["deferred"] == 2, report.counts
            handler.open = True  # the relay recovers
            set_mark(state_db, utc("2026-12-01T11:25Z"))
            await run_until_idle(Scheduler(settings, clock=lambda: utc("2026-12-01T11:30Z")), events)
            return list(server.handler.received)

    received = asyncio.run(scenario())
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})
    with closing(Ledger(state_db)) as ledger:
        record = ledger.find_issue("am", DATE)
        assert {d.state for d in ledger.deliveries(record.id)} == {"sent"}


# --- 7. the health check ------------------------------------------------------------------------------


def test_health_is_1_without_a_scheduler_and_0_while_one_runs(sample_settings, tmp_path, capsys, cli_env, events):
    state_db = cli_env
    config = ROOT / "digest.toml"
    code, out = cli(capsys, "--config", str(config), "schedule", "--health")
    assert code == 1, out  # no state database at all

    settings = load_settings(config)
    assert settings.state_db == state_db
    set_mark(state_db, dt.datetime.now(UTC))  # nothing due: this scheduler only has to be alive
    code, out = cli(capsys, "--config", str(config), "schedule", "--health")
    assert code == 1, out  # a database, no scheduler

    ready = threading.Event()
    box: dict[str, object] = {}

    def daemon_thread():
        async def run():
            daemon = Scheduler(dataclasses.replace(settings, smtp=SmtpSettings("127.0.0.1", 1, "none")))
            box["loop"], box["daemon"] = asyncio.get_running_loop(), daemon
            ready.set()
            await daemon.run()
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=daemon_thread, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        assert wait_for(lambda: "error" in box or scheduler_health(settings)[0], 15), box.get("error")
        alive, detail = scheduler_health(settings)
        assert alive, detail
        code, out = cli(capsys, "--config", str(config), "schedule", "--health")
        assert code == 0, out
        code, out = cli(capsys, "--config", str(config), "schedule", "--list")
        assert code == 0 and "alive" in out, out
    finally:
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["daemon"].stop.set)
        thread.join(20)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    code, out = cli(capsys, "--config", str(config), "schedule", "--health")
    assert code == 1, out  # stopped: lease released

    # a scheduler that died without releasing its lease is unhealthy once the lease expires
    with closing(Ledger(state_db)) as ledger:
        ledger.acquire_lease(LEASE, "gone:1", 60, time.time() - 120)
    code, out = cli(capsys, "--config", str(config), "schedule", "--health")
    assert code == 1 and "expired" in out, out


# --- 4. an editor's hold, seen by the scheduler -------------------------------------------------------


def test_a_held_issue_is_logged_never_skipped_silently_and_goes_once_resumed(sample_settings, tmp_path, events):
    from digest.deliver.control import act

    day = dt.date(2026, 12, 1)

    async def scenario():
        async with CaptureServer(FaultHandler()) as server:
            settings = make_settings(sample_settings, tmp_path / "s.db", server.port)
            am = settings.edition("am")
            act(settings, am, day, "hold", "desk@news", "waiting on the jobs report")
            await Scheduler(settings, clock=lambda: NOW).fire("am")
            held = list(server.handler.received)
            act(settings, am, day, "resume", "desk@news", None)
            daemon = Scheduler(settings, clock=lambda: NOW + dt.timedelta(minutes=20))
            await daemon.resume_unfinished()  # the scheduler's check every RESUME_EVERY
            await asyncio.gather(*daemon.running)
            return held, list(server.handler.received), settings

    held, received, settings = asyncio.run(scenario())
    # no copy went at the send time; the edition's desk got one alert saying why
    assert [m.recipients for m in held] == [("am-desk@northline.example.org",)] and is_alert(held[0])
    assert b"held by desk@news" in held[0].data and b"Subject: [alert] Northline AM 2026-12-01: issue held" in held[0].data
    logged = find_events(events, "issue.held", edition="am", date="2026-12-01")
    assert logged and "held by desk@news" in logged[0]["detail"] and "jobs report" in logged[0]["detail"]
    assert copies_from(received, AM_FROM) == Counter({r.casefold(): 1 for r in AM_READERS})


def test_alerts_reach_a_webhook_and_a_failing_one_only_logs(sample_settings, tmp_path, events, monkeypatch):
    """A local HTTP receiver stands in for Slack: one JSON POST per alert with its text; a webhook
    that refuses connections is logged (without its URL, which holds the secret) and harms nothing."""
    import http.server
    import json

    from digest.deliver.alerts import Alert, send_alert

    posts: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    am = dataclasses.replace(sample_settings.edition("am"), editors=())
    alert = Alert("held", am, dt.date(2026, 12, 1), "held by desk: waiting on the jobs report")
    try:
        monkeypatch.setenv("DIGEST_ALERT_WEBHOOK", f"http://127.0.0.1:{httpd.server_address[1]}/hooks/T0KEN")
        asyncio.run(send_alert(sample_settings, alert))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert posts == [{"text": "Northline AM 2026-12-01: issue held. held by desk: waiting on the jobs report",
                      "kind": "held", "edition": "am", "date": "2026-12-01"}]

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("DIGEST_ALERT_WEBHOOK", f"http://127.0.0.1:{port}/hooks/S3CRET")
    asyncio.run(send_alert(sample_settings, alert))
    failed = find_events(events, "alert.failed", via="webhook")
    assert failed and failed[0]["host"] == "127.0.0.1"
    assert not any("S3CRET" in line for line in events)
