"""Sanitised story HTML -> plain text, shaped for reading in a plain-text mail client.

Paragraphs are wrapped at 72 columns, bullets hang, bold lead-ins keep their words, and every
link becomes ``text [n]`` with ``n`` numbered across the whole issue by a shared ``LinkRefs``.
Only the standard library's HTML parser is used: the input is already sanitised.
"""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "li", "blockquote", "h3", "h4"}
_SPACE = re.compile(r"\s+")


class LinkRefs:
    """Numbers links in the order they first appear; the same URL keeps its number."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def ref(self, url: str) -> int:
        """The reference number for ``url``, assigning the next one on first sight."""
        return self._numbers.setdefault(url, len(self._numbers) + 1)

    def items(self) -> list[tuple[int, str]]:
        """(number, url) pairs in number order."""
        return [(n, url) for url, n in self._numbers.items()]


class _Collector(HTMLParser):
    def __init__(self, refs: LinkRefs | None) -> None:
        super().__init__(convert_charrefs=True)
        self.refs = refs
        self.blocks: list[tuple[str, str]] = []  # (prefix, text)
        self.lists: list[list[int]] = []  # one counter per open list; [-1] for <ul>
        self.current: list[str] = []
        self.prefix = ""
        self.href: str | None = None
        self.quote_depth = 0

    def flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        if text:
            self.blocks.append((self.prefix, text))
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("ul", "ol"):
            self.flush()
            self.lists.append([-1] if tag == "ul" else [0])
        elif tag in _BLOCKS:
            self.flush()
            if tag == "blockquote":
                self.quote_depth += 1
            if tag == "li" and self.lists:
                counter = self.lists[-1]
                indent = "  " * (len(self.lists) - 1)
                if counter[0] >= 0:
                    counter[0] += 1
                    self.prefix = f"{indent}{counter[0]}. "
                else:
                    self.prefix = f"{indent}- "
            else:
                self.prefix = "> " * self.quote_depth
        elif tag == "br":
            self.current.append(" ")
        elif tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            self.flush()
            if self.lists:
                self.lists.pop()
        elif tag in _BLOCKS:
            self.flush()
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
            self.prefix = "> " * self.quote_depth
        elif tag == "a":
            if self.href and self.refs is not None:
                self.current.append(f" [{self.refs.ref(self.href)}]")
            self.href = None

    def handle_data(self, data: str) -> None:
        self.current.append(data)


def _blocks(html: str, refs: LinkRefs | None) -> list[tuple[str, str]]:
    collector = _Collector(refs)
    collector.feed(html)
    collector.close()
    collector.flush()
    return collector.blocks


def html_to_text(html: str, refs: LinkRefs | None = None, width: int = WIDTH) -> str:
    """Plain text of sanitised HTML: wrapped blocks separated by blank lines.

    With ``refs``, each link's text is followed by `` [n]``; without, links are plain text.
    """
    out: list[str] = []
    previous_was_item = False
    for prefix, text in _blocks(html, refs):
        is_item = bool(prefix) and not prefix.startswith(">")
        hang = " " * len(prefix) if is_item else prefix
        if out:
            # List items sit on consecutive lines; every other block gets a blank line before it.
            out.append("\n" if is_item and previous_was_item else "\n\n")
        out.append(
            textwrap.fill(text, width=width, initial_indent=prefix, subsequent_indent=hang,
                          break_long_words=False, break_on_hyphens=False)
        )
        previous_was_item = is_item
    return "".join(out)


def first_paragraph(html: str) -> str:
    """Plain text of the first block (the lede), unwrapped and without link numbers."""
    blocks = _blocks(html, None)
    return blocks[0][1] if blocks else ""


def word_count(html: str) -> int:
    """Words a reader reads in this HTML."""
    return sum(len(text.split()) for _, text in _blocks(html, None))
