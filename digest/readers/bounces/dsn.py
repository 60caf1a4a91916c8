"""One bounce, complaint or other reply read into reports, one per recipient, each with its class.

Only the standard library's ``email`` reads the messages. Which addresses a bounce names comes
from RFC 3464 fields where the message has them, else from flufl.bounce (library.py, which knows
many MTAs' own layouts); ARF complaints are read in arf.py. The SMTP codes a report quotes are
parsed by ``outcomes.parse_reply``, the parser send-time classification uses too, and what a
code means for a bounce is decided here (``classify_report``)::

    class      when                                                     what digest does
    hard       5.1.x (bad mailbox, unknown user or domain), 5.2.x       the reader is suppressed
               except 5.2.2/5.2.3, 5.4.4 (no mail host), 5.0.0,
               550/551/553 without an enhanced code, any 5.x.x whose
               text says the address does not exist, or an address
               the library names as a permanent failure with no code
    policy     refused for good, not for the address: 5.7.x (policy,   the reader is kept; counted
               reputation, authentication), 5.2.2 (mailbox full),       apart
               5.2.3, 5.3.x-5.6.x, 552, a bare 554, a "failed" report
               with a 4.x.x code (the remote side gave up)
    soft       delayed, a warning, any other 4.x.x, a DSN saying         the reader is kept
               "failed" with no code at all
    complaint  an ARF feedback report (a reader pressed "spam")        the reader is suppressed
    auto-reply out of office and similar                               nothing
    other      read receipts, successes, anything that is not a bounce  nothing

(A ``Status`` of ``X.0.0`` gives way to a more precise code quoted in the ``Diagnostic-Code``.)
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from typing import Literal

from ...outcomes import ReplyCode, parse_reply
from ..addresses import address_key
from . import arf, library

Category = Literal["hard", "soft", "policy", "complaint", "auto-reply", "other"]
Kind = Literal["dsn", "text", "arf", "auto-reply", "unrecognised", "other"]
ACTING: tuple[Category, ...] = ("hard", "soft", "policy", "complaint")  # the classes apply() matches to a copy

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*\n?[ \t]*(<[^<>\s]+@[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_RCPT_TO = re.compile(r"RCPT TO:\s*<([^<>\s]+@[^<>\s]+)>", re.IGNORECASE)
# local+TOKEN@domain where TOKEN has the shape returnpath.py writes (copy id, '-', 12 hex digits).
_VERP = re.compile(r"(?<![\w.+-])[A-Za-z0-9._-]+\+(\d{1,19}-[0-9A-Fa-f]{12})@[A-Za-z0-9.-]+")
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon|microsoftexchange", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returning message|delivery (status notification|failure|has failed|failed|problem)"
    r"|failure notice|mail delivery failed|non-?delivery|could not be delivered|delivery notification", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(r"^\s*(automatic reply|auto(matic)?[- ]?re(ply|sponse)|auto:|out of (the )?office|abwesenheit|"
                           r"r[ée]ponse automatique|respuesta autom[áa]tica|away from)", re.IGNORECASE)
# Words that say the address itself is gone, whatever the enhanced code says ("553 5.3.0 No such user here").
_ADDRESS_GONE = re.compile(
    r"no such (user|mailbox|recipient|address|account)|user(name)?\s+(is\s+)?(unknown|not found|doesn'?t exist|does not exist)"
    r"|unknown (user|recipient|mailbox|address|local.part)|addressee unknown|mailbox (is\s+)?(unavailable|not found|"
    r"does not exist|disabled|inactive)|recipient (address )?(rejected|unknown|not found|does not exist)"
    r"|invalid (recipient|mailbox|address)|not a valid (user|mailbox|recipient)|account (has been |is )?(disabled|"
    r"deactivated|closed|removed)|account does not exist|no mailbox|bad destination mailbox|not our customer"
    r"|address (is )?(unknown|invalid|rejected)|(user|recipient) (account )?(has )?expired", re.IGNORECASE)
# Words that say the message, not the address, was refused (size, quota, spam, policy).
_MESSAGE_REFUSED = re.compile(r"size|too (large|big)|quota|mailbox (is )?full|storage|spam|policy|block|blacklist"
                              r"|reputation|content|virus|rate limit", re.IGNORECASE)
# A reply quoted in free text: "550 5.1.1", "550-5.1.1", "550: 5.1.1", "(#5.1.1)", "5.1.1", or a bare "550 text".
_QUOTED_STATUS = re.compile(r"(?<![\w.])(?:(?P<code>[245]\d\d)[ \t]*[-:]?[ \t]*)?\(?#?"
                            r"(?P<status>[245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)")
_BARE_CODE = re.compile(r"(?<![\w.#/-])(?P<code>[45][0-5]\d)(?=[ \t]*[-: ][ \t]*[A-Za-z<(\"'])")
_ACTIONS = {"failure": "failed", "fail": "failed", "delay": "delayed"}  # misspellings seen in the wild
_NEAR_LINES = 6  # a plain bounce quotes the reply within a few lines of the address it names
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_HEADER_TYPES = ("text/rfc822-headers", "message/global-headers")
_ORIGINAL_TYPES = ("message/rfc822", "message/global")

_SUBJECTS = {  # RFC 3463 subject codes, for reasons a person reads
    0: "other or undefined status", 1: "addressing", 2: "mailbox", 3: "mail system", 4: "network or routing",
    5: "mail delivery protocol", 6: "message content", 7: "security or policy",
}


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What one notification says about one recipient, and what digest makes of it."""

    category: Category               # the class: see the module's table
    reason: str                      # why, in words, with the remote server's own text
    kind: Kind                       # dsn (RFC 3464 fields) | text (an address the library found in the text)
                                     # | arf (RFC 5965 complaint) | auto-reply | unrecognised (looks like a
                                     # bounce, nothing readable) | other
    recipient: str | None = None     # Final-Recipient (or the address a plain bounce names)
    original_recipient: str | None = None
    action: str | None = None        # failed | delayed | delivered | relayed | expanded; a complaint's Feedback-Type
    status: str | None = None        # enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None    # the Diagnostic-Code without its type, e.g. "550 5.1.1 ..."
    remote_mta: str | None = None
    reporting_mta: str | None = None
    message_id: str | None = None    # the original message's, <...@...>
    verp_token: str | None = None    # TOKEN of a local+TOKEN@domain address the report was sent to
    subject: str | None = None
    source: str = ""

    @property
    def smtp_code(self) -> int | None:
        """The basic SMTP reply code the remote server gave (550), when the report quotes one."""
        return _basic_code(self.diagnostic)

    @property
    def addresses(self) -> frozenset[str]:
        """Every address (as address_key) the report says the failed copy was for."""
        return frozenset(address_key(a) for a in (self.recipient, self.original_recipient) if a)


