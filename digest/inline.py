"""CSS inlining: the only premailer import. Runs once per issue, never per reader.

``allow_network=False`` so an issue never fetches a stylesheet; ``strip_important=False`` because
premailer otherwise strips ``!important`` from the ``@media`` rules it keeps, which breaks the
phone and dark-mode layouts. cssutils' own logging is silenced: its complaints about modern CSS
(``prefers-color-scheme``) are noise, and real failures surface as exceptions.
"""

from __future__ import annotations

import logging

from premailer import Premailer

from .errors import TemplateError


def inline_css(html: str) -> str:
    """Move the document's ``<style>`` rules onto its elements; keep ``@media`` rules in a block."""
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
