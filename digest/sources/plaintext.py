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
_BLOCKS = {"p", "blockquote", "h3", "h4"}
_SPACE = re.compile(r"\s+")


class LinkRefs:
    """Numbers links in the order they first appear; the same URL keeps its number and first name."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}
        self._names: dict[int, str] = {}

    def ref(self, url: str, name: str | None = None) -> int:
        """The reference number for ``url``, assigning the next one on first sight.

        ``name`` (a headline, a link's text) is what the link list shows beside the number; the
        first non-blank one given for a URL is kept.
        """
        number = self._numbers.setdefault(url, len(self._numbers) + 1)
        name = _SPACE.sub(" ", name or "").strip()
        if name and number not in self._names:
            self._names[number] = name
        return number

    def items(self) -> list[tuple[int, str]]:
        """(number, url) pairs in number order."""
        return [(n, url) for url, n in self._numbers.items()]

    def names(self) -> dict[int, str]:
        """number -> the link's name, for the links that have one."""
        return dict(self._names)


class _Block:
    __slots__ = ("quote", "marker", "text", "starts_item", "list_id")

    def __init__(self, quote: str, marker: str, text: str, starts_item: bool, list_id: int) -> None:
        self.quote = quote  # "> " per blockquote level
        self.marker = marker  # list indent + "- " / "3. " on an item's first block, blanks after
        self.text = text
        self.starts_item = starts_item
        self.list_id = list_id  # which outermost list the block is in; 0 outside lists


class _Collector(HTMLParser):
    def __init__(self, refs: LinkRefs | None) -> None:
        super().__init__(convert_charrefs=True)
        self.refs = refs
        self.blocks: list[_Block] = []
        self.lists: list[list[int]] = []  # one counter per open list; [-1] for <ul>
        self.items: list[list] = []  # per open <li>: [marker, marker already printed?]
        self.current: list[str] = []
        self.href: str | None = None
        self.link_start = 0  # where the open link's text starts in self.current
        self.quote_depth = 0
        self.lists_opened = 0
        self.list_id = 0

    def flush(self) -> None:
        text = _SPACE.sub(" ", "".join(self.current)).strip()
        self.current = []
        if not text:
            return
        quote = "> " * self.quote_depth
        if self.items:
            item = self.items[-1]
            marker, starts = (item[0], True) if not item[1] else (" " * len(item[0]), False)
            item[1] = True
            self.blocks.append(_Block(quote, marker, text, starts, self.list_id))
        else:
            self.blocks.append(_Block(quote, "", text, False, 0))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("ul", "ol"):
            self.flush()
            if not self.lists:
                self.lists_opened += 1
                self.list_id = self.lists_opened
            self.lists.append([-1] if tag == "ul" else [0])
        elif tag == "li":
            self.flush()
            counter = self.lists[-1] if self.lists else [-1]
            indent = "  " * max(0, len(self.lists) - 1)
            if counter[0] >= 0:
                counter[0] += 1
                self.items.append([f"{indent}{counter[0]}. ", False])
            else:
                self.items.append([f"{indent}- ", False])
        elif tag in _BLOCKS:
            self.flush()
            if tag == "blockquote":
                self.quote_depth += 1
        elif tag == "br":
            self.current.append(" ")
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_start = len(self.current)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            self.flush()
            if self.lists:
                self.lists.pop()
        elif tag == "li":
            self.flush()
            if self.items:
                self.items.pop()
        elif tag in _BLOCKS:
            self.flush()
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "a":
            if self.href and self.refs is not None:
                name = "".join(self.current[self.link_start:])
                self.current.append(f" [{self.refs.ref(self.href, name)}]")
            self.href = None

    def handle_data(self, data: str) -> None:
        self.current.append(data)


def _blocks(html: str, refs: LinkRefs | None) -> list[_Block]:
    collector = _Collector(refs)
    collector.feed(html)
    collector.close()
    collector.flush()
    return collector.blocks


def html_to_text(html: str, refs: LinkRefs | None = None, width: int = WIDTH) -> str:
    """Plain text of sanitised HTML: wrapped blocks separated by blank lines.

    With ``refs``, each link's text is followed by `` [n]``; without, links are plain text.
    List items sit on consecutive lines with hanging indents, inside any ``> `` quote marks.
    """
    out: list[str] = []
    previous: _Block | None = None
    for block in _blocks(html, refs):
        if previous is not None:
            # An item follows an item of the same list directly; other blocks get a blank line,
            # which keeps its "> " marks when both blocks are in the same quote.
            same_list = block.starts_item and previous.list_id == block.list_id and block.quote == previous.quote
            out.append("\n" if same_list else "\n" + (block.quote if block.quote == previous.quote else "").rstrip() + "\n")
        out.append(textwrap.fill(
            block.text, width=width,
            initial_indent=block.quote + block.marker,
            subsequent_indent=block.quote + " " * len(block.marker),
            break_long_words=False, break_on_hyphens=False,
        ))
        previous = block
    return "".join(out)


def first_paragraph(html: str) -> str:
    """Plain text of the first block (the lede), unwrapped and without link numbers."""
    blocks = _blocks(html, None)
    return blocks[0].text if blocks else ""


def word_count(html: str) -> int:
    """Words a reader reads in this HTML."""
    return sum(len(block.text.split()) for block in _blocks(html, None))
