"""The command line: thin, the only click import. Every DigestError becomes an exit code here.

The daemons and the demo (APScheduler, Starlette, aiosmtpd) are imported by their own commands
only, so that every other command starts without them.

Exit codes: 0 success, 1 operational failure, 2 bad input or configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import errno
import json
import logging
import re
import signal
import sys
from contextlib import closing
from functools import partial
from pathlib import Path

import click

from . import console
from .compose.editions import next_sends, sends_on, today_in
from .compose.pipeline import ComposedIssue, compose
from .compose.planning import plan_issue, recorded_composition
from .compose.preflight import Finding, check_plan, check_rendered
from .compose.render import Renderer
from .compose.templates import builtin_names, copy_builtins, template_list
from .config import DEMO_SECRET, load_settings, parse_signing_keys
from .deliver.approval import Proposal
from .deliver.approval import approve as approve_issue
from .deliver.control import act, default_actor
from .deliver.dryrun import DryRun, dry_run
from .deliver.preview import send_preview
from .deliver.runner import EmptyIssue, send_issue, send_test_copies
from .deliver.send import EDITOR_STOP, Notice, SendReport
from .deliver.status import RELAY_STATES, IssueStanding, issue_standing, state_shown
from .deliver.transport import check_smtp_settings
from .deliver.worker import WorkerReport, run_worker, worker_name
from .errors import ConfigError, DigestError, StateError, StoredCompositionError, TemplateError
from .events import event, log_to_stderr
from .files import write_atomically
from .models import Edition, Issue, Settings, Subscriber
from .readers.addresses import AddressError, check_address
from .readers.bounces import Summary as BounceSummary
from .readers.bounces import process as process_bounces
from .readers.subscribers import SubscriberLoad, load_subscribers
from .readers.writeback import export as export_subscribers
from .returnpath import copy_id as verp_copy_id
from .sources.gathering import BrokenStories, broken_story_rule, gather_stories
from .sources.notes import note_path
from .sources.stories import StoryLoad
from .state.ledger import STATES, Ledger, shown, state_exists, state_path

_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date (YYYY-MM-DD)") from None


date_option = click.option("--date", "date", callback=_parse_date, metavar="YYYY-MM-DD",
                           help="Issue date in the edition's own time zone (default: today there).")


_CONFIG_HELP = "Path to digest.toml (default: $DIGEST_CONFIG, else ./digest.toml)."


def _config_here(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:  # given after the subcommand: it wins over the group's and $DIGEST_CONFIG
        ctx.obj = value


def config_option(command):
    """``--config PATH`` on a command as well as on the group, so it may follow the subcommand."""
    # Eager, so that `digest demo --config x --help` shows the defaults of that config.
    return click.option("--config", type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                        is_eager=True, callback=_config_here, help=_CONFIG_HELP)(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), envvar="DIGEST_CONFIG",
              help=_CONFIG_HELP)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Compose and send newsroom email digests."""
    ctx.obj = config


def _settings(ctx: click.Context) -> Settings:
    return load_settings(ctx.obj)


def _edition(settings: Settings, slug: str) -> Edition:
    try:
        return settings.edition(slug)
    except KeyError:
        known = ", ".join(e.slug for e in settings.editions)
        raise ConfigError(f"no edition '{slug}' (known: {known})", file=settings.config_file) from None


def _require_keys(settings: Settings) -> Settings:
    if not settings.signing_keys:
        raise ConfigError("DIGEST_SECRET_KEY is not set; it signs unsubscribe links and Message-IDs "
                          "(e.g. export DIGEST_SECRET_KEY=\"k1:$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\")",
                          field="DIGEST_SECRET_KEY")
    return settings


def _load_inputs(settings: Settings) -> tuple[StoryLoad, SubscriberLoad]:
    stories = gather_stories(settings)
    subscribers = load_subscribers(settings.paths.subscribers, (e.slug for e in settings.editions))
    return stories, subscribers


def _print_findings(settings: Settings, findings: list[Finding]) -> None:
    """One line per finding, never cut: ``error: subscribers.csv:10, field 'email': ...``."""
    base = f"{settings.config_file.resolve().parent}/"
    for finding in findings:
        console.line(f"{finding.level}: {finding.where.replace(base, '')}: {finding.message}", finding.level)


def _shown_path(settings: Settings, path: Path | None) -> str | None:
    """``path`` relative to digest.toml's folder when it is inside it (as findings show files)."""
    if path is None:
        return None
    try:
        return str(path.relative_to(settings.config_file.resolve().parent))
    except ValueError:
        return str(path)


def _input_findings(settings: Settings, stories: StoryLoad, subscribers: SubscriberLoad) -> list[Finding]:
    # Left out under on_broken_story = "skip" (the default); each edition that says "fail" adds its own error.
    findings = [Finding("error", p.where, f"{p.message}; left out of every issue") for p in stories.problems]
    if stories.feeds is not None:  # a feed's trouble is reported; the issue uses the sources that answered
        findings += [Finding("warning", p.where, p.message) for p in stories.feeds.problems]
    findings += [Finding("error", p.where, p.message) for p in subscribers.errors]
    findings += [Finding("warning", p.where, p.message) for p in subscribers.warnings]
    if not settings.signing_keys:
        findings.append(Finding("error", "DIGEST_SECRET_KEY", "not set: render and send need it to sign unsubscribe links"))
    return findings


