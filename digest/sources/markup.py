"""Markdown to HTML: the only markdown_it import.

CommonMark with raw HTML allowed through to the output, because the sanitiser, not the parser,
decides what HTML survives (``stories.py`` always runs ``sanitise.clean_html`` on the result).
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})


def markdown_to_html(source: str) -> str:
    """Render CommonMark to (unsanitised) HTML."""
    return _PARSER.render(source)