def classify_report(action: str | None, status: str | None, diagnostic: str | None = None, *,
                    named_as_failed: bool = False) -> tuple[Category, str]:
    """The class of one recipient's report (see the module's table), and the reason in words.

    ``named_as_failed``: the library found the address among a bounce's permanent failures, which
    with no code at all is enough for ``hard``. The codes are parsed by ``outcomes.parse_reply``.
    """
    action = (action or "").strip().lower()
    said = f": {diagnostic}" if diagnostic else ""
    if action in ("delivered", "relayed", "expanded"):
        return "other", f"{action}, not a failure"
    enhanced = _enhanced(status)
    if action == "delayed":
        return "soft", f"delayed, still being retried ({status or 'no status'}){said}"
    if enhanced is None:
        return _without_status(action, _basic_code(diagnostic) or _bare_code(diagnostic), diagnostic, said,
                               named_as_failed)
    if enhanced[0] == 2:
        return "other", f"success status {status}"
    if enhanced[0] == 4 and action == "failed":
        return "policy", f"the remote side gave up after temporary failures ({status}); reader kept{said}"
    if enhanced[0] == 4:
        return "soft", f"temporary failure ({status}){said}"
    return _permanent(enhanced, status, _basic_code(diagnostic), diagnostic, said)


def _without_status(action: str, code: int | None, diagnostic: str | None, said: str,
                    named_as_failed: bool) -> tuple[Category, str]:
    text = diagnostic or ""
    gone, refused = _ADDRESS_GONE.search(text), _MESSAGE_REFUSED.search(text)
    if code is not None and code >= 500:
        if gone or (code in (550, 551, 553) and not refused):
            return "hard", f"hard bounce ({code}, no enhanced code){said}"
        return "policy", f"refused for good, not for the address ({code}); reader kept{said}"
    if code is not None:
        if action == "failed":
            return "policy", f"the remote side gave up after temporary failures ({code}); reader kept{said}"
        return "soft", f"temporary failure ({code}){said}"
    if action == "failed" and gone:
        return "hard", f"hard bounce (no status code; the text says the address does not exist){said}"
    if action == "failed" and named_as_failed and not refused:
        return "hard", f"hard bounce (no status code; the bounce names the address as failed){said}"
    if action == "failed" and named_as_failed:
        return "policy", f"refused for good, not for the address (no status code); reader kept{said}"
    if action == "failed":
        return "soft", f"failed without a status code; reader kept{said}"
    return "other", "no action or status"


