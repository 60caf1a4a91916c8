"""Hostile story text, template-injection attempts, the network, and every sample message."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import ROOT

from digest.compose.personalise import verify_token
from digest.compose.pipeline import compose
from digest.compose.planning import choose_stories
from digest.compose.render import Renderer
from digest.errors import TemplateError
from digest.sources.stories import parse_story

XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    '<img src="javascript:alert(1)">',
    "<svg onload=alert(1)><circle r=5 /></svg>",
    "<math><mtext><script>alert(1)</script></mtext></math>",
    '<iframe src="https://evil.example"></iframe>',
    "<object data=\"https://evil.example/x.swf\"></object><embed src=x>",
    '<form action="https://evil.example"><input name=p><button>Go</button></form>',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">mixed case</a>',
    '<a href="jav&#x09;ascript:alert(1)">entity tab</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>',
    '<a href="vbscript:msgbox(1)">vb</a>',
    "[md link](javascript:alert(1))",
    "![md image](https://tracker.example/pixel.gif)",
    '<p style="background:url(javascript:alert(1))">styled</p>',
    "<style>body{background:url(https://evil.example/x)}</style>",
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<base href=\"https://evil.example/\">",
    '<div onclick="alert(1)" onmouseover="alert(2)">hover</div>',
    "<details open ontoggle=alert(1)>",
    "<!--<script>alert(1)</script>-->",
    "<scr<script>ipt>alert(1)</script>",
    '<a href="https://ok.example" onclick="alert(1)" style="x">ok link</a>',
    "<template><script>alert(1)</script></template>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
]
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "form", "input", "button", "svg", "math", "link",
                  "meta", "base", "details", "template", "noscript", "frame", "frameset", "applet"}
BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|data):", re.I)


class _Audit(HTMLParser):
    """Collects everything executable or remote in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.style_blocks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}>")
        if tag == "style":
            self.style_blocks += 1
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"{tag} {name}=")
            if name in ("href", "src", "action", "formaction", "background") and value and BAD_SCHEME.match(value):
                self.problems.append(f"{tag} {name}={value}")
            if name == "style" and value and re.search(r"url\(|expression\(|javascript:", value, re.I):
                self.problems.append(f"{tag} style={value}")
        if tag == "img" and not any(v and v.startswith("https://images.northline.example.org/") for n, v in attrs if n == "src"):
            self.problems.append(f"img not from a story's front matter: {attrs}")


def _audit(html: str) -> _Audit:
    """Audit the body (where story content goes); count <style> blocks over the whole document."""
    audit = _Audit()
    audit.feed(html[html.lower().index("<body"):])
    audit.style_blocks = len(re.findall(r"<style\b", html, re.I))
    return audit


def _story_with_body(body: str, **front: str) -> str:
    meta = {"headline": "Test story", "published": "2026-12-01T05:00:00-05:00", "editions": "[am]",
            "image": "{src: 'https://images.northline.example.org/t.jpg', alt: 'Alt', credit: 'Photo: A', caption: 'C'}", **front}
    return "---\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()) + "---\nA lede.\n\n" + body + "\n"


def _compose_one(settings, story_text: str):
    story = parse_story(story_text, source="xss.md", default_id="xss")
    issue = choose_stories(settings.edition("am"), settings.demo_date, (story,), words_per_minute=settings.newsroom.words_per_minute)
    composed = compose(settings, issue)
    message = composed.message(composed.recipients.for_address("reader@example.com", "Reader"))
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    return parsed.get_body(("html",)).get_content(), parsed.get_body(("plain",)).get_content()


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_xss_corpus_leaves_nothing_executable(payload: str, sample_settings) -> None:
    html, text = _compose_one(sample_settings, _story_with_body(f"**Why it matters:** {payload} after."))
    audit = _audit(html)
    assert audit.problems == []
    assert audit.style_blocks == 1  # the template's own; a story cannot add one
    assert "evil.example" not in html and "tracker.example" not in html
    assert not re.search(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>", text), "a tag survived into the text part"


def test_front_matter_text_is_escaped_not_interpreted(sample_settings) -> None:
    """Headline, byline, caption and note are text: escaped in HTML, shown literally in text."""
    payload = '<img src=x onerror=alert(1)>'
    html, text = _compose_one(sample_settings, _story_with_body(
        "Body.", headline=f"'Headline {payload}'", byline=f"'By {payload}'", editor_note=f"'Note {payload}'"))
    audit = _audit(html)
    assert audit.problems == []
    assert "Headline &lt;img src=x onerror=alert(1)&gt;" in html
    assert f"Headline {payload}" in text  # plain text cannot execute; the reader sees the words


def test_template_syntax_in_stories_prints_literally(sample_settings, composed_sample, sample_subscribers) -> None:
    html, text = _compose_one(sample_settings, _story_with_body(
        "Try `{{ 7*7 }}` and {{ config }} and {% raw %}x{% endraw %} {# c #}", headline="'Math {{ 7*7 }} {{ lipsum }}'"))
    for part in (html, text):
        assert "{{ 7*7 }}" in part and "49" not in part
        assert "{{ config }}" in part and "{% raw %}" in part and "{# c #}" in part
    assert "Math {{ 7*7 }} {{ lipsum }}" in text
    # The shipped sample story quotes the same payload.
    composed = composed_sample("am")
    reader = sample_subscribers.audience("am")[0]
    message = email.message_from_bytes(composed.message(composed.recipient(reader)), policy=email.policy.default)
    assert "{{ 7*7 }}" in message.get_body(("plain",)).get_content()
    assert "{{ 7*7 }}" in message.get_body(("html",)).get_content()


@pytest.fixture
def network_events():
    """Records every socket connection or DNS lookup the process attempts while the flag is up."""
    events: list[tuple[str, tuple]] = []
    state = {"on": False}

    def hook(event: str, args: tuple) -> None:
        if state["on"] and event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "urllib.Request"):
            events.append((event, args))

    sys.addaudithook(hook)  # audit hooks cannot be removed; the flag limits this one to the test
    state["on"] = True
    yield events
    state["on"] = False


