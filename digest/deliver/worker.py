"""`digest worker`: a sender that takes copies of any open issue from the shared state database.

    beat -> open issues with copies due that no live sender holds -> per issue: rebuild its copies
    from the composition kept with it (no story file is read) -> claim batches and send them
    (send.Dispatcher, the same loop `digest send` runs) -> poll again

Any number of workers, on any machine that reaches the database and the relays, share an issue:
each claims a batch at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) on a lease it renews, so
a worker that dies gives its batch back when the lease lapses. A worker never reopens an issue a
person or the circuit breaker paused, and never creates one: `digest send` and the scheduler do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field

from ..compose.pipeline import ComposedIssue
from ..compose.planning import recorded_composition
from ..errors import DigestError
from ..events import event
from ..models import Settings
from ..state.ledger import Ledger
from .copies import ledger_envelope_sender
from .relays import RelayPool
from .send import EDITOR_STOP, Dispatcher, Notice

BEAT_EVERY = 10.0  # seconds between a worker's "alive" records (digest status lists workers seen in the last minute)


@dataclass
class WorkerReport:
    """What one worker did: outcome counts per issue (edition, date), and why it stopped."""

    name: str
    issues: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def sent(self) -> int:
        return sum(counts.get("sent", 0) for counts in self.issues.values())


def worker_name(name: str | None) -> str:
    """The name a worker records itself under: the operator's, else host:pid."""
    return name or f"{socket.gethostname()}:{os.getpid()}"


async def run_worker(settings: Settings, *, stop: asyncio.Event, issue_id: int | None = None,
                     name: str | None = None, poll: float = 2.0, relays: RelayPool | None = None,
                     clock: Callable[[], float] = time.time) -> WorkerReport:
    """Send copies of open issues until ``stop`` is set; with ``issue_id``, of that issue only, and
    return once none of its copies is due and free (the `digest send` that started it carries the rest).

    ``name`` is recorded with each claim and beat; an operator-given name must not contain ':'
    (host:pid names are how a sender on this machine is known to be dead without waiting for its lease).
    """
    relays = relays or RelayPool(settings.smtp_relays(), settings.delivery)
    report = WorkerReport(worker_name(name))
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    include_uncertain = settings.delivery.uncertain == "resend"
    composed_issues: dict[int, ComposedIssue] = {}
    with closing(Ledger(settings.state_db)) as ledger:
        try:
            while not stop.is_set():
                ledger.beat(report.name, clock(), issue_id, report.sent, started)
                due = ledger.issues_with_work(clock(), include_uncertain=include_uncertain)
                if issue_id is not None:
                    due = [i for i in due if i == issue_id]
                    if not due:
                        break
                progressed = False
                for due_id in due:
                    if stop.is_set() or report.stopped:
                        break
                    progressed |= await _send_share(settings, ledger, due_id, report, stop=stop, relays=relays,
                                                    name=name, clock=clock, composed_issues=composed_issues)
                if report.stopped or (issue_id is not None and not progressed):
                    break
                if not progressed:  # nothing due, or nothing this worker could send: look again later
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=poll)
                    except asyncio.TimeoutError:
                        pass
        finally:
            ledger.forget_worker(report.name)
            await relays.close(polite=not stop.is_set())
    return report


async def _send_share(settings: Settings, ledger: Ledger, issue_id: int, report: WorkerReport, *,
                      stop: asyncio.Event, relays: RelayPool, name: str | None, clock: Callable[[], float],
                      composed_issues: dict[int, ComposedIssue]) -> bool:
    """Send what this worker can claim of one issue now, rebuilt from its kept composition; whether
    any copy was settled."""
    found = ledger.issue_by_id(issue_id)
    if found is None:
        return False
    record, _ = found
    fields = {"worker": report.name, "edition": record.edition, "date": record.issue_date.isoformat()}
    try:
        edition = settings.edition(record.edition)
    except KeyError:
        event("worker.skipped", logging.WARNING, detail="an open issue of an edition no longer in digest.toml", **fields)
        return False
    try:
        # Rebuilt once per issue, not each time the worker comes back to it (the kept composition never changes).
        composed = composed_issues.get(issue_id) or recorded_composition(settings, edition, record.issue_date, ledger)
    except DigestError as exc:
        event("worker.skipped", logging.ERROR, detail=str(exc), **fields)
        return False
    if composed is None:  # an older digest's issue without a kept composition: `digest send` composes it once
        event("worker.skipped", logging.WARNING, detail="the issue has no kept composition; `digest send` it once",
              **fields)
        return False
    composed_issues[issue_id] = composed

    def tell(notice: Notice) -> None:
        event(notice.event, logging.INFO if notice.event == "relay.reachable" else logging.WARNING,
              detail=notice.text, **fields)

    last_beat = clock()

    def beat(counts: dict[str, int], total: int) -> None:
        nonlocal last_beat
        now = clock()
        if now - last_beat >= BEAT_EVERY:
            last_beat = now
            ledger.beat(report.name, now, issue_id, report.sent + counts.get("sent", 0), "")

    dispatcher = Dispatcher(composed, ledger, record, relays, settings.delivery,
                            envelope_sender=ledger_envelope_sender(settings, composed), stop=stop, progress=beat,
                            clock=clock, wait_for_retries=False, notify=tell, deadline=ledger.deadline(issue_id),
                            reopen=False, owner=name, wait_for_others=False)
    outcome = await dispatcher.run()
    key = (record.edition, record.issue_date.isoformat())
    counts = report.issues.setdefault(key, {})
    for state, n in outcome.this_run.items():
        counts[state] = counts.get(state, 0) + n
    if outcome.this_run:
        event("worker.share", **fields, **{k: v for k, v in outcome.this_run.items() if v})
    if outcome.stopped is not None and outcome.stopped.startswith(EDITOR_STOP):
        event("worker.issue_stopped", detail=outcome.stopped.removeprefix(EDITOR_STOP), **fields)
    elif outcome.stopped not in (None, "signal", "paused"):
        report.stopped = outcome.stopped  # a relay that refuses us (auth, TLS): every issue would meet it
        event("worker.stopped", logging.ERROR, detail=outcome.stopped, **fields)
    return bool(outcome.this_run)
