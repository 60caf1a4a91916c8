"""The composing half of the pipeline, readable in one place.

    planned issue (planning.plan_issue) -> render (Jinja2) -> inline CSS (once) -> MessageTemplate (once)
                                                                        per reader: Recipient -> build -> check -> bytes

Everything here is pure computation: no network, no clock (the date is given), no writes.

An issue is composed once, when it is created, and kept in the state database in its stored
form (``ComposedIssue.stored``: versioned JSON, no pickle, no secret); every later sender
rebuilds the same copies from it (``composed_from_stored``) without reading a story again.
Format 1 holds::

    format 1, edition, issue_date, timezone (IANA), send_time and window_start (ISO 8601 with offset),
    stories (ids in order), reading_minutes, greeting (the salutation), preheader,
    headers {sender {name, address}, reply_to, subject, date, list_name, list_id, feedback_id, extra [[name, value]]},
    nonce (the placeholders'), boundary, text and html (inlined, with the reader placeholders)

Its fingerprint (``fingerprint_of``) is the first 16 hex digits of the SHA-256 of its canonical
JSON (sorted keys, no spaces, UTF-8). The signing keys and the DKIM key come from the settings
each time, and the per-reader values (tokens, Message-IDs, links) are made from them as ever.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import ConfigError, HeaderValueError, MessageIntegrityError, StoredCompositionError
from ..models import Edition, Issue, RenderedIssue, Settings, Subscriber
from .dkim import DkimSigner, signer_from_settings
from .inline import inline_css
from .message import IssueHeaders, MessageTemplate, feedback_id, stored_fields, stored_value
from .personalise import Placeholders, Recipient, RecipientFactory, boundary
from .render import Renderer

PROBE_ADDRESS = "probe@example.com"
PROBE_NAME = 'Zoë "Probe" Ünal, Jr. =?utf-8?q?x?= ' + "long " * 20
#: The stored composition's format; a digest reads only the formats it knows.
STORED_FORMAT = 1
_NONCE = re.compile(r"[0-9a-f]{16}")  # Placeholders.new(); it goes into a regular expression unescaped
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=?-]{1,70}")  # RFC 2046 bchars, less the space


@dataclass
class ComposedIssue:
    """One issue, rendered and encoded once, ready to be personalised for each reader."""

    issue: Issue  # rebuilt from a stored form: edition, date, send time, window and minutes, but no Story objects
    rendered: RenderedIssue
    template: MessageTemplate
    recipients: RecipientFactory
    signer: DkimSigner | None = None
    story_ids: tuple[str, ...] = ()  # the issue's stories in order (a rebuilt issue has no Story objects)
    fingerprint: str | None = None  # of the stored composition it was rebuilt from; None: composed here

    def recipient(self, subscriber: Subscriber) -> Recipient:
        return self.recipients.for_subscriber(subscriber)

    def message(self, recipient: Recipient) -> bytes:
        """One reader's copy, structure-checked (exact header set, CRLF, line lengths), then DKIM-signed."""
        data = self.template.build(recipient)
        self.template.check_structure(data)
        return self.signer.sign(data) if self.signer is not None else data

    def stored(self) -> dict[str, object]:
        """The issue's stored form (format 1, see the module docstring): plain JSON data, no secret.

        A test copy is never stored: it is not the issue.
        """
        if TEST_HEADER in self.template.headers.extra:
            raise ValueError("a test copy's composition is not the issue's and is never stored")
        issue = self.issue
        return {
            "format": STORED_FORMAT,
            "edition": issue.edition.slug,
            "issue_date": issue.date.isoformat(),
            "timezone": issue.edition.timezone,
            "send_time": issue.send_time.isoformat(),
            "window_start": issue.window_start.isoformat(),
            "stories": list(self.story_ids),
            "reading_minutes": issue.reading_minutes,
            "greeting": self.recipients.edition.greeting,
            "preheader": self.rendered.preheader,
            "headers": self.template.headers.stored(),
            "nonce": self.template.placeholders.nonce,
            "boundary": self.template.boundary,
            "text": self.template.text,
            "html": self.template.html,
        }

    @property
    def approval_fingerprint(self) -> str:
        """The fingerprint editors see and approve: 16 hex digits of the SHA-256 of the stored form
        with the placeholders' random nonce written neutrally. Composing the same stories, note and
        settings again gives the same one; any change to a byte a reader gets gives another."""
        data = self.stored()
        placeholders = self.template.placeholders
        data.update(nonce="", text=_neutral(self.template.text, placeholders),
                    html=_neutral(self.template.html, placeholders))
        return fingerprint_of(canonical_json(data))

    def same_copies(self, other: ComposedIssue) -> bool:
        """Whether ``other`` gives every reader the same copy as this one: stories, shared headers,
        greeting, text and HTML, whatever each one's placeholder nonce (and MIME boundary)."""
        mine, theirs = self.template, other.template
        return (self.story_ids == other.story_ids and mine.headers == theirs.headers
                and self.recipients.edition.greeting == other.recipients.edition.greeting
                and _neutral(mine.text, mine.placeholders) == _neutral(theirs.text, theirs.placeholders)
                and _neutral(mine.html, mine.placeholders) == _neutral(theirs.html, theirs.placeholders))