def _permanent(enhanced: tuple[int, int, int], status: str | None, code: int | None, diagnostic: str | None,
               said: str) -> tuple[Category, str]:
    """The class of a 5.x.x status: hard only when it is about the reader's address."""
    _, subject, detail = enhanced
    if subject == 7:
        return "policy", f"policy rejection ({status}); reader kept{said}"
    if (subject, detail) == (2, 2) or (subject == 0 and code == 552):
        return "policy", f"mailbox full ({status}), refused for good; reader kept{said}"
    if (subject, detail) == (2, 3):
        return "policy", f"message too large for the mailbox ({status}); reader kept{said}"
    if subject in (1, 2) or (subject, detail) == (4, 4) or subject == 0 or _ADDRESS_GONE.search(diagnostic or ""):
        return "hard", f"hard bounce ({status}, {_SUBJECTS.get(subject, 'other')}){said}"
    return "policy", (f"refused for good, not for the address ({status}, {_SUBJECTS.get(subject, 'other')}); "
                      f"reader kept{said}")


def parse_dsn(data: bytes, source: str = "") -> list[BounceReport]:
    """Every recipient a notification reports on; always at least one report per message.

    RFC 3464 ``message/delivery-status`` parts are read field by field, wherever they sit in the
    MIME tree (a DSN forwarded inside ``message/rfc822`` too). flufl.bounce (library.py) names the
    failed addresses of every other layout, and fills in a DSN that names none; the status code a
    plain-text bounce quotes beside an address is read here. ARF complaints: arf.py. Anything else
    is one report of class ``auto-reply`` or ``other`` (``unrecognised`` when it looks like a bounce).
    """
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = list(_parts(msg))
    forwarded = _forwarded_report(msg, parts)
    if forwarded is not None:
        return parse_dsn(forwarded, source)
    subject = _decoded_header(msg, "Subject")
    verp_token = _verp(msg)
    original_id = _original_message_id(msg, parts)
    common = {"subject": subject, "verp_token": verp_token, "source": source}

    if arf.is_complaint(msg, parts):
        return [BounceReport(category, reason, "arf", recipient=recipient, message_id=original_id, action=feedback,
                             **common) for category, reason, recipient, feedback in arf.read(msg, parts)]
    text = _body_text(parts)
    found = _library_failures(msg, data, parts)
    if _is_report(msg, "disposition-notification") and not (found.permanent or found.temporary):
        return [BounceReport("other", "read receipt (message disposition notification)", "other",
                             message_id=original_id, **common)]
    dsn_parts = [p for p in parts if p.get_content_type() in _DSN_TYPES]
    reports = _dsn_reports(msg, dsn_parts, original_id, found, common) if dsn_parts else []
    named = {address_key(r.recipient) for r in reports if r.recipient}
    message_id = original_id or _quoted_message_id(text) or _fallback_message_id(msg)
    for address in found.permanent + found.temporary:
        if address_key(address) not in named:
            named.add(address_key(address))
            reports.append(_text_report(address, address in found.permanent, text, message_id, common))
    if not reports:
        reports = _heuristic(msg, parts, original_id, common)
    if reports:
        return reports
    unrecognised = BounceReport("other", "looks like a bounce, but no recipient status could be read: check it by hand",
                                "unrecognised", message_id=original_id, **common)
    if dsn_parts or _is_report(msg, "delivery-status") or _BOUNCE_SENDER.search(_header(msg, "From") or ""):
        return [unrecognised]
    if _is_auto_reply(msg, subject):
        return [BounceReport("auto-reply", "auto-reply (out of office or similar)", "auto-reply", **common)]
    if _BOUNCE_SUBJECT.search(subject or ""):
        return [unrecognised]
    return [BounceReport("other", "not a delivery status notification", "other", **common)]


