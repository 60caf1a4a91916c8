"""MIME bytes for one reader, built from a template encoded once per issue.

``MessageTemplate`` is made once per issue: the headers every copy shares are encoded, both
body parts are quoted-printable encoded, and the byte strings between the reader placeholders
are kept. For each reader, ``build`` encodes only that reader's few values and joins. Each
spliced value sits between quoted-printable soft line breaks, so the decoded body is exactly the
text with the value in place of the placeholder, and no line grows past 76 characters.

Every value bound for a header is refused (``HeaderInjectionError``) if it holds CR, LF or NUL;
it is never cleaned. After building, ``check_structure`` confirms, cheaply, that the header
block holds exactly the intended header names; ``verify`` re-parses a message in full with the
standard library and compares every header and both body parts with what was intended.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.message
import email.policy
import email.utils
import html as html_lib
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesParser
from typing import Any

from ..errors import HeaderInjectionError, HeaderValueError, MessageIntegrityError
from ..models import Mailbox
from .personalise import Placeholders, Recipient

CRLF = b"\r\n"
MAX_LINE = 998
_QP_LINE = 76
_UNSAFE = re.compile(r"[\r\n\x00]")
_ATOM_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$")
_HEADER_START = re.compile(rb"\r\n(?![ \t])")
_ENCODED_WORD_BYTES = 45  # 45 bytes -> 60 base64 characters: the word stays under RFC 2047's 75
_FEEDBACK_FIELD = re.compile(r"^[A-Za-z0-9._-]+$")
_EXTRA_NAME = re.compile(r"X-[A-Za-z0-9-]{1,60}")  # a further header of IssueHeaders.extra, read back from state
#: RFC 3834: the message is machine-made, so auto-responders should not answer it.
AUTO_SUBMITTED = "auto-generated"
#: Not a standard (RFC 2076 records it), but vacation programs and many autoresponders still read it.
PRECEDENCE = "bulk"


def refuse_line_breaks(field: str, value: str) -> str:
    """Return ``value`` if it is safe in a header; raise ``HeaderInjectionError`` otherwise."""
    if _UNSAFE.search(value):
        raise HeaderInjectionError(field, value)
    return value


def ascii_value(field: str, value: str) -> bytes:
    """Bytes of an address, URL or Message-ID for a header: one line and plain ASCII, or refused."""
    refuse_line_breaks(field, value)
    if not value.isascii():
        raise HeaderValueError(field, value, "must be ASCII (addresses and URLs are never encoded)")
    return value.encode("ascii")


def feedback_id(*fields: str) -> str:
    """Gmail's ``Feedback-ID`` value: up to four ``:``-separated fields, the sender id last.

    Each field must be non-empty ASCII letters, digits, '.', '_' or '-'; anything else (a colon
    would shift Gmail's fields, a line break would start a header) is refused, never cleaned.
    """
    value = ":".join(fields)
    refuse_line_breaks("Feedback-ID", value)
    if not 2 <= len(fields) <= 4:
        raise HeaderValueError("Feedback-ID", value, "must have two to four fields (Gmail reads at most four)")
    for field in fields:
        if not _FEEDBACK_FIELD.match(field):
            raise HeaderValueError("Feedback-ID", value,
                                   f"field {field!r} must be non-empty ASCII letters, digits, '.', '_' or '-'")
    return value


def encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 encoded-words for ``text``, split on character boundaries."""
    words, chunk = [], b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    if chunk or not words:
        words.append(chunk)
    return [f"=?utf-8?b?{binascii.b2a_base64(w, newline=False).decode('ascii')}?=" for w in words]


def encode_text_header(name: str, value: str) -> str:
    """An unstructured header value (Subject) as it goes on the wire, folded with CRLF.

    Printable ASCII without anything a reader would decode (``=?``) goes as it is, folded at
    spaces; anything else becomes encoded-words, so what a mail client shows is exactly ``value``.
    """
    refuse_line_breaks(name, value)
    foldable = all(len(word) <= 78 - len(name) - 2 for word in value.split(" "))
    if value.isascii() and value.isprintable() and "=?" not in value and "  " not in value and value == value.strip() and foldable:
        return _fold_at_spaces(len(name) + 2, value)
    return "\r\n ".join(encoded_words(value))


def _fold_at_spaces(used: int, value: str) -> str:
    lines, line = [], ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > 78:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)  # unfolding drops only the CRLF, so the space between words stays


