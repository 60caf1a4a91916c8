"""Previews for an edition's editors: the issue as it would go now, with what an editor needs to
judge it, and (for an edition that needs approval) a signed link to approve it.

    approval.propose (compose from today's files, keep it, fingerprint) -> per editor: the issue
    composed again with a banner (``preview/banner.*``) and "[PREVIEW]" before the subject, the
    editor's own approve link in it -> the relay -> the preview recorded against the fingerprint

A preview is a test copy: never stored as the issue, never in the ledger's deliveries, with a
Message-ID of its own. The banner sits above the issue's own HTML and text; nothing in it is part
of the copies readers get, and the fingerprint it shows is that of the readers' copies.
"""

from __future__ import annotations

import datetime as dt
import secrets
from contextlib import closing
from dataclasses import dataclass

from ..compose.links import LinkRefused, read_link, sign_link
from ..compose.pipeline import PreviewBanner, compose
from ..compose.render import Renderer
from ..errors import InputError
from ..models import Edition, Settings
from ..state.ledger import Approval, Ledger
from .approval import Proposal, approve, deadline, propose
from .copies import copies
from .relays import connection_factory, first_answering
from .transport import always_send

APPROVE = "approve"  # the purpose of an approve link (compose/links.py)


@dataclass(frozen=True)
class PreviewSent:
    """What `digest preview` did: the proposal shown, and each editor's relay reply."""

    proposal: Proposal
    replies: tuple[tuple[str, int, str], ...]  # (address, SMTP code, reply text)
    expires: dt.datetime | None  # when the approve links stop working; None: no approval asked

    @property
    def ok(self) -> bool:
        return all(200 <= code < 300 for _, code, _ in self.replies)


def approve_url(settings: Settings, edition: Edition, date: dt.date, fingerprint: str, editor: str) -> str:
    """``editor``'s single-use link to approve issue (edition, date) as ``fingerprint``, until its deadline."""
    token = sign_link(settings.signing_keys, APPROVE, (edition.slug, date.isoformat(), fingerprint, editor),
                      expires=deadline(settings, edition, date).timestamp())
    return f"{settings.base_url}/approve/{token}"


@dataclass(frozen=True)
class ApproveLink:
    """What a valid approve link asks: that ``editor`` approve issue (edition, date) as ``fingerprint``."""

    edition: Edition
    date: dt.date
    fingerprint: str
    editor: str
    nonce: str
    expires: dt.datetime


def read_approve_link(settings: Settings, token: str) -> ApproveLink:
    """The request of an approve link; ``LinkRefused`` ('invalid', 'expired', 'used') otherwise.

    A link is valid while it is signed by the newsroom's key, its edition exists and needs approval,
    and its address is still one of the edition's editors. It changes nothing (``approve_by_link`` does).
    """
    link = read_link(settings.signing_keys, APPROVE, token)
    try:
        slug, date, fingerprint, editor = link.fields
        edition = settings.edition(slug)
        day = dt.date.fromisoformat(date)
    except (ValueError, KeyError):
        raise LinkRefused("invalid") from None
    if edition.approval != "required" or editor not in edition.editors:
        raise LinkRefused("invalid")
    with closing(Ledger(settings.state_db)) as ledger:
        if ledger.link_used(link.nonce):
            raise LinkRefused("used")
    return ApproveLink(edition, day, fingerprint, editor, link.nonce,
                       dt.datetime.fromtimestamp(link.expires, dt.timezone.utc))


def approve_by_link(settings: Settings, token: str) -> tuple[ApproveLink, Approval]:
    """Carry out an approve link, once: ``LinkRefused`` as ``read_approve_link``; ``InputError``
    when the issue no longer composes to the link's fingerprint (or was created, or is past its deadline)."""
    link = read_approve_link(settings, token)
    with closing(Ledger(settings.state_db)) as ledger:
        if not ledger.use_link(link.nonce, APPROVE):  # two clicks at once: one wins
            raise LinkRefused("used")
    approval, _ = approve(settings, link.edition, link.date, link.editor, fingerprint=link.fingerprint, via="link")
    return link, approval


@dataclass(frozen=True)
class Review:
    """Where an issue that editors look at stands, after ``review``."""

    fingerprint: str
    preview: PreviewSent | None  # the preview this review sent (its fingerprint had none yet)
    approved: bool  # an editor approved this fingerprint
    invalidated: tuple[str, ...]  # fingerprints approved before, that the issue no longer composes to


