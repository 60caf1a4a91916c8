"""Alerts for an edition's editors: one email each through the newsroom's relay, and a JSON POST
to the webhook named by ``DIGEST_ALERT_WEBHOOK`` (Slack's incoming webhooks and the like read its
``text``).

    something a person must act on (a missed send, an issue held, the circuit breaker's pause)
    -> ``event=alert`` in the log -> an email to each of ``editors`` -> the webhook

An alert never stops what raised it: a relay or webhook that fails is logged as ``alert.failed``
and the send, or the scheduler, goes on. The webhook's URL carries its secret, so it is read from
the environment and never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import email.utils
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

from ..events import event
from ..models import Edition, Settings
from .relays import connection_factory
from .transport import Envelope, RelayUnreachable, always_send

WEBHOOK_ENV = "DIGEST_ALERT_WEBHOOK"
WEBHOOK_TIMEOUT = 5.0  # seconds; an alert must not hold up the send that raised it
_TITLES = {"missed": "send missed", "held": "issue held", "paused": "paused by the circuit breaker"}


@dataclass(frozen=True, slots=True)
class Alert:
    """What happened to which issue, in words an editor can act on."""

    kind: str  # missed | held | paused
    edition: Edition
    date: dt.date
    text: str

    @property
    def title(self) -> str:
        return f"{self.edition.name} {self.date}: {_TITLES.get(self.kind, self.kind)}"


async def send_alert(settings: Settings, alert: Alert) -> None:
    """Log the alert, email it to the edition's editors and POST it to the webhook; never raises."""
    fields = {"kind": alert.kind, "edition": alert.edition.slug, "date": alert.date.isoformat()}
    event("alert", logging.WARNING, detail=alert.text, editors=len(alert.edition.editors), **fields)
    if alert.edition.editors:
        try:
            await _email(settings, alert)
        except Exception as exc:  # noqa: BLE001 - an alert must never take the send down with it
            event("alert.failed", logging.ERROR, via="email", detail=str(exc), **fields)
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        try:
            await asyncio.to_thread(_post, url, alert)
        except (OSError, ValueError) as exc:
            event("alert.failed", logging.ERROR, via="webhook", host=urlsplit(url).hostname or "?",
                  detail=type(exc).__name__ + (f": {exc.reason}" if isinstance(exc, urllib.error.URLError) else ""),
                  **fields)


def alert_message(settings: Settings, alert: Alert, to: str) -> bytes:
    """The alert as an email to one editor: plain text, marked auto-generated (RFC 3834) and
    ``X-Digest-Alert: <kind>``."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = email.utils.formataddr((f"{settings.newsroom.name} digest", alert.edition.sender.address))
    message["To"] = to
    message["Subject"] = f"[alert] {alert.title}"
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid("alert", domain=settings.newsroom.domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Digest-Alert"] = alert.kind  # what mail filters (and tests) tell an alert from an issue by
    message.set_content(f"{alert.text}\n\n`digest status {alert.edition.slug} --date {alert.date}` shows the issue "
                        "and its history.\n")
    return message.as_bytes()


async def _email(settings: Settings, alert: Alert) -> None:
    factories = [connection_factory(relay) for relay in settings.smtp_relays()]
    for index, factory in enumerate(factories):
        connection = factory()
        try:
            for editor in alert.edition.editors:
                reply = await connection.deliver(Envelope(alert.edition.sender.address, editor),
                                                 alert_message(settings, alert, editor), before_body=always_send)
                if reply is not None and reply.code >= 400:
                    event("alert.failed", logging.ERROR, via="email", to=editor, detail=f"{reply.code} {reply.text}",
                          kind=alert.kind, edition=alert.edition.slug, date=alert.date.isoformat())
            return
        except RelayUnreachable:
            if index == len(factories) - 1:
                raise
        finally:
            await connection.close()


def _post(url: str, alert: Alert) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{WEBHOOK_ENV} must be an http(s) URL")
    body = json.dumps({"text": f"{alert.title}. {alert.text}", "kind": alert.kind, "edition": alert.edition.slug,
                       "date": alert.date.isoformat()}).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310 - scheme checked above
        response.read()
