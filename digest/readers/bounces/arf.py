"""Complaints: ARF feedback reports (RFC 5965), what a mailbox provider sends when a reader presses "spam".

A report is a ``multipart/report; report-type=feedback-report`` with a ``message/feedback-report``
part (``Feedback-Type: abuse``, ``Original-Rcpt-To``, ...) and the original message or its
headers. The reader it is about is found like a bounce's (by the original's Message-ID first,
apply.py); the address is read only from ``Original-Rcpt-To``, since providers redact the
original's ``To``. A ``not-spam`` report (the reader took it back) is no complaint.
"""

from __future__ import annotations

from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from ..addresses import address_key

_REPORT_TYPE = "message/feedback-report"
_NOT_A_COMPLAINT = ("not-spam",)


def is_complaint(msg: Message, parts: list[Message]) -> bool:
    """Whether the message is an ARF feedback report (by its report type or by its report part)."""
    report_type = str(msg.get_param("report-type") or "").strip().lower()
    return (msg.get_content_type() == "multipart/report" and report_type == "feedback-report") or any(
        p.get_content_type() == _REPORT_TYPE for p in parts)


def read(msg: Message, parts: list[Message]) -> list[tuple[str, str, str | None, str]]:
    """(class, reason, the complaining reader's address or None, the Feedback-Type) for each
    address the report names, at least one."""
    fields = _fields(next((p for p in parts if p.get_content_type() == _REPORT_TYPE), None))
    feedback = (fields.get("feedback-type") or ["abuse"])[0].strip().lower() or "abuse"
    agent = (fields.get("user-agent") or [""])[0].strip()
    by = f" from {agent}" if agent else ""
    if feedback in _NOT_A_COMPLAINT:
        category, reason = "other", f"feedback report{by}: {feedback}, not a complaint"
    else:
        category, reason = "complaint", f"complaint{by} (Feedback-Type: {feedback}): the reader marked it as spam"
    recipients: dict[str, str] = {}  # address_key -> the address as written, in report order
    for value in fields.get("original-rcpt-to", []):
        address = value.strip().strip("<>").strip()
        if "@" in address:
            recipients.setdefault(address_key(address), address)
    return [(category, reason, r, feedback) for r in list(recipients.values()) or [None]]


def _fields(part: Message | None) -> dict[str, list[str]]:
    """The report part's fields, lower-cased names, every value (Original-Rcpt-To may repeat)."""
    if part is None:
        return {}
    payload = part.get_payload()
    if isinstance(payload, list):
        block = payload[0] if payload and isinstance(payload[0], Message) else None
    else:
        raw = part.get_payload(decode=True) or b""
        block = HeaderParser(policy=compat32).parsestr(raw.decode("utf-8", "replace").strip() + "\n")
    fields: dict[str, list[str]] = {}
    for name, value in (block.items() if block is not None else []):
        fields.setdefault(name.strip().lower(), []).append(" ".join(str(value).split()))
    return fields