def _neutral(body: str, placeholders: Placeholders) -> str:
    """``body`` with this issue's placeholders in a nonce-free spelling, to compare two compositions."""
    return placeholders.pattern().sub(lambda m: f"%%D_{m.group(1)}%%", body)


@dataclass(frozen=True, slots=True)
class StoredComposition:
    """An issue's composition as the state database keeps it: its format, JSON text and fingerprint."""

    format: int
    body: str
    fingerprint: str

    @classmethod
    def of(cls, composed: ComposedIssue) -> StoredComposition:
        """The stored form of ``composed``, ready to be kept."""
        body = canonical_json(composed.stored())
        return cls(STORED_FORMAT, body, fingerprint_of(body))

    def data(self) -> dict[str, object]:
        """The JSON data, once its format is known and its fingerprint matches; ValueError otherwise."""
        if self.format != STORED_FORMAT:
            raise ValueError(_unknown_format(self.format))
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ValueError(f"its text is not JSON ({exc})") from None
        # Hashed as re-serialised: a backend that reformats JSON (key order, spaces) changes no fingerprint.
        found = fingerprint_of(canonical_json(data))
        if found != self.fingerprint:
            raise ValueError(f"its text no longer matches its fingerprint {self.fingerprint} (it gives {found}): "
                             "it was changed after the issue was created")
        return stored_fields(data, "composition")


def canonical_json(data: object) -> str:
    """The one spelling of ``data`` a fingerprint is taken over: sorted keys, no spaces, UTF-8 text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint_of(body: str) -> str:
    """The fingerprint of a stored composition's canonical JSON: 16 hex digits of its SHA-256."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _unknown_format(found: object) -> str:
    return (f"its format {found!r} is not one this digest reads (it reads {STORED_FORMAT}); "
            "a newer digest created this issue: send it with that one")


