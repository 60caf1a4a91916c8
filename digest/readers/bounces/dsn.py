"""One delivery status notification (RFC 3464, or a plain-text bounce) read into reports, one per recipient.

Only the standard library's ``email`` reads the messages; the SMTP codes they quote are parsed
by ``outcomes.parse_reply``, the parser send-time classification uses too, and only what a
parsed code means for a bounce is decided here (``classify_report``). Most of this module gives
way to a maintained DSN library in a later issue; until then it is kept as it was written.

How a report is classified (the enhanced status code, RFC 3463, is what counts; a ``Status`` of
``X.0.0`` gives way to a more precise code quoted in the ``Diagnostic-Code``)::

    Action delivered | relayed | expanded .......... ignore
    Action delayed, or any 4.x.x ................... soft: the remote side is still trying, or gave
                                                     up on a temporary failure
    5.1.x (bad mailbox, unknown user or domain) .... hard: the reader is suppressed
    5.2.x except 5.2.2 and 5.2.3 (mailbox disabled)  hard
    5.4.4 (unroutable: the domain has no mail host)  hard
    5.0.0 (undetermined) .......................... hard, unless the reply was 552 (storage)
    5.2.2 mailbox full, 5.2.3 message too large .... soft
    5.7.x policy / reputation / authentication ..... soft: the reader is kept (see outcomes.py)
    other 5.x.x (5.3 system, 5.4 routing, 5.5
        protocol, 5.6 content) .................... soft: about the message or the route, not the
                                                     reader's address, as outcomes.py treats them
    auto-replies, read receipts, complaints,
        anything that is not a bounce ............. ignore
"""

from __future__ import annotations

import email
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

Category = Literal["hard", "soft", "ignore"]
Kind = Literal["dsn", "heuristic", "auto-reply", "unrecognised", "other"]