def _dsn_reports(msg: Message, dsn_parts: list[Message], original_id: str | None, found: library.Failures,
                 common: dict) -> list[BounceReport]:
    """One report per recipient block; a block that names no recipient takes the one (or each)
    address Exim's X-Failed-Recipients header or the library names."""
    reports = []
    failed = [a.strip() for a in (_header(msg, "X-Failed-Recipients") or "").split(",") if "@" in a]
    for part in dsn_parts:
        per_message, recipients = _dsn_blocks(part)
        message_id = original_id or _msgid(per_message.get("x-original-message-id") or per_message.get("original-message-id"))
        message_id = message_id or _fallback_message_id(msg)
        for block in recipients:
            if "final-recipient" in block or "original-recipient" in block:
                reports.append(_report_from_block(block, per_message, message_id, common, found))
                continue
            named = failed or list(found.permanent + found.temporary)
            for address in named or [None]:
                with_address = {**block, "final-recipient": address} if address else block
                reports.append(_report_from_block(with_address, per_message, message_id, common, found))
    return reports


def _text_report(address: str, permanent: bool, text: str, message_id: str | None, common: dict) -> BounceReport:
    """A failed address the library found in a bounce's text, with the reply quoted beside it."""
    status, diagnostic = _reply_near(text, address)
    action = "failed" if permanent else "delayed"  # the library tells a final failure from a warning
    category, reason = classify_report(action, status, diagnostic, named_as_failed=permanent)
    return BounceReport(category, reason, "text", recipient=address, action=action, status=status,
                        diagnostic=diagnostic, message_id=message_id, **common)


def _library_failures(msg: Message, data: bytes, parts: list[Message]) -> library.Failures:
    """What flufl.bounce finds, only addresses written in the message (raw, or in a decoded part);
    nothing when it cannot read it."""
    searchable = "\n".join([data.decode("latin-1"), *(_text(p) for p in parts)]).lower()
    try:
        return library.failures(msg, searchable)
    except library.LibraryFailed:
        return library.Failures((), ())


def _forwarded_report(msg: Message, parts: list[Message]) -> bytes | None:
    """A bounce that arrived forwarded (as an attached ``message/rfc822``) with no report of its own."""
    if any(p.get_content_type() in _DSN_TYPES or p.get_content_type() == "message/feedback-report" for p in parts):
        return None
    for part in parts:
        if part.get_content_type() in _ORIGINAL_TYPES:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get_content_type() == "multipart/report":
                try:
                    return inner.as_bytes()
                except Exception:  # noqa: BLE001 -- an attachment the library cannot write back
                    return None
    return None


