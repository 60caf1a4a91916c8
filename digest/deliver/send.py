"""The dispatch loop: every reader of an issue gets one copy, and the ledger knows what happened.

    create-or-find issue (audience frozen) -> mark 'sending' rows of a crashed run 'uncertain'
    -> pass over due copies with N workers (N: every relay's pool_size together)
       per copy: suppressed? -> build bytes (copies.copies) -> a relay's connection (relays.RelayPool: weights,
       per-relay rate limit, rest) -> MAIL/RCPT -> commit 'sending' -> DATA -> commit outcome and the relay
    -> wait for deferred copies while the deadline allows -> report

Nothing here decides what an SMTP reply means (outcomes.py does) or how bytes are built
(compose.py does). A second run for the same issue resumes it; it never starts another send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..compose.personalise import Recipient
from ..compose.pipeline import ComposedIssue
from ..models import DeliverySettings
from ..outcomes import SmtpReply, Verdict, classify_reply
from ..readers.addresses import address_key
from ..state.ledger import HELD, Delivery, IssueRecord, Ledger, Outcome, Starting
from .control import BREAKER, why_stopped
from .copies import Copy, copies
from .relays import AllResting, Lease, RelayPool
from .transport import RelayUnreachable, SmtpConnection, SmtpSetupError

STOP_GRACE = 10.0  # seconds in-flight copies get to finish after SIGINT/SIGTERM
Progress = Callable[[dict[str, int], int], None]  # (outcomes this run, copies due at the start)
NOTICE_EVERY = 600.0  # seconds before an unchanged notice is repeated
# When nothing else is due, how soon this sender looks again at the copies other senders hold: soon at
# first (a helper's last batch usually settles in a fraction of a second, and the whole send waits for
# it), then less often, up to once a second (a dead sender's lease can take a minute to lapse).
OTHERS_POLL_FIRST = 0.05
OTHERS_POLL = 1.0
FLUSH_EVERY = 0.25  # seconds an outcome waits at most for the next copy's commit to carry it


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the operator must hear while the send goes on: one line, and an event name for logs."""

    event: str  # relay.unreachable | relay.resting | relay.limit | relay.reachable | issue.deadline_passed
    text: str


Notify = Callable[[Notice], None]


def duration(seconds: float) -> str:
    """``45 s``, ``2 min``, ``6 h``: how a person says a wait."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.3g} h"


@dataclass
class SendReport:
    """What one run did, and where the issue stands."""

    issue: IssueRecord
    counts: dict[str, int]
    recovered: int = 0  # copies found in 'sending' from a crashed run
    stopped: str | None = None  # why the run ended early: 'signal', 'paused', EDITOR_STOP + why, or a fatal error
    this_run: dict[str, int] = field(default_factory=dict)
    relay_problem: str | None = None  # every relay was unreachable when the run ended: why, since when
    left_out: tuple[tuple[int, str], ...] = ()  # (line, reason) of subscriber rows the freeze could not use, still unfixed
    added: int = 0  # readers added this run because their left-out row had been fixed

    @property
    def complete(self) -> bool:
        return self.counts["pending"] == self.counts["deferred"] == self.counts["sending"] == self.counts["uncertain"] == 0

    @property
    def ok(self) -> bool:
        return self.complete and self.counts["failed"] == 0 and self.stopped is None


EDITOR_STOP = "editor: "  # prefix of ``stopped`` when a person held, paused or cancelled the issue
_SENDERS = itertools.count(1)
_LIVE: set[str] = set()  # this process's senders still running (a finished one's copies may be taken over)


def sender_name(prefix: str | None = None) -> str:
    """A name for one sender of one issue, unique across machines and processes: host:pid:n, or
    ``prefix``#n for a worker an operator named (judged alive by its lease alone, as on another machine)."""
    name = f"{prefix}#{next(_SENDERS)}" if prefix else f"{socket.gethostname()}:{os.getpid()}:{next(_SENDERS)}"
    _LIVE.add(name)
    return name