@cli.command()
@config_option
@click.pass_context
def editions(ctx: click.Context) -> None:
    """List editions, their time zones and next send times."""
    settings = _settings(ctx)
    now = dt.datetime.now(dt.timezone.utc)
    subscribers = load_subscribers(settings.paths.subscribers, (e.slug for e in settings.editions))
    rows = []
    for edition in settings.editions:
        nxt = next_sends(edition, now, 1)[0]
        days = "daily" if len(edition.days) == 7 else ",".join(_WEEKDAY_NAMES[d] for d in sorted(edition.days))
        rows.append((edition.slug, edition.name, edition.kind, edition.timezone,
                     f"{edition.send_at:%H:%M} {days}", f"{nxt:%a %Y-%m-%d %H:%M %Z}",
                     f"{nxt.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", len(subscribers.audience(edition.slug))))
    console.table("Editions", ["slug", "name", "kind", "time zone", "sends", "next send (local)", "next send (UTC)", "readers"], rows)


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _print_subscriber_lines(settings: Settings, subscribers: SubscriberLoad, editions: list[str]) -> None:
    """Where every line of subscribers.csv went, and the rows left out that each edition lost."""
    lines = subscribers.lines
    name = settings.paths.subscribers.name
    left_out = f"{lines.skipped:,} left out" + (f" ({_rows(len(subscribers.errors))} with errors)"
                                                  if len(subscribers.errors) != lines.skipped else "")
    console.line(f"{name}: {lines.total:,} lines: {lines.header} header, {lines.kept:,} kept, "
                 f"{left_out}, {lines.blank:,} blank")
    for slug in editions:
        if subscribers.lost.get(slug):
            console.line(f"{name}: {_rows(subscribers.lost[slug])} for {slug} left out", "error")
    if subscribers.lost_unknown:
        console.line(f"{name}: {_rows(subscribers.lost_unknown)} whose edition cannot be made out left out", "error")


@cli.command()
@config_option
@click.argument("edition", required=False)
@date_option
@click.pass_context
def check(ctx: click.Context, edition: str | None, date: dt.date | None) -> None:
    """Validate config, stories and subscribers, and preflight the rendered issue(s)."""
    settings = _settings(ctx)
    stories, subscribers = _load_inputs(settings)
    findings = _input_findings(settings, stories, subscribers)
    _print_feeds(stories)
    chosen = [_edition(settings, edition)] if edition else list(settings.editions)
    preflight = _Preflight(settings, stories, subscribers)
    rows = []
    for ed in chosen:
        row, found = preflight.issue(ed, date or today_in(ed))
        rows.append(row)
        findings += found
    console.table("Issues", ["edition", "date", "stories", "held (budget)", "minutes", "readers", "message"], rows)
    _print_findings(settings, findings)
    _print_subscriber_lines(settings, subscribers, [ed.slug for ed in chosen])
    if _print_totals(findings):
        ctx.exit(2)


def _print_feeds(stories: StoryLoad) -> None:
    """One row per configured feed: what it answered and what was kept of it."""
    if stories.feeds is not None:
        console.table("Feeds", ["source", "status", "entries", "kept", "duplicates", "dropped", "detail"],
                      [(r.name, r.status, r.entries, r.kept, r.duplicates, len(r.dropped), r.detail) for r in stories.feeds.sources])


def _print_totals(findings: list[Finding]) -> int:
    """``2 error(s), 1 warning(s)``; returns the number of errors (any makes `digest check` exit 2)."""
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    console.line(f"{errors} error(s), {warnings} warning(s)", "error" if errors else ("warning" if warnings else "ok"))
    return errors


class _Preflight:
    """`digest check`'s look at one issue per edition: its plan, and its message rendered for one reader."""

    def __init__(self, settings: Settings, stories: StoryLoad, subscribers: SubscriberLoad) -> None:
        self.settings = settings
        self.stories = stories
        self.subscribers = subscribers
        # The preflight renders issues; without the real key it signs with a throwaway one.
        self.preview = settings if settings.signing_keys else dataclasses.replace(settings, signing_keys=parse_signing_keys(DEMO_SECRET))
        self.renderer = Renderer(settings.paths.templates)

    def issue(self, ed: Edition, issue_date: dt.date) -> tuple[tuple[object, ...], list[Finding]]:
        """The issue's row of the "Issues" table, and what is wrong with it."""
        issue = plan_issue(self.settings, ed, issue_date, self.stories.stories)
        findings = self._plan_findings(ed, issue_date, issue)
        audience = self.subscribers.audience(ed.slug)
        size = "-"
        if not issue.is_empty:
            message_size, rendered = self._rendered(ed, issue, audience)
            findings += rendered
            size = f"{message_size / 1024:.1f} KB"
        row = (ed.slug, issue_date.isoformat(), len(issue.stories), len(issue.held_over_budget),
               issue.reading_minutes or "-", len(audience), size)
        return row, findings

    def _plan_findings(self, ed: Edition, issue_date: dt.date, issue: Issue) -> list[Finding]:
        """The issue note's trouble, the broken-story rule's verdict and the plan's own findings."""
        findings = []
        if issue.note_problem is not None:  # the story files' own errors are listed once, above
            fate = ("on_broken_story = \"fail\" refuses the issue" if ed.on_broken_story == "fail"
                    else "the issue goes out without this note")
            findings.append(Finding("error", issue.note_problem.where, f"{issue.note_problem.message}; {fate}"))
        try:
            broken_story_rule(ed, issue_date, self.stories, note=issue.note_problem, log=False)
        except BrokenStories as exc:
            findings.append(Finding("error", f"{ed.slug} {issue_date}", str(exc)))
        note = _shown_path(self.settings, note_path(self.settings.paths.notes, ed.slug, issue_date))
        return findings + check_plan(issue, note)

    def _rendered(self, ed: Edition, issue: Issue, audience: list[Subscriber]) -> tuple[int, list[Finding]]:
        """The message's size in bytes as the first reader (or a sample one) gets it, and its findings."""
        composed = compose(self.preview, issue, self.renderer)
        sample = audience[0] if audience else Subscriber("reader@example.com", "Sample Reader", frozenset({ed.slug}), "active", 0)
        message = composed.message(composed.recipient(sample))
        return len(message), check_rendered(composed, message) + self._as_created(ed, issue, composed)

    def _as_created(self, ed: Edition, issue: Issue, composed: ComposedIssue) -> list[Finding]:
        """A warning when an issue already created would be composed otherwise from today's files."""
        try:
            recorded = recorded_composition(self.preview, ed, issue.date)
        except StoredCompositionError as exc:
            return [Finding("error", f"{ed.slug} {issue.date.isoformat()}", str(exc))]
        if recorded is None or recorded.same_copies(composed):
            return []
        return [Finding("warning", f"{ed.slug} {issue.date.isoformat()}",
                        "stories or templates changed since the issue was created; its copies still go as created "
                        f"(fingerprint {recorded.fingerprint}), and `digest render` shows them")]