def _report_from_block(block: dict[str, str], per_message: dict[str, str], message_id: str | None,
                       common: dict, found: library.Failures) -> BounceReport:
    diagnostic = _clean_diagnostic(_strip_type(block.get("diagnostic-code")))
    status = _best_status(block.get("status"), diagnostic)
    if status is None and diagnostic is None:  # "Status: 553 Exceeded ...": a reply where a code belongs
        diagnostic = _clean_diagnostic(block.get("status"))
    action = _ACTIONS.get((block.get("action") or "").strip().lower(), (block.get("action") or "").strip().lower()) or None
    if action is None and status is not None:
        action = {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    recipient = _address(block.get("final-recipient"))
    permanent = recipient is not None and address_key(recipient) in {address_key(a) for a in found.permanent}
    if action is None and permanent:
        action = "failed"
    category, reason = classify_report(action, status, diagnostic, named_as_failed=permanent)
    return BounceReport(
        category, reason, "dsn",
        recipient=recipient,
        original_recipient=_address(block.get("original-recipient")),
        action=action, status=status, diagnostic=diagnostic,
        remote_mta=_strip_type(block.get("remote-mta")),
        reporting_mta=_strip_type(block.get("reporting-mta") or per_message.get("reporting-mta")),
        message_id=message_id, **common)


# Long (complexity 21): each MTA's plain-text bounce differs. Only for bounces the library names nobody in.
def _heuristic(msg: Message, parts: list[Message], original_id: str | None, common: dict) -> list[BounceReport]:
    """A bounce without DSN structure: an SMTP reply quoted in the text, and an address near it."""
    sender = _header(msg, "From") or ""
    subject = common["subject"] or ""
    null_sender = (_header(msg, "Return-Path") or "").strip() == "<>"
    if not (_BOUNCE_SENDER.search(sender) or _BOUNCE_SUBJECT.search(subject) or null_sender):
        return []
    text = _body_text(parts)
    reply = _quoted_failure(text)
    if reply is None:
        return []
    own = {address_key(a) for a in _ADDRESS.findall(sender + " " + (_header(msg, "To") or ""))}
    failed = [a.strip() for a in (_header(msg, "X-Failed-Recipients") or "").split(",") if "@" in a]
    recipients = failed or [r for r in [_address_near(text, reply, own)] if r]
    diagnostic = _clean_diagnostic(text[reply.start:_line_end(text, reply.end)])
    status = reply.status
    action = "failed" if status[0] == "5" else "delayed"
    category, reason = classify_report(action, status, diagnostic)
    message_id = original_id or _quoted_message_id(text) or _fallback_message_id(msg)
    return [BounceReport(category, reason, "text", recipient=r, action=action, status=status,
                         diagnostic=diagnostic, message_id=message_id, **common)
            for r in (recipients or [None])]


def _quoted_failure(text: str) -> ReplyCode | None:
    """The first failure a plain-text bounce quotes: 4xx/5xx with an enhanced code of the same class
    (a transcript's earlier "250 2.1.0 Ok" lines are not the failure)."""
    found = parse_reply(text, search=True)
    while found is not None and not (found.code is not None and str(found.code)[0] in "45"
                                     and found.status is not None and found.status[0] == str(found.code)[0]):
        found = parse_reply(text, found.end, search=True)
    return found


def _line_end(text: str, at: int) -> int:
    """The end of the line holding ``at``, with the indented lines that continue it (as Postfix wraps)."""
    end = text.find("\n", at)
    while end >= 0:
        following = text[end + 1:text.find("\n", end + 1) if text.find("\n", end + 1) >= 0 else len(text)]
        if not following[:1].isspace() or not following.strip():
            break
        end = text.find("\n", end + 1)
    return len(text) if end < 0 else end


def _address_near(text: str, reply: ReplyCode, own: set[str]) -> str | None:
    """The address a plain-text bounce blames: RCPT TO:<...>, else on the reply's line, else just before."""
    rcpt = _RCPT_TO.search(text)
    if rcpt and address_key(rcpt[1]) not in own:
        return rcpt[1]
    line_start = text.rfind("\n", 0, reply.start) + 1
    line_end = text.find("\n", reply.end)
    line_end = len(text) if line_end < 0 else line_end
    after = [a for a in _ADDRESS.findall(text[reply.end:line_end]) if address_key(a) not in own]
    if after:
        return after[0]
    window_start = line_start
    for _ in range(4):  # up to four lines above the reply
        window_start = text.rfind("\n", 0, max(window_start - 1, 0)) + 1
        if window_start == 0:
            break
    before = [a for a in _ADDRESS.findall(text[window_start:reply.start]) if address_key(a) not in own]
    return before[-1] if before else None


# --- MIME helpers ----------------------------------------------------------------------------

def _parts(msg: Message) -> Iterator[Message]:
    """The message and its MIME parts, without descending into attached messages or DSN blocks."""
    yield msg
    if msg.get_content_maintype() == "multipart":
        payload = msg.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                yield from _parts(sub)


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    return " ".join(str(value).split())


def _is_report(msg: Message, report_type: str) -> bool:
    value = msg.get_param("report-type")
    if isinstance(value, tuple):  # RFC 2231 encoded
        value = email.utils.collapse_rfc2231_value(value)
    return msg.get_content_type() == "multipart/report" and str(value or "").strip().lower() == report_type


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _body_text(parts: list[Message]) -> str:
    plain = [_text(p) for p in parts if p.get_content_type() == "text/plain"]
    if plain:
        return "\n".join(plain)
    html = [_text(p) for p in parts if p.get_content_type() == "text/html"]
    return re.sub(r"<[^>]+>", " ", "\n".join(html))


def _dsn_blocks(part: Message) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(per-message fields, per-recipient field blocks) of a delivery-status part."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        # message/delivery-status: one Message per block. Other message/* types (global DSNs)
        # come back as one Message whose body holds the blocks after the first.
        for block in payload:
            if isinstance(block, Message):
                blocks.append(_fields(block))
                rest = block.get_payload()
                if isinstance(rest, str) and rest.strip():
                    blocks += _text_blocks(rest)
    else:
        blocks = _text_blocks(_text(part))
    blocks = [b for b in blocks if b]
    recipients = [b for b in blocks if "final-recipient" in b or "action" in b or "status" in b]
    per_message = next((b for b in blocks if b not in recipients), {})
    return per_message, recipients


def _text_blocks(text: str) -> list[dict[str, str]]:
    return [_fields(HeaderParser(policy=email.policy.compat32).parsestr(chunk.strip() + "\n"))
            for chunk in re.split(r"\r?\n[ \t]*\r?\n", text) if chunk.strip()]


def _fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in block.items():
        fields.setdefault(name.strip().lower(), " ".join(str(value).split()))
    return fields


def _original_message_id(msg: Message, parts: list[Message]) -> str | None:
    """The Message-ID of the message that bounced, from the parts that carry it back."""
    for part in parts:
        kind = part.get_content_type()
        if kind in _ORIGINAL_TYPES:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found = _msgid(_header(inner, "Message-ID"))
                if found:
                    return found
            elif isinstance(payload, str):  # an attached message the parser left as text
                found = _quoted_message_id(_text(part))
                if found:
                    return found
        elif kind in _HEADER_TYPES:
            raw = part.get_payload(decode=True) or b""
            found = _msgid(_header(BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw), "Message-ID"))
            if found:
                return found
    return None


