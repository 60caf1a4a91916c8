"""The public archive copy of an issue ("view in browser"), made once when the issue is sent.

The page is the issue's HTML rendered with ``web_view`` (no reader's address, no unsubscribe
link, a public footer) and the edition's neutral greeting. CSS stays in its <style> block: a
browser needs no inlining (the slow step of composing an email). The runner keeps the page in
the state database before the first copy goes; ``digest serve`` only reads it, so the archive
shows what readers got even after its stories left their sources, and a public request never
gathers stories or fetches a feed.
"""

from __future__ import annotations

from ..models import Issue, Settings
from .personalise import greeting, reader_values
from .render import Renderer


def public_page(settings: Settings, issue: Issue, renderer: Renderer | None = None) -> str:
    """The archive page of a non-empty issue: complete HTML, with no reader's data."""
    renderer = renderer or Renderer(settings.paths.templates)
    neutral = reader_values(greeting(issue.edition.greeting, ""))  # "Good morning.": nobody's name
    rendered = renderer.render(issue, settings.newsroom, settings.base_url, neutral, web_view=True)
    return rendered.html