def _summary(results: list[DryRun]) -> None:
    console.table("Dry run", list(DryRun.COLUMNS), [r.row() for r in results])
    for r in results:  # a line of its own: a long path is never wrapped inside a table cell
        if r.folder:
            console.line(f"{r.issue.edition.slug} {r.issue.date.isoformat()}: {r.written} .eml file(s) and index.html in {r.folder}")
        if r.fingerprint:
            console.note(f"{r.issue.edition.slug} {r.issue.date.isoformat()} was already created: its copies are "
                         f"rebuilt from the composition kept with it (fingerprint {r.fingerprint}), not from the story files")


def _warning_line(text: str) -> None:
    """A warning from a running command (a story left out), on its own line in the output."""
    console.line(f"warning: {text}", "warning")


def _warn_inputs(stories: StoryLoad, subscribers: SubscriberLoad) -> None:
    if subscribers.errors:
        console.note(f"{_rows(len(subscribers.errors))} of the subscriber file could not be read, for all editions "
                     "together; `digest check` names them and what each edition lost")


@cli.command()
@config_option
@click.argument("edition")
@date_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder under which the issue gets its own OUT/EDITION/DATE folder (default: [paths] out).")
@click.pass_context
def render(ctx: click.Context, edition: str, date: dt.date | None, out: Path | None) -> None:
    """Dry run: write one .eml per recipient (plus index.html) in OUT/EDITION/DATE; send nothing.

    Only digest's own files from an earlier run of that issue are replaced (its manifest,
    .digest-dry-run.jsonl, lists them); a non-empty folder without one is refused.
    """
    settings = _require_keys(_settings(ctx))
    ed = _edition(settings, edition)
    date = date or today_in(ed)
    if not sends_on(ed, date):
        console.note(f"{ed.slug} does not normally go out on {date:%A}s; rendering anyway")
    stories, subscribers = _load_inputs(settings)
    _warn_inputs(stories, subscribers)
    result = dry_run(settings, ed, date, out, stories, subscribers, Renderer(settings.paths.templates),
                     warn=_warning_line, progress=console.progress)
    _summary([result])
    if result.folder is None and ed.on_empty == "fail":
        ctx.exit(1)


@cli.command()
@config_option
@click.argument("edition")
@date_option
@click.option("--to", "to", multiple=True, metavar="ADDRESS",
              help="Send a test copy to this address only (repeatable). It is marked as a test and is not the issue's send.")
@click.option("--as", "as_reader", metavar="ADDRESS", help="With --to: render the test copy as this subscriber would get it.")
@click.option("--no-wait", is_flag=True, help="Do not wait for deferred copies' retry times; a later run retries them.")
@click.option("--workers", type=click.IntRange(1, 256), metavar="N",
              help="Local sender processes for this issue, this one included, with one progress bar over all. "
                   "Default: [delivery] workers (auto: with PostgreSQL state one per core, as many as the copies due "
                   "are worth; with SQLite one).")
@click.option("--deadline", "deadline", metavar="DURATION|TIME",
              help="A new delivery deadline for this issue, recorded for later runs too: a duration from now "
                   "(90m, 6h, 2d) or an ISO time (2026-12-02T18:00, in the edition's zone unless it has an offset). "
                   "Default: [delivery] deadline_hours after the issue's send time.")
@click.pass_context
def send(ctx: click.Context, edition: str, date: dt.date | None, to: tuple[str, ...], as_reader: str | None, no_wait: bool,
         workers: int | None, deadline: str | None) -> None:
    """Send one issue now over SMTP (resumes an interrupted one; never sends it twice).

    Exits 1 when copies are left unsent or subscriber rows could not be read (they are named);
    run it again after fixing a row to add that reader to the issue.
    """
    settings = _require_keys(_settings(ctx))
    ed = _edition(settings, edition)
    date = date or today_in(ed)
    new_deadline = _parse_deadline(deadline, ed) if deadline is not None else None
    if new_deadline is not None and to:
        raise click.UsageError("--deadline is for the issue's send, not for --to test copies")
    if to and workers is not None:
        raise click.UsageError("--workers is for the issue's send, not for --to test copies")
    if to:
        ctx.exit(_send_tests(settings, ed, date, list(to), as_reader))
    if as_reader:
        raise click.UsageError("--as only goes with --to")
    outcome = _run_send(settings, ed, date, wait=not no_wait, deadline=new_deadline,
                        workers=workers if workers is not None else settings.delivery.workers)
    if isinstance(outcome, EmptyIssue):
        console.line(f"{ed.slug} {date}: no stories in the window; nothing created, nothing sent", "warning")
        ctx.exit(1 if ed.on_empty == "fail" else 0)
    _send_summary(ed, date, outcome)
    # Rows of subscribers.csv this issue could not use: operational (1), the readers who could be read got it.
    ctx.exit(0 if outcome.ok and not outcome.left_out else 1)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _parse_deadline(value: str, edition: Edition) -> dt.datetime:
    """``6h`` from now, or an ISO time (the edition's zone when it has no offset); never one in the past."""
    now = dt.datetime.now(edition.zone)
    match = _DURATION.fullmatch(value.strip())
    if match:
        when = now + dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    else:
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise click.BadParameter(f"'{value}' is not a duration (90m, 6h, 2d) or an ISO time (2026-12-02T18:00)",
                                     param_hint="--deadline") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=edition.zone)
    if when <= now:
        raise click.BadParameter(f"{when.astimezone(edition.zone):%Y-%m-%d %H:%M %Z} has already passed "
                                 f"({edition.timezone}); give a time still to come", param_hint="--deadline")
    return when