def display_name(field: str, name: str) -> str:
    """A phrase (the name in ``Name <address>``) as an atom, a quoted string or encoded-words."""
    refuse_line_breaks(field, name)
    if name.isascii() and name.isprintable() and "=?" not in name and name == name.strip():
        if _ATOM_SAFE.match(name) and "  " not in name:  # parsers fold runs of spaces between atoms
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(encoded_words(name))


def encode_mailbox(field: str, name: str, address: str) -> str:
    """``Name <address>`` for an address header, the name quoted or encoded as it needs."""
    ascii_value(field, address)
    return f"{display_name(field, name)} <{address}>" if name else address


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)


def _soft_break(encoded: bytes) -> bytes:
    """End ``encoded`` with a soft line break, keeping its last line within 76 characters."""
    if not encoded or encoded.endswith(CRLF):
        return encoded
    head, separator, last = encoded.rpartition(CRLF)
    prefix = head + separator
    if len(last) + 1 <= _QP_LINE:
        return prefix + last + b"=" + CRLF
    cut = _QP_LINE - 3
    while b"=" in last[cut - 2:cut]:  # never split an =XX escape
        cut -= 1
    return prefix + last[:cut] + b"=" + CRLF + last[cut:] + b"=" + CRLF


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class IssueHeaders:
    """The header values every copy of an issue shares."""

    sender: Mailbox
    reply_to: str | None
    subject: str
    date: dt.datetime
    list_name: str
    list_id: str
    feedback_id: str  # see feedback_id(); the same for every issue of an edition
    extra: tuple[tuple[str, str], ...] = ()  # further (name, value) headers, e.g. a test-copy marker

    def stored(self) -> dict[str, object]:
        """These values as plain JSON data, for the issue's stored composition (``from_stored`` reads it)."""
        return {
            "sender": {"name": self.sender.name, "address": self.sender.address},
            "reply_to": self.reply_to,
            "subject": self.subject,
            "date": self.date.isoformat(),
            "list_name": self.list_name,
            "list_id": self.list_id,
            "feedback_id": self.feedback_id,
            "extra": [[name, value] for name, value in self.extra],
        }

    @classmethod
    def from_stored(cls, data: object, zone: dt.tzinfo) -> IssueHeaders:
        """The headers ``stored`` wrote, the Date in ``zone`` (the edition's). ValueError names a bad field.

        The values are not trusted for being stored: MessageTemplate refuses, as ever, any that
        cannot go in a header.
        """
        fields = stored_fields(data, "headers")
        sender = stored_fields(fields.get("sender"), "headers.sender")
        extra = fields.get("extra")
        if not isinstance(extra, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in extra):
            raise ValueError("headers.extra must be a list of [name, value] strings")
        for name, _ in extra:
            # Only digest's own markers go there; a stored name could otherwise add any header (a Bcc).
            if not _EXTRA_NAME.fullmatch(name):
                raise ValueError(f"headers.extra names {name!r}, not an X- header name")
        try:
            date = dt.datetime.fromisoformat(stored_value(fields, "date", str, "headers"))
        except ValueError:
            raise ValueError("headers.date is not an ISO 8601 time") from None
        if date.tzinfo is None:
            raise ValueError("headers.date has no UTC offset")
        return cls(
            sender=Mailbox(stored_value(sender, "name", str, "headers.sender"),
                           stored_value(sender, "address", str, "headers.sender")),
            reply_to=stored_value(fields, "reply_to", (str, type(None)), "headers"),
            subject=stored_value(fields, "subject", str, "headers"),
            date=date.astimezone(zone),
            list_name=stored_value(fields, "list_name", str, "headers"),
            list_id=stored_value(fields, "list_id", str, "headers"),
            feedback_id=stored_value(fields, "feedback_id", str, "headers"),
            extra=tuple((name, value) for name, value in extra),
        )


