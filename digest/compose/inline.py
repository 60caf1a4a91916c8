"""CSS inlining: the only premailer import. Runs once per issue, never per reader.

``allow_network=False`` so an issue never fetches a stylesheet; ``strip_important=False`` because
premailer otherwise strips ``!important`` from the ``@media`` rules it keeps, which breaks the
phone and dark-mode layouts. cssutils' own logging is silenced: its complaints about modern CSS
(``prefers-color-scheme``) are noise, and real failures surface as exceptions.
"""

from __future__ import annotations

import functools
import logging
import re

from ..errors import TemplateError

_LINKED_CSS = re.compile(r"<link\b[^>]*\bstylesheet\b", re.I)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.I | re.S)


@functools.lru_cache(maxsize=16)  # a pure function: the same document inlines the same (a scheduler's preview and send)
def inline_css(html: str) -> str:
    """Move the document's ``<style>`` rules onto its elements; keep ``@media`` rules in a block.

    A linked or imported stylesheet is refused: premailer would leave it in the email for every
    reader's client to fetch, which is both a tracking beacon and a layout that depends on the web.
    """
    if _LINKED_CSS.search(html) or any("@import" in block for block in _STYLE_BLOCK.findall(html)):
        raise TemplateError("templates must not link or @import stylesheets; put the CSS in base.html's <style> block")
    # premailer (with cssutils and requests) takes 0.2 s to import; a resume, a worker and most
    # commands rebuild the issue from its kept composition and never inline, so they do not pay it.
    from premailer import Premailer

    try:
        return Premailer(
            html,
            allow_network=False,
            strip_important=False,
            keep_style_tags=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    except Exception as exc:  # premailer raises assorted lxml/cssutils errors; one type leaves here
        raise TemplateError(f"CSS inlining failed: {exc}") from exc