def _quoted_message_id(text: str) -> str | None:
    match = _MESSAGE_ID_LINE.search(text)
    return match[1] if match else None


def _fallback_message_id(msg: Message) -> str | None:
    """Gmail and Exchange name the original in In-Reply-To; used only when nothing better is there."""
    return _msgid(_header(msg, "In-Reply-To"))


def _msgid(value: str | None) -> str | None:
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    return match[0] if match else None


def _strip_type(value: str | None) -> str | None:
    """``rfc822; a@b`` -> ``a@b``; ``smtp; 550 ...`` -> ``550 ...``; ``dns; mx`` -> ``mx``."""
    if value is None:
        return None
    kind, semi, rest = value.partition(";")
    if semi and re.fullmatch(r"\s*[A-Za-z0-9-]+\s*", kind):
        value = rest
    return value.strip() or None


def _address(value: str | None) -> str | None:
    value = _strip_type(value)
    if not value:
        return None
    match = _ADDRESS.search(value)
    return match[0] if match else value.strip("<> ")


def _enhanced(status: str | None) -> tuple[int, int, int] | None:
    """The enhanced code a Status field (or any field) carries, wherever it sits in it."""
    found = parse_reply(status, search=True)
    return found.enhanced if found is not None else None


def _basic_code(diagnostic: str | None) -> int | None:
    """The basic reply code a diagnostic starts with (550), if it starts with one."""
    found = parse_reply(diagnostic)
    return found.code if found is not None else None


