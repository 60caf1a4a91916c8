"""The scheduler daemon (`digest schedule`): the only apscheduler import.

One APScheduler (asyncio) job per edition, fired by ``EditionTrigger``, which asks
``editions.next_sends``: the same function that defines issue windows, so the schedule and the
windows agree in every time zone and across every DST change (a send time inside a skipped hour
still fires once that day; inside a repeated hour, once). A firing only asks ``runner.send_issue``
to create-or-resume issue (edition, local date): a second firing for the same date finds the
issue and resumes it or does nothing.

Jobs are rebuilt from digest.toml at start (``replace_existing``) and persisted in the state
database. The scheduler also records when it was last alive (its heartbeat, every 20 s); at the
next start every send scheduled since then that has no issue was missed while it was down: one
still inside the edition's grace goes at once, an older one is recorded as missed, logged as an
alert and shown by `digest schedule --list` and `digest status`. Issues a crash left unfinished
are resumed at start and every 30 seconds.

An edition with editors and a ``preview_lead`` has its next issue previewed to them that long
before the send, and again whenever it changes; one with ``approval = "required"`` that has no
approval of its fingerprint at the send time is held and alerted (``AwaitingApproval``), and tried
again every 30 seconds until it is approved or its delivery deadline passes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import closing, contextmanager

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .compose.editions import next_sends, send_time, sends_on, today_in
from .deliver.locks import AlreadyRunning, DatabaseLock, ProcessLock, state_lock
from .deliver.alerts import Alert, send_alert
from .deliver.approval import AwaitingApproval, deadline
from .deliver.preview import review
from .deliver.control import IssueStopped
from .deliver.runner import EmptyIssue, send_issue
from .deliver.send import Notice, issue_deadline
from .errors import DigestError, StateQueryError
from .events import event
from .models import Edition, Settings
from .state.ledger import Ledger, PostgresUrl, job_store

LEASE = "scheduler"
LAST_SEEN = "scheduler.last_seen"
LEASE_TTL = 60.0
STANDBY = "scheduler.standby:"  # + owner: a standby's lease, so that --health can list it
STANDBY_POLL = 5.0  # seconds between a standby's tries of the leader's lock
RESUME_EVERY = dt.timedelta(seconds=30)  # also how soon a resumed issue goes on
_LOOKBACK_DAYS = 8
MAX_CATCH_UP_DAYS = 366  # a longer outage reports the misses of the last year
_ACTIVE: Scheduler | None = None  # the running daemon, for the persisted job functions below


class EditionTrigger(BaseTrigger):
    """Fires at each of an edition's scheduled sends (see ``editions.next_sends``)."""

    __slots__ = ("edition",)

    def __init__(self, edition: Edition) -> None:
        self.edition = edition

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> dt.datetime:
        after = previous_fire_time if previous_fire_time is not None else now - dt.timedelta(microseconds=1)
        return next_sends(self.edition, after, 1)[0]

    def __getstate__(self) -> dict:
        return {"edition": self.edition}

    def __setstate__(self, state: dict) -> None:
        self.edition = state["edition"]

    def __str__(self) -> str:
        return f"edition[{self.edition.slug} {self.edition.send_at:%H:%M} {self.edition.timezone}]"


def fire_times(edition: Edition, start: dt.datetime, count: int) -> list[dt.datetime]:
    """The trigger's next ``count`` fire times from ``start``, asked the way APScheduler asks."""
    trigger = EditionTrigger(edition)
    times: list[dt.datetime] = []
    previous = None
    while len(times) < count:
        previous = trigger.get_next_fire_time(previous, start)
        times.append(previous)
    return times


def latest_send(edition: Edition, now: dt.datetime) -> dt.datetime | None:
    """The edition's most recent scheduled send at or before ``now``."""
    start = now - dt.timedelta(days=_LOOKBACK_DAYS)
    latest = None
    for when in next_sends(edition, start, _LOOKBACK_DAYS * 2 + 2):
        if when.timestamp() > now.timestamp():
            break
        latest = when
    return latest


def issue_date(edition: Edition, send: dt.datetime) -> dt.date:
    return send.astimezone(edition.zone).date()


SendFunction = Callable[..., Awaitable[object]]


# --- `digest schedule --list` -------------------------------------------------------------------


