"""A feed body -> ``Story`` values, each exactly as strict as a Markdown story.

The body goes through ``clean_html`` (relative links made absolute first), the published time
is read in the zone it names (dates.py) and only a date naming none takes the source's default
zone, and an entry that cannot become a story is dropped with a reason instead of failing the
feed. The formats are read in rss.py
(feedparser) and jsonfeed.py; this module turns their ``Entry`` values into stories.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html as htmlmod
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...errors import StoryError
from ...models import Story
from ..plaintext import word_count
from ..sanitise import clean_html
from . import jsonfeed, rss
from .dates import DateUnreadable, read_date
from .entry import Entry, absolute
from .values import FeedFailed, FeedSource

_ID_PREFIX = "feed-"


@dataclass(frozen=True)
class ParseResult:
    stories: list[Story]
    dropped: list[tuple[str, str]]
    entries: int
    note: str  # e.g. "feed is not well-formed (...), 3 entries still read"


class _Drop(Exception):
    pass


def parse(source: FeedSource, body: bytes, base_url: str | None = None, *,
          content_type: str | None = None) -> tuple[list[Story], list[tuple[str, str]]]:
    """Parse a feed body into (stories, dropped). Raises ``StoryError`` when the body is no usable feed."""
    try:
        result = parse_body(source, body, base_url or base_for(source), content_type)
    except FeedFailed as exc:
        raise StoryError(str(exc), file=source.name) from None
    return result.stories, result.dropped


def parse_body(source: FeedSource, body: bytes, base_url: str | None, content_type: str | None) -> ParseResult:
    """Every entry of ``body`` as a story or a (label, reason) drop; ``FeedFailed`` when it is no feed."""
    note = ""
    if jsonfeed.looks_like_json(body, content_type):
        entries, kind = jsonfeed.read(body, base_url)
    else:
        entries, kind, note = rss.read(body, base_url, content_type)
    stories: list[Story] = []
    dropped: list[tuple[str, str]] = []
    for entry in entries:
        try:
            stories.append(_to_story(source, entry))
        except _Drop as exc:
            dropped.append((entry.label, str(exc)))
    detail = f"{kind}, {len(entries)} entries"
    return ParseResult(stories, dropped, len(entries), f"{detail}; {note}" if note else detail)


def base_for(source: FeedSource) -> str | None:
    """The base for a source's relative links before any fetch: its URL, or its path as a file:// URL."""
    parts = urlsplit(source.url)
    if parts.scheme in ("http", "https", "file"):
        return source.url
    return Path(source.url).resolve().as_uri()


# -- one entry -> one story ----------------------------------------------------------------------

def _to_story(source: FeedSource, entry: Entry) -> Story:
    headline = entry.title
    if not headline:
        raise _Drop("no headline (title)")
    published = _published(source, entry.dates)
    url = absolute(entry.link, entry.base)
    key = entry.key or url or f"{headline}|{published.isoformat()}"
    body_html = _body_html(entry.body, entry.body_type, url or entry.base)
    tags, cities = _labels(source, entry.categories)
    return Story(
        id=_ID_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20],
        headline=headline,
        published=published,
        body_html=body_html,
        words=word_count(body_html),
        source=f"{source.name}: {entry.key or url or headline}",
        editions=frozenset(e.strip().casefold() for e in source.editions if e.strip()),
        tags=frozenset(tags),
        cities=frozenset(cities),
        priority=source.priority,
        byline=entry.author,
        url=url,
        image=entry.image,
    )


def _published(source: FeedSource, dates: list[tuple[str, Any]]) -> dt.datetime:
    """The first date given, read in the zone it names, or in the source's default zone if it names none."""
    name, raw = next(((n, r) for n, r in dates if isinstance(r, str) and r.strip()), ("", None))
    if raw is None:
        raise _Drop("no date (published or updated)")
    try:
        published = read_date(raw)
    except DateUnreadable as exc:
        raise _Drop(f"{name}: {exc}") from None
    if published.tzinfo is None or published.utcoffset() is None:
        published = published.replace(tzinfo=_default_zone(source, raw))
    return published


def _default_zone(source: FeedSource, seen_raw: Any) -> ZoneInfo:
    zone = None
    if source.default_timezone:
        try:
            zone = ZoneInfo(source.default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Drop(f"no time zone in '{seen_raw}', and default_timezone '{source.default_timezone}' "
                        "is not a known IANA zone") from None
    if zone is None:
        raise _Drop("no time zone" + (f" in '{seen_raw}'" if seen_raw else "")
                    + " (set default_timezone on the source to accept it)")
    return zone


def _labels(source: FeedSource, categories: list[str]) -> tuple[set[str], set[str]]:
    """(tags, cities): the source's own, plus the entry's categories as ``categories_as`` says."""
    cats = [c.strip().casefold() for c in categories if c and c.strip()]
    tags = {t.strip().casefold() for t in source.tags if t.strip()}
    cities = {c.strip().casefold() for c in source.cities if c.strip()}
    if source.categories_as in ("tags", "both"):
        tags.update(cats)
    if source.categories_as in ("cities", "both"):
        cities.update(re.sub(r"\s+", "-", c) for c in cats)
    return tags, cities


# -- the body ------------------------------------------------------------------------------------

_LINK_ATTR = re.compile(r"""(\s(?:href|src)\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def _absolutise_links(html: str, base: str | None) -> str:
    """Make relative href/src values absolute against ``base`` (before sanitising)."""
    if not base:
        return html

    def fix(match: re.Match[str]) -> str:
        raw = next(g for g in match.groups()[1:] if g is not None)
        value = htmlmod.unescape(raw).strip()
        if not value or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) or value.startswith("#"):
            return match.group(0)
        try:
            joined = urljoin(base, value)
        except ValueError:
            return match.group(0)
        return f'{match.group(1)}"{htmlmod.escape(joined, quote=True)}"'

    return _LINK_ATTR.sub(fix, html)


def _body_html(value: str | None, mime: str | None, base: str | None) -> str:
    if not value:
        return ""
    if mime and "html" not in mime:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", value) if p.strip()]
        value = "".join(f"<p>{htmlmod.escape(p)}</p>" for p in paragraphs)
    return clean_html(_absolutise_links(value, base)).strip()
