"""Story HTML sanitiser: the only nh3 import.

An allowlist, not a blocklist: only the tags a Smart Brevity story needs survive. No images in
bodies (the lead photo comes from front matter, and a body image could be a tracking pixel), no
style, script, iframe, form or event handlers, and links only to http, https and mailto.
"""

from __future__ import annotations

import nh3

_TAGS = {"p", "br", "strong", "b", "em", "i", "a", "ul", "ol", "li", "blockquote", "h3", "h4", "code", "sub", "sup"}
_ATTRIBUTES = {"a": {"href", "title"}}
_URL_SCHEMES = {"http", "https", "mailto"}


def clean_html(html: str) -> str:
    """Return ``html`` with everything outside the story allowlist removed."""
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
        clean_content_tags={"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "title", "textarea", "select"},
    )
