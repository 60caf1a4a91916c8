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


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
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
    if html:
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
