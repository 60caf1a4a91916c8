"""Message bytes: header encoding, injection refusal, the per-reader splice, tokens."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re

import pytest
from conftest import TEST_KEY
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from digest.compose.message import IssueHeaders, MessageTemplate, encode_text_header
from digest.compose.personalise import Placeholders, Recipient, sign_token, verify_token
from digest.config import parse_signing_keys
from digest.errors import HeaderInjectionError, HeaderValueError
from digest.models import Mailbox

KEYS = parse_signing_keys(TEST_KEY)
NASTY = ["\r", "\n", "\r\n", "\x00", "=?utf-8?q?Bcc:_x@evil.example?=", "=?", "?=", "Bcc: evil@example.net",
         " ", "\t", "é", "\u2028", "\x85", '"', "\\", "<", ">", ",", ":", ";", "(", ")", "%", "=", "a", "Z", "7"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=40).map("".join)
long_text = st.integers(min_value=70, max_value=3000).map(lambda n: ("word " * n)[:n]) | st.integers(100, 2500).map(lambda n: "x" * n)


def _template(subject: str = "Subject", sender_name: str = "Northline AM", list_name: str = "Northline AM",
              text: str | None = None, html: str | None = None, ph: Placeholders | None = None) -> MessageTemplate:
    ph = ph or Placeholders.new()
    r = ph.context()
    text = text if text is not None else f"{r['greeting']}\nBody text.\nUnsubscribe: {r['unsubscribe_url']}\nYou are {r['email']}.\n"
    html = html if html is not None else f"<p>{r['greeting']}</p><a href=\"{r['unsubscribe_url']}\">x</a> {r['email']}"
    headers = IssueHeaders(Mailbox(sender_name, "am@northline.example.org"), "desk@northline.example.org", subject,
                           dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), list_name,
                           "am.northline.example.org", "am:national:northline.example.org")
    return MessageTemplate(headers, text, html, ph, "==digest-test==")


def _recipient(email_addr: str = "ana@example.com", name: str = "Ana Lucero", greeting: str = "Good morning, Ana.") -> Recipient:
    token = sign_token(KEYS, email_addr, "am")
    return Recipient(email_addr, name, greeting, f"https://digest.example.org/u/{token}",
                     f"mailto:unsubscribe@example.org?subject=unsubscribe%20{token}", "<abc123@northline.example.org>")


def _is_refusal(exc: Exception) -> bool:
    return isinstance(exc, HeaderInjectionError)


def _has_break(value: str) -> bool:
    return any(c in value for c in "\r\n\x00")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=nasty_text | long_text)
def test_subject_never_injects_a_header(subject: str) -> None:
    if _has_break(subject):
        with pytest.raises(HeaderInjectionError):
            _template(subject=subject)
        return
    template = _template(subject=subject)
    recipient = _recipient()
    data = template.build(recipient)
    template.verify(data, recipient)  # exact header set; Subject decodes to exactly `subject`


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=nasty_text | long_text.map(lambda s: s[:200]))
@example(name="Ana  Lucero")  # runs of spaces between atoms are folded by parsers: must be quoted
@example(name="?=  ?=")
@example(name="word " * 14)  # several encoded-words: RFC 2047 drops the space between them
def test_reader_name_never_injects_a_header(name: str) -> None:
    template = _template()
    recipient = _recipient(name=name, greeting=f"Hi, {name}.")
    if _has_break(name):
        with pytest.raises(HeaderInjectionError):
            template.build(recipient)
        return
    data = template.build(recipient)
    template.verify(data, recipient)  # To decodes to exactly (name, address); greeting spliced exactly


@settings(max_examples=200, deadline=None)
@given(name=nasty_text)
def test_sender_and_list_names_never_inject(name: str) -> None:
    if _has_break(name):
        with pytest.raises(HeaderInjectionError):
            _template(sender_name=name, list_name=name)
        return
    template = _template(sender_name=name, list_name=name)
    recipient = _recipient()
    data = template.build(recipient)
    template.verify(data, recipient)


@settings(max_examples=200, deadline=None)
@given(tail=nasty_text)
def test_addresses_and_urls_with_breaks_or_non_ascii_are_refused(tail: str) -> None:
    template = _template()
    bad_values = [
        _recipient(email_addr="ana@example.com" + tail),
        Recipient("ana@example.com", "Ana", "Hi.", "https://digest.example.org/u/x" + tail, "mailto:u@example.org", "<a@b>"),
        Recipient("ana@example.com", "Ana", "Hi.", "https://digest.example.org/u/x", "mailto:u@example.org" + tail, "<a@b>"),
        Recipient("ana@example.com", "Ana", "Hi.", "https://digest.example.org/u/x", "mailto:u@example.org", "<a@b>" + tail),
    ]
    for recipient in bad_values:
        if _has_break(tail):
            with pytest.raises(HeaderInjectionError):
                template.build(recipient)
        elif not tail.isascii():
            with pytest.raises(HeaderValueError):
                template.build(recipient)
        else:
            data = template.build(recipient)
            template.check_structure(data)


def test_cve_2024_6923_encoded_newline_in_subject_stays_text() -> None:
    """An encoded-word hiding CRLF + Bcc must reach the reader as literal subject text."""
    subject = "Today =?utf-8?q?=0D=0ABcc:_victim@example.net?= news"
    template = _template(subject=subject)
    recipient = _recipient()
    data = template.build(recipient)
    template.verify(data, recipient)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert str(parsed["Subject"]) == subject
    assert b"\r\nBcc:" not in data


@settings(max_examples=200, deadline=None)
@given(before=st.text(max_size=300), after=st.text(max_size=300), value=st.text(max_size=120).filter(lambda v: not _has_break(v)))
def test_splice_decodes_to_exactly_the_personalised_text(before: str, after: str, value: str) -> None:
    """Per-reader values spliced into pre-encoded quoted-printable decode to the intended text."""
    ph = Placeholders.new()
    marker = ph.marker("greeting")
    text = f"{before}{marker}{after}".replace("\r", "")
    template = _template(text=text, html=f"<p>{marker}</p>", ph=ph)
    recipient = _recipient(greeting=value)
    data = template.build(recipient)
    template.verify(data, recipient)
    for line in data.split(b"\r\n"):
        assert len(line) <= 998


def test_quoted_printable_lines_stay_within_76() -> None:
    ph = Placeholders.new()
    m = ph.context()
    text = ("é" * 300) + m["greeting"] + ("x" * 500) + m["email"] + "\n" + "y" * 75 + m["unsubscribe_url"]
    template = MessageTemplate(_template().headers, text, f"<p>{m['greeting']}</p>", ph, "==b==")
    data = template.build(_recipient(greeting="Günaydın, " + "Ö" * 80))
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_story_text_cannot_forge_a_placeholder() -> None:
    """Placeholders carry a per-issue random part; guessing another issue's does nothing."""
    a, b = Placeholders.new(), Placeholders.new()
    assert a.nonce != b.nonce
    forged = b.marker("email")
    template = _template(text=f"{a.marker('email')} and {forged}\n", html="<p>x</p>", ph=a)
    recipient = _recipient()
    text = email.message_from_bytes(template.build(recipient), policy=email.policy.default).get_body(("plain",)).get_content()
    assert text.startswith("ana@example.com and ")
    assert forged in text


