"""RSS 0.9x/2.0, RSS 1.0 and Atom through feedparser (the only feedparser import) -> ``Entry``."""

from __future__ import annotations

import datetime as dt
import functools
import io
from typing import Any

from ...lazy import LazyModule
from ...models import Image
from .entry import Entry, absolute, one_line
from .values import FeedFailed

feedparser: Any = LazyModule("feedparser")  # loaded by the first feed read


# -- feedparser: keep media:description / media:title apart -------------------------------------
# feedparser files <media:description> as the entry's description (so it lands in ``content`` or
# even ``summary``) and <media:title> as its title. We want them as the image's alt text, so they
# are kept under their own keys. feedparser has no option for this; its element handlers are
# methods on the Media RSS namespace mixin, so replacing those four is the smallest change, and it
# changes nothing else in feedparser. Nothing else in digest uses feedparser.

def _start_media_description(self: Any, attrs_d: Any) -> None:
    self.push("media_description", 1)


def _end_media_description(self: Any) -> None:
    self.pop("media_description")


def _start_media_title(self: Any, attrs_d: Any) -> None:
    self.push("media_title", 1)


def _end_media_title(self: Any) -> None:
    self.pop("media_title")


@functools.cache  # applied once, before the first feed is parsed
def keep_media_text_apart() -> None:
    """Make feedparser keep media:description and media:title under their own keys."""
    from feedparser.namespaces.mediarss import Namespace

    namespace: Any = Namespace
    namespace._start_media_description = _start_media_description
    namespace._end_media_description = _end_media_description
    namespace._start_media_title = _start_media_title
    namespace._end_media_title = _end_media_title


# -- reading ------------------------------------------------------------------------------------

def read(body: bytes, base_url: str | None, content_type: str | None) -> tuple[list[Entry], str, str]:
    """(entries, the format's name, a note when the feed is sloppy but usable); ``FeedFailed`` otherwise."""
    keep_media_text_apart()
    headers = {}
    if base_url:
        headers["content-location"] = base_url
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                              resolve_relative_uris=True)
    if not parsed.entries and not parsed.version:
        raise FeedFailed("not a feed (no RSS, Atom or JSON Feed found)")
    exc = parsed.get("bozo_exception") if parsed.bozo else None
    # A missing or non-XML Content-Type (every local file has none) or a charset the document
    # overrides says nothing about the feed itself: a well-formed feed with no entries is just empty.
    if isinstance(exc, (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)):
        exc = None
    if not parsed.entries and exc is not None:
        raise FeedFailed(f"malformed feed: {exc}")
    note = f"feed is not well-formed ({exc}); {len(parsed.entries)} entries still read" if exc else ""
    return [_entry(e, base_url) for e in parsed.entries], parsed.version or "feed", note


def instant(text: str, *, has_time: bool = False) -> dt.datetime | None:
    """The UTC instant feedparser reads in a date's text (any zone it does not know taken as UTC).

    feedparser tries its readers in turn and keeps the first answer, and its ISO 8601 reader
    answers a Korean "2004-05-25 오후 11:23:17" with midnight. So with ``has_time`` (the text
    writes a time of day that is not midnight), an answer of exactly midnight UTC is kept only
    when no later reader has a better one.
    """
    first = None
    for reader in feedparser.datetimes._date_handlers:
        try:
            found = reader(text)
        except (KeyError, OverflowError, ValueError):  # the ones feedparser's own loop skips
            continue
        if not found or len(found) != 9:
            continue
        first = first or found
        if not (has_time and tuple(found[3:6]) == (0, 0, 0)):
            return _utc(found)
    return _utc(first) if first else None


def _utc(found: Any) -> dt.datetime:
    return dt.datetime(*found[:6], tzinfo=dt.timezone.utc)


def zone_names() -> dict[str, int]:
    """The zone abbreviations feedparser's RFC 822 reader knows (lower-case) -> hours from UTC."""
    from feedparser.datetimes.rfc822 import timezone_names

    return dict(timezone_names)


def _entry(e: Any, base_url: str | None) -> Entry:
    title_detail = e.get("title_detail") or {}
    title = one_line(e.get("title"), html="html" in (title_detail.get("type") or ""))
    link = e.get("link")
    guid = e.get("id") or None
    body, body_type, base = _body(e, title_detail.get("base") or base_url)
    # dict.get: FeedParserDict maps a missing "published" to "updated" with a DeprecationWarning
    dates = [(key, dict.get(e, key)) for key in ("published", "updated", "created")]
    link_abs = absolute(link, base)
    return Entry(key=guid or link_abs or "", label=title or guid or link or "(untitled)", title=title,
                 link=link, dates=dates, author=_author(e), categories=_categories(e), body=body,
                 body_type=body_type, base=link_abs or base, image=_image(e, link_abs or base))


def _author(e: Any) -> str | None:
    return one_line((e.get("author_detail") or {}).get("name")) or one_line(e.get("author"))


def _categories(e: Any) -> list[str]:
    return [t.get("term") or t.get("label") or "" for t in e.get("tags") or []]


def _body(e: Any, base: str | None) -> tuple[str | None, str | None, str | None]:
    """(body, its type, the base for its links): the first non-empty content, else the summary."""
    for c in e.get("content") or []:
        if c.get("value"):
            return c.get("value"), c.get("type"), base
    if e.get("summary"):
        detail = e.get("summary_detail") or {}
        return e.get("summary"), detail.get("type") or "text/html", detail.get("base") or base
    return None, None, base


def _image(e: Any, base: str | None) -> Image | None:
    """The first usable image of media:content, media:thumbnail or an image enclosure."""
    for src in _image_candidates(e):
        found = absolute(src, base)
        if found:
            alt = one_line(e.get("media_description"), html=True) or one_line(e.get("media_title"), html=True)
            return Image(src=found, alt=alt, credit=_credit(e), caption=None)
    return None


def _image_candidates(e: Any) -> list[str | None]:
    """Image URLs in feed order: media:content that is (or may be) an image, thumbnails, enclosures."""
    candidates: list[str | None] = [m.get("url") for m in e.get("media_content") or [] if _may_be_image(m)]
    candidates += [m.get("url") for m in e.get("media_thumbnail") or []]
    for link in e.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").lower().startswith("image/"):
            candidates.append(link.get("href"))
    return candidates


def _may_be_image(media: Any) -> bool:
    """A media:content is an image by medium or type, or says neither."""
    mtype = (media.get("type") or "").lower()
    medium = (media.get("medium") or "").lower()
    return medium == "image" or mtype.startswith("image/") or (not mtype and not medium)


def _credit(e: Any) -> str | None:
    for c in e.get("media_credit") or []:
        credit = one_line(c.get("content") if isinstance(c, dict) else None)
        if credit:
            return credit
    return None
