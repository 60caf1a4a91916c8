"""The dispatch loop: every reader of an issue gets one copy, and the ledger knows what happened.

    create-or-find issue (audience frozen) -> mark 'sending' rows of a crashed run 'uncertain'
    -> pass over due copies with N workers (one SMTP connection each, one shared rate limit)
       per copy: suppressed? -> build bytes -> MAIL/RCPT -> commit 'sending' -> DATA -> commit outcome
    -> wait for deferred copies while the deadline allows -> report

Nothing here decides what an SMTP reply means (outcomes.py does) or how bytes are built
(compose.py does). A second run for the same issue resumes it; it never starts another send.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .addresses import address_key
from .compose import ComposedIssue
from .ledger import Delivery, IssueRecord, Ledger
from .models import DeliverySettings, SmtpSettings
from .outcomes import SmtpReply, Verdict, classify
from .ratelimit import TokenBucket
from .transport import Envelope, SmtpConnection, SmtpSetupError

ConnectionFactory = Callable[[], SmtpConnection]
STOP_GRACE = 10.0  # seconds in-flight copies get to finish after SIGINT/SIGTERM
HELD = float("inf")  # next_at of an uncertain copy that is no longer resent automatically
Progress = Callable[[dict[str, int], int], None]  # (outcomes this run, copies due at the start)


@dataclass
class SendReport:
    """What one run did, and where the issue stands."""

    issue: IssueRecord
    counts: dict[str, int]
    recovered: int = 0  # copies found in 'sending' from a crashed run
    stopped: str | None = None  # why the run ended early: 'signal', 'paused', or a fatal error
    this_run: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.counts["pending"] == self.counts["deferred"] == self.counts["sending"] == self.counts["uncertain"] == 0

    @property
    def ok(self) -> bool:
        return self.complete and self.counts["failed"] == 0 and self.stopped is None


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

    def __init__(self, composed: ComposedIssue, ledger: Ledger, record: IssueRecord, smtp: SmtpSettings,
                 delivery: DeliverySettings, *, envelope_sender: str, connect: ConnectionFactory,
                 stop: asyncio.Event | None = None, progress: Progress | None = None,
                 clock: Callable[[], float] = time.time, wait_for_retries: bool = True) -> None:
        self.composed = composed
        self.ledger = ledger
        self.record = record
        self.smtp = smtp
        self.delivery = delivery
        self.envelope_sender = envelope_sender
        self.connect = connect
        self.stop = stop or asyncio.Event()
        self.progress = progress
        self.clock = clock
        self.wait_for_retries = wait_for_retries
        self.bucket = TokenBucket(smtp.rate)
        self.breaker = _Breaker(delivery)
        self.edition = composed.issue.edition.slug
        self.deadline = composed.issue.send_time.timestamp() + delivery.deadline_hours * 3600
        self.stopped: str | None = None
        self.this_run: dict[str, int] = {}
        self.due_at_start = 0
        self.signers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dkim") if composed.signer else None

    async def run(self) -> SendReport:
        try:
            return await self._run()
        finally:
            if self.signers is not None:
                self.signers.shutdown(wait=True)

    async def _run(self) -> SendReport:
        recovered = self.ledger.recover_interrupted(self.record.id)
        self.ledger.set_status(self.record.id, "open")
        start = self.ledger.counts(self.record.id)
        self.due_at_start = start["pending"] + start["deferred"] + (start["uncertain"] if self.delivery.uncertain == "resend" else 0)
        while not self.stop.is_set() and self.stopped is None:
            await self._pass()
            if self.stop.is_set() or self.stopped is not None:
                break
            next_at = self.ledger.next_retry_at(self.record.id, include_uncertain=self.delivery.uncertain == "resend")
            if next_at is None:
                break
            if self.clock() >= self.deadline or next_at >= self.deadline:
                self.ledger.expire_deferred(self.record.id, "gave up: the issue's delivery deadline passed")
                break
            if not self.wait_for_retries:
                break
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, next_at - self.clock()))
            except asyncio.TimeoutError:
                pass
        if self.stop.is_set() and self.stopped is None:
            self.stopped = "signal"
        counts = self.ledger.counts(self.record.id)
        settled = all(counts[s] == 0 for s in ("pending", "sending", "deferred"))
        if self.stopped != "paused" and settled and (counts["uncertain"] == 0 or self.delivery.uncertain == "hold"):
            self.ledger.set_status(self.record.id, "done")
        return SendReport(self.record, counts, recovered, self.stopped, self.this_run)

    async def _pass(self) -> None:
        """One sweep over the copies due now, with ``pool_size`` workers pulling from one buffer."""
        self._buffer: deque[Delivery] = deque()
        self._after = 0
        workers = [asyncio.create_task(self._worker()) for _ in range(self.smtp.pool_size)]
        grace = asyncio.create_task(self._cancel_after_grace(workers))
        try:
            # If this pass itself is cancelled (a scheduler shutting down), gather cancels the workers.
            results = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            grace.cancel()
        failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if failures:
            raise failures[0]

    def _next(self) -> Delivery | None:
        """The next copy to attempt, or None when the pass is over. No await: workers cannot race."""
        if self._halted():
            return None
        if not self._buffer:
            batch = self.ledger.due(self.record.id, self.clock(), include_uncertain=self.delivery.uncertain == "resend",
                                    after_id=self._after)
            if not batch:
                return None
            self._after = batch[-1].id
            self._buffer.extend(batch)
        return self._buffer.popleft()

    def _halted(self) -> bool:
        return self.stop.is_set() or self.stopped is not None

    async def _cancel_after_grace(self, workers: list[asyncio.Task]) -> None:
        """After a stop signal, in-flight copies get STOP_GRACE seconds; then they are abandoned.

        An abandoned copy stays 'sending' and the next run marks it 'uncertain'.
        """
        await self.stop.wait()
        await asyncio.sleep(STOP_GRACE)
        for worker in workers:
            worker.cancel()

    async def _worker(self) -> None:
        connection = self.connect()
        try:
            while (delivery := self._next()) is not None:
                await self._deliver(connection, delivery)
        except asyncio.CancelledError:
            connection.drop()
            raise
        if self.stop.is_set():
            connection.drop()  # no polite QUIT while shutting down
        else:
            await connection.close()

    async def _deliver(self, connection: SmtpConnection, delivery: Delivery) -> None:
        key = address_key(delivery.email)
        if self.ledger.is_suppressed(key, self.edition):  # do not even name a reader who left to the relay
            self._record(delivery, "suppressed", None, "left before this copy went")
            return
        recipients = self.composed.recipients
        message_id = delivery.message_id or recipients.message_id_for(delivery.email)
        recipient = recipients.for_address(delivery.email, delivery.name, message_id=message_id)
        if self.signers is not None:
            # OpenSSL releases the GIL while it signs, so signing on threads overlaps the network work.
            data = await asyncio.get_running_loop().run_in_executor(self.signers, self.composed.message, recipient)
        else:
            data = self.composed.message(recipient)
        waited = 0
        while True:
            await self.bucket.take()
            try:
                # Suppressions are checked in the same statement that records 'sending', right
                # before the body goes: a reader who left during the send gets nothing.
                reply = await connection.deliver(
                    Envelope(self.envelope_sender, delivery.email), data,
                    before_body=lambda: self.ledger.mark_sending(delivery.id, message_id, key, self.edition),
                )
                break
            except SmtpSetupError as exc:
                self.stopped = str(exc)
                return
            except ConnectionError as exc:
                # The relay, not the reader: wait for it without spending the reader's attempts.
                waited += 1
                if self.clock() >= self.deadline:
                    self.stopped = f"the relay stayed unreachable until the deadline: {exc}"
                    return
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=self._backoff(waited))
                    return  # stopped while waiting; the copy stays pending
                except asyncio.TimeoutError:
                    continue
        if reply is None:
            self._count("suppressed")
            return
        verdict = classify(reply)
        if verdict.halt:
            connection.drop()
            self.stopped = f"{verdict.reason}: {reply.code} {reply.text}".strip()
            return  # the copy was not attempted as far as the reader is concerned; it stays pending
        self._apply(delivery, reply, verdict)
        if self.breaker.record(verdict):
            self.stopped = "paused"
            self.ledger.set_status(self.record.id, "paused", f"paused by the circuit breaker after "
                                   f"{self.breaker.rejections} policy rejections in {self.breaker.attempts} attempts")

    def _apply(self, delivery: Delivery, reply: SmtpReply, verdict: Verdict) -> None:
        text = f"{reply.text}".strip()[:500] or verdict.reason
        reached_data = reply.phase in ("data", "body")  # mark_sending counted the attempt already
        attempts = delivery.attempts + 1
        if verdict.state in ("deferred", "uncertain"):
            if attempts >= self.delivery.max_attempts:
                if verdict.state == "deferred":
                    self._record(delivery, "failed", reply.code or None, f"gave up after {attempts} attempts: {text}",
                                 count=not reached_data, failure="retries")
                else:  # it may have arrived every time: stop resending and leave it for a person
                    self._record(delivery, "uncertain", None, f"held after {attempts} attempts: {text}",
                                 next_at=HELD, count=not reached_data)
                return
            delay = 0.0 if verdict.retry_now and attempts <= 2 else self._backoff(attempts)
            self._record(delivery, verdict.state, reply.code or None, text, next_at=self.clock() + delay,
                         count=not reached_data)
            return
        self._record(delivery, verdict.state, reply.code, text, count=not reached_data, failure=verdict.failure)
        if verdict.suppress:
            self.ledger.suppress(address_key(delivery.email), "*", "bounced", text)

    def _backoff(self, attempts: int) -> float:
        base = min(self.delivery.retry_cap, self.delivery.retry_base * 2 ** max(0, attempts - 1))
        return base * random.uniform(0.8, 1.2)

    def _record(self, delivery: Delivery, state: str, code: int | None, text: str, *,
                next_at: float | None = None, count: bool = False, failure: str | None = None) -> None:
        self.ledger.mark(delivery.id, state, code, text, next_at=next_at, count_attempt=count, failure=failure)
        self._count(state)

    def _count(self, state: str) -> None:
        self.this_run[state] = self.this_run.get(state, 0) + 1
        if self.progress is not None:
            self.progress(self.this_run, self.due_at_start)


