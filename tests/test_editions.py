"""Which stories go into an issue, and when each issue is due (windows, DST, budget, order)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT

from digest.compose.editions import (
    is_eligible,
    next_sends,
    previous_send,
    reading_minutes,
    send_time,
    sends_on,
    today_in,
)
from digest.compose.planning import choose_stories
from digest.config import load_settings
from digest.models import Edition, Mailbox, Story
from digest.sources.stories import load_folder, parse_story

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
SAMPLE_DATE = dt.date(2026, 12, 1)


def make_edition(**changes) -> Edition:
    values = dict(
        slug="am", name="Test AM", kind="national", tagline="", timezone="America/New_York",
        send_at=dt.time(6, 0), days=frozenset(range(7)), sender=Mailbox("Test AM", "am@news.example.org"),
        reply_to=None, list_id="am.news.example.org", subject="{{ lead.headline }}", preheader="",
        greeting="Hello", reading_minutes=5, tags=frozenset({"national"}),
    )
    values.update(changes)
    return Edition(**values)


def make_story(story_id: str, published: str | dt.datetime, *, words: int = 100, priority: int = 5,
               tags=("national",), editions=(), cities=()) -> Story:
    when = dt.datetime.fromisoformat(published) if isinstance(published, str) else published
    assert when.utcoffset() is not None
    return Story(id=story_id, headline=f"Headline {story_id}", published=when, body_html="<p>Body.</p>",
                 words=words, source=f"stories/{story_id}.md", editions=frozenset(editions),
                 tags=frozenset(tags), cities=frozenset(cities), priority=priority)


def ids(stories) -> list[str]:
    return [s.id for s in stories]


# --- windows ---------------------------------------------------------------------------------------


def test_am_window_for_the_sample_day():
    issue = choose_stories(make_edition(), SAMPLE_DATE, [], words_per_minute=230)
    assert issue.window_start == dt.datetime(2026, 11, 30, 6, 0, tzinfo=NY)
    assert issue.send_time == dt.datetime(2026, 12, 1, 6, 0, tzinfo=NY)
    assert issue.window_start.astimezone(UTC) == dt.datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    assert issue.send_time.astimezone(UTC) == dt.datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    assert issue.send_time.tzinfo == NY  # in the edition's own zone
    assert issue.date == SAMPLE_DATE


def test_window_boundaries_start_excluded_send_time_included():
    stories = [
        make_story("at-start", "2026-11-30T11:00:00+00:00"),
        make_story("just-after-start", "2026-11-30T06:00:01-05:00"),
        make_story("mid-window-other-offset", "2026-11-30T20:00:00-07:00"),
        make_story("at-send-time", "2026-12-01T04:00:00-07:00"),  # = 06:00 New York
        make_story("just-after-send", "2026-12-01T11:00:01+00:00"),
        make_story("day-before", "2026-11-29T12:00:00-05:00"),
    ]
    issue = choose_stories(make_edition(), SAMPLE_DATE, stories, words_per_minute=230)
    assert sorted(ids(issue.stories)) == ["at-send-time", "just-after-start", "mid-window-other-offset"]


def test_consecutive_windows_meet_without_gap_or_overlap():
    edition = make_edition()
    for day in range(1, 31):
        date = dt.date(2026, 11, day)
        nxt = choose_stories(edition, date + dt.timedelta(days=1), [], words_per_minute=230)
        assert nxt.window_start == send_time(edition, date)


def test_weekday_only_edition_on_monday_covers_the_weekend():
    climate = make_edition(slug="climate", timezone="America/Los_Angeles", send_at=dt.time(7, 0),
                           days=frozenset({0, 1, 2, 3, 4}), tags=frozenset({"climate"}))
    monday = dt.date(2026, 11, 30)
    assert monday.weekday() == 0
    stories = [
        make_story("thu", "2026-11-26T12:00:00-08:00", tags=["climate"]),
        make_story("fri-before-send", "2026-11-27T06:59:00-08:00", tags=["climate"]),
        make_story("fri-after-send", "2026-11-27T07:01:00-08:00", tags=["climate"]),
        make_story("sat", "2026-11-28T12:00:00-08:00", tags=["climate"]),
        make_story("sun", "2026-11-29T23:00:00-08:00", tags=["climate"]),
        make_story("mon-early", "2026-11-30T06:30:00-08:00", tags=["climate"]),
    ]
    issue = choose_stories(climate, monday, stories, words_per_minute=230)
    assert issue.window_start == dt.datetime(2026, 11, 27, 7, 0, tzinfo=LA)
    assert sorted(ids(issue.stories)) == ["fri-after-send", "mon-early", "sat", "sun"]
    tuesday = choose_stories(climate, monday + dt.timedelta(days=1), stories, words_per_minute=230)
    assert tuesday.window_start == dt.datetime(2026, 11, 30, 7, 0, tzinfo=LA)
    assert previous_send(climate, monday) == dt.datetime(2026, 11, 27, 7, 0, tzinfo=LA)
    assert [sends_on(climate, monday + dt.timedelta(days=i)) for i in range(7)] == [True] * 5 + [False] * 2


def test_weekday_only_next_sends_skip_the_weekend():
    climate = make_edition(timezone="America/Los_Angeles", send_at=dt.time(7, 0), days=frozenset({0, 1, 2, 3, 4}))
    friday_noon = dt.datetime(2026, 11, 27, 12, 0, tzinfo=LA)
    sends = next_sends(climate, friday_noon, 3)
    assert [s.date() for s in sends] == [dt.date(2026, 11, 30), dt.date(2026, 12, 1), dt.date(2026, 12, 2)]


# --- daylight saving time --------------------------------------------------------------------------


@pytest.mark.parametrize("date,utc", [
    (dt.date(2026, 3, 7), dt.datetime(2026, 3, 7, 11, 0, tzinfo=UTC)),
    (dt.date(2026, 3, 8), dt.datetime(2026, 3, 8, 10, 0, tzinfo=UTC)),   # spring forward: EDT
    (dt.date(2026, 10, 31), dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC)),
    (dt.date(2026, 11, 1), dt.datetime(2026, 11, 1, 11, 0, tzinfo=UTC)),  # fall back: EST
])
def test_six_am_new_york_across_dst_changes(date, utc):
    when = send_time(make_edition(), date)
    assert when.astimezone(UTC) == utc
    assert (when.hour, when.minute) == (6, 0)


def test_send_time_in_the_spring_forward_gap_is_one_real_instant():
    edition = make_edition(send_at=dt.time(2, 30))
    day = dt.date(2026, 3, 8)
    when = send_time(edition, day)
    # 02:30 does not exist that night; read with the offset before the change (documented): 07:30Z.
    assert when.astimezone(UTC) == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert when.astimezone(NY).date() == day
    before, after = send_time(edition, day - dt.timedelta(days=1)), send_time(edition, day + dt.timedelta(days=1))
    assert before.astimezone(UTC) < when.astimezone(UTC) < after.astimezone(UTC)
    sends = next_sends(edition, dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC), 3)
    assert [s.astimezone(NY).date() for s in sends] == [dt.date(2026, 3, 8), dt.date(2026, 3, 9), dt.date(2026, 3, 10)]


def test_send_time_in_the_repeated_fall_back_hour_is_the_first_occurrence_only():
    edition = make_edition(send_at=dt.time(1, 30))
    day = dt.date(2026, 11, 1)
    when = send_time(edition, day)
    assert when.astimezone(UTC) == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    sends = next_sends(edition, dt.datetime(2026, 10, 31, 12, 0, tzinfo=UTC), 3)
    assert [s.astimezone(NY).date() for s in sends] == [dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)]
    assert [s.astimezone(UTC).hour for s in sends] == [5, 6, 6]


def test_next_sends_after_an_instant_in_the_repeated_hour_are_in_the_future():
    edition = make_edition(send_at=dt.time(1, 30))
    # 01:15 EST, the second 01:15 of the night (06:15Z): the 01:30 EDT send (05:30Z) is already past.
    now = dt.datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=NY)
    assert now.astimezone(UTC) == dt.datetime(2026, 11, 1, 6, 15, tzinfo=UTC)
    (nxt,) = next_sends(edition, now, 1)
    assert nxt.astimezone(UTC) > now.astimezone(UTC)
    assert nxt.astimezone(NY).date() == dt.date(2026, 11, 2)
    # The same instant written in UTC must give the same answer.
    (same,) = next_sends(edition, now.astimezone(UTC), 1)
    assert same.astimezone(UTC) == nxt.astimezone(UTC)


ZONES = ["America/New_York", "America/Denver", "America/Chicago", "Europe/Berlin"]
TIMES = [dt.time(0, 30), dt.time(1, 30), dt.time(2, 30), dt.time(6, 0), dt.time(23, 30)]


@pytest.mark.parametrize("send_at", TIMES, ids=lambda t: t.strftime("%H%M"))
@pytest.mark.parametrize("zone", ZONES)
def test_next_sends_over_2026_one_per_local_date_no_duplicates_no_gaps(zone, send_at):
    edition = make_edition(timezone=zone, send_at=send_at)
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(dt.date(2025, 12, 31), dt.time(23, 59, 59), tzinfo=tz).astimezone(UTC)
    sends = next_sends(edition, start, 365)
    local_dates = [s.astimezone(tz).date() for s in sends]
    expected = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    assert local_dates == expected
    instants = [s.astimezone(UTC) for s in sends]
    assert instants == sorted(set(instants))  # strictly increasing, no duplicates
    for earlier, later in zip(instants, instants[1:]):
        assert dt.timedelta(hours=22) <= later - earlier <= dt.timedelta(hours=26)
    # And each send is the edition's own send time for that date.
    assert all(s == send_time(edition, d) for s, d in zip(sends, expected))


def test_next_sends_is_strictly_after():
    edition = make_edition()
    at_send = send_time(edition, SAMPLE_DATE)
    (nxt,) = next_sends(edition, at_send, 1)
    assert nxt == send_time(edition, SAMPLE_DATE + dt.timedelta(days=1))
    (nxt,) = next_sends(edition, at_send - dt.timedelta(seconds=1), 1)
    assert nxt == at_send


def test_today_in_uses_the_editions_zone():
    utc_now = dt.datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 22:00 on Dec 1 in New York, 19:00 in LA
    assert today_in(make_edition(), utc_now) == dt.date(2026, 12, 1)
    assert today_in(make_edition(timezone="Europe/Berlin"), utc_now) == dt.date(2026, 12, 2)


# --- eligibility and order -------------------------------------------------------------------------

CONFIG = """\
[newsroom]
name = "Test News"
domain = "news.example.org"
postal_address = "1 Main Street, Town"
[web]
base_url = "https://digest.news.example.org"
[defaults]
subject = "{{ lead.headline }}"
[[editions]]
slug = "am"
name = "AM"
kind = "national"
timezone = "America/New_York"
send_at = "06:00"
from = "am@news.example.org"
tags = ["National", "POLITICS"]
[[editions]]
slug = "denver"
name = "Denver"
kind = "city"
timezone = "America/Denver"
send_at = "06:00"
from = "denver@news.example.org"
cities = ["Denver"]
[[editions]]
slug = "climate"
name = "Climate"
kind = "topic"
timezone = "America/Los_Angeles"
send_at = "07:00"
from = "climate@news.example.org"
tags = ["climate"]
"""


def story_file(name: str, labels: str) -> Story:
    text = f"---\nheadline: {name}\npublished: 2026-11-30T12:00:00-05:00\n{labels}\n---\nBody text.\n"
    return parse_story(text, source=f"{name}.md", default_id=name)


def test_eligibility_by_slug_tag_or_city_is_case_insensitive(tmp_path):
    (tmp_path / "digest.toml").write_text(CONFIG, encoding="utf-8")
    settings = load_settings(tmp_path / "digest.toml", environ={})
    am, denver, climate = settings.editions
    by_slug = story_file("by-slug", "editions: [CLIMATE]")
    by_tag = story_file("by-tag", "tags: [Politics]")
    by_city = story_file("by-city", "cities: [DENVER]")
    nothing = story_file("nothing", "tags: [sports]\ncities: [boston]")
    assert [is_eligible(climate, s) for s in (by_slug, by_tag, by_city, nothing)] == [True, False, False, False]
    assert [is_eligible(am, s) for s in (by_slug, by_tag, by_city, nothing)] == [False, True, False, False]
    assert [is_eligible(denver, s) for s in (by_slug, by_tag, by_city, nothing)] == [False, False, True, False]
    issue = choose_stories(am, dt.date(2026, 12, 1), [by_slug, by_tag, by_city, nothing], words_per_minute=230)
    assert ids(issue.stories) == ["by-tag"]


def test_a_city_tag_does_not_match_a_city_edition():
    denver = make_edition(slug="denver", tags=frozenset(), cities=frozenset({"denver"}))
    tagged = make_story("tagged", "2026-11-30T12:00:00-05:00", tags=["denver"])
    assert not is_eligible(denver, tagged)


def test_order_is_priority_then_newest_first():
    stories = [
        make_story("p3-new", "2026-12-01T05:00:00-05:00", priority=3),
        make_story("p1-old", "2026-11-30T07:00:00-05:00", priority=1),
        make_story("p3-old", "2026-11-30T08:00:00-05:00", priority=3),
        make_story("p1-new", "2026-12-01T04:00:00-05:00", priority=1),
        make_story("p2", "2026-11-30T09:00:00-05:00", priority=2),
    ]
    issue = choose_stories(make_edition(), SAMPLE_DATE, stories, words_per_minute=230)
    assert ids(issue.stories) == ["p1-new", "p1-old", "p2", "p3-new", "p3-old"]
    reverse = choose_stories(make_edition(), SAMPLE_DATE, list(reversed(stories)), words_per_minute=230)
    assert ids(reverse.stories) == ids(issue.stories)


# --- reading-time budget ---------------------------------------------------------------------------


def test_budget_holds_over_what_does_not_fit_but_smaller_later_stories_may_fit():
    edition = make_edition(reading_minutes=2)  # 2 x 100 wpm = 200 words
    stories = [
        make_story("lead", "2026-12-01T05:00:00-05:00", priority=1, words=120),
        make_story("too-long", "2026-12-01T05:00:00-05:00", priority=2, words=150),   # 270 > 200
        make_story("fits", "2026-12-01T05:00:00-05:00", priority=3, words=60),        # 180
        make_story("over-again", "2026-12-01T05:00:00-05:00", priority=4, words=30),  # 210 > 200
        make_story("exactly", "2026-12-01T05:00:00-05:00", priority=5, words=20),     # 200 fits
    ]
    issue = choose_stories(edition, SAMPLE_DATE, stories, words_per_minute=100)
    assert ids(issue.stories) == ["lead", "fits", "exactly"]
    assert ids(issue.held_over_budget) == ["too-long", "over-again"]
    assert issue.reading_minutes == 2


def test_the_lead_is_always_admitted_even_over_budget():
    edition = make_edition(reading_minutes=1)
    stories = [
        make_story("huge-lead", "2026-12-01T05:00:00-05:00", priority=1, words=950),
        make_story("small", "2026-12-01T05:00:00-05:00", priority=2, words=10),
    ]
    issue = choose_stories(edition, SAMPLE_DATE, stories, words_per_minute=230)
    assert ids(issue.stories) == ["huge-lead"]
    assert ids(issue.held_over_budget) == ["small"]
    assert issue.reading_minutes == 5  # ceil(950 / 230)


@pytest.mark.parametrize("words,minutes", [(1, 1), (229, 1), (230, 1), (231, 2), (460, 2), (461, 3)])
def test_reading_minutes_rounds_up(words, minutes):
    assert reading_minutes(words, 230) == minutes
    story = make_story("only", "2026-12-01T05:00:00-05:00", words=words)
    assert choose_stories(make_edition(reading_minutes=9), SAMPLE_DATE, [story], words_per_minute=230).reading_minutes == minutes


def test_already_used_stories_are_left_out():
    stories = [make_story(f"s{i}", f"2026-12-01T0{i}:00:00-05:00") for i in range(1, 5)]
    issue = choose_stories(make_edition(), SAMPLE_DATE, stories, words_per_minute=230, already_used=frozenset({"s2", "s4"}))
    assert sorted(ids(issue.stories)) == ["s1", "s3"]
    assert issue.held_over_budget == ()


def test_an_empty_window_gives_an_empty_issue_not_an_exception():
    late = make_story("next-week", "2026-12-08T05:00:00-05:00")
    issue = choose_stories(make_edition(), SAMPLE_DATE, [late], words_per_minute=230)
    assert issue.is_empty
    assert issue.stories == () and issue.held_over_budget == ()
    assert issue.reading_minutes == 0
    assert issue.send_time == dt.datetime(2026, 12, 1, 6, 0, tzinfo=NY)


def test_assemble_is_pure():
    stories = (make_story("a", "2026-12-01T05:00:00-05:00"), make_story("b", "2026-11-30T09:00:00-05:00"))
    one = choose_stories(make_edition(), SAMPLE_DATE, stories, words_per_minute=230)
    two = choose_stories(make_edition(), SAMPLE_DATE, iter(stories), words_per_minute=230)
    assert one == two
    assert dataclasses.is_dataclass(one)


# --- the sample day --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_issues():
    settings = load_settings(ROOT / "digest.toml", environ={})
    stories = load_folder(settings.paths.stories)
    assert stories.problems == ()
    issues = {
        e.slug: choose_stories(e, SAMPLE_DATE, stories.stories, words_per_minute=settings.newsroom.words_per_minute)
        for e in settings.editions
    }
    return stories.stories, issues


def test_sample_day_story_counts(sample_issues):
    _, issues = sample_issues
    assert {slug: len(i.stories) for slug, i in issues.items()} == {
        "am": 6, "pm": 6, "denver": 3, "des-moines": 3, "twin-cities": 3, "tampa-bay": 3, "charlotte": 3, "climate": 4,
    }
    for issue in issues.values():
        assert 1 <= issue.reading_minutes <= issue.edition.reading_minutes
        priorities = [s.priority for s in issue.stories]
        assert priorities == sorted(priorities)


def test_sample_day_leads(sample_issues):
    _, issues = sample_issues
    assert issues["am"].stories[0].id == "2026-11-30-senate-rail-safety-bill"
    assert issues["pm"].stories[0].id == "2026-12-01-stopgap-spending-vote"
    assert issues["climate"].stories[0].id == "2026-11-30-denver-wildfire-insurance"


def test_sample_day_stories_outside_every_window(sample_issues):
    stories, issues = sample_issues
    used = {s.id for issue in issues.values() for s in (*issue.stories, *issue.held_over_budget)}
    outside = sorted(s.id for s in stories if s.id not in used)
    assert outside == ["2026-11-28-post-holiday-travel-crunch", "2026-12-01-western-grid-winter-outlook"]
    late = next(s for s in stories if s.id == "2026-12-01-western-grid-winter-outlook")
    assert late.published.astimezone(UTC) == dt.datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    # ...but the late one belongs to the next climate issue.
    climate = issues["climate"].edition
    nxt = choose_stories(climate, SAMPLE_DATE + dt.timedelta(days=1), stories, words_per_minute=230)
    assert late.id in ids(nxt.stories)


def test_sample_day_shares_stories_between_editions(sample_issues):
    _, issues = sample_issues
    farm = "2026-12-01-farm-income-forecast"
    assert {slug for slug, i in issues.items() if farm in ids(i.stories)} == {"am", "pm", "des-moines"}


def test_a_send_time_in_the_skipped_hour_reads_as_the_wall_clock_does():
    """02:30 on spring-forward day does not exist in New York: the send is 03:30 EDT (07:30Z)."""
    from digest.compose.editions import send_time
    from digest.config import load_settings

    base = load_settings(ROOT / "digest.toml", environ={}).edition("am")
    edition = dataclasses.replace(base, send_at=dt.time(2, 30))
    when = send_time(edition, dt.date(2026, 3, 8))
    assert when.strftime("%H:%M %Z") == "03:30 EDT"
    assert when.astimezone(dt.timezone.utc).strftime("%H:%MZ") == "07:30Z"
