"""Editors' control of one issue: hold, pause, resume and cancel, and what a sender may still do.

    `digest hold|pause|resume|cancel` -> the rules below -> the issue's status and an action row,
    in one transaction -> every sender sees it at its next 'sending' commit (the ledger refuses to
    start a copy of an issue that is not open), so no copy starts once the command has returned

An issue's status is what senders obey: ``open`` (copies go), ``held`` (kept from starting, or
stopped, by a person), ``paused`` (stopped mid-send, by a person or the circuit breaker),
``cancelled`` (final: copies not yet started are cancelled), ``done``. A hold can be placed
before the issue exists; the send that would create it is then refused until a resume.
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket
import time
from contextlib import closing
from dataclasses import dataclass

from ..errors import DigestError, InputError
from ..models import Edition, Settings
from ..state.ledger import Action, IssueRecord, Ledger

BREAKER = "circuit breaker"  # the actor of the breaker's pauses: `digest send` may reopen those
ACTIONS = ("hold", "pause", "resume", "cancel")
_PAST = {"hold": "held", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}
SETTLE_WAIT = 15.0  # seconds a cancel waits for copies in flight to get their relay's answer


class IssueStopped(DigestError):
    """A person held, paused or cancelled the issue: no sender (re)starts it."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one command did, for the operator."""

    action: Action
    status: str | None  # the issue's status now; None: the issue does not exist yet
    counts: dict[str, int]
    in_flight: int = 0  # cancel: copies still in 'sending' when it stopped waiting (outcome unknown yet)
    message: str = ""


def default_actor() -> str:
    """Who is acting, when ``--by`` does not say: the login and the machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def why_stopped(ledger: Ledger, edition: str, date: dt.date) -> str | None:
    """Why no sender may (re)open issue (edition, date): cancelled, or held or paused by a person
    and not resumed since. None when a sender may: never acted on, resumed, or only the circuit
    breaker paused it (`digest send` is how an operator resumes that)."""
    actions = ledger.actions(edition, date)
    cancel = next((a for a in actions if a.action == "cancel"), None)
    if cancel is not None:
        return f"cancelled {describe(cancel)}; a cancelled issue is never sent"
    last = actions[-1] if actions else None
    if last is not None and last.action in ("hold", "pause") and last.actor != BREAKER:
        return f"{_PAST[last.action]} {describe(last)}; `digest resume` lets it go on"
    return None


def describe(action: Action) -> str:
    """``by desk@example.org at 2026-12-04 06:01:09 UTC (reason)``."""
    when = dt.datetime.fromtimestamp(action.at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"by {action.actor} at {when}" + (f" ({action.reason})" if action.reason else "")


def act(settings: Settings, edition: Edition, date: dt.date, action: str, actor: str, reason: str | None,
        *, settle_wait: float = SETTLE_WAIT) -> ActionResult:
    """Carry out ``action`` on issue (edition, date) as ``actor``; ``InputError`` when it does not apply."""
    if action not in ACTIONS:
        raise InputError(f"unknown action '{action}' (one of {', '.join(ACTIONS)})")
    if reason is not None and ("\r" in reason or "\n" in reason):
        raise InputError("--reason: one line, please (it is shown in status tables and alerts)")
    with closing(Ledger(settings.state_db)) as ledger:
        record = ledger.find_issue(edition.slug, date)
        name = f"{edition.slug} {date}"
        cancelled = next((a for a in ledger.actions(edition.slug, date) if a.action == "cancel"), None)
        if cancelled is not None or (record is not None and record.status == "cancelled"):
            raise InputError(f"{name} was cancelled{' ' + describe(cancelled) if cancelled else ''}: that is final")
        if record is not None and record.status == "done":
            raise InputError(f"{name} has finished sending: nothing to {action}")
        if record is None:
            return _before_creation(ledger, edition, date, action, actor, reason)
        return _on_issue(ledger, record, action, actor, reason, settle_wait)


def _before_creation(ledger: Ledger, edition: Edition, date: dt.date, action: str, actor: str,
                     reason: str | None) -> ActionResult:
    name = f"{edition.slug} {date}"
    held = why_stopped(ledger, edition.slug, date)
    if action == "pause":
        raise InputError(f"{name} has not started: `digest hold` keeps it from starting")
    if action == "resume" and held is None:
        raise InputError(f"{name} is not held: nothing to resume")
    if action == "hold" and held is not None:
        raise InputError(f"{name} is already {held.split(';')[0]}")
    done = ledger.record_action(edition.slug, date, action, actor, reason)
    message = {"hold": f"{name} held before it was created: no sender starts it until `digest resume`",
               "resume": f"{name} no longer held: it goes at its send time, or at once (within a minute, by "
                         "the scheduler, or by `digest send`) if that has passed",
               "cancel": f"{name} cancelled before it was created: it is never sent"}[action]
    return ActionResult(done, None, {}, message=message)


def _on_issue(ledger: Ledger, record: IssueRecord, action: str, actor: str, reason: str | None,
              settle_wait: float) -> ActionResult:
    name = f"{record.edition} {record.issue_date}"
    status = record.status
    # A pause of the circuit breaker's may be taken over by a person's hold or pause; their own may not.
    by_person = status == "held" or (status == "paused" and why_stopped(ledger, record.edition, record.issue_date))
    if action in ("hold", "pause") and by_person:
        raise InputError(f"{name} is already {status}: no copy of it is being started")
    if action == "resume" and status not in ("held", "paused"):
        raise InputError(f"{name} is {status}, not held or paused: nothing to resume")
    if action == "cancel":
        return _cancel(ledger, record, actor, reason, settle_wait)
    new_status = {"hold": "held", "pause": "paused", "resume": "open"}[action]
    done = ledger.record_action(record.edition, record.issue_date, action, actor, reason, status=new_status,
                                delivered=ledger.counts(record.id)["sent"])
    counts = ledger.counts(record.id)
    message = (f"{name} {_PAST[action]}: no copy starts from now on, in any process; {counts['sending']} in flight "
               "finish; `digest resume` goes on" if action != "resume" else
               f"{name} resumed: running `digest worker`s take it up at once, the scheduler within a minute, "
               "or `digest send` now")
    return ActionResult(done, new_status, counts, message=message)


def _cancel(ledger: Ledger, record: IssueRecord, actor: str, reason: str | None, settle_wait: float) -> ActionResult:
    """Stop the issue for good; wait for copies in flight to be answered; record how many got it."""
    name = f"{record.edition} {record.issue_date}"
    ledger.set_status(record.id, "cancelled", f"cancel by {actor}" + (f": {reason}" if reason else ""))
    cancelled = ledger.cancel_copies(record.id)
    waited_until = time.monotonic() + settle_wait
    counts = ledger.counts(record.id)
    while counts["sending"] and time.monotonic() < waited_until:
        time.sleep(0.2)
        counts = ledger.counts(record.id)
    # A copy that was deferred by then, or given back by its sender, is cancelled too.
    cancelled += ledger.cancel_copies(record.id)
    counts = ledger.counts(record.id)
    done = ledger.record_action(record.edition, record.issue_date, "cancel", actor, reason, delivered=counts["sent"])
    message = (f"{name} cancelled: {counts['sent']} reader(s) had received it; {cancelled} cop(ies) cancelled"
               + (f"; {counts['sending']} still in flight after {settle_wait:.0f} s (see `digest status`)"
                  if counts["sending"] else ""))
    return ActionResult(done, "cancelled", counts, in_flight=counts["sending"], message=message)