def _run_send(settings: Settings, edition: Edition, date: dt.date, *, wait: bool,
              deadline: dt.datetime | None = None, workers: int | None = 1) -> SendReport | EmptyIssue:
    def tell(notice: Notice) -> None:
        """A notice from the running send, on standard error above the progress bar."""
        if notice.event == "relay.unreachable":
            console.warning(f"{notice.text}; Ctrl-C stops, the same command resumes")
        elif notice.event == "issue.deadline_passed":
            console.warning(f"{notice.text}. To retry for longer, give it a new deadline: "
                            f"digest send {edition.slug} --date {date} --deadline 6h")
        else:
            console.warning(notice.text)

    async def run() -> SendReport | EmptyIssue:
        stop = _stop_on_signals(asyncio.Event())  # stop taking readers; finish the copies in flight
        with console.live_counts(f"{edition.slug} {date}") as update:
            return await send_issue(settings, edition, date, stop=stop, progress=update, wait_for_retries=wait,
                                    notify=tell, deadline=deadline,
                                    warn=_warning_line, workers=workers)

    return asyncio.run(run())


def _send_summary(edition: Edition, date: dt.date, report: SendReport) -> None:
    """The send's table, what it found on the way, and one closing line on where the issue stands."""
    counts = report.counts
    rows = [(state, counts[state], report.this_run.get(state, 0)) for state in STATES if counts[state] or report.this_run.get(state)]
    console.table(f"{edition.slug} {date}", ["state", "all copies", "this run"], rows)
    for text, level in _send_notes(report):
        console.line(text, level)
    console.line(*_send_ending(report))


def _send_notes(report: SendReport) -> list[tuple[str, str]]:
    """Lines on what this run found besides the copies: crashed copies, readers added, rows left out."""
    notes = []
    if report.recovered:
        notes.append((f"{report.recovered} copies were in flight when an earlier run stopped; marked uncertain", "warning"))
    if report.added:
        notes.append((f"added {report.added} reader{'' if report.added == 1 else 's'} whose "
                      f"row{' was' if report.added == 1 else 's were'} fixed since the audience was frozen", "ok"))
    if report.left_out:
        notes.append((f"the subscriber file had errors: {_left_out_text(report.left_out)}; these readers have not "
                      "had this issue. Fix the rows (`digest check`) and run the same command again to send it to them",
                      "error"))
    return notes


def _send_ending(report: SendReport) -> tuple[str, str]:
    """The closing line of `digest send` and its level: why it stopped, or how complete it is."""
    counts = report.counts
    if report.stopped == "signal":
        return _stopped_by_signal(report), "warning"
    if report.stopped and report.stopped.startswith(EDITOR_STOP):
        return f"stopped: {report.stopped.removeprefix(EDITOR_STOP)}", "warning"
    if report.stopped == "paused":
        return ("paused by the circuit breaker: too many policy rejections (5.7.x). Check the relay and "
                "the sender's reputation, then run the same command again to resume", "error")
    if report.stopped:
        return f"stopped: {report.stopped}", "error"
    if report.ok and report.left_out:
        return f"{counts['sent']} sent to every reader that could be read", "warning"
    if report.ok:
        return f"done: {counts['sent']} sent", "ok"
    return "not complete: see `digest status` for each reader's outcome", "warning"


def _stopped_by_signal(report: SendReport) -> str:
    """What a signal left unsent, and the relay's trouble if that was why."""
    counts = report.counts
    left = {state: counts[state] for state in ("pending", "deferred", "uncertain", "sending") if counts[state]}
    what = f"{sum(left.values())} copies not sent ({', '.join(f'{n} {state}' for state, n in left.items())})" if left else "every copy settled"
    why = f": the relay was unreachable, {report.relay_problem}" if report.relay_problem else ""
    return f"stopped by a signal with {what}{why}; run the same command again to resume"