def test_html_values_are_escaped() -> None:
    template = _template()
    recipient = _recipient(name="<b>Ana</b>", greeting="Hi, <script>x</script> & co.")
    message = email.message_from_bytes(template.build(recipient), policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; co." in html
    assert "Hi, <script>x</script> & co." in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("subject, raw", [("Plain ASCII subject", True), ("Café au lait", False), ("=?utf-8?b?x?=", False)])
def test_subject_encoding_choice(subject: str, raw: bool) -> None:
    encoded = encode_text_header("Subject", subject)
    assert (encoded == subject) is raw
    assert encoded.isascii()


def test_tokens_verify_only_for_their_reader_and_edition() -> None:
    token = sign_token(KEYS, "ana@example.com", "am")
    assert verify_token(KEYS, token) == ("ana@example.com", "am")
    payload, mac = token.split(".")
    other = sign_token(KEYS, "ana@example.com", "pm")
    assert verify_token(KEYS, f"{other.split('.')[0]}.{mac}") is None  # pm payload with am's MAC
    tampered_mac = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")
    assert verify_token(KEYS, f"{payload}.{tampered_mac}") is None
    assert verify_token(KEYS, "garbage") is None
    assert verify_token(KEYS, "a.b.c") is None
    assert verify_token(parse_signing_keys("t1:another-key-entirely-000000"), token) is None


def test_rotated_keys_still_verify_old_tokens() -> None:
    old = parse_signing_keys("2025:old-signing-key-0123456789")
    token = sign_token(old, "ana@example.com", "am")
    rotated = parse_signing_keys("2026:new-signing-key-0123456789,2025:old-signing-key-0123456789")
    assert verify_token(rotated, token) == ("ana@example.com", "am")
    assert re.match(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", sign_token(rotated, "ana@example.com", "am"))


# --- mail-world headers: Feedback-ID, Auto-Submitted, Precedence (issue 9, item 11) ---------------

@pytest.mark.parametrize("slug", ["am", "denver", "climate", "twin-cities"])
def test_every_copy_carries_feedback_id_and_autoreply_suppression(slug, composed_sample, sample_subscribers) -> None:
    composed = composed_sample(slug)
    edition = composed.issue.edition
    for reader in sample_subscribers.audience(slug)[:3]:
        recipient = composed.recipient(reader)
        data = composed.message(recipient)
        composed.template.verify(data, recipient)  # the verifier knows the new headers
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed.get_all("Feedback-ID") == [f"{slug}:{edition.kind}:northline.example.org"]
        assert parsed.get_all("Auto-Submitted") == ["auto-generated"]
        assert parsed.get_all("Precedence") == ["bulk"]
        # Gmail's format: at most four colon-separated fields, the sender id last; one line.
        value = parsed["Feedback-ID"]
        assert 1 < len(value.split(":")) <= 4 and all(value.split(":"))
        assert b"\r\nFeedback-ID: " + value.encode() + b"\r\n" in data


def test_feedback_id_is_the_same_for_every_issue_of_an_edition(sample_settings, sample_stories) -> None:
    """No date or reader in it: Gmail aggregates complaints per identifier, so it must be stable."""
    from digest.compose.pipeline import compose
    from digest.compose.planning import choose_stories

    edition = sample_settings.edition("am")
    ids = set()
    for date in (dt.date(2026, 11, 30), dt.date(2026, 12, 1)):
        issue = choose_stories(edition, date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
        if not issue.is_empty:
            ids.add(compose(sample_settings, issue).template.headers.feedback_id)
    assert ids == {"am:national:northline.example.org"}


def test_test_copies_carry_the_headers_too(sample_settings, sample_stories) -> None:
    from digest.compose.pipeline import compose
    from digest.compose.planning import choose_stories

    issue = choose_stories(sample_settings.edition("pm"), sample_settings.demo_date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
    composed = compose(sample_settings, issue, test_copy=True)
    recipient = composed.recipients.for_address("tester@example.com", "Tester")
    data = composed.message(recipient)
    composed.template.verify(data, recipient)
    assert composed.template.header_names[-5:] == ["Feedback-ID", "Auto-Submitted", "Precedence", "MIME-Version", "Content-Type"]


@pytest.mark.parametrize("fields, problem", [
    (("am", "national", "north:line.example.org"), HeaderValueError),  # a colon would shift Gmail's fields
    (("am", "national", "northline.example.org\r\nBcc: x@evil.example"), HeaderInjectionError),
    (("am", "national", "nörthline.example.org"), HeaderValueError),
    (("am", "", "northline.example.org"), HeaderValueError),
    (("am", "nat ional", "northline.example.org"), HeaderValueError),
    (("a", "b", "c", "d", "e"), HeaderValueError),  # Gmail reads at most four fields
])
def test_a_bad_feedback_id_is_refused_never_cleaned(fields, problem) -> None:
    from digest.compose.message import feedback_id

    with pytest.raises(problem):
        feedback_id(*fields)


def test_a_feedback_id_with_a_line_break_never_reaches_the_wire() -> None:
    """The template refuses it too, not only the builder: every header goes through one writer."""
    import dataclasses

    headers = dataclasses.replace(_template().headers, feedback_id="am:national:x\r\nBcc: evil@example.net")
    with pytest.raises(HeaderInjectionError):
        MessageTemplate(headers, "x", "<p>x</p>", Placeholders.new(), "==b==")


def test_verify_notices_a_missing_or_changed_autoreply_header() -> None:
    from digest.errors import MessageIntegrityError

    template = _template()
    recipient = _recipient()
    data = template.build(recipient)
    template.verify(data, recipient)
    for tampered in (data.replace(b"Precedence: bulk", b"Precedence: junk"),
                     data.replace(b"Auto-Submitted: auto-generated", b"Auto-Submitted: no"),
                     data.replace(b"Feedback-ID: am:national:", b"Feedback-ID: pm:national:")):
        assert tampered != data
        with pytest.raises(MessageIntegrityError):
            template.verify(tampered, recipient)


def test_a_newsroom_domain_unfit_for_feedback_id_names_the_config_key(sample_settings, sample_stories) -> None:
    import dataclasses

    from digest.compose.pipeline import compose

    from digest.compose.planning import choose_stories
    from digest.errors import ConfigError

    settings = dataclasses.replace(sample_settings, newsroom=dataclasses.replace(sample_settings.newsroom, domain="north:line"))
    issue = choose_stories(settings.edition("am"), settings.demo_date, sample_stories.stories, words_per_minute=settings.newsroom.words_per_minute)
    with pytest.raises(ConfigError, match="newsroom.domain"):
        compose(settings, issue)


def test_reader_values_fill_exactly_the_reader_fields() -> None:
    from digest.compose.personalise import READER_FIELDS, reader_values

    assert tuple(reader_values("Hi.", "a@example.com", "https://x/u/t")) == READER_FIELDS
    assert reader_values("Hi.") == {"greeting": "Hi.", "email": "", "unsubscribe_url": ""}
