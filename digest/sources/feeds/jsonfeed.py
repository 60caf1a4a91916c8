"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1) -> ``Entry``, by the spec, no library."""

from __future__ import annotations

import json
from typing import Any

from ...models import Image
from .entry import Entry, absolute, one_line
from .values import FeedFailed


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    """Whether a body is JSON: its declared type says so, or it starts with ``{``."""
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def read(body: bytes, base_url: str | None) -> tuple[list[Entry], str]:
    """(entries, "JSON Feed 1.x"); ``FeedFailed`` for malformed JSON or a document that is no JSON Feed."""
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FeedFailed(f"malformed JSON: {exc}") from None
    entries = _entries(doc, base_url)
    return entries, f"JSON Feed {str(doc.get('version')).rsplit('/', 1)[-1]}"


def _entries(doc: Any, base_url: str | None) -> list[Entry]:
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/1"):
        raise FeedFailed("JSON document is not a JSON Feed (no https://jsonfeed.org/version/1.x version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedFailed("JSON Feed has no 'items' list")
    base = absolute(doc.get("home_page_url"), base_url) or base_url
    feed_authors = doc.get("authors") or ([doc["author"]] if isinstance(doc.get("author"), dict) else [])
    return [_entry(item, base, feed_authors) if isinstance(item, dict)
            else Entry("", "(not an object)", None, None, [], None, [], None, None, base)
            for item in items]


def _entry(item: dict[str, Any], base: str | None, feed_authors: Any) -> Entry:
    raw_id = item.get("id")
    guid = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id).strip() else None
    title = one_line(item.get("title"))
    link = item.get("url") if isinstance(item.get("url"), str) else item.get("external_url")
    link_abs = absolute(link, base)
    body, body_type = _body(item)
    tags = item.get("tags")
    return Entry(key=guid or link_abs or "", label=title or guid or str(link or "(untitled)"), title=title,
                 link=link, dates=[("date_published", item.get("date_published")),
                                   ("date_modified", item.get("date_modified"))],
                 author=_authors(item, feed_authors), categories=[t for t in tags if isinstance(t, str)]
                 if isinstance(tags, list) else [], body=body, body_type=body_type,
                 base=link_abs or base, image=_image(item, link_abs or base))


def _body(item: dict[str, Any]) -> tuple[str | None, str | None]:
    """content_html, else content_text, else summary (both plain text), else nothing."""
    if isinstance(item.get("content_html"), str) and item["content_html"].strip():
        return item["content_html"], "text/html"
    if isinstance(item.get("content_text"), str) and item["content_text"].strip():
        return item["content_text"], "text/plain"
    if isinstance(item.get("summary"), str):
        return item["summary"], "text/plain"
    return None, None


def _authors(item: dict[str, Any], feed_authors: Any) -> str | None:
    """The item's authors (1.1 ``authors``, 1.0 ``author``), else the feed's, as one byline."""
    authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else feed_authors)
    if not isinstance(authors, list):
        return None
    names = [one_line(a.get("name")) for a in authors if isinstance(a, dict)]
    return ", ".join(n for n in names if n) or None


def _image(item: dict[str, Any], base: str | None) -> Image | None:
    src = absolute(item.get("image"), base) or absolute(item.get("banner_image"), base)
    return Image(src=src, alt=None, credit=None, caption=None) if src else None