def stored_fields(data: object, where: str) -> dict[str, object]:
    """``data`` as a JSON object of a stored composition; ValueError naming ``where`` otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object")
    return data


def stored_value(fields: dict[str, object], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """``fields[key]`` when it is of ``kind``; ValueError naming the field otherwise (a bool is no int)."""
    name = f"{where}.{key}" if where else key
    if key not in fields:
        raise ValueError(f"{name} is missing")
    value = fields[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"{name} must be {' or '.join(k.__name__ for k in kinds)}, not {type(value).__name__}")
    return value



class MessageTemplate:
    """One issue's message, encoded once; ``build`` makes each reader's copy."""

    def __init__(self, headers: IssueHeaders, text: str, html: str, placeholders: Placeholders, boundary: str) -> None:
        self.headers = headers
        self.text = _normalise_newlines(text)
        self.html = _normalise_newlines(html)
        self.placeholders = placeholders
        self.boundary = boundary
        self._pattern = placeholders.pattern()
        subject = encode_text_header("Subject", headers.subject)
        list_name = display_name("List-Id", headers.list_name)
        self._head_before_to = (
            f"From: {encode_mailbox('From', headers.sender.name, headers.sender.address)}\r\nTo: "
        ).encode("ascii")
        shared = [
            f"Subject: {subject}",
            f"Date: {email.utils.format_datetime(headers.date)}",
        ]
        self._head_middle = ("\r\n" + "\r\n".join(shared) + "\r\nMessage-ID: ").encode("ascii")
        after = []
        if headers.reply_to:
            after.append(f"Reply-To: {ascii_value('Reply-To', headers.reply_to).decode()}")
        after.append(f"List-Id: {list_name} <{ascii_value('List-Id', headers.list_id).decode()}>")
        after += [f"{name}: {encode_text_header(name, value)}" for name, value in headers.extra]
        self._head_after_mid = ("\r\n" + "\r\n".join(after) + "\r\nList-Unsubscribe: <").encode("ascii")
        tail = [
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            f"Feedback-ID: {ascii_value('Feedback-ID', headers.feedback_id).decode()}",
            f"Auto-Submitted: {AUTO_SUBMITTED}",
            f"Precedence: {PRECEDENCE}",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            "",
        ]
        self._head_tail = ("\r\n".join(tail)).encode("ascii")
        part_head = "--{b}\r\nContent-Type: text/{sub}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        self._text_segments, self._text_slots = self._split(self.text)
        self._html_segments, self._html_slots = self._split(self.html)
        self._text_head = part_head.format(b=boundary, sub="plain").encode("ascii")
        self._html_head = ("\r\n" + part_head.format(b=boundary, sub="html")).encode("ascii")
        self._end = f"\r\n--{boundary}--\r\n".encode("ascii")
        self.header_names = ["From", "To", "Subject", "Date", "Message-ID"]
        if headers.reply_to:
            self.header_names.append("Reply-To")
        self.header_names += ["List-Id", *(name for name, _ in headers.extra),
                              "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID", "Auto-Submitted",
                              "Precedence", "MIME-Version", "Content-Type"]

    def _split(self, body: str) -> tuple[list[bytes], list[str]]:
        pieces = self._pattern.split(body)
        literals, fields = pieces[0::2], [f.lower() for f in pieces[1::2]]
        segments = [_soft_break(_qp(piece)) for piece in literals[:-1]] + [_qp(literals[-1])]
        return segments, fields

    @staticmethod
    def _splice(segments: list[bytes], slots: list[str], values: dict[str, bytes]) -> bytes:
        out = [segments[0]]
        for slot, segment in zip(slots, segments[1:]):
            out.append(values[slot])
            out.append(segment)
        return b"".join(out)

    def build(self, recipient: Recipient) -> bytes:
        """The finished message for one reader."""
        to = encode_mailbox("To", recipient.name, recipient.email)
        message_id = ascii_value("Message-ID", recipient.message_id)
        unsubscribe_url = ascii_value("List-Unsubscribe", recipient.unsubscribe_url)
        unsubscribe_mailto = ascii_value("List-Unsubscribe", recipient.unsubscribe_mailto)
        raw = recipient.values()
        for field, value in raw.items():
            refuse_line_breaks(field, value)
        text_values = {k: _soft_break(_qp(v)) for k, v in raw.items()}
        html_values = {k: _soft_break(_qp(html_lib.escape(v, quote=True))) for k, v in raw.items()}
        return b"".join((
            self._head_before_to,
            to.encode("ascii"),
            self._head_middle,
            message_id,
            self._head_after_mid,
            unsubscribe_url,
            b">,\r\n <",
            unsubscribe_mailto,
            b">\r\n",
            self._head_tail,
            self._text_head,
            self._splice(self._text_segments, self._text_slots, text_values),
            self._html_head,
            self._splice(self._html_segments, self._html_slots, html_values),
            self._end,
        ))

    def personalised_bodies(self, recipient: Recipient) -> tuple[str, str]:
        """The decoded text and HTML bodies one reader should receive (for verification)."""
        raw = recipient.values()

        def fill(body: str, escape: bool) -> str:
            return self._pattern.sub(lambda m: html_lib.escape(raw[m.group(1).lower()], quote=True) if escape else raw[m.group(1).lower()], body)

        return fill(self.text, False), fill(self.html, True)

    def check_structure(self, data: bytes, *, whole: bool = False) -> None:
        """Cheap guard for every copy: exactly the intended headers, CRLF only, short lines.

        The header block (where each reader's values go) is always checked. The body is the
        per-issue encoding plus quoted-printable values, so ``whole=True`` (once per issue,
        and in tests) is enough to cover its bytes.
        """
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            raise MessageIntegrityError("message has no end of headers")
        head = data[:head_end]
        names = [line.split(b":", 1)[0].decode("ascii", "replace") for line in _HEADER_START.split(head)]
        if names != self.header_names:
            raise MessageIntegrityError(f"header set {names} is not the intended {self.header_names}")
        scope = data if whole else head
        if scope.count(b"\n") != scope.count(CRLF) or scope.count(b"\r") != scope.count(CRLF):
            raise MessageIntegrityError("bare CR or LF in message")
        if b"\x00" in scope:
            raise MessageIntegrityError("NUL byte in message")
        if max(map(len, scope.split(CRLF))) > MAX_LINE:
            raise MessageIntegrityError(f"a line is longer than {MAX_LINE} octets")

    def verify(self, data: bytes, recipient: Recipient) -> None:
        """Full check of one copy: parse it back and compare every header and both bodies."""
        self.check_structure(data, whole=True)
        message = BytesParser(policy=email.policy.default).parsebytes(data)
        if message.defects:
            raise MessageIntegrityError(f"parser found defects: {message.defects}")
        expected_text, expected_html = self.personalised_bodies(recipient)

        def same(name: str, got: object, want: object) -> None:
            if got != want:
                raise MessageIntegrityError(f"{name} parsed back as {got!r}, intended {want!r}")

        same("header names", list(message.keys()), self.header_names)
        for name in ("From", "To"):
            if len(message.get_all(name, [])) != 1 or len(message[name].addresses) != 1:
                raise MessageIntegrityError(f"{name} must hold exactly one address")
        frm, to = message["From"].addresses[0], message["To"].addresses[0]
        same("From", (_display(message, "From", frm.display_name), frm.addr_spec),
             (self.headers.sender.name, self.headers.sender.address))
        same("To", (_display(message, "To", to.display_name), to.addr_spec), (recipient.name, recipient.email))
        same("Subject", str(message["Subject"]), self.headers.subject)
        same("Message-ID", str(message["Message-ID"]), recipient.message_id)
        same("List-Unsubscribe", str(message["List-Unsubscribe"]),
             f"<{recipient.unsubscribe_url}>, <{recipient.unsubscribe_mailto}>")
        same("List-Unsubscribe-Post", str(message["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click")
        same("List-Id", str(message["List-Id"]).rsplit("<", 1)[-1], f"{self.headers.list_id}>")
        same("Feedback-ID", str(message["Feedback-ID"]), self.headers.feedback_id)
        same("Auto-Submitted", str(message["Auto-Submitted"]), AUTO_SUBMITTED)
        same("Precedence", str(message["Precedence"]), PRECEDENCE)
        same("Content-Type", message.get_content_type(), "multipart/alternative")
        parts = list(message.iter_parts())
        same("parts", [p.get_content_type() for p in parts], ["text/plain", "text/html"])
        same("text part", parts[0].get_content().replace("\r\n", "\n"), expected_text)
        same("HTML part", parts[1].get_content().replace("\r\n", "\n"), expected_html)


def _display(message: email.message.EmailMessage, name: str, parsed: str) -> str:
    """The display name as an RFC 2047 reader sees it.

    CPython's address parser keeps the white space between adjacent encoded-words of a display
    name, which RFC 2047 section 6.2 says to drop (its Subject parser drops it correctly); so an
    encoded name is decoded here with ``decode_header``, which follows the RFC.
    """
    raw = next((str(value) for key, value in message.raw_items() if key.lower() == name.lower()), "")
    phrase = raw.rsplit("<", 1)[0].strip()
    if "=?" not in phrase:
        return parsed
    return str(make_header(decode_header(phrase)))

