"""What a feed entry says, format-neutral, and the small text and URL helpers both formats use."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from ...models import Image


@dataclass
class Entry:
    """One entry as rss.py or jsonfeed.py read it; parse.py makes it a ``Story`` or drops it."""

    key: str  # GUID, else link, else None
    label: str  # for messages: the title or the id
    title: str | None
    link: str | None
    dates: list[tuple[str, Any]]
    author: str | None
    categories: list[str]
    body: str | None
    body_type: str | None
    base: str | None
    image: Image | None = None


# Elements whose content is code or markup, never words a reader should see in a headline.
_HIDDEN = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math",
                     "textarea", "select"})


_HIDDEN_START = re.compile(r"<(?:%s)\b" % "|".join(sorted(_HIDDEN)), re.IGNORECASE)


class _Text(HTMLParser):
    """The words of an HTML fragment: text outside the ``_HIDDEN`` elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden: list[str] = []  # open hidden elements, innermost last

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.hidden:
            del self.hidden[len(self.hidden) - 1 - self.hidden[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _strip_tags(value: str) -> str:
    parser = _Text()
    parser.feed(value)
    parser.close()
    return "".join(parser.parts)


def one_line(value: Any, *, html: bool = False) -> str | None:
    """A string value as one line of plain text (tags stripped when ``html``), or None when empty."""
    if not isinstance(value, str):
        return None
    # feedparser calls a title plain text when it holds a tag HTML does not allow (a script): that
    # is markup all the same, and its code must not become words in a headline or a Subject.
    if html or _HIDDEN_START.search(value):
        value = _strip_tags(value)
    value = " ".join(value.replace("\x00", " ").split())
    return value or None


def absolute(url: Any, base: str | None) -> str | None:
    """An absolute http(s) URL, or None."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    try:
        joined = urljoin(base, url) if base else url
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>\"]", joined):
        return None
    return joined