VERP_PREFIX = "bounces"  # the local part before '+' of a VERP return path: bounces+TOKEN@domain

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*\n?[ \t]*(<[^<>\s]+@[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_RCPT_TO = re.compile(r"RCPT TO:\s*<([^<>\s]+@[^<>\s]+)>", re.IGNORECASE)
_VERP = re.compile(rf"(?<![\w.+-]){VERP_PREFIX}\+([^@\s<>\",;]+)@([A-Za-z0-9.-]+)", re.IGNORECASE)
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon|microsoftexchange", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|returning message|delivery (status notification|failure|has failed|failed|problem)"
    r"|failure notice|mail delivery failed|non-?delivery|could not be delivered|delivery notification", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(r"^\s*(automatic reply|auto(matic)?[- ]?re(ply|sponse)|auto:|out of (the )?office|abwesenheit|"
                           r"r[ée]ponse automatique|respuesta autom[áa]tica|away from)", re.IGNORECASE)
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

    category: Category               # hard | soft | ignore
    reason: str                      # why, in words, with the remote server's own text
    kind: Kind                       # dsn (RFC 3464) | heuristic (plain-text bounce) | auto-reply |
                                     # unrecognised (looks like a bounce, nothing readable) | other
    recipient: str | None = None     # Final-Recipient (or the address a plain bounce names)
    original_recipient: str | None = None
    action: str | None = None        # failed | delayed | delivered | relayed | expanded
    status: str | None = None        # enhanced status code, e.g. 5.1.1
    diagnostic: str | None = None    # the Diagnostic-Code without its type, e.g. "550 5.1.1 ..."
    remote_mta: str | None = None
    reporting_mta: str | None = None
    message_id: str | None = None    # the original message's, <...@...>
    verp_token: str | None = None    # TOKEN of a bounces+TOKEN@domain return path
    verp_address: str | None = None  # the address a standard VERP token (local=domain) stands for
    subject: str | None = None
    source: str = ""

    @property
    def smtp_code(self) -> int | None:
        """The basic SMTP reply code the remote server gave (550), when the report quotes one."""
        return _basic_code(self.diagnostic)

    @property
    def addresses(self) -> frozenset[str]:
        """Every address (as address_key) the report says the failed copy was for."""
        found = (self.recipient, self.original_recipient, self.verp_address)
        return frozenset(address_key(a) for a in found if a)


def classify_report(action: str | None, status: str | None, diagnostic: str | None = None) -> tuple[Category, str]:
    """hard | soft | ignore for one recipient, and the reason in words (see the module's table).

    The codes are parsed by ``outcomes.parse_reply``; what they mean for a bounce is decided here.
    """
    action = (action or "").strip().lower()
    said = f": {diagnostic}" if diagnostic else ""
    if action in ("delivered", "relayed", "expanded"):
        return "ignore", f"{action}, not a failure"
    enhanced = _enhanced(status)
    if action == "delayed":
        return "soft", f"delayed, still being retried ({status or 'no status'}){said}"
    if enhanced is None:
        if action == "failed":
            return "soft", f"failed without a status code; reader kept{said}"
        return "ignore", "no action or status"
    if enhanced[0] == 2:
        return "ignore", f"success status {status}"
    if enhanced[0] == 4:
        return "soft", f"temporary failure ({status}){said}"
    return _permanent(enhanced, status, _basic_code(diagnostic), said)


def _permanent(enhanced: tuple[int, int, int], status: str | None, code: int | None, said: str) -> tuple[Category, str]:
    """The verdict on a 5.x.x status: hard only when it is about the reader's address."""
    _, subject, detail = enhanced
    if subject == 7:
        return "soft", f"policy rejection ({status}); reader kept{said}"
    if (subject, detail) == (2, 2) or (subject == 0 and code == 552):
        return "soft", f"mailbox full ({status}){said}"
    if (subject, detail) == (2, 3):
        return "soft", f"message too large for the mailbox ({status}){said}"
    if subject in (1, 2) or (subject, detail) == (4, 4) or subject == 0:
        return "hard", f"hard bounce ({status}, {_SUBJECTS[subject]}){said}"
    return "soft", f"permanent failure not about the address ({status}, {_SUBJECTS.get(subject, 'other')}); reader kept{said}"


# Long (complexity 28): one branch per kind of message a mailbox of bounces holds. Split, not
# polished: a maintained DSN library replaces this function in a later issue.
def parse_dsn(data: bytes, source: str = "") -> list[BounceReport]:
    """Every recipient a notification reports on; always at least one report per message.

    RFC 3464 ``message/delivery-status`` parts are read field by field (wherever they sit in
    the MIME tree, so an Exim or Microsoft layout reads like Postfix's). A message without one
    that still looks like a bounce (from MAILER-DAEMON or with a bounce subject, quoting an SMTP
    reply such as ``550 5.1.1``) is read heuristically; anything else is one ``ignore`` report.
    """
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    subject = _header(msg, "Subject")
    verp_token, verp_address = _verp(msg)
    parts = list(_parts(msg))
    original_id = _original_message_id(msg, parts)
    common = {"subject": subject, "verp_token": verp_token, "verp_address": verp_address, "source": source}

    if _is_report(msg, "feedback-report") or any(p.get_content_type() == "message/feedback-report" for p in parts):
        return [BounceReport("ignore", "abuse or complaint feedback report (ARF), not a bounce", "other",
                             message_id=original_id, **common)]
    if _is_report(msg, "disposition-notification"):
        return [BounceReport("ignore", "read receipt (message disposition notification)", "other",
                             message_id=original_id, **common)]

    dsn_parts = [p for p in parts if p.get_content_type() in _DSN_TYPES]
    if dsn_parts:
        reports = []
        failed = [a.strip() for a in (_header(msg, "X-Failed-Recipients") or "").split(",") if "@" in a]
        for part in dsn_parts:
            per_message, recipients = _dsn_blocks(part)
            message_id = original_id or _msgid(per_message.get("x-original-message-id") or per_message.get("original-message-id"))
            message_id = message_id or _fallback_message_id(msg)
            for block in recipients:
                if "final-recipient" not in block and len(failed) == 1 and len(recipients) == 1:
                    block = {**block, "final-recipient": failed[0]}  # Exim names it in a header
                reports.append(_report_from_block(block, per_message, message_id, common))
        if reports:
            return reports

    heuristic = _heuristic(msg, parts, original_id, common)
    if heuristic:
        return heuristic
    unrecognised = BounceReport("ignore", "looks like a bounce, but no recipient status could be read: check it by hand",
                                "unrecognised", message_id=original_id, **common)
    if dsn_parts or _is_report(msg, "delivery-status") or _BOUNCE_SENDER.search(_header(msg, "From") or ""):
        return [unrecognised]
    if _is_auto_reply(msg):
        return [BounceReport("ignore", "auto-reply (out of office or similar)", "auto-reply", **common)]
    if _BOUNCE_SUBJECT.search(subject or ""):
        return [unrecognised]
    return [BounceReport("ignore", "not a delivery status notification", "other", **common)]


def _report_from_block(block: dict[str, str], per_message: dict[str, str], message_id: str | None,
                       common: dict) -> BounceReport:
    diagnostic = _clean_diagnostic(_strip_type(block.get("diagnostic-code")))
    status = _best_status(block.get("status"), diagnostic)
    action = (block.get("action") or "").strip().lower() or None
    if action is None and status is not None:
        action = {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    category, reason = classify_report(action, status, diagnostic)
    return BounceReport(
        category, reason, "dsn",
        recipient=_address(block.get("final-recipient")),
        original_recipient=_address(block.get("original-recipient")),
        action=action, status=status, diagnostic=diagnostic,
        remote_mta=_strip_type(block.get("remote-mta")),
        reporting_mta=_strip_type(block.get("reporting-mta") or per_message.get("reporting-mta")),
        message_id=message_id, **common)


# Long (complexity 21) for the same reason as parse_dsn: each MTA's plain-text bounce differs.
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
    return [BounceReport(category, reason, "heuristic", recipient=r, action=action, status=status,
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


def _verp(msg: Message) -> tuple[str | None, str | None]:
    """A VERP return path the bounce was addressed to: (token, the address a local=domain token names)."""
    for name in ("X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in msg.get_all(name) or []:
            match = _VERP.search(str(value))
            if match:
                token = match[1]
                local, eq, domain = token.rpartition("=")
                decoded = f"{local}@{domain}" if eq and local and _ADDRESS.fullmatch(f"{local}@{domain}") else None
                return token, decoded
    return None, None


def _is_auto_reply(msg: Message) -> bool:
    auto = (_header(msg, "Auto-Submitted") or "").lower()
    precedence = (_header(msg, "Precedence") or "").lower()
    return (auto.startswith("auto-replied") or precedence == "auto_reply" or msg.get("X-Autoreply") is not None
            or msg.get("X-Autorespond") is not None or bool(_AUTO_SUBJECT.search(_header(msg, "Subject") or "")))