def send_listing(editions: Iterable[Edition], ledger: Ledger | None, now: dt.datetime,
                 count: int) -> list[tuple[str, str, str, str]]:
    """(edition, local time, UTC, issue) rows: per edition, today's send with its outcome, then the next ``count``.

    ``ledger`` is None when there is no state database, or one that has recorded no issue yet.
    """
    rows = []
    for edition in editions:
        for n, (when, state) in enumerate(_send_rows(ledger, edition, now, count)):
            rows.append((edition.slug if n == 0 else "", f"{when:%a %Y-%m-%d %H:%M %Z}",
                         f"{when.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", state))
    return rows


def _send_rows(ledger: Ledger | None, edition: Edition, now: dt.datetime,
               count: int) -> list[tuple[dt.datetime, str]]:
    """Today's send (already due or not) with its outcome, then the upcoming sends, each on its own row."""
    today = today_in(edition, now)
    upcoming = fire_times(edition, now, count)
    rows: list[tuple[dt.datetime, str]] = []
    if sends_on(edition, today) and all(when.astimezone(edition.zone).date() != today for when in upcoming):
        rows.append((send_time(edition, today), _today_state(ledger, edition, today, now)))
    for when in upcoming:
        issue_day = when.astimezone(edition.zone).date()
        rows.append((when, _today_state(ledger, edition, today, now) if issue_day == today else "upcoming"))
    return rows


def _today_state(ledger: Ledger | None, edition: Edition, today: dt.date, now: dt.datetime) -> str:
    due = send_time(edition, today)
    if ledger is not None:
        record = ledger.find_issue(edition.slug, today)
        if record is not None:
            counts = ledger.counts(record.id)
            shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
            return f"{record.status}: {shown}"
        if any(d == today for _, d, _, _ in ledger.missed(edition.slug)):
            return "MISSED"
    if not sends_on(edition, today):
        return "no issue today"
    return f"due {due:%H:%M %Z}" if due > now else "not sent"


def _notice_logger(fields: dict[str, str]) -> Callable[[Notice], None]:
    """A running send's notices (an unreachable relay ...) as events of the issue."""

    def log(notice: Notice) -> None:
        event(notice.event, logging.INFO if notice.event == "relay.reachable" else logging.WARNING,
              detail=notice.text, **fields)

    return log