def _best_status(status: str | None, diagnostic: str | None) -> str | None:
    """The Status field's code, unless it is X.0.0 and the diagnostic quotes a precise one of the same class."""
    own = _enhanced(status)
    quoted = _quoted_reply(diagnostic) or parse_reply(diagnostic)
    quoted_code = quoted.enhanced if quoted else None
    if own is None:
        return ".".join(map(str, quoted_code)) if quoted_code else None
    if own[1:] == (0, 0) and quoted_code and quoted_code[0] == own[0] and quoted_code[1:] != (0, 0):
        return ".".join(map(str, quoted_code))
    return ".".join(map(str, own))


def _quoted_reply(text: str | None) -> ReplyCode | None:
    """The first full reply (basic and enhanced code, "550 5.1.1") quoted anywhere in ``text``."""
    found = parse_reply(text, search=True)
    while found is not None and found.code is None:
        found = parse_reply(text, found.end, search=True)
    return found


def _clean_diagnostic(text: str | None) -> str | None:
    """One line; a multi-line reply's repeated ``550-5.1.1`` prefixes dropped."""
    if not text:
        return None
    text = " ".join(text.split())
    first = parse_reply(text)
    if first is not None and first.code is not None and first.status is not None:
        prefix = re.compile(rf"\s{first.code}[ -]{re.escape(first.status)}\s+")
        text = text[:first.end] + prefix.sub(" ", text[first.end:])
        text = re.sub(r"^(\d{3})-", r"\1 ", text)
    text = " ".join(text.split())
    return text[:500]


def _verp(msg: Message) -> str | None:
    """The token of a VERP return path (local+TOKEN@domain) the report was delivered to, if any."""
    for name in ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "Return-Path", "To"):
        for value in msg.get_all(name) or []:
            match = _VERP.search(str(value))
            if match:
                return match[1]
    return None


def _decoded_header(msg: Message, name: str) -> str | None:
    """A header as text, RFC 2047 encoded words decoded ("=?utf-8?q?Unzustellbar?=" -> "Unzustellbar")."""
    raw = msg.get(name)
    if raw is None:
        return None
    try:
        value = str(email.header.make_header(email.header.decode_header(str(raw))))
    except (LookupError, ValueError, UnicodeError):
        value = str(raw)
    return " ".join(value.split())


def _reply_near(text: str, address: str) -> tuple[str | None, str | None]:
    """(enhanced status, the reply's line) a plain bounce quotes beside ``address``:
    on the address's line or the few after it, at the first place the address is written."""
    lines = text.splitlines()
    lowered = address.lower()
    for at, line in enumerate(lines):
        if lowered not in line.lower():
            continue
        for candidate in lines[at:at + _NEAR_LINES]:
            status = _QUOTED_STATUS.search(candidate)
            if status is not None and status["status"][0] in "45":
                return status["status"], _clean_diagnostic(candidate)
            bare = _BARE_CODE.search(candidate)
            if bare is not None:
                return None, _clean_diagnostic(candidate[bare.start():])
        return None, _clean_diagnostic(line)
    return None, None


def _bare_code(diagnostic: str | None) -> int | None:
    """A failure code quoted without an enhanced code anywhere in a diagnostic ("... said: 550 ...")."""
    found = _BARE_CODE.search(diagnostic or "")
    return int(found["code"]) if found else None


def _is_auto_reply(msg: Message, subject: str | None) -> bool:
    auto = (_header(msg, "Auto-Submitted") or "").lower()
    precedence = (_header(msg, "Precedence") or "").lower()
    return (auto.startswith("auto-replied") or precedence == "auto_reply" or msg.get("X-Autoreply") is not None
            or msg.get("X-Autorespond") is not None or bool(_AUTO_SUBJECT.search(subject or "")))