def _left_out_text(rows: tuple[tuple[int, str], ...] | list[tuple[int, str]]) -> str:
    """'1 subscriber row meant for this edition left out (line 3)', naming at most ten lines."""
    lines = ", ".join(str(line) for line, _ in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    return (f"{_rows(len(rows)).replace('row', 'subscriber row', 1)} meant for this edition left out "
            f"(line{'' if len(rows) == 1 else 's'} {lines})")


def _check_address_option(option: str, address: str) -> None:
    try:
        check_address(address)
    except AddressError as exc:
        raise click.BadParameter(f"{address}: {exc}", param_hint=option) from None


def _send_tests(settings: Settings, edition: Edition, date: dt.date, to: list[str], as_reader: str | None) -> int:
    for address in to:
        _check_address_option("--to", address)
    reader = None
    if as_reader:
        subscribers = load_subscribers(settings.paths.subscribers, (e.slug for e in settings.editions))
        reader = next((s for s in subscribers.subscribers if s.email.casefold() == as_reader.casefold()), None)
        if reader is None:
            raise click.BadParameter(f"{as_reader} is not in {settings.paths.subscribers.name}", param_hint="--as")
    results = asyncio.run(send_test_copies(
        settings, edition, date, to, reader,
        warn=lambda problem: console.line(f"warning: {problem}; left out of this test copy", "warning")))
    console.table(f"Test copies of {edition.slug} {date}", ["address", "code", "reply"], results)
    return 0 if all(200 <= code < 300 for _, code, _ in results) else 1


@cli.command()
@config_option
@click.argument("edition")
@date_option
@click.option("--export", "export", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every reader's outcome to this CSV file (safe to open in a spreadsheet).")
@click.pass_context
def status(ctx: click.Context, edition: str, date: dt.date | None, export: Path | None) -> None:
    """What happened to each recipient of an issue: every copy not sent, with its state, attempts,
    last reply and why it failed.

    Exits 1 while copies are unsent or failed, or subscriber rows were left out of its audience.
    """
    settings = _settings(ctx)
    ed = _edition(settings, edition)
    date = date or today_in(ed)
    standing = issue_standing(settings, ed, date, with_csv=export is not None)
    if standing.record is None:
        _print_unrecorded(settings, standing)
        _print_history(standing)
        ctx.exit(1)
    _print_standing(settings, standing)
    if export:
        write_atomically(export, (standing.csv or "").encode("utf-8"))
        console.line(f"wrote {export}")
    ctx.exit(0 if standing.ok else 1)


def _control_command(action: str, summary: str) -> None:
    """`digest hold|pause|resume|cancel EDITION --date D [--reason TEXT] [--by NAME]`."""

    @cli.command(name=action, help=summary)
    @config_option
    @click.argument("edition")
    @date_option
    @click.option("--reason", metavar="TEXT", help="Why, in one line: kept in the issue's history and shown by `digest status`.")
    @click.option("--by", "actor", metavar="NAME", help="Who is acting (default: your login@this machine).")
    @click.pass_context
    def command(ctx: click.Context, edition: str, date: dt.date | None, reason: str | None, actor: str | None) -> None:
        settings = _settings(ctx)
        ed = _edition(settings, edition)
        result = act(settings, ed, date or today_in(ed), action, actor or default_actor(), reason)
        console.line(result.message, "warning" if result.in_flight else "ok")
        event(f"issue.{action}", edition=ed.slug, date=str(date or today_in(ed)), by=result.action.actor,
              reason=result.action.reason, delivered=result.action.delivered)


@cli.command()
@config_option
@click.argument("edition")
@date_option
@click.option("--to", "to", multiple=True, metavar="ADDRESS",
              help="Send the preview here instead of to the edition's editors (repeatable); no approve link.")
@click.pass_context
def preview(ctx: click.Context, edition: str, date: dt.date | None, to: tuple[str, ...]) -> None:
    """Compose an issue as it would go now and mail its editors a preview: marked "[PREVIEW]", with a
    banner above the issue giving its fingerprint, stories in and held out, readers, size and the
    preflight's warnings (and, when approval is required, each editor's approve link)."""
    settings = _settings(ctx)
    ed = _edition(settings, edition)
    for address in to:
        _check_address_option("--to", address)
    sent = asyncio.run(send_preview(settings, ed, date or today_in(ed), tuple(to)))
    _print_proposal(sent.proposal)
    console.table(f"Previews of {ed.slug} {sent.proposal.date}", ["address", "code", "reply"], sent.replies)
    if sent.expires is not None and not to:
        console.line(f"each editor's approve link works once, until {sent.expires:%Y-%m-%d %H:%M UTC}")
    ctx.exit(0 if sent.ok else 1)


@cli.command()
@config_option
@click.argument("edition")
@date_option
@click.option("--fingerprint", metavar="F", help="Approve only if the issue still composes to this fingerprint "
              "(the one in the preview you read). Without it, the issue as it composes now is approved.")
@click.option("--by", "actor", metavar="NAME", help="Who approves (default: your login@this machine).")
@click.pass_context
def approve(ctx: click.Context, edition: str, date: dt.date | None, fingerprint: str | None, actor: str | None) -> None:
    """Approve an issue of an edition with approval = "required", pinned to its fingerprint: it is
    sent with exactly these bytes, and any later change to it needs a new approval."""
    settings = _settings(ctx)
    ed = _edition(settings, edition)
    date = date or today_in(ed)
    approval, proposal = approve_issue(settings, ed, date, actor or default_actor(), fingerprint=fingerprint)
    _print_proposal(proposal)
    console.line(f"{ed.slug} {date} approved as {approval.fingerprint} by {approval.actor}: it goes at its send "
                 "time with exactly these bytes", "ok")
    event("issue.approved", edition=ed.slug, date=date.isoformat(), fingerprint=approval.fingerprint,
          by=approval.actor, via=approval.via)


def _print_proposal(proposal: Proposal) -> None:
    issue = proposal.issue
    rows = [("in", s.headline) for s in issue.stories] + [("held over (budget)", s.headline) for s in issue.held_over_budget]
    rows += [("left out", str(problem)) for problem in proposal.left_out]
    console.table(f"{issue.edition.slug} {issue.date}: fingerprint {proposal.fingerprint}", ["story", "headline"], rows)
    console.line(f"{proposal.readers:,} reader(s); a copy is {proposal.size / 1024:.1f} KB")
    for finding in proposal.findings:
        console.line(f"{finding.level}: {finding.where}: {finding.message}", "warning")


_control_command("hold", "Keep an issue from being sent, before its send time or during it, until `digest resume`. "
                         "Takes effect in every process at once: no copy starts after this returns.")
_control_command("pause", "Stop a send that is under way, in every process at once: copies in flight finish, "
                          "none starts after this returns. `digest resume` goes on where it stopped.")
_control_command("resume", "Let a held or paused issue go on: running workers take it up at once, the "
                           "scheduler within a minute, `digest send` now.")
_control_command("cancel", "Stop an issue for good: copies not started are cancelled, copies in flight get "
                           "their answer; records who, when, why and how many readers had already received it.")


_STATUS_ROWS = 50  # copies `digest status` lists on the terminal; --export writes them all


def _print_history(standing: IssueStanding) -> None:
    """Every preview, approval, hold, pause, resume and cancel of the issue: who, when, why (or which
    fingerprint), and how many had it by then."""
    if standing.history:
        console.table("History", ["action", "by", "at (UTC)", "reason or fingerprint", "sent by then"],
                      [(e.what, e.by, dt.datetime.fromtimestamp(e.at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                        e.detail, "" if e.delivered is None else e.delivered) for e in standing.history])


def _print_unrecorded(settings: Settings, standing: IssueStanding) -> None:
    """No issue recorded: the scheduler missed it, or it was not sent with this state database."""
    slug, date = standing.edition.slug, standing.date
    if standing.missed is not None:
        console.line(f"{slug} {date}: MISSED by the scheduler ({standing.missed}); send it with "
                     f"`digest send {slug} --date {date}`", "error")
        return
    if standing.actions:
        last = standing.actions[-1]
        console.line(f"{slug} {date}: not created yet; last action: {last.action} by {last.actor}", "warning")
        return
    if standing.approval is not None:
        console.line(f"{slug} {date}: not created yet; {standing.approval}", "warning")
        return
    where = shown(settings.state_db) if standing.database else f"{shown(settings.state_db)} (no such database yet)"
    console.line(f"{slug} {date}: no issue recorded in {where}: not sent yet with this state database", "warning")


def _print_standing(settings: Settings, standing: IssueStanding) -> None:
    """The copies per state, the rows left out of the audience and every copy not sent."""
    slug, date = standing.edition.slug, standing.date
    assert standing.record is not None
    console.table(f"{slug} {date}: {standing.record.status}", ["state", "copies"], standing.rows)
    _print_history(standing)
    if standing.relays:
        console.table("Per relay (the relay that gave each copy's last outcome)", ["relay", *RELAY_STATES],
                      standing.relays)
    if standing.senders:
        console.table("Per sender (the process that sent each copy)", ["sender", "sent"], standing.senders)
    if standing.workers:
        console.table("Workers heard from in the last minute", ["worker", "on", "last seen"], standing.workers)
    if standing.bounced_later or standing.complaints:
        console.line(f"after delivery: {standing.bounced_later} bounced (DSNs), {standing.complaints} complained "
                     "(marked as spam; those readers are suppressed from every edition)",
                     "warning" if standing.complaints else None)
    if standing.left_out:
        console.line(f"audience frozen with {_left_out_text(standing.left_out)}; fix them and run "
                     f"`digest send {slug} --date {date}` to add the readers whose address can be read", "error")
        for line, reason in standing.left_out[:50]:
            console.line(f"  {settings.paths.subscribers.name}:{line}: {reason}", "error")
    if standing.added:
        console.line(f"{standing.added} reader(s) added since the freeze, their rows fixed", "ok")
    problems = standing.not_sent
    if problems:
        console.table("Not sent", ["reader", "state", "attempts", "last reply"],
                      [(d.email, state_shown(d.state, d.failure), d.attempts,
                        f"{d.last_code or ''} {d.last_text or ''}".strip()) for d in problems[:_STATUS_ROWS]])
        if len(problems) > _STATUS_ROWS:
            console.line(f"... and {len(problems) - _STATUS_ROWS} more; --export for all")




class _DemoDateOption(click.Option):
    """``digest demo --date``, whose help names the default this newsroom's config really gives."""

    def get_help_record(self, ctx: click.Context):
        try:
            settings = load_settings(ctx.obj)
        except DigestError:
            self.help = ("Sample day to send (default: the [demo] date in digest.toml, else today in each "
                         "edition's time zone).")
        else:
            if settings.demo_date is not None:
                self.help = f"Sample day to send (default: {settings.demo_date}, the [demo] date in {settings.config_file.name})."
            else:
                self.help = (f"Sample day to send (default: today in each edition's time zone; "
                             f"{settings.config_file.name} sets no [demo] date).")
        return super().get_help_record(ctx)


@cli.command()
@config_option
@click.option("--date", "date", cls=_DemoDateOption, callback=_parse_date, metavar="YYYY-MM-DD")
@click.pass_context
def demo(ctx: click.Context, date: dt.date | None) -> None:
    """Send every edition of the sample day through a local capture SMTP server (no setup needed)."""
    from .deliver.demo import COLUMNS as DEMO_COLUMNS
    from .deliver.demo import run_demo

    settings = _settings(ctx)
    if not settings.signing_keys:
        settings = dataclasses.replace(settings, signing_keys=parse_signing_keys(DEMO_SECRET))
        console.note("DIGEST_SECRET_KEY is not set: signing with the built-in demo key (fine for a demo, never for real sends)")
    stories, subscribers = _load_inputs(settings)
    _warn_inputs(stories, subscribers)
    rows = run_demo(settings, date, stories, warn=_warning_line)
    console.table("Demo: every edition sent over SMTP to a capture server on 127.0.0.1",
                  list(DEMO_COLUMNS), rows)
    console.line(f"Open {settings.paths.out}/<edition>/<date>/index.html to browse what the server received "
                 "(only digest's own earlier files there are replaced).")


@cli.command()
@config_option
@click.option("--list", "show_list", is_flag=True, help="List the next sends per edition and the state of today's issues.")
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 50), help="With --list: upcoming sends per edition (today's send is listed too, with its outcome).")
@click.option("--health", is_flag=True, help="Exit 0 if a scheduler leads for this state database, else 1; names the leader and any standby.")
@click.pass_context
def schedule(ctx: click.Context, show_list: bool, count: int, health: bool) -> None:
    """Run the scheduler daemon (or list upcoming sends)."""
    if not show_list and ctx.get_parameter_source("count") is not click.core.ParameterSource.DEFAULT:
        # Without --list the command starts the daemon, which sends: a stray --count must not do that.
        raise click.UsageError("--count goes with --list; `digest schedule` alone starts the scheduler")
    from .schedule import Scheduler, scheduler_health

    settings = _settings(ctx)
    if health:
        alive, detail = scheduler_health(settings)
        console.line(detail, "ok" if alive else "error")
        ctx.exit(0 if alive else 1)
    if show_list:
        _schedule_list(settings, count)
        return
    _check_relays(_require_keys(settings))
    log_to_stderr()
    daemon = Scheduler(settings)

    async def run() -> None:
        _stop_on_signals(daemon.stop)
        await daemon.run()

    asyncio.run(run())


@cli.command()
@config_option
@click.option("--name", metavar="NAME", help="The name this worker records with its claims and in `digest status` "
              "(default host:pid). Give each worker its own; a name must not contain ':'.")
@click.option("--issue", "issue_id", type=click.IntRange(1), metavar="ID", hidden=True,
              help="Send this issue's copies only and exit when none is due (how `digest send --workers` starts helpers).")
@click.option("--poll", type=click.FloatRange(0.1, 300), default=2.0, show_default=True, metavar="SECONDS",
              help="How long an idle worker waits before it looks for copies again.")
@click.option("--quiet", is_flag=True, help="Log warnings and errors only.")
@click.pass_context
def worker(ctx: click.Context, name: str | None, issue_id: int | None, poll: float, quiet: bool) -> None:
    """Send copies of every open issue, beside any number of other workers, until stopped.

    Run one per core, on any machine that reaches the state database and the relays; with
    PostgreSQL state they share each issue's copies (claimed in batches on a lease that a dead
    worker lets lapse). `digest send` and the scheduler create issues; a worker never does, and
    never resumes an issue that was paused. SIGINT or SIGTERM: the copies in flight finish, then it exits.
    """
    if name is not None and (not name.strip() or any(c in name for c in ":\r\n\x00") or len(name) > 100):
        raise click.BadParameter("a worker name is up to 100 characters on one line, without ':'", param_hint="--name")
    settings = _check_relays(_require_keys(_settings(ctx)))
    log_to_stderr(logging.WARNING if quiet else logging.INFO)

    async def go() -> WorkerReport:
        stop = _stop_on_signals(asyncio.Event())
        event("worker.started", worker=worker_name(name), state=shown(settings.state_db),
              issue=issue_id if issue_id is not None else "any")
        report = await run_worker(settings, stop=stop, issue_id=issue_id, name=name, poll=poll)
        event("worker.finished", worker=report.name, sent=report.sent, status=report.stopped or "ok")
        return report

    report = asyncio.run(go())
    ctx.exit(1 if report.stopped else 0)


def _stop_on_signals(stop: asyncio.Event) -> asyncio.Event:
    """Set ``stop`` on SIGINT or SIGTERM (call inside the running loop); returns it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _check_relays(settings: Settings) -> Settings:
    """Refuse, before a daemon starts, relay settings no send could use (``check_smtp_settings``)."""
    for relay in settings.smtp_relays():
        check_smtp_settings(relay)
    return settings


def _schedule_list(settings: Settings, count: int) -> None:
    from .schedule import scheduler_health, send_listing

    now = dt.datetime.now(dt.timezone.utc)
    ledger = Ledger.read_only(settings.state_db)
    try:
        recorded = ledger if ledger is not None and ledger.has_table("deliveries") else None
        console.table("Sends per edition", ["edition", "local time", "UTC", "issue"],
                      send_listing(settings.editions, recorded, now, count))
        missed = ledger.missed() if ledger is not None and ledger.has_table("missed_sends") else []
        for slug, date, when, detail in missed:
            console.line(f"missed: {slug} {date} (due {when}): {detail}. Send it with `digest send {slug} --date {date}`", "error")
        alive, detail = scheduler_health(settings, now)
        console.line(detail, "ok" if alive else "warning")
    finally:
        if ledger is not None:
            ledger.close()




@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (put an HTTPS proxy in front).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve one-click unsubscribe and the issue archive ([web] base_url points here)."""
    from .web import serve as serve_web

    settings = _require_keys(_settings(ctx))
    if any(key.secret == DEMO_SECRET.encode() for key in settings.signing_keys):
        raise ConfigError("refusing to serve with the demo signing key", field="DIGEST_SECRET_KEY")
    serve_web(settings, host, port, ready=lambda text: console.line(text, "ok"))


@cli.command()
@config_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Read and match, but suppress and mark nothing.")
@click.option("--all", "show_all", is_flag=True, help="Also list ignored messages (auto-replies, success notices).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per report on standard output instead of tables (keys: README).")
@click.pass_context
def bounces(ctx: click.Context, path: Path, dry_run: bool, show_all: bool, as_json: bool) -> None:
    """Read bounces (DSNs) and complaints (ARF) from a Maildir, mbox, .eml file or folder: suppress
    hard bounces and complainers, count the rest."""
    settings = _settings(ctx)
    verp = partial(verp_copy_id, settings.signing_keys) if settings.signing_keys else None
    if not state_exists(settings.state_db):
        nothing = f"no state database at {shown(settings.state_db)}: nothing has been sent, so no bounce can match"
        if not as_json:
            console.line(nothing, "warning")
            ctx.exit(0)
        console.err.print(f"warning: {nothing}", markup=False)  # standard output carries only the JSON
        summary = process_bounces(None, path, verp=verp, dry_run=True)
    else:
        with closing(Ledger(settings.state_db, create=not dry_run)) as ledger:
            summary = process_bounces(ledger, path, verp=verp, dry_run=dry_run)
    if as_json:
        for record in summary.records(include_ignored=show_all):
            click.echo(json.dumps(record, ensure_ascii=False, sort_keys=False))
    else:
        rows = summary.rows(include_ignored=show_all)
        if rows:
            console.table(f"Bounces in {path}", BounceSummary.OUTCOME_COLUMNS, rows)
        console.table("Bounces" + (" (dry run: nothing written)" if dry_run else ""), BounceSummary.COLUMNS,
                      [summary.totals()])
    for problem in summary.problems:
        if as_json:
            console.error(f"{problem.source}: {problem.message}")
        else:
            console.line(f"error: {problem.source}: {problem.message}", "error")
    ctx.exit(1 if summary.problems else 0)


@cli.group()
@config_option
def subscribers() -> None:
    """Keep subscribers.csv in step with the state database."""


@subscribers.command("export")
@config_option
@click.option("--dry-run", is_flag=True, help="Show the changes without writing the file.")
@click.pass_context
def subscribers_export(ctx: click.Context, dry_run: bool) -> None:
    """Write subscribers.csv back with unsubscribes and bounces applied (backup kept)."""
    settings = _settings(ctx)
    ledger = Ledger.read_only(settings.state_db)
    if ledger is None:
        console.line(f"no state database at {shown(settings.state_db)} yet: nothing to apply", "warning")
        return
    with closing(ledger):
        result = export_subscribers(settings.paths.subscribers, ledger, write=not dry_run)
    if not result.changes:
        console.line(f"{settings.paths.subscribers.name} already agrees with the state database", "ok")
        return
    console.table(("Would change" if dry_run else "Changed") + f" in {settings.paths.subscribers.name}",
                  ["line", "email", "status (editions): before -> after"],
                  [(line, email, f"{before} -> {after}") for line, email, before, after in result.changes])
    if result.backup:
        console.line(f"backup of the previous file: {result.backup}")


@cli.group()
@config_option
def state() -> None:
    """The state database: upgrade its tables, or move every record to another database."""


@state.command("migrate")
@config_option
@click.pass_context
def state_migrate(ctx: click.Context) -> None:
    """Bring the state database (DIGEST_STATE_URL, else [paths] state) to this release's tables."""
    settings = _settings(ctx)
    existed = state_exists(settings.state_db)
    from .state.migrate import upgrade  # Alembic's 0.35 s import, for the commands that migrate only

    before, after = upgrade(settings.state_db)
    if not existed:
        console.line(f"{shown(settings.state_db)}: no state database was there; created one at revision {after}", "ok")
    elif before == after:
        console.line(f"{shown(settings.state_db)}: already at revision {after}", "ok")
    else:
        console.line(f"{shown(settings.state_db)}: upgraded from revision {before or 'none (an older digest)'} "
                     f"to {after}, every record kept", "ok")


@state.command("copy")
@config_option
@click.argument("from_url", metavar="FROM_URL")
@click.argument("to_url", metavar="TO_URL")
def state_copy(from_url: str, to_url: str) -> None:
    """Copy every record of one state database into an empty one, e.g. from SQLite to PostgreSQL.

    \b
      digest state copy sqlite:///state/digest.sqlite3 postgresql://digest@db/digest

    Stop the scheduler and every sender first. Then point DIGEST_STATE_URL at TO_URL."""
    source = state_path(from_url, Path(from_url))
    if not state_exists(source):
        raise StateError(f"{shown(source)}: no state database there to copy from")
    target = state_path(to_url, Path(to_url))
    from .state.migrate import COPIED, copy_state  # as in `state migrate`

    copied = copy_state(source, target)
    console.table(f"Copied {shown(source)} -> {shown(target)}", ["table", "rows"],
                  [(name, f"{copied[name]:,}") for name in COPIED])
    console.line(f"row counts checked against the source; now set DIGEST_STATE_URL={shown(target)}", "ok")


@cli.group()
@config_option
def templates() -> None:
    """The newsroom's own templates ([paths] templates), searched before the ones digest ships."""


@templates.command("list")
@config_option
@click.pass_context
def templates_list(ctx: click.Context) -> None:
    """Each template name and the file that is used for it: the newsroom's or the built-in."""
    settings = _settings(ctx)
    folder = settings.paths.templates
    title = f"Templates: {_shown_path(settings, folder)}/ first, then the built-ins" if folder else \
        "Templates: the built-ins only (no [paths] templates in digest.toml)"
    rows = [(t.name, ("newsroom, over the built-in" if t.builtin else "newsroom") if t.newsroom else "built-in",
             _shown_path(settings, t.path)) for t in template_list(folder)]
    console.table(title, ["template", "used", "file"], rows)


@templates.command("init")
@config_option
@click.argument("names", nargs=-1, metavar="NAME...")
@click.pass_context
def templates_init(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Copy built-in templates into the newsroom's folder to edit them there.

    Name each template to copy, as `digest templates list` shows it (e.g. partials/footer.html).
    Nothing is copied without a NAME: copy only what you mean to change, because a copied file
    no longer follows digest's own changes to that template. The folder is created if missing.
    A file already there is never overwritten: it is reported and skipped (exit 1); delete it
    to copy the built-in again.
    """
    settings = load_settings(ctx.obj, templates_may_be_missing=True)
    folder = settings.paths.templates
    if folder is None:
        raise ConfigError('no templates folder: add templates = "templates" under [paths]',
                          file=settings.config_file, field="paths.templates")
    if not names:
        raise TemplateError(f"name the templates to copy; the built-in templates are: {', '.join(builtin_names())}")
    result = copy_builtins(folder, names)
    for name in result.copied:
        console.line(f"copied {name} to {_shown_path(settings, folder / name)}", "ok")
    for name in result.skipped:
        console.line(f"{_shown_path(settings, folder / name)} already exists: left as it is "
                     "(delete it to copy the built-in again)", "warning")
    if result.skipped:
        ctx.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every DigestError into its exit code."""
    try:
        # Without standalone mode click returns, rather than raises, the code given to ctx.exit().
        code = cli.main(args=argv, prog_name="digest", standalone_mode=False)
    except DigestError as exc:
        console.error(str(exc))
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.message = console.visible(exc.message)  # it may quote a value the user gave
        exc.show()
        return 2
    except click.exceptions.Abort:
        console.error("aborted")
        return 1
    except OSError as exc:
        # One translation point for the file system: a path the user gave (an option, digest.toml,
        # [paths]) that cannot be used is one line naming it, never a stack.
        text, code = os_error_line(exc)
        console.error(text)
        return code
    return code if isinstance(code, int) else 0


# The path is plainly wrong (fix the path: exit 2), rather than unusable just now (exit 1).
_WRONG_PATH = {errno.ENOTDIR: "a part of it is a file, not a folder", errno.EISDIR: "it is a folder, not a file",
               errno.ENOENT: "no such file or folder", errno.EEXIST: "a file is in the way of a folder"}
_UNUSABLE_PATH = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                  errno.EROFS: "read-only file system", errno.ENOSPC: "No space left on device (disk full)",
                  errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "name too long"}


def os_error_line(exc: OSError) -> tuple[str, int]:
    """One line for an OSError (the path and the reason in plain words) and its exit code."""
    reason = _WRONG_PATH.get(exc.errno) or _UNUSABLE_PATH.get(exc.errno) or exc.strerror or type(exc).__name__
    code = 2 if exc.errno in _WRONG_PATH else 1
    if exc.filename is None:
        return f"{reason}", code
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{where}: {reason} ({exc.strerror or exc.errno})" if exc.strerror and exc.strerror.lower() != reason.lower() else f"{where}: {reason}", code


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
