"""feedparser's own corpus (from its sdist, `make corpora`) through digest's feed parser.

Two parts of the sdist's tests/ folder are used: its 2,242 feed files (well-formed, ill-formed,
entities, encodings, HTTP cases), which must never crash ``parse`` or let live HTML through;
and its table of date forms (``date_tests`` in runtests.py, read with ``ast``, not imported),
each of which must land on the instant feedparser's own readers expect when the text names a
zone, on the wall time in the source's default zone when it names none, and be dropped with a
reason when feedparser cannot read it either.
"""

from __future__ import annotations

import ast
import datetime as dt
import html
import importlib.metadata
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from digest.sources.feeds import rss
from digest.sources.feeds.parse import parse_body
from digest.sources.feeds.values import FeedFailed, FeedSource
from digest.sources.sanitise import _ATTRIBUTES, _TAGS

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / ".venv" / "corpora" / f"feedparser-{importlib.metadata.version('feedparser')}" / "tests"
BASE = "https://news.example.org/feed"
UTC = dt.timezone.utc

if not (TESTS / "wellformed").is_dir():
    pytest.skip(f"{TESTS} is missing: run `make corpora` (make test does)", allow_module_level=True)

FEEDS = sorted(p for p in TESTS.rglob("*.xml") if p.is_file())