async def review(settings: Settings, edition: Edition, date: dt.date) -> Review | None:
    """What the scheduler does before (and, while it waits for approval, after) a send time: compose
    issue (edition, date) as it would go now, and mail the editors a preview of it unless they had
    one of this fingerprint. None when the issue exists already or has no stories."""
    with closing(Ledger(settings.state_db)) as ledger:
        if ledger.find_issue(edition.slug, date) is not None:
            return None
        proposal = propose(settings, edition, date, ledger)
        if proposal is None:
            return None
        previewed = any(p.fingerprint == proposal.fingerprint for p in ledger.previews(edition.slug, date))
        approved = [a.fingerprint for a in ledger.approvals(edition.slug, date)]
    sent = None
    if not previewed and edition.editors:
        sent = await send_preview(settings, edition, date, proposal=proposal)
    invalidated = () if proposal.fingerprint in approved else tuple(dict.fromkeys(approved))
    return Review(proposal.fingerprint, sent, proposal.fingerprint in approved, invalidated)


async def send_preview(settings: Settings, edition: Edition, date: dt.date, to: tuple[str, ...] = (), *,
                       proposal: Proposal | None = None) -> PreviewSent:
    """Compose issue (edition, date) as it would go now (or take ``proposal``, just composed) and
    mail a preview to ``to`` (default: the edition's editors). Only an edition's editors get an
    approve link."""
    recipients = to or edition.editors
    if not recipients:
        raise InputError(f"{edition.slug} has no editors = [...] in digest.toml; --to ADDRESS sends a preview anyway")
    with closing(Ledger(settings.state_db)) as ledger:
        if ledger.find_issue(edition.slug, date) is not None:
            raise InputError(f"{edition.slug} {date} has been created already: `digest render` shows the copies "
                             "it goes with, `digest status` how far it has gone")
        proposal = proposal or propose(settings, edition, date, ledger)
        if proposal is None:
            raise InputError(f"{edition.slug} {date} has no stories: there is nothing to preview")
        needs_approval = edition.approval == "required"
        expires = deadline(settings, edition, date) if needs_approval else None
        renderer = Renderer(settings.paths.templates)
        connection = await first_answering([connection_factory(relay) for relay in settings.smtp_relays()])
        replies: list[tuple[str, int, str]] = []
        try:
            for address in recipients:
                link = (approve_url(settings, edition, date, proposal.fingerprint, address)
                        if needs_approval and address in edition.editors else None)
                html, text = renderer.banner(**_summary(proposal, link, expires))
                composed = compose(settings, proposal.issue, renderer,
                                   preview=PreviewBanner(proposal.fingerprint, html, text))
                message_id = f"<preview.{secrets.token_hex(16)}@{settings.newsroom.domain}>"

                def editor(email: str, message_id: str = message_id):
                    return composed.recipients.for_address(email, "Editor", message_id=message_id)

                async for copy in copies(composed, [address], editor, edition.sender.address):
                    reply = await connection.deliver(copy.envelope, copy.data, before_body=always_send)
                    assert reply is not None  # before_body never declines
                    replies.append((address, reply.code, reply.text))
        finally:
            await connection.close()
        delivered = tuple(address for address, code, _ in replies if 200 <= code < 300)
        if delivered:
            ledger.mark_previewed(edition.slug, date, proposal.fingerprint, delivered)
    return PreviewSent(proposal, tuple(replies), expires)


def _summary(proposal: Proposal, approve: str | None, expires: dt.datetime | None) -> dict[str, object]:
    issue = proposal.issue
    return {
        "edition": issue.edition.name,
        "slug": issue.edition.slug,
        "date": issue.date.isoformat(),
        "send_at": f"{issue.send_time:%H:%M %Z}",
        "fingerprint": proposal.fingerprint,
        "approval_needed": issue.edition.approval == "required",
        "stories": [story.headline for story in issue.stories],
        "held_over": [story.headline for story in issue.held_over_budget],
        "reading_minutes": issue.edition.reading_minutes,
        "left_out": [str(problem) for problem in proposal.left_out],
        "readers": proposal.readers,
        "size": proposal.size,
        "findings": proposal.findings,
        "approve_url": approve,
        "expires": f"{expires:%Y-%m-%d %H:%M UTC}" if expires else "",
    }
