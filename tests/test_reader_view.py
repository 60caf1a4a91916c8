"""What readers see (issue 9, items 10 and 11): the curator's words, link names, image sizes."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from html.parser import HTMLParser

import pytest

from digest.compose.pipeline import compose

from digest.compose.planning import choose_stories
from digest.compose.preflight import check_rendered
from digest.models import Image

SLUGS = ["am", "pm", "denver", "des-moines", "twin-cities", "tampa-bay", "charlotte", "climate"]


def parts(composed, reader) -> tuple[str, str]:
    """The decoded (text, html) of one reader's copy."""
    message = email.message_from_bytes(composed.message(composed.recipient(reader)), policy=email.policy.default)
    return (message.get_body(("plain",)).get_content().replace("\r\n", "\n"),
            message.get_body(("html",)).get_content().replace("\r\n", "\n"))


class _Anchors(HTMLParser):
    """Every <a>: its attributes and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: list[tuple[dict[str, str | None], list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._open.append((dict(attrs), []))

    def handle_data(self, data):
        for _, text in self._open:
            text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            attrs, text = self._open.pop()
            self.anchors.append((attrs, " ".join("".join(text).split())))


def anchors(html: str) -> list[tuple[dict[str, str | None], str]]:
    parser = _Anchors()
    parser.feed(html)
    return parser.anchors


# --- item 11 (c): each "Read the full story" link is named by its headline --------------------------

@pytest.mark.parametrize("slug", SLUGS)
def test_each_read_the_full_story_link_carries_its_headline(slug, composed_sample, sample_subscribers):
    composed = composed_sample(slug)
    _, html = parts(composed, sample_subscribers.audience(slug)[0])
    more = [(attrs, text) for attrs, text in anchors(html) if text.startswith("Read the full story")]
    with_url = [s for s in composed.issue.stories if s.url]
    assert len(more) == len(with_url) >= 1
    names = [attrs.get("aria-label") for attrs, _ in more]
    assert len(set(names)) == len(names), "every accessible name is different"
    for (attrs, _), story in zip(more, with_url):
        assert attrs["href"] == story.url
        # WCAG 2.5.3: the accessible name starts with the visible words, then says which story.
        assert attrs["aria-label"] == f"Read the full story: {story.headline}"


def test_the_plain_text_link_list_names_each_link(composed_sample, sample_subscribers):
    composed = composed_sample("climate")
    text, _ = parts(composed, sample_subscribers.audience("climate")[0])
    links = text.split("\nLinks\n", 1)[1]
    for story in composed.issue.stories:
        assert story.url in links
        # "[n] Headline" on one line (wrapped), the URL indented on the next
        block = links.split(story.url, 1)[0].rsplit("\n[", 1)[1]
        assert " ".join(block.split()).endswith(" ".join(story.headline.split())), block
    assert "\n    https://example.org/glio/ice-tracker\n" in links  # a body link: named by its text
    assert "] Track ice cover\n" in links
    for line in links.split("\n---", 1)[0].splitlines():  # names wrap; only a URL may run long
        assert len(line) <= 72 or line.lstrip().startswith("http"), line


# --- item 11 (b): preflight warns for images without width and height ------------------------------

def test_preflight_warns_for_images_without_width_and_height(sample_settings, sample_stories):
    """Three sample stories give no size: when images are blocked, nothing is reserved for them."""
    sizeless = {s.source for s in sample_stories.stories if s.image and not (s.image.width and s.image.height)}
    assert len(sizeless) == 3
    warned = set()
    for edition in sample_settings.editions:
        for date in (sample_settings.demo_date, sample_settings.demo_date.replace(day=30, month=11)):
            issue = choose_stories(edition, date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
            if issue.is_empty:
                continue
            composed = compose(sample_settings, issue)
            for finding in check_rendered(composed, b""):
                if "width and height" in finding.message:
                    assert finding.level == "warning"
                    warned.add(finding.where)
    assert warned == sizeless


@pytest.mark.parametrize("width, height, warns", [(None, None, True), (1200, None, True), (None, 675, True), (1200, 675, False)])
def test_image_size_warning_needs_both_sides(sample_settings, sample_stories, width, height, warns):
    edition = sample_settings.edition("am")
    issue = choose_stories(edition, sample_settings.demo_date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
    lead = issue.stories[0]
    image = Image("https://images.example.org/x.jpg", "alt", "Photo: X", None, width, height)
    issue = dataclasses.replace(issue, stories=(dataclasses.replace(lead, image=image),))
    findings = [f for f in check_rendered(compose(sample_settings, issue), b"") if "width and height" in f.message]
    assert bool(findings) is warns
    if warns:
        assert findings[0].where == lead.source