class _LiveMarkup(HTMLParser):
    """Every tag, attribute or link in a story body that the story allowlist does not permit."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name not in _ATTRIBUTES.get(tag, set()) | {"rel"}:
                self.found.append(f"<{tag} {name}>")
            if name == "href" and not re.match(r"(https?|mailto):", value or ""):
                self.found.append(f"href={value!r}")
            if name == "rel" and value != "noopener noreferrer":
                self.found.append(f"rel={value!r}")


def live_markup(body: str) -> list[str]:
    checker = _LiveMarkup()
    checker.feed(body)
    checker.close()
    return checker.found


def read(path: Path, source: FeedSource | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feedparser's DeprecationWarnings about its own keys
        return parse_body(source or FeedSource(name="corpus", url=BASE, default_timezone="UTC"),
                          path.read_bytes(), BASE, None)


def test_the_corpus_is_the_one_the_figures_are_about() -> None:
    assert len(FEEDS) == 2242


def test_no_feed_crashes_the_parser_and_no_story_carries_live_html() -> None:
    outcomes = {"ok": 0, "failed": 0}
    live: dict[str, list[str]] = {}
    stories = 0
    for path in FEEDS:
        try:
            result = read(path)
        except FeedFailed:
            outcomes["failed"] += 1
            continue
        outcomes["ok"] += 1
        for story in result.stories:
            stories += 1
            found = live_markup(story.body_html)
            if found:
                live[str(path.relative_to(TESTS))] = found
    assert live == {}
    # Figures at feedparser 6.0.14 (the installed version): what fails is ill-formed with no
    # entries (undefined entities, truncation) or no feed at all (CDF channels with no items).
    assert outcomes == {"ok": 1977, "failed": 265}
    assert stories >= 30


def test_well_formed_feeds_with_no_entries_are_ok_not_failed() -> None:
    empty = 0
    for path in sorted((TESTS / "wellformed").rglob("*.xml")):
        if path.parent.name == "cdf":  # CDF has no version feedparser names: a channel alone is no feed
            continue
        try:
            result = read(path)
        except FeedFailed as exc:
            pytest.fail(f"{path.relative_to(TESTS)}: {exc}")
        empty += result.entries == 0
    assert empty >= 574  # at feedparser 6.0.14; 0 before this test existed (all 'failed')


def _code_in(fragment: str) -> list[str]:
    """The non-trivial text inside script and style elements of an HTML fragment."""
    return [code.strip() for _, code in re.findall(r"<(script|style)\b[^>]*>(.*?)</\1", fragment, re.I | re.S)
            if len(code.strip()) > 3]


def test_script_and_style_text_never_reaches_a_headline_or_byline() -> None:
    checked = 0
    for path in FEEDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = feedparser.parse(path.read_bytes(), sanitize_html=False)
        try:
            entries, _, _ = rss.read(path.read_bytes(), BASE, None)
        except FeedFailed:
            continue
        for raw_entry, entry in zip(raw.entries, entries):
            for raw_text, shown in ((raw_entry.get("title"), entry.title), (raw_entry.get("author"), entry.author)):
                for code in _code_in(raw_text or ""):
                    checked += 1
                    words = " ".join(html.unescape(code).split())
                    assert words not in (shown or ""), (path.name, shown)
    assert checked >= 3  # entry_title_crazy.xml and the script tests among the sanitize cases


# -- feedparser's date forms --------------------------------------------------------------------

def date_forms() -> list[tuple[str, str, tuple[int, ...] | None]]:
    """(feedparser's reader, the date text, the UTC tuple it must give or None) from runtests.py."""
    tree = ast.parse((TESTS / "runtests.py").read_text(encoding="utf-8"))
    table = next(node.value for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "date_tests")
    forms = []
    for reader, cases in zip(table.keys, table.values):
        for text, expected in ast.literal_eval(cases):
            if text:  # an empty string is "no date", tested with the feeds
                forms.append((reader.id, text, expected))
    return forms


FORMS = date_forms()
# The forms that name no zone at all: only these may take the source's default_timezone.
NO_ZONE = {"Thu, 01 Jan 2004", "Sun Jan  4 16:29:06 2004", "2003-12-31", "2003-12", "2003",
           "2004-07-08 23:56:58", "2004-07-08 23:56:58.0"}
# ISO 8601's two-digit-year forms: feedparser's ISO reader guesses the century (and reads "22013",
# which its W3C-DTF reader refuses, as 13 January 2022). digest refuses them all, on purpose.
TWO_DIGIT_YEARS = {"-0312", "031231", "03-12-31", "-03-12", "03335", "22013"}


def one_item(date: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f'<item><title>Council votes on the budget</title><link>{BASE}/a</link>'
            f'<pubDate>{html.escape(date)}</pubDate></item></channel></rss>').encode()


def published(date: str, default_timezone: str | None):
    result = parse_body(FeedSource(name="dates", url=BASE, default_timezone=default_timezone),
                        one_item(date), BASE, "application/rss+xml")
    assert result.entries == 1
    return (result.stories[0].published, None) if result.stories else (None, result.dropped[0][1])


def test_the_date_table_is_the_one_the_figures_are_about() -> None:
    assert len(FORMS) == 63
    assert NO_ZONE <= {text for _, text, expected in FORMS if expected}
    assert TWO_DIGIT_YEARS <= {text for _, text, _ in FORMS}


@pytest.mark.parametrize(("reader", "text", "expected"), FORMS, ids=[f"{r}:{t}" for r, t, _ in FORMS])
def test_each_date_form_lands_where_feedparser_says_or_is_dropped(reader: str, text: str, expected) -> None:
    in_denver, why = published(text, "America/Denver")
    in_tokyo, _ = published(text, "Asia/Tokyo")
    if expected is None or text in TWO_DIGIT_YEARS:
        assert in_denver is None and why, f"{text!r} was read as {in_denver}"
        return
    wanted = dt.datetime(*expected[:6])
    in_denver, in_tokyo = (d.replace(microsecond=0) for d in (in_denver, in_tokyo))  # the tuples have none
    if text in NO_ZONE:
        assert in_denver == wanted.replace(tzinfo=ZoneInfo("America/Denver"))
        assert in_tokyo == wanted.replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        assert "no time zone" in published(text, None)[1]
    else:
        # the zone it names decides: never the source's default
        assert in_denver == in_tokyo == wanted.replace(tzinfo=UTC)
        assert published(text, None)[0].replace(microsecond=0) == in_denver


@pytest.mark.parametrize(("text", "utc"), [
    ("Thu, 30 Apr 2015 01:30:00 -0000", dt.datetime(2015, 4, 30, 1, 30, tzinfo=UTC)),
    ("Thu, 30 Apr 2015 01:30:00 +02:00", dt.datetime(2015, 4, 29, 23, 30, tzinfo=UTC)),
    ("Thu, 30 Apr 2015 08:57:00 CEST", dt.datetime(2015, 4, 30, 6, 57, tzinfo=UTC)),
    ("Tue, 10 Jun 2003 04:00:00 +0000 (GMT)", dt.datetime(2003, 6, 10, 4, 0, tzinfo=UTC)),
])
def test_offsets_and_zones_feedparser_passes_over_keep_their_day(text: str, utc: dt.datetime) -> None:
    found, _ = published(text, "America/Denver")
    assert found == utc


@pytest.mark.parametrize(("text", "reason"), [
    ("Sun, 16 Dec 2012 11:47:32 +zz:00", "invalid UTC offset '+zz:00'"),
    ("Sun, 16 Dec 2012 11:47:32 +00:zz", "invalid UTC offset '+00:zz'"),
    ("2013-01-28T09:00:00+00:xx", "invalid UTC offset"),
    ("Thu, 30 Apr 2015 08:57:00 XYZ", "time zone 'xyz'"),
    ("Thu, 30 Apr 2015 08:57:00 IST", "time zone 'ist'"),  # India, Israel or Ireland: not guessed
])
def test_an_unreadable_zone_drops_the_entry_with_its_reason(text: str, reason: str) -> None:
    found, why = published(text, "America/Denver")
    assert found is None
    assert reason in why and why.startswith("published: ")
