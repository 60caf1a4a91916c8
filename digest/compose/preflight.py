"""Checks an editor wants before an issue goes out, run on the rendered issue.

Each finding is an error (do not send as it is) or a warning (look before sending).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..models import Issue, Story
from .pipeline import ComposedIssue

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail cuts messages whose HTML passes ~102 KB
HTML_SIZE_WARNING = 90 * 1024
SUBJECT_WARN_CHARS = 70  # roughly what a desktop inbox shows; phones show fewer
_TK = re.compile(r"\bTK\b")
_EMPTY_LEAD_IN = re.compile(r"<p>\s*<strong>[^<]*:\s*</strong>\s*</p>")

Level = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    where: str
    message: str


def check_plan(issue: Issue, note_file: str | None = None) -> list[Finding]:
    """Findings about which stories went in (before rendering).

    ``note_file`` is where the issue's note would be, for the finding that a topic issue carries
    no word from its curator.
    """
    edition = issue.edition
    where = f"{edition.slug} {issue.date.isoformat()}"
    if issue.is_empty:
        level: Level = "error" if edition.on_empty == "fail" else "warning"
        return [Finding(level, where, f"no stories in the window ({issue.window_start:%Y-%m-%d %H:%M} to "
                                      f"{issue.send_time:%Y-%m-%d %H:%M %Z}); the issue will not be sent (on_empty = '{edition.on_empty}')")]
    findings = []
    for story in issue.held_over_budget:
        findings.append(Finding("warning", story.source,
                                f"held out of the issue: it does not fit the {edition.reading_minutes}-minute budget"))
    findings += _curator_words(issue, where, note_file)
    return findings


def _curator_words(issue: Issue, where: str, note_file: str | None) -> list[Finding]:
    """A topic issue promises picks "chosen and explained" by its curator: warn when it has no note from them."""
    edition = issue.edition
    if edition.kind != "topic" or issue.note is not None or issue.note_problem is not None:
        return []  # a note that cannot be read is an error of its own
    # Templates show curator_note only in editions that name a curator (render.py).
    if edition.curator is not None and any(story.curator_note for story in issue.stories):
        return []
    who = edition.curator.name if edition.curator else "its editors"
    note = f"an issue note ({note_file})" if note_file else "an issue note ([paths] notes)"
    wanted = f"{note} or a curator_note on one of its stories" if edition.curator else note
    return [Finding("warning", where, f"this topic issue carries no word from {who}: add {wanted}")]


def check_rendered(composed: ComposedIssue, sample_message: bytes) -> list[Finding]:
    """Findings about the rendered issue and one reader's copy of it."""
    issue, rendered = composed.issue, composed.rendered
    where = f"{issue.edition.slug} {issue.date.isoformat()}"
    findings = _html_size(rendered.html, where) + _subject_and_preheader(rendered.subject, rendered.preheader, where)
    if issue.note is not None and _TK.search(issue.note.html):
        findings.append(Finding("error", issue.note.source, "the issue note holds a 'TK' placeholder"))
    for story in issue.stories:
        findings += _image(story) + _placeholders(story) + _body(story)
    if len(sample_message) > 10 * 1024 * 1024:
        findings.append(Finding("error", where, f"one message is {len(sample_message) / 1048576:.1f} MB"))
    return findings


def _html_size(html: str, where: str) -> list[Finding]:
    """The HTML's size against Gmail's clipping."""
    html_size = len(html.encode("utf-8"))
    if html_size > GMAIL_CLIP_BYTES:
        return [Finding("error", where, f"HTML is {html_size / 1024:.1f} KB; Gmail clips messages past 102 KB")]
    if html_size > HTML_SIZE_WARNING:
        return [Finding("warning", where, f"HTML is {html_size / 1024:.1f} KB, close to Gmail's 102 KB clipping")]
    return []


def _subject_and_preheader(subject: str, preheader: str, where: str) -> list[Finding]:
    """What the inbox shows: a subject that is there and fits, a preheader, no 'TK' in either."""
    findings = []
    if not subject.strip():
        findings.append(Finding("error", where, "subject is empty"))
    elif len(subject) > SUBJECT_WARN_CHARS:
        findings.append(Finding("warning", where, f"subject is {len(subject)} characters; inboxes show about {SUBJECT_WARN_CHARS}"))
    if not preheader.strip():
        findings.append(Finding("warning", where, "preheader is empty; inboxes will preview the first body text instead"))
    if _TK.search(subject) or _TK.search(preheader):
        findings.append(Finding("error", where, "subject or preheader holds a 'TK' placeholder"))
    return findings


def _image(story: Story) -> list[Finding]:
    """A story's image: alt text, credit, and a size that keeps its space while images are blocked."""
    image = story.image
    if image is None:
        return []
    findings = []
    if not image.alt:
        findings.append(Finding("warning", story.source, "image has no alt text"))
    if not image.credit:
        findings.append(Finding("warning", story.source, "image has no credit"))
    if not (image.width and image.height):
        findings.append(Finding("warning", story.source,
                                "image has no width and height (image.width, image.height): while images are "
                                "blocked no space is kept for it, and the text jumps when it loads"))
    return findings


def _placeholders(story: Story) -> list[Finding]:
    """A 'TK' left in any of a story's texts."""
    texts = (("headline", story.headline), ("body", story.body_html),
             ("caption", story.image.caption if story.image else None), ("curator_note", story.curator_note))
    return [Finding("error", story.source, f"{label} holds a 'TK' placeholder")
            for label, text in texts if text and _TK.search(text)]


def _body(story: Story) -> list[Finding]:
    """A story's body: not empty, no bold lead-in with nothing after it."""
    if story.words == 0:
        return [Finding("error", story.source, "story body is empty")]
    if _EMPTY_LEAD_IN.search(story.body_html):
        return [Finding("warning", story.source, "a bold lead-in has no text after it (empty section)")]
    return []
