"""The composing half of the pipeline, readable in one place.

    planned issue (planning.plan_issue) -> render (Jinja2) -> inline CSS (once) -> MessageTemplate (once)
                                                                        per reader: Recipient -> build -> check -> bytes

Everything here is pure computation: no network, no clock (the date is given), no writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, HeaderValueError
from ..models import Issue, RenderedIssue, Settings, Subscriber
from .dkim import DkimSigner, signer_from_settings
from .inline import inline_css
from .message import IssueHeaders, MessageTemplate, feedback_id
from .personalise import Placeholders, Recipient, RecipientFactory, boundary
from .render import Renderer

PROBE_ADDRESS = "probe@example.com"
PROBE_NAME = 'Zoë "Probe" Ünal, Jr. =?utf-8?q?x?= ' + "long " * 20


@dataclass
class ComposedIssue:
    """One issue, rendered and encoded once, ready to be personalised for each reader."""

    issue: Issue
    rendered: RenderedIssue
    template: MessageTemplate
    recipients: RecipientFactory
    signer: DkimSigner | None = None

    def recipient(self, subscriber: Subscriber) -> Recipient:
        return self.recipients.for_subscriber(subscriber)

    def message(self, recipient: Recipient) -> bytes:
        """One reader's copy, structure-checked (exact header set, CRLF, line lengths), then DKIM-signed."""
        data = self.template.build(recipient)
        self.template.check_structure(data)
        return self.signer.sign(data) if self.signer is not None else data


TEST_HEADER = ("X-Digest-Test", "test copy; not part of the issue's send")


def compose(settings: Settings, issue: Issue, renderer: Renderer | None = None, *, test_copy: bool = False) -> ComposedIssue:
    """Render, inline and encode a non-empty issue. The costly steps run here, once.

    ``test_copy`` marks every copy as a test: "[TEST]" before the subject and an X-Digest-Test header.
    """
    if issue.is_empty:
        raise ValueError("an empty issue has nothing to compose; check Issue.is_empty first")
    renderer = renderer or Renderer(settings.paths.templates)
    placeholders = Placeholders.new()
    rendered = renderer.render(issue, settings.newsroom, settings.base_url, placeholders.context())
    inlined = RenderedIssue(rendered.subject, rendered.preheader, inline_css(rendered.html), rendered.text)
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
        subject=f"[TEST] {rendered.subject}" if test_copy else rendered.subject,
        date=issue.send_time,
        list_name=edition.name,
        list_id=edition.list_id,
        feedback_id=feedback,
        extra=(TEST_HEADER,) if test_copy else (),
    )
    date = issue.date.isoformat()
    template = MessageTemplate(headers, inlined.text, inlined.html, placeholders,
                               boundary=boundary(settings.signing_keys, edition.slug, date))
    recipients = RecipientFactory(settings, edition, date)
    # Once per issue, a copy for a reader with an awkward name is parsed back in full; after
    # that, each reader's copy only needs its header block checked (see MessageTemplate).
    probe = recipients.for_address(PROBE_ADDRESS, PROBE_NAME)
    template.verify(template.build(probe), probe)
    return ComposedIssue(issue, inlined, template, recipients, dkim_signer(settings))


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