def composed_from_stored(settings: Settings, edition: Edition, stored: StoredComposition | dict[str, object], *,
                         date: dt.date | None = None) -> ComposedIssue:
    """The issue ``stored`` holds, ready to be personalised: the same copies, byte for byte, as when
    it was composed, with tokens, Message-IDs and the DKIM signature made from ``settings``.

    ``stored`` is a kept ``StoredComposition`` (its format and fingerprint are checked) or the data
    of ``ComposedIssue.stored``. ``date``, when given, must be the stored issue's. Anything that
    cannot be used is a ``StoredCompositionError`` naming the issue: copies are never made some other way.
    """
    if not settings.signing_keys:
        raise ValueError("no signing key configured")  # the settings' fault, not the stored form's
    where = f"{edition.slug} {date.isoformat() if date else ''}".strip()
    try:
        if isinstance(stored, StoredComposition):
            composed = _rebuilt(settings, edition, stored.data(), date)
            return dataclasses.replace(composed, fingerprint=stored.fingerprint)
        return _rebuilt(settings, edition, stored_fields(stored, "composition"), date)
    except (ValueError, KeyError, HeaderValueError, MessageIntegrityError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise StoredCompositionError(
            f"{where}: the composition kept with the issue when it was created cannot be used: {reason}. "
            "No copy of it is sent; restore the state database from its backup") from None


def _rebuilt(settings: Settings, edition: Edition, fields: dict[str, object], date: dt.date | None) -> ComposedIssue:
    found = stored_value(fields, "format", int)
    if found != STORED_FORMAT:
        raise ValueError(_unknown_format(found))
    slug = stored_value(fields, "edition", str)
    if slug != edition.slug:
        raise ValueError(f"it is an issue of edition '{slug}'")
    issue_date = dt.date.fromisoformat(stored_value(fields, "issue_date", str))
    if date is not None and issue_date != date:
        raise ValueError(f"it is the issue of {issue_date}")
    zone = ZoneInfo(stored_value(fields, "timezone", str))
    stories = stored_value(fields, "stories", list)
    if not stories or not all(isinstance(story, str) for story in stories):
        raise ValueError("stories must be a non-empty list of story ids")
    nonce = stored_value(fields, "nonce", str)
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 16 lower-case hex digits")
    mime_boundary = stored_value(fields, "boundary", str)
    if not _BOUNDARY.fullmatch(mime_boundary):
        raise ValueError("boundary is not a MIME boundary")
    headers = IssueHeaders.from_stored(fields.get("headers"), zone)
    # The salutation is the issue's, as created: a greeting edited in digest.toml later changes no copy of it.
    as_created = dataclasses.replace(edition, greeting=stored_value(fields, "greeting", str))
    issue = Issue(edition=as_created, date=issue_date, send_time=_aware(fields, "send_time", zone),
                  window_start=_aware(fields, "window_start", zone), stories=(),
                  reading_minutes=stored_value(fields, "reading_minutes", int))
    template = MessageTemplate(headers, stored_value(fields, "text", str), stored_value(fields, "html", str),
                               Placeholders(nonce), boundary=mime_boundary)
    recipients = RecipientFactory(settings, as_created, issue_date.isoformat())
    _probe(template, recipients)
    rendered = RenderedIssue(headers.subject, stored_value(fields, "preheader", str), template.html, template.text)
    return ComposedIssue(issue, rendered, template, recipients, dkim_signer(settings), story_ids=tuple(stories))


def _aware(fields: dict[str, object], key: str, zone: ZoneInfo) -> dt.datetime:
    value = dt.datetime.fromisoformat(stored_value(fields, key, str))
    if value.tzinfo is None:
        raise ValueError(f"{key} has no UTC offset")
    return value.astimezone(zone)


def _probe(template: MessageTemplate, recipients: RecipientFactory) -> None:
    """Once per issue, a copy for a reader with an awkward name is parsed back in full; after
    that, each reader's copy only needs its header block checked (see MessageTemplate)."""
    probe = recipients.for_address(PROBE_ADDRESS, PROBE_NAME)
    template.verify(template.build(probe), probe)


TEST_HEADER = ("X-Digest-Test", "test copy; not part of the issue's send")
PREVIEW_HEADER = "X-Digest-Preview"
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PreviewBanner:
    """What marks a preview copy: its fingerprint (in a header) and a banner above the issue."""

    fingerprint: str
    html: str  # escaped HTML, put just inside <body>
    text: str  # put before the plain-text part


def compose(settings: Settings, issue: Issue, renderer: Renderer | None = None, *, test_copy: bool = False,
            preview: PreviewBanner | None = None) -> ComposedIssue:
    """Render, inline and encode a non-empty issue. The costly steps run here, once.

    ``test_copy`` marks every copy as a test: "[TEST]" before the subject and an X-Digest-Test header.
    ``preview`` marks it as an editors' preview: "[PREVIEW]" before the subject, an X-Digest-Preview
    header with the fingerprint, and the banner above the issue (a test copy too: never stored).
    """
    if issue.is_empty:
        raise ValueError("an empty issue has nothing to compose; check Issue.is_empty first")
    renderer = renderer or Renderer(settings.paths.templates)
    placeholders = Placeholders.new()
    rendered = renderer.render(issue, settings.newsroom, settings.base_url, placeholders.context())
    inlined = RenderedIssue(rendered.subject, rendered.preheader, inline_css(rendered.html), rendered.text)
    if preview is not None:
        inlined = _with_banner(inlined, preview)
        test_copy = True
    edition = issue.edition
    try:
        # Gmail's feedback loop counts complaints per field: per edition, per kind of edition
        # (all city editions together), and the newsroom's domain as the sender id. No date: one
        # issue alone is often too small for Gmail to report on.
        feedback = feedback_id(edition.slug, edition.kind, settings.newsroom.domain)
    except HeaderValueError as exc:  # slug and kind are checked by config.py; the domain is free text
        raise ConfigError(f"cannot be the sender id of a Feedback-ID header: {exc}",
                          file=settings.config_file, field="newsroom.domain") from None
    headers = IssueHeaders(
        sender=edition.sender,
        reply_to=edition.reply_to,
        subject=(f"[PREVIEW] {rendered.subject}" if preview else f"[TEST] {rendered.subject}") if test_copy
        else rendered.subject,
        date=issue.send_time,
        list_name=edition.name,
        list_id=edition.list_id,
        feedback_id=feedback,
        extra=((TEST_HEADER,) + (((PREVIEW_HEADER, preview.fingerprint),) if preview else ())) if test_copy else (),
    )
    date = issue.date.isoformat()
    template = MessageTemplate(headers, inlined.text, inlined.html, placeholders,
                               boundary=boundary(settings.signing_keys, edition.slug, date))
    recipients = RecipientFactory(settings, edition, date)
    _probe(template, recipients)
    return ComposedIssue(issue, inlined, template, recipients, dkim_signer(settings),
                         story_ids=tuple(story.id for story in issue.stories))


def _with_banner(rendered: RenderedIssue, banner: PreviewBanner) -> RenderedIssue:
    """The issue with the preview's banner just inside <body> (at the top if it has none) and before the text."""
    match = _BODY_TAG.search(rendered.html)
    at = match.end() if match else 0
    html = rendered.html[:at] + banner.html + rendered.html[at:]
    return RenderedIssue(rendered.subject, rendered.preheader, html, banner.text + "\n\n" + rendered.text)


_SIGNERS: dict[object, DkimSigner | None] = {}


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer for these settings (key loaded and self-checked once per process)."""
    if settings.dkim not in _SIGNERS:
        signer = signer_from_settings(settings.dkim)
        if signer is not None:
            signer.self_check()
            for edition in settings.editions:
                signer.check_alignment(edition.sender.address)
        _SIGNERS[settings.dkim] = signer
    return _SIGNERS[settings.dkim]


def issue_out_dir(root: Path, issue: Issue) -> Path:
    """The folder of ``issue``'s dry run under ``root``: ROOT/<edition>/<date>/, one per issue."""
    return root / issue.edition.slug / issue.date.isoformat()


def default_out_dir(settings: Settings, issue: Issue) -> Path:
    """Where a dry run of ``issue`` goes unless told otherwise: out/<edition>/<date>/."""
    return issue_out_dir(settings.paths.out, issue)