def test_rendering_opens_no_network_connection(network_events, sample_settings, sample_stories, sample_subscribers) -> None:
    for edition in sample_settings.editions:
        issue = choose_stories(edition, sample_settings.demo_date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
        composed = compose(sample_settings, issue)
        for reader in sample_subscribers.audience(edition.slug):
            composed.message(composed.recipient(reader))
    # A story that tries to pull remote CSS and images through every door.
    _compose_one(sample_settings, _story_with_body(XSS_CORPUS[18] + XSS_CORPUS[17] + "![x](https://tracker.example/p.gif)"))
    assert network_events == []


def test_a_template_that_links_remote_css_fails_without_fetching(tmp_path: Path, network_events, sample_settings, sample_stories) -> None:
    override = tmp_path / "templates"
    (override / "am").mkdir(parents=True)
    base = (ROOT / "digest" / "templates" / "base.html").read_text()
    (override / "base.html").write_text(base.replace("</head>", '<link rel="stylesheet" href="https://cdn.example.net/x.css"></head>', 1))
    settings = dataclasses.replace(sample_settings, paths=dataclasses.replace(sample_settings.paths, templates=override))
    issue = choose_stories(settings.edition("am"), settings.demo_date, sample_stories.stories, words_per_minute=settings.newsroom.words_per_minute)
    with pytest.raises(TemplateError, match="stylesheet"):
        compose(settings, issue, Renderer(override))
    (override / "base.html").write_text(base.replace("\n<style>", "\n<style>@import url(https://cdn.example.net/y.css);", 1))
    with pytest.raises(TemplateError, match="stylesheet"):
        compose(settings, issue, Renderer(override))
    assert network_events == []


def test_every_sample_message_parses_back_and_its_token_is_for_that_reader_only(sample_settings, composed_sample, sample_subscribers) -> None:
    required = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"]
    message_ids = set()
    checked = 0
    for edition in sample_settings.editions:
        composed = composed_sample(edition.slug)
        for reader in sample_subscribers.audience(edition.slug):
            recipient = composed.recipient(reader)
            data = composed.message(recipient)
            composed.template.verify(data, recipient)
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            for name in required:
                assert len(parsed.get_all(name, [])) == 1, name
            assert parsed["To"].addresses[0].addr_spec == reader.email
            assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            https, mailto = re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"]))
            assert https.startswith(sample_settings.base_url + "/u/") and mailto.startswith("mailto:")
            token = https.rsplit("/", 1)[1]
            assert verify_token(sample_settings.signing_keys, token) == (reader.email, edition.slug)
            assert token in mailto
            body = data.split(b"\r\n\r\n", 1)[1]
            assert body.isascii() and max(len(line) for line in body.split(b"\r\n")) <= 76
            # No other reader's address or token leaks into this copy.
            others = [s.email for s in sample_subscribers.audience(edition.slug) if s.email != reader.email]
            decoded = parsed.get_body(("plain",)).get_content() + parsed.get_body(("html",)).get_content()
            assert not any(other in decoded for other in others)
            message_ids.add(str(parsed["Message-ID"]))
            assert str(parsed["Message-ID"]).endswith("@northline.example.org>")
            checked += 1
    assert checked == len(message_ids) > 50  # one distinct Message-ID per (issue, reader)
