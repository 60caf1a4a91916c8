"""Every SMTP outcome is classified here, and only here.

    2xx after the body ............................ sent
    4xx at any step, and 552 ...................... deferred: retried with backoff in the deadline
    421 or a dropped connection before the body ... deferred, on a fresh connection, at once
    connection lost or timed out after the body ... uncertain: the server may have it
    5xx with enhanced code 5.1.x (or 550/551/553
        without one) .............................. failed, hard bounce: the reader is suppressed
    5xx with enhanced code 5.7.x .................. failed, policy rejection: reader kept, counted
                                                    by the issue's circuit breaker
    other 5xx ..................................... failed
    503 (bad sequence of commands) before the body  the session is confused, not the reader: the
                                                    connection is dropped and the copy tried again at
                                                    once on a new one, its attempt not counted; a 503
                                                    on the new connection too stops the send
    5xx to MAIL FROM .............................. halt: the relay refuses our sender, so every copy
                                                    would fail; the send stops, readers stay pending
    authentication refused, no STARTTLS ........... the send stops at once (transport.SmtpSetupError)

A failed copy also records why, as one of ``FAILURE_CLASSES``: the SMTP verdicts above, plus the
two the dispatch loop decides (``retries``: max_attempts used up; ``deadline``: the issue's
delivery deadline passed) and ``dsn`` (a bounce report for a copy the relay had accepted).

``parse_reply`` is the one parser of reply codes and enhanced status codes (RFC 3463): the
verdicts above use it, and so do bounce reports (readers/bounces/dsn.py), which only decide what a
parsed code means for a bounce (``classify_report``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Phase = Literal["connect", "mail", "rcpt", "data", "body"]
# Why a copy failed, as `digest status` and its CSV export name it.
FAILURE_CLASSES = {
    "hard_bounce": "hard bounce",
    "policy": "policy rejection",
    "permanent": "permanent failure",
    "retries": "gave up after retries",
    "deadline": "deadline passed",
    "dsn": "bounced after delivery",
}
# The two codes of an SMTP reply: the basic reply code (RFC 5321) and the enhanced status code
# (RFC 3463), as a multi-line reply writes them ("550-5.1.1 ..." and "550 5.1.1 ...").
_CODE = r"(?P<code>[245]\d\d)"
_STATUS = r"(?P<status>[245]\.\d{1,3}\.\d{1,3})(?!\.?\d)"
_AT_START = re.compile(rf"\s*(?:{_CODE}\b(?:-|\s+)?)?(?:{_STATUS})?")
_QUOTED = re.compile(rf"(?<![\w.])(?:{_CODE}(?:-|\s+))?{_STATUS}")


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """The codes of one SMTP reply as ``parse_reply`` found them, and where in the text."""

    code: int | None      # the basic reply code, 550
    status: str | None    # the enhanced status code as written, "5.1.1"
    start: int = 0
    end: int = 0

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        """The enhanced status code as (class, subject, detail), (5, 1, 1)."""
        if self.status is None:
            return None
        klass, subject, detail = self.status.split(".")
        return int(klass), int(subject), int(detail)


def parse_reply(text: str | None, pos: int = 0, *, search: bool = False) -> ReplyCode | None:
    """The reply code and enhanced status code of an SMTP reply, the one parser of both.

    By default the reply is read from the start of ``text[pos:]`` (white space allowed): either
    code may be missing (a reply's text after its code starts with the enhanced code alone; some
    servers give none). With ``search`` the first reply quoted at or after ``pos`` anywhere in
    free text (a DSN's fields, a plain bounce's body) is found instead; there it must carry an
    enhanced code, since a bare three-digit number in prose is not a reply. None: nothing found.
    """
    text = text or ""
    match = (_QUOTED.search if search else _AT_START.match)(text, pos)
    if match is None or (match["code"] is None and match["status"] is None):
        return None
    code = int(match["code"]) if match["code"] else None
    return ReplyCode(code, match["status"], match.start(), match.end())


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """What the server said (code 0 when it said nothing: dropped connection or timeout)."""

    code: int
    text: str
    phase: Phase
    body_sent: bool = False  # the message body had been handed to the connection

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        """The enhanced status code that starts the reply's text, (5, 1, 1)."""
        found = parse_reply(self.text)
        return found.enhanced if found is not None else None


@dataclass(frozen=True, slots=True)
class Verdict:
    state: Literal["sent", "deferred", "failed", "uncertain"]
    reason: str
    suppress: bool = False  # hard bounce: stop sending to this reader
    policy: bool = False  # counts toward the circuit breaker
    reconnect: bool = False  # the connection is unusable; open a new one
    retry_now: bool = False  # a connection problem, not the reader's: try again at once
    retry_fresh: bool = False  # the session's problem: once more on a new connection, uncharged; then halt
    halt: bool = False  # the problem is ours (sender refused): stop the send, charge no reader
    failure: str | None = None  # for state 'failed': a key of FAILURE_CLASSES


# Complexity 18: one branch per row of the table in the module's docstring, in its order, so the
# two can be read side by side; splitting it would hide the order the rows are tried in.
def classify_reply(reply: SmtpReply) -> Verdict:
    """The one place that turns an SMTP reply (or its absence) into a delivery state."""
    code = reply.code
    if code == 0:
        if reply.body_sent:
            return Verdict("uncertain", "connection lost after the message body; the server may have it", reconnect=True)
        return Verdict("deferred", f"connection lost during {reply.phase}", reconnect=True, retry_now=True)
    if 200 <= code < 300:
        return Verdict("sent", "accepted")
    if code == 421:
        return Verdict("deferred", "server closing the connection (421)", reconnect=True, retry_now=True)
    if code == 503:
        return Verdict("deferred", "the relay says the command sequence was wrong (503)", reconnect=True, retry_now=True,
                       retry_fresh=not reply.body_sent)
    if 500 <= code < 600 and reply.phase == "mail":
        return Verdict("deferred", f"the relay refused the envelope sender ({code})", halt=True)
    if 400 <= code < 500 or code == 552:
        return Verdict("deferred", f"temporary failure ({code})")
    if 500 <= code < 600:
        enhanced = reply.enhanced
        if enhanced is not None and enhanced[1] == 1:
            return Verdict("failed", f"hard bounce ({code} {'.'.join(map(str, enhanced))})", suppress=True,
                           failure="hard_bounce")
        if enhanced is not None and enhanced[1] == 7:
            return Verdict("failed", f"policy rejection ({code} {'.'.join(map(str, enhanced))})", policy=True,
                           failure="policy")
        if enhanced is None and code in (550, 551, 553) and reply.phase == "rcpt":
            return Verdict("failed", f"hard bounce ({code})", suppress=True, failure="hard_bounce")
        return Verdict("failed", f"permanent failure ({code})", failure="permanent")
    return Verdict("deferred", f"unexpected reply code {code}", reconnect=True)


def failure_of_record(code: int | None, text: str | None) -> str:
    """The failure class of a copy failed before classes were recorded, from its stored reply.

    The texts matched are the ones earlier versions of send.py, ledger.py and bounces.py wrote.
    """
    text = text or ""
    if text.startswith("gave up: the issue's delivery deadline passed"):
        return "deadline"
    if text.startswith("gave up after"):
        return "retries"
    if text.startswith("bounced after it was sent"):
        return "dsn"
    if code is not None and 500 <= code < 600:
        verdict = classify_reply(SmtpReply(code, text, "rcpt"))
        if verdict.failure is not None:
            return verdict.failure
    return "permanent"