def sender_alive(owner: str) -> bool:
    """False only for a sender of this machine whose process has ended; True when it cannot be told."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return owner in _LIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def issue_deadline(send_time: dt.datetime, delivery: DeliverySettings) -> float:
    """When retries stop for an issue sent at ``send_time``: ``deadline_hours`` after it (epoch seconds)."""
    return send_time.timestamp() + delivery.deadline_hours * 3600


class _Breaker:
    """Pauses an issue when policy rejections (5.7.x) become a real share of this run's attempts."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.attempts = 0
        self.rejections = 0

    def record(self, verdict: Verdict) -> bool:
        """Count one attempt; True when the issue must pause."""
        self.attempts += 1
        self.rejections += verdict.policy
        return (self.rejections >= self.settings.breaker_min_rejections
                and self.rejections / self.attempts >= self.settings.breaker_ratio)


class Dispatcher:
    """Sends one composed issue to its frozen audience."""

    def __init__(self, composed: ComposedIssue, ledger: Ledger, record: IssueRecord, relays: RelayPool,
                 delivery: DeliverySettings, *, envelope_sender: str | Callable[[Delivery], str],
                 stop: asyncio.Event | None = None, progress: Progress | None = None,
                 clock: Callable[[], float] = time.time, wait_for_retries: bool = True,
                 notify: Notify | None = None, deadline: float | None = None, reopen: bool = True,
                 owner: str | None = None, wait_for_others: bool = True) -> None:
        self.composed = composed
        self.ledger = ledger
        self.record = record
        self.relays = relays
        self.delivery = delivery
        self.envelope_sender = envelope_sender
        self.stop = stop or asyncio.Event()
        self.progress = progress
        self.clock = clock
        self.wait_for_retries = wait_for_retries
        self.breaker = _Breaker(delivery)
        self.edition = composed.issue.edition.slug
        self.deadline = deadline if deadline is not None else issue_deadline(composed.issue.send_time, delivery)
        self.notify = notify
        self.relay_problem: str | None = None
        self._told: dict[str, tuple[str, float]] = {}
        self.stopped: str | None = None
        self.this_run: dict[str, int] = {}
        self.due_at_start = 0
        self.owner = sender_name(owner)
        self.reopen = reopen
        self.wait_for_others = wait_for_others
        self._others_poll = OTHERS_POLL_FIRST  # the next wait for other senders' copies
        # Outcomes of finished copies not yet written: the next 'sending' commit carries them (one
        # commit per copy at most). Until then the copy shows 'sending', so a crash leaves at most
        # one copy per connection in doubt, as before.
        self._outcomes: list[Outcome] = []
        self._starting: list[tuple[Starting, asyncio.Future[str]]] = []  # bodies waiting for their 'sending' commit

    async def run(self) -> SendReport:
        try:
            return await self._run()
        finally:
            _LIVE.discard(self.owner)

    async def _run(self) -> SendReport:
        recovered = self._start()
        while not self._halted():
            await self._pass()
            if self._halted() or not await self._wait_for_next_retry():
                break
        return self._finish(recovered)

    def _start(self) -> int:
        """Mark a crashed run's 'sending' copies uncertain, reopen the issue and count the copies due.

        Returns how many copies were recovered; warns when the deadline has already passed.
        """
        recovered = self.ledger.recover_interrupted(self.record.id, self.clock(), self._dead_senders())
        # `digest send` resumes an issue the circuit breaker paused; a worker never does, and nothing
        # reopens one a person held, paused or cancelled (the runner refuses those before this).
        if self.reopen and why_stopped(self.ledger, self.edition, self.composed.issue.date) is None:
            self.ledger.reopen(self.record.id)
        start = self.ledger.counts(self.record.id)
        self.due_at_start = start["pending"] + start["deferred"] + (start["uncertain"] if self.delivery.uncertain == "resend" else 0)
        if self.due_at_start and self.clock() >= self.deadline:
            self._tell(Notice("issue.deadline_passed", f"{self.edition} {self.composed.issue.date}: the issue's delivery "
                              f"deadline passed at {self._deadline_text()}; each of the {self.due_at_start} copies due "
                              "gets one attempt, a temporary failure (4xx, greylisting included) ends failed, and an "
                              "unreachable relay stops the send"))
        return recovered

    async def _wait_for_next_retry(self) -> bool:
        """Sleep until the next deferred copy is due; False when no other pass is to be made.

        Past the deadline, or with the next retry beyond it, the deferred copies are given up.
        While other senders hold copies of the issue (``wait_for_others``), it looks again after
        50 ms, then twice as long each time up to a second: their copies settle, or their lease
        lapses and this sender takes them over.
        """
        if self.wait_for_others and self.ledger.held_by_others(self.record.id, self.owner):
            if self._claimed:  # a pass that sent something: a new wait, which starts soon again
                self._others_poll = OTHERS_POLL_FIRST
            await self._wait(self._others_poll)
            self._others_poll = min(OTHERS_POLL, self._others_poll * 2)
            return not self.stop.is_set()
        next_at = self.ledger.next_retry_at(self.record.id, include_uncertain=self.delivery.uncertain == "resend")
        if next_at is None:
            return False
        if self.clock() >= self.deadline or next_at >= self.deadline:
            self.ledger.expire_deferred(self.record.id, "gave up: the issue's delivery deadline passed")
            return False
        if next_at == 0:
            # Found in doubt after this pass went by it (another sender died): another pass, unless
            # this one could claim nothing at all (the issue is no longer open), as the next would.
            return self._claimed
        if not self.wait_for_retries:
            return False
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, next_at - self.clock()))
        except asyncio.TimeoutError:
            pass
        return True

    def _finish(self, recovered: int) -> SendReport:
        """Close the issue when every copy has settled, and report this run."""
        if self.stop.is_set() and self.stopped is None:
            self.stopped = "signal"
        counts = self.ledger.counts(self.record.id)
        settled = all(counts[s] == 0 for s in ("pending", "sending", "deferred"))
        if self.stopped != "paused" and settled and (counts["uncertain"] == 0 or self.delivery.uncertain == "hold"):
            self.ledger.finish_issue(self.record.id)  # only an open one: a cancelled issue stays cancelled
        return SendReport(self.record, counts, recovered, self.stopped, self.this_run, self.relay_problem)

    async def _pass(self) -> None:
        """One sweep over the copies due now, with a worker per relay connection pulling from one buffer."""
        self._buffer: deque[Delivery] = deque()
        self._after = 0
        self._claimed = False  # this pass got at least one batch
        self._drained = asyncio.Event()  # the pass has nothing left to hand out
        workers = [asyncio.create_task(self._worker()) for _ in range(self.relays.size)]
        grace = asyncio.create_task(self._cancel_after_grace(workers))
        renewal = asyncio.create_task(self._keep_lease())
        flusher = asyncio.create_task(self._keep_flushing())
        try:
            # If this pass itself is cancelled (a scheduler shutting down), gather cancels the workers.
            results = await asyncio.gather(*workers, return_exceptions=True)
        except BaseException:
            self.relays.drop()
            raise
        finally:
            grace.cancel()
            renewal.cancel()
            flusher.cancel()
            self._commit_starting()  # none is left but cancelled ones: their bodies never go
            self._flush()  # before abandon: a finished copy must not be taken for an abandoned one
            # Every worker task has ended: a copy of ours still 'sending' was abandoned mid-delivery.
            self.ledger.abandon(self.owner)
            self.ledger.release_claims(self.owner)  # what this pass claimed and did not start, others may take now
        await self.relays.close(polite=not self.stop.is_set())  # no polite QUIT while shutting down
        failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if failures:
            raise failures[0]

    def _next(self) -> Delivery | None:
        """The next copy to attempt, or None when the pass is over. No await: workers cannot race."""
        if self._halted():
            return None
        while not self._buffer:
            claimed = self.ledger.claim(self.record.id, self.owner, self.clock(), self.delivery.lease_seconds,
                                        include_uncertain=self.delivery.uncertain == "resend", limit=self.delivery.batch,
                                        dead=self._dead_senders(), after_id=self._after, edition=self.edition)
            if not claimed.due and not claimed.suppressed:
                self._drained.set()
                return None
            self._after = claimed.last_id
            self._claimed = True
            for _ in claimed.suppressed:  # left before their copy went: never named to the relay
                self._count("suppressed")
            self._buffer.extend(claimed.due)
        return self._buffer.popleft()

    def _halted(self) -> bool:
        return self.stop.is_set() or self.stopped is not None

    def _dead_senders(self) -> list[str]:
        """Senders on this machine holding copies whose process is gone (killed): their copies are
        free (or, those in 'sending', in doubt) now, without waiting for their lease to lapse. Other
        machines' senders are judged by their lease alone."""
        return [owner for owner in self.ledger.claim_owners(self.record.id) if not sender_alive(owner)]

    async def _keep_lease(self) -> None:
        """Renew the lease on this pass's claimed copies at a third of its length, so it lapses only
        when this process stops (or stalls for longer than the lease)."""
        every = self.delivery.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            self.ledger.renew_claims(self.owner, self.clock() + self.delivery.lease_seconds)

    async def _start_body(self, starting: Starting) -> str:
        """'sending' (recorded), 'suppressed' or 'taken' for a copy whose body goes next.

        Copies that reach their body in the same turn of the event loop, or the next (on different
        connections), are recorded by one statement and one commit, with the outcomes waiting to
        be written: each body still goes only after its own 'sending' is committed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._starting.append((starting, future))
        if len(self._starting) == 1:
            # Committed one loop turn later than it could be: the replies that reached the other
            # connections meanwhile are read first, and their copies share this commit (1.9 copies
            # a commit -> 2.9 at 10,000 readers and 8 connections; 7% less CPU for the whole send).
            # Waiting a turn more gathered 3.6 a commit but no more speed.
            loop.call_soon(loop.call_soon, self._commit_starting)
        return await future

    def _commit_starting(self) -> None:
        batch = [(starting, future) for starting, future in self._starting if not future.cancelled()]
        self._starting = []
        if not batch:
            return
        outcomes, self._outcomes = self._outcomes, []
        try:
            results = self.ledger.mark_sending_many([starting for starting, _ in batch], self.edition, self.owner,
                                                    outcomes=outcomes)
        except Exception as exc:
            self._outcomes[:0] = outcomes  # not written: they wait for the next commit
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)

    async def _keep_flushing(self) -> None:
        """Write waiting outcomes when no copy's commit has carried them for FLUSH_EVERY seconds
        (the last copies of a pass, a slow relay), so the ledger's counts stay current."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self._flush()

    def _flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        self.ledger.record_outcomes(outcomes)

    async def _cancel_after_grace(self, workers: list[asyncio.Task]) -> None:
        """After a stop signal, in-flight copies get STOP_GRACE seconds; then they are abandoned.

        An abandoned copy stays 'sending' and the next run marks it 'uncertain'.
        """
        await self.stop.wait()
        await asyncio.sleep(STOP_GRACE)
        for worker in workers:
            worker.cancel()

    def _due(self) -> Iterator[Delivery]:
        """The copies a worker takes from the pass (readers who had left are taken out at the claim)."""
        while (delivery := self._next()) is not None:
            yield delivery

    def _recipient(self, delivery: Delivery) -> Recipient:
        """A due row's per-reader values, with the Message-ID the ledger recorded for it if any."""
        recipients = self.composed.recipients
        message_id = delivery.message_id or recipients.message_id_for(delivery.email)
        return recipients.for_address(delivery.email, delivery.name, message_id=message_id, greet_name=delivery.first_name)

    async def _worker(self) -> None:
        async for copy in copies(self.composed, self._due(), self._recipient, self.envelope_sender):
            await self._deliver(copy)

    async def _deliver(self, copy: Copy[Delivery]) -> None:
        """Hand one copy to the relay the pool gives it; what a relay (not the reader) got wrong is retried here."""
        delivery, data = copy.reader, copy.data
        key = address_key(delivery.email)
        message_id = copy.recipient.message_id
        fresh = False  # already retried on a new connection after a 503
        while True:
            lease = await self.relays.acquire(self.stop)
            if lease is None:
                return  # stopped while waiting for a connection; the copy stays as it was
            if isinstance(lease, AllResting):
                if await self._all_relays_resting(lease):
                    return
                continue
            connection = lease.connection
            started: list[str] = []

            async def before_body() -> bool:
                # Suppressions and the claim are checked in the same statement that records
                # 'sending', right before the body goes: a reader who left during the send gets
                # nothing, and nor does a copy another sender took over.
                started.append(await self._start_body(Starting(delivery.id, message_id, key)))
                return started[-1] == "sending"

            try:
                await lease.relay.bucket.take()
                reply = await connection.deliver(copy.envelope, data, before_body=before_body)
            except SmtpSetupError as exc:
                self.relays.release(lease)
                self.stopped = str(exc)
                return
            except ConnectionError as exc:
                # The relay, not the reader: another relay (or this one after its rest) takes the
                # copy, and none of the reader's attempts is spent.
                self._refused(lease, exc)
                self.relays.release(lease)
                continue
            except BaseException:  # cancelled in flight: no polite QUIT on this connection
                self.relays.release(lease, drop=True)
                raise
            try:
                self._answered(lease)
                if reply is None:
                    if started and started[-1] == "suppressed":
                        self._count("suppressed")
                    if started and started[-1] == "stopped":
                        self._stopped_by_editor()
                    return  # 'taken': the sender that holds the copy now sends it
                verdict = classify_reply(reply)
                if verdict.reconnect:
                    connection.drop()  # the next message opens a new session
                if not verdict.retry_fresh:
                    self._settle(connection, delivery, reply, verdict)
                    return
                if fresh:
                    self.stopped = (f"the relay answered {reply.code} again on a new connection ({reply.phase}: "
                                    f"{reply.text.strip()}); readers stay pending, run the same command again to resume")
                    return
                fresh = True
            finally:
                self.relays.release(lease)

    def _settle(self, connection: SmtpConnection, delivery: Delivery, reply: SmtpReply, verdict: Verdict) -> None:
        """Record the relay's final word on one copy, or stop the send when it speaks about us."""
        if verdict.halt:
            connection.drop()
            self.stopped = f"{verdict.reason}: {reply.code} {reply.text}".strip()
            return  # the copy was not attempted as far as the reader is concerned; it stays pending
        self._apply(delivery, reply, verdict, relay=connection.relay)
        if self.breaker.record(verdict):
            self.stopped = "paused"
            self.ledger.record_action(self.edition, self.composed.issue.date, "pause", BREAKER,
                                      f"{self.breaker.rejections} policy rejections in {self.breaker.attempts} attempts",
                                      status="paused")

    def _stopped_by_editor(self) -> None:
        """The issue is no longer open (held, paused or cancelled): this run starts nothing more."""
        if self.stopped is None:
            why = why_stopped(self.ledger, self.edition, self.composed.issue.date)
            self.stopped = EDITOR_STOP + (why or "the issue is no longer open")

    def _apply(self, delivery: Delivery, reply: SmtpReply, verdict: Verdict, *, relay: str | None = None) -> None:
        """Record what ``relay``'s reply means for the reader: sent, retried later, failed or held."""
        text = f"{reply.text}".strip()[:500] or verdict.reason
        reached_data = reply.phase in ("data", "body")  # mark_sending counted the attempt already
        attempts = delivery.attempts + 1
        if verdict.state in ("deferred", "uncertain"):
            if attempts >= self.delivery.max_attempts:
                if verdict.state == "deferred":
                    self._record(delivery, "failed", reply.code or None, f"gave up after {attempts} attempts: {text}",
                                 count=not reached_data, failure="retries", relay=relay)
                else:  # it may have arrived every time: stop resending and leave it for a person
                    self._record(delivery, "uncertain", None, f"held after {attempts} attempts: {text}",
                                 next_at=HELD, count=not reached_data, relay=relay)
                return
            delay = 0.0 if verdict.retry_now and attempts <= 2 else self._backoff(attempts)
            self._record(delivery, verdict.state, reply.code or None, text, next_at=self.clock() + delay,
                         count=not reached_data, relay=relay)
            return
        self._record(delivery, verdict.state, reply.code, text, count=not reached_data, failure=verdict.failure,
                     relay=relay)
        if verdict.suppress:
            self.ledger.suppress(address_key(delivery.email), "*", "bounced", text)

    async def _wait(self, seconds: float, *, until_drained: bool = False) -> bool:
        """Sleep ``seconds``, or less when stopped (True) or, with ``until_drained``, when the pass ends."""
        waits = [asyncio.ensure_future(self.stop.wait())]
        if until_drained:
            waits.append(asyncio.ensure_future(self._drained.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return self.stop.is_set()

    async def _all_relays_resting(self, resting: AllResting) -> bool:
        """Every relay refuses: wait for the first to be tried again, without spending any reader's
        attempts, until the deadline. True when the send stops (deadline or signal)."""
        if self.clock() >= self.deadline:
            which = "the relay" if self.relays.single else "every relay"
            self.stopped = f"{which} stayed unreachable until the deadline: {resting.reason}"
            return True
        self._relay_trouble(resting.reason)
        return await self._wait(resting.seconds)

    def _refused(self, lease: Lease, exc: ConnectionError) -> None:
        """A relay would not take a connection: the pool rests it (or, at its connection limit, the one
        slot); the operator hears of it when other relays or connections carry on meanwhile."""
        refusal = self.relays.refused(lease, exc)
        relay = refusal.relay
        what = str(exc) if isinstance(exc, RelayUnreachable) else f"{relay.where}: {exc}"
        if refusal.limit:
            table = "[smtp]" if self.relays.single else "its [[smtp.relays]] entry's"
            self._tell(Notice("relay.limit", f"{what}; {refusal.others} other connection(s) carry on, this one tries "
                              f"again in {duration(refusal.seconds)}. If the relay limits connections per client, set "
                              f"{table} pool_size to what it allows (now {relay.settings.pool_size})"), what)
            return
        carrying = [r.name for r in self.relays.carrying()]
        if refusal.new and carrying:
            longer = (f", longer each time it refuses again (up to {duration(self.delivery.retry_cap)})"
                      if refusal.seconds < self.delivery.retry_cap else "")
            self._tell(Notice("relay.resting", f"{what}; resting it {duration(refusal.seconds)}{longer}; its copies go "
                              f"to {', '.join(carrying)} meanwhile and no reader's attempts are spent"), what)

    def _answered(self, lease: Lease) -> None:
        """The relay took the transaction: after an outage of every relay, or this one's rest, say it is back."""
        back = self.relays.answered(lease)
        if self.relay_problem is not None:
            self.relay_problem = None
            self._tell(Notice("relay.reachable", f"{lease.relay.where} answers again; sending"))
        elif back:
            self._tell(Notice("relay.reachable", f"{lease.relay.where} answers again; it carries its share of the "
                              "copies again"))

    def _relay_trouble(self, reason: str) -> None:
        """Every relay refuses: tell the operator, once per reason (and every NOTICE_EVERY seconds), what
        is wrong and what happens next."""
        what = reason if self.relays.single else f"every relay is unreachable: {reason}"
        if self.relay_problem is None:
            since = dt.datetime.fromtimestamp(self.clock(), self.composed.issue.send_time.tzinfo)
            self.relay_problem = f"{what} (since {since:%H:%M:%S %Z})"
        base, cap = self.delivery.retry_base, self.delivery.retry_cap
        every = f"every {duration(cap)}" if base >= cap else f"after {duration(base)}, backing off to every {duration(cap)},"
        self._tell(Notice("relay.unreachable", f"{what}; retrying {every} until {self._deadline_text()}, "
                          "the issue's deadline; no reader's attempts are spent meanwhile"), what)

    def _deadline_text(self) -> str:
        zone = self.composed.issue.send_time.tzinfo
        when = dt.datetime.fromtimestamp(self.deadline, zone)
        today = dt.datetime.fromtimestamp(self.clock(), zone).date()
        return when.strftime("%H:%M %Z" if when.date() == today else "%Y-%m-%d %H:%M %Z")

    def _tell(self, notice: Notice, reason: str | None = None) -> None:
        """Pass ``notice`` on unless the same ``reason`` was told less than NOTICE_EVERY seconds ago."""
        reason = reason or notice.text
        last = self._told.get(notice.event)
        now = self.clock()
        if last is not None and last[0] == reason and now - last[1] < NOTICE_EVERY:
            return
        self._told[notice.event] = (reason, now)
        if self.notify is not None:
            self.notify(notice)

    def _backoff(self, attempts: int) -> float:
        base = min(self.delivery.retry_cap, self.delivery.retry_base * 2 ** max(0, attempts - 1))
        return base * random.uniform(0.8, 1.2)

    def _record(self, delivery: Delivery, state: str, code: int | None, text: str, *,
                next_at: float | None = None, count: bool = False, failure: str | None = None,
                relay: str | None = None) -> None:
        self._outcomes.append(Outcome(delivery.id, state, code, text, next_at, count, failure, relay))
        self._count(state)

    def _count(self, state: str) -> None:
        self.this_run[state] = self.this_run.get(state, 0) + 1
        if self.progress is not None:
            self.progress(self.this_run, self.due_at_start)