class Scheduler:
    """The daemon. ``clock`` and ``send`` can be replaced (tests drive time with the first)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], dt.datetime] | None = None,
                 send: SendFunction = send_issue) -> None:
        self.settings = settings
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.send = send
        self.stop = asyncio.Event()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.running: set[asyncio.Task] = set()
        self.alerting: set[asyncio.Task] = set()  # alerts started from APScheduler's listener
        self.alerted: set[tuple[str, str, dt.date, str]] = set()  # (kind, edition, date, fingerprint) alerted once

    # --- firing ----------------------------------------------------------------------------

    async def fire(self, slug: str, when: dt.datetime | None = None) -> None:
        """Create-or-resume the issue of the edition's latest due send (or of ``when``)."""
        edition = self.settings.edition(slug)
        when = when or latest_send(edition, self.clock())
        if when is None:
            return
        await self.send_one(edition, issue_date(edition, when))

    async def send_one(self, edition: Edition, date: dt.date) -> None:
        fields = {"edition": edition.slug, "date": date.isoformat()}
        event("issue.started", **fields)
        try:
            outcome = await self.send(self.settings, edition, date, stop=self.stop, progress=_progress_logger(fields),
                                      notify=_notice_logger(fields))
        except AlreadyRunning as exc:
            event("issue.skipped", reason="another process is sending it", detail=str(exc), **fields)
            return
        except IssueStopped as exc:  # a person's hold, pause or cancel: recorded, never a silent skip
            event("issue.held", logging.WARNING, detail=str(exc), **fields)
            await send_alert(self.settings, Alert("held", edition, date, f"At its send time: {exc}."))
            return
        except AwaitingApproval as exc:  # held until an editor approves it, up to its deadline
            event("issue.awaiting_approval", logging.WARNING, fingerprint=exc.fingerprint, detail=str(exc), **fields)
            await self.review(edition, date, at_send_time=True)
            return
        except DigestError as exc:
            event("issue.failed", logging.ERROR, detail=str(exc), **fields)
            return
        if isinstance(outcome, EmptyIssue):
            level = logging.ERROR if edition.on_empty == "fail" else logging.WARNING
            event("issue.empty", level, detail="no stories in the window; nothing sent", **fields)
            return
        if outcome.added:
            event("issue.readers_added", added=outcome.added, detail="rows left out at the freeze were fixed", **fields)
        if outcome.left_out:
            event("issue.subscribers_left_out", logging.ERROR, rows=len(outcome.left_out),
                  lines=",".join(str(line) for line, _ in outcome.left_out[:20]),
                  detail="subscriber rows could not be read when the audience was frozen; fix them and "
                         "`digest send` this issue to add those readers", **fields)
        counts = outcome.counts
        level = logging.INFO if outcome.ok else logging.WARNING
        event("issue.finished" if outcome.complete else "issue.stopped", level, status=outcome.stopped or "ok",
              relay=outcome.relay_problem, **fields, **{k: v for k, v in counts.items() if v})

    def start_fire(self, slug: str) -> None:
        edition = self.settings.edition(slug)
        when = latest_send(edition, self.clock())
        if when is not None:
            self.start_send(edition, issue_date(edition, when))

    def start_send(self, edition: Edition, date: dt.date) -> None:
        if any(t.get_name() == f"{edition.slug}:{date}" and not t.done() for t in self.running):
            return  # already being sent by this daemon

        task = asyncio.create_task(self.send_one(edition, date), name=f"{edition.slug}:{date}")
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    # --- previews and approval ------------------------------------------------------------------

    async def review_upcoming(self) -> None:
        """Mail each edition's editors a preview of its next issue once within ``preview_minutes``
        of the send, and again whenever the issue changes before it is created."""
        now = self.clock()
        for edition in self.settings.editions:
            lead = edition.preview_lead
            if lead is None:
                continue
            upcoming = next_sends(edition, now, 1)
            if upcoming and upcoming[0] - lead <= now:
                await self.review(edition, issue_date(edition, upcoming[0]), at_send_time=False)

    async def review(self, edition: Edition, date: dt.date, *, at_send_time: bool) -> None:
        """Preview issue (edition, date) if it changed; alert its editors, once per fingerprint, that
        it waits for approval (at its send time) or that an approval no longer holds."""
        fields = {"edition": edition.slug, "date": date.isoformat()}
        try:
            found = await review(self.settings, edition, date)
        except DigestError as exc:
            event("preview.failed", logging.ERROR, detail=str(exc), **fields)
            return
        if found is None:
            return
        if found.preview is not None:
            event("preview.sent", fingerprint=found.fingerprint, to=len(found.preview.replies),
                  ok=found.preview.ok, **fields)
        if edition.approval != "required" or found.approved:
            return
        when = deadline(self.settings, edition, date)
        if found.invalidated:
            await self._alert_once(Alert("approval_invalidated", edition, date, (
                f"The approval of {', '.join(found.invalidated)} no longer holds: the issue changed (a story, the "
                f"note or a template) and now composes to {found.fingerprint}. A new preview has gone to the "
                f"editors; nothing is sent until {found.fingerprint} is approved (up to {when:%Y-%m-%d %H:%M UTC}).")),
                found.fingerprint)
        elif at_send_time:
            await self._alert_once(Alert("awaiting_approval", edition, date, (
                f"It is past the send time and no editor has approved the issue ({found.fingerprint}): it is held. "
                f"Approve it from the preview, or `digest approve {edition.slug} --date {date} --fingerprint "
                f"{found.fingerprint}`; it then goes within a minute, up to {when:%Y-%m-%d %H:%M UTC}.")),
                found.fingerprint)

    async def _alert_once(self, alert: Alert, fingerprint: str) -> None:
        key = (alert.kind, alert.edition.slug, alert.date, fingerprint)
        if key not in self.alerted:
            self.alerted.add(key)
            await send_alert(self.settings, alert)

    # --- start: what was missed, what was left unfinished ------------------------------------

    async def catch_up(self) -> None:
        """Resume unfinished issues; send what is due within grace; record what was missed."""
        now = self.clock()
        with closing(Ledger(self.settings.state_db)) as ledger:
            since = ledger.mark_value(LAST_SEEN)
            due: dict[tuple[str, dt.date], Edition] = {}
            missed: list[tuple[Edition, dt.date, dt.datetime, dt.timedelta]] = []
            for slug, date in ledger.unfinished_issues():
                try:
                    due[(slug, date)] = self.settings.edition(slug)
                except KeyError:
                    event("issue.orphaned", logging.WARNING, edition=slug, date=date.isoformat(),
                          detail="unfinished issue of an edition no longer in digest.toml")
            for edition in self.settings.editions:
                for when in self._sends_between(edition, since, now):
                    date = issue_date(edition, when)
                    if ledger.find_issue(edition.slug, date) is not None or (edition.slug, date) in due:
                        continue
                    late = now - when
                    if late <= dt.timedelta(minutes=edition.grace_minutes):
                        event("issue.catch_up", edition=edition.slug, date=date.isoformat(),
                              late_seconds=int(late.total_seconds()))
                        due[(edition.slug, date)] = edition
                    elif since is not None and ledger.record_missed(
                            edition.slug, date, when, f"scheduler was not running; {late} late, grace is "
                                                      f"{edition.grace_minutes} min"):
                        event("issue.missed", logging.ERROR, edition=edition.slug, date=date.isoformat(),
                              send_time=when.isoformat(), detail="missed beyond its grace; send it with `digest send`")
                        missed.append((edition, date, when, late))
            # Anything due after this instant is the jobs' to fire; record it as seen now, not later.
            ledger.set_mark(LAST_SEEN, now.timestamp())
        for edition in self.settings.editions:  # one alert per edition, however long the scheduler was down
            dates = [date for e, date, _, _ in missed if e is edition]
            if dates:
                shown_dates = ", ".join(str(d) for d in dates[-10:]) + (f" and {len(dates) - 10} earlier" if len(dates) > 10 else "")
                await send_alert(self.settings, Alert("missed", edition, dates[-1], (
                    f"The scheduler was not running at the send time of {len(dates)} issue(s), past the "
                    f"{edition.grace_minutes}-minute grace: {shown_dates}. Send one with "
                    f"`digest send {edition.slug} --date {dates[-1]}`.")))
        for (_slug, date), edition in sorted(due.items(), key=lambda item: item[0][1]):
            self.start_send(edition, date)

    def _sends_between(self, edition: Edition, since: float | None, now: dt.datetime) -> list[dt.datetime]:
        """Scheduled sends the scheduler should have fired: since it was last alive, else the latest."""
        if since is None:
            latest = latest_send(edition, now)
            return [latest] if latest is not None else []
        start = max(dt.datetime.fromtimestamp(since, dt.timezone.utc), now - dt.timedelta(days=MAX_CATCH_UP_DAYS))
        start -= dt.timedelta(microseconds=1)
        found = []
        for when in next_sends(edition, start, (now - start).days + 2):
            if when.timestamp() > now.timestamp():
                break
            found.append(when)
        return found

    async def resume_unfinished(self) -> None:
        """Go on with open issues that have copies to send, and send the ones an editor held before
        they were created and has resumed since, if their send time has passed."""
        now = self.clock()
        with closing(Ledger(self.settings.state_db)) as ledger:
            unfinished = ledger.unfinished_issues()
            released = ledger.released_holds()
            released += self._awaiting_approval(ledger, now)
        known = {e.slug: e for e in self.settings.editions}
        unfinished += [(slug, date) for slug, date in released
                       if slug in known and sends_on(known[slug], date) and send_time(known[slug], date) <= now
                       < dt.datetime.fromtimestamp(issue_deadline(send_time(known[slug], date), self.settings.delivery),
                                                   dt.timezone.utc)]
        busy = {t.get_name() for t in self.running}
        for slug, date in unfinished:
            if f"{slug}:{date}" not in busy and any(e.slug == slug for e in self.settings.editions):
                self.start_send(self.settings.edition(slug), date)

    def _awaiting_approval(self, ledger: Ledger, now: dt.datetime) -> list[tuple[str, dt.date]]:
        """Issues held at their send time for approval (a proposal kept, no issue): tried again each
        round, so an approval given late, before the deadline, sends them within a minute."""
        found = []
        for edition in self.settings.editions:
            when = latest_send(edition, now) if edition.approval == "required" else None
            if when is None:
                continue
            date = issue_date(edition, when)
            if ledger.find_issue(edition.slug, date) is None and ledger.has_proposal(edition.slug, date):
                found.append((edition.slug, date))
        return found

    # --- the daemon ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``self.stop`` is set; then let sends in flight finish and return."""
        global _ACTIVE
        state_db = self.settings.state_db
        lock = state_lock(state_db, "scheduler", "digest schedule")
        if not await self._become_leader(lock):
            return  # stopped while standing by
        with _held(lock):
            holder = self._heartbeat(record=False)  # catch_up still needs the last time we were alive
            if holder is not None:
                raise AlreadyRunning(f"digest schedule is already running for this state database ({holder})")
            scheduler = AsyncIOScheduler(timezone=dt.timezone.utc,
                                         jobstores={"default": job_store(state_db)})
            _ACTIVE = self
            try:
                await self.catch_up()
                for edition in self.settings.editions:
                    scheduler.add_job("digest.schedule:_fire", trigger=EditionTrigger(edition), args=[edition.slug],
                                      id=_job_id(edition), name=f"send {edition.slug}", replace_existing=True,
                                      misfire_grace_time=edition.grace_minutes * 60, coalesce=True, max_instances=1)
                scheduler.add_job("digest.schedule:_resume", trigger=IntervalTrigger(seconds=RESUME_EVERY.total_seconds()),
                                  id="resume-unfinished", replace_existing=True, coalesce=True, max_instances=1)
                scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
                scheduler.start()
                configured = {_job_id(edition) for edition in self.settings.editions}
                for job in scheduler.get_jobs():
                    if job.id.startswith("edition:") and job.id not in configured:
                        job.remove()  # the edition left digest.toml
                        event("scheduler.job_removed", job=job.id)
                event("scheduler.started", owner=self.owner, editions=len(self.settings.editions))
                while not self.stop.is_set():
                    try:
                        await asyncio.wait_for(self.stop.wait(), timeout=LEASE_TTL / 3)
                    except asyncio.TimeoutError:
                        holder = self._heartbeat()
                        if holder is not None:  # another scheduler took over a lease we let lapse
                            event("scheduler.lease_lost", logging.ERROR, holder=holder)
                            self.stop.set()
            finally:
                if scheduler.running:
                    scheduler.shutdown(wait=False)
                self.stop.set()  # sends in flight finish the copies they are on, then stop
                if self.running or self.alerting:
                    await asyncio.gather(*self.running, *self.alerting, return_exceptions=True)
                with closing(Ledger(state_db)) as ledger:
                    ledger.set_mark(LAST_SEEN, self.clock().timestamp())
                    ledger.release_lease(LEASE, self.owner)
                _ACTIVE = None
                event("scheduler.stopped", owner=self.owner)

    async def _become_leader(self, lock: ProcessLock | DatabaseLock) -> bool:
        """Take the scheduler lock; True once held (entered: the caller's ``with lock`` keeps it).

        With SQLite state a second scheduler is refused (AlreadyRunning): one file, one machine.
        With PostgreSQL it stands by: it records itself for `digest schedule --health` and tries
        the lock every STANDBY_POLL seconds until the leader's session ends (killed, or its machine
        gone, which the lock session's keepalives tell the server within about 25 s). False when
        stopped while standing by.
        """
        told = False
        while True:
            try:
                lock.__enter__()
            except AlreadyRunning:
                if not isinstance(lock, DatabaseLock):
                    raise
                if not told:
                    event("scheduler.standby", owner=self.owner, detail=f"another scheduler leads ({lock.lock.holder()}); "
                          f"taking over when it stops, checked every {STANDBY_POLL:.0f} s")
                    told = True
                with closing(Ledger(self.settings.state_db)) as ledger:
                    ledger.acquire_lease(STANDBY + self.owner, self.owner, STANDBY_POLL * 3, self.clock().timestamp())
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=STANDBY_POLL)
                    with closing(Ledger(self.settings.state_db)) as ledger:
                        ledger.release_lease(STANDBY + self.owner, self.owner)
                    return False
                except asyncio.TimeoutError:
                    continue
            if told:
                with closing(Ledger(self.settings.state_db)) as ledger:
                    ledger.release_lease(STANDBY + self.owner, self.owner)
                event("scheduler.takeover", owner=self.owner, detail="the leader stopped; this scheduler leads now")
            return True

    def _heartbeat(self, record: bool = True) -> str | None:
        """Renew the lease and (``record``) note that the scheduler is alive; the holder if not ours."""
        now = self.clock().timestamp()
        # Holding the lock proves no other scheduler runs: on SQLite none on this host (so a lease
        # left here by one killed before it could release it is stale), on PostgreSQL none at all.
        stale = "" if isinstance(self.settings.state_db, PostgresUrl) else f"{socket.gethostname()}:"
        with closing(Ledger(self.settings.state_db)) as ledger:
            holder = ledger.acquire_lease(LEASE, self.owner, LEASE_TTL, now, stale_prefix=stale)
            if holder is None and record:
                ledger.set_mark(LAST_SEEN, now)
        return holder

    def _on_missed(self, job_event: JobExecutionEvent) -> None:
        if not job_event.job_id.startswith("edition:"):
            return
        edition = self.settings.edition(job_event.job_id.split(":", 1)[1])
        when = job_event.scheduled_run_time
        date = issue_date(edition, when)
        with closing(Ledger(self.settings.state_db)) as ledger:
            if ledger.find_issue(edition.slug, date) is None:
                ledger.record_missed(edition.slug, date, when, "the scheduler could not run it within its grace")
                event("issue.missed", logging.ERROR, edition=edition.slug, date=date.isoformat(),
                      send_time=when.isoformat(), detail="missed beyond its grace; send it with `digest send`")
                self._alert_soon(Alert("missed", edition, date, (
                    f"The scheduler could not start the {when:%H:%M %Z} send within its {edition.grace_minutes}-minute "
                    f"grace. Send it with `digest send {edition.slug} --date {date}`.")))

    def _alert_soon(self, alert: Alert) -> None:
        """Send ``alert`` beside the jobs when called on the event loop (APScheduler's listeners are),
        else at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(send_alert(self.settings, alert))
            return
        task = loop.create_task(send_alert(self.settings, alert))
        self.alerting.add(task)
        task.add_done_callback(self.alerting.discard)


@contextmanager
def _held(lock: ProcessLock | DatabaseLock) -> Iterator[None]:
    """Release a lock taken already (by ``Scheduler._become_leader``) when the block ends."""
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _job_id(edition: Edition) -> str:
    return f"edition:{edition.slug}"


def _progress_logger(fields: dict[str, str]) -> Callable[[dict[str, int], int], None]:
    """A progress callback that logs at most one line per 1,000 copies."""
    state = {"next": 1000}

    def progress(counts: dict[str, int], total: int) -> None:
        done = sum(counts.values())
        if done >= state["next"] or done == total:
            state["next"] = done + 1000
            event("issue.progress", done=done, total=total, **fields, **counts)

    return progress


async def _fire(slug: str) -> None:
    # The send runs as the daemon's own task, not as the APScheduler job: the scheduler's
    # shutdown cancels running jobs, and a send must instead finish the copies in flight.
    if _ACTIVE is not None:
        _ACTIVE.start_fire(slug)


async def _resume() -> None:
    if _ACTIVE is not None:
        await _ACTIVE.resume_unfinished()
        await _ACTIVE.review_upcoming()


def scheduler_health(settings: Settings, now: dt.datetime | None = None) -> tuple[bool, str]:
    """Whether a scheduler holds a live lease on this state database (for health checks)."""
    ledger = Ledger.read_only(settings.state_db)
    if ledger is None:
        return False, f"no state database at {settings.state_db} yet"
    with closing(ledger):
        try:
            lease = ledger.lease(LEASE)
        except StateQueryError:
            return False, "no scheduler has run here"
        now = now or dt.datetime.now(dt.timezone.utc)
        standbys = [owner for _, owner, _ in ledger.leases_named(STANDBY, now.timestamp())]
    waiting = f"; standby: {', '.join(standbys)}" if standbys else ""
    if lease is None:
        return False, f"no scheduler leads{waiting}" if standbys else "no scheduler is running"
    owner, expires = lease
    if expires < now.timestamp():
        return False, f"the scheduler lease of {owner} expired {now.timestamp() - expires:.0f} s ago{waiting}"
    return True, f"scheduler {owner} is alive (leader){waiting}"
