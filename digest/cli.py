"""The command line: thin, the only click import. Every DigestError becomes an exit code here.

Exit codes: 0 success, 1 operational failure, 2 bad input or configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sys
from pathlib import Path

import click

from . import console
from .compose import ComposedIssue, compose, default_out_dir
from .planning import plan
from .config import DEMO_SECRET, load_settings, parse_signing_keys
from .editions import next_sends, sends_on, today_in
from .errors import ConfigError, DigestError
from .models import Edition, Issue, Settings, Subscriber
from .preflight import Finding, check_plan, check_rendered
from .render import Renderer
from .stories import StoryLoad, load_folder
from .subscribers import SubscriberLoad, load_subscribers
from .transport import EmlDirectory, Envelope, clear_dry_run

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), envvar="DIGEST_CONFIG",
              help="Path to digest.toml (default: $DIGEST_CONFIG, else ./digest.toml).")
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
    stories = load_folder(settings.paths.stories)
    subscribers = load_subscribers(settings.paths.subscribers, (e.slug for e in settings.editions))
    return stories, subscribers


def _print_findings(settings: Settings, findings: list[Finding]) -> None:
    """One line per finding, never cut: ``error: subscribers.csv:10, field 'email': ...``."""
    base = f"{settings.config_file.resolve().parent}/"
    for finding in findings:
        console.line(f"{finding.level}: {finding.where.replace(base, '')}: {finding.message}", finding.level)


def _input_findings(settings: Settings, stories: StoryLoad, subscribers: SubscriberLoad) -> list[Finding]:
    findings = [Finding("error", p.where, p.message) for p in stories.problems]
    findings += [Finding("error", p.where, p.message) for p in subscribers.errors]
    findings += [Finding("warning", p.where, p.message) for p in subscribers.warnings]
    if not settings.signing_keys:
        findings.append(Finding("error", "DIGEST_SECRET_KEY", "not set: render and send need it to sign unsubscribe links"))
    return findings


@cli.command()
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


@cli.command()
@click.argument("edition", required=False)
@date_option
@click.pass_context
def check(ctx: click.Context, edition: str | None, date: dt.date | None) -> None:
    """Validate config, stories and subscribers, and preflight the rendered issue(s)."""
    settings = _settings(ctx)
    stories, subscribers = _load_inputs(settings)
    findings = _input_findings(settings, stories, subscribers)
    chosen = [_edition(settings, edition)] if edition else list(settings.editions)
    # The preflight renders issues; without the real key it signs with a throwaway one.
    preview = settings if settings.signing_keys else dataclasses.replace(settings, signing_keys=parse_signing_keys(DEMO_SECRET))
    renderer = Renderer(settings.paths.templates)
    rows = []
    for ed in chosen:
        issue_date = date or today_in(ed)
        issue = plan(settings, ed, issue_date, stories.stories)
        findings += check_plan(issue)
        audience = subscribers.audience(ed.slug)
        if not issue.is_empty:
            composed = compose(preview, issue, renderer)
            sample = audience[0] if audience else Subscriber("reader@example.com", "Sample Reader", frozenset({ed.slug}), "active", 0)
            message = composed.message(composed.recipient(sample))
            findings += check_rendered(composed, message)
            size = f"{len(message) / 1024:.1f} KB"
        else:
            size = "-"
        rows.append((ed.slug, issue_date.isoformat(), len(issue.stories), len(issue.held_over_budget),
                     issue.reading_minutes or "-", len(audience), size))
    console.table("Issues", ["edition", "date", "stories", "held (budget)", "minutes", "readers", "message"], rows)
    _print_findings(settings, findings)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    console.line(f"{errors} error(s), {warnings} warning(s)", "error" if errors else ("warning" if warnings else "ok"))
    if errors:
        ctx.exit(2)


@dataclasses.dataclass
class RenderResult:
    issue: Issue
    written: int
    folder: Path | None
    message_bytes: int


def _render_issue(settings: Settings, issue: Issue, audience: list[Subscriber], folder: Path,
                  renderer: Renderer, show_progress: bool = True) -> RenderResult:
    composed: ComposedIssue = compose(settings, issue, renderer)
    transport = EmlDirectory(folder, f"{issue.edition.name}, {issue.date.isoformat()}: {composed.rendered.subject}")
    total = 0

    async def run(advance) -> None:
        nonlocal total
        for subscriber in audience:
            recipient = composed.recipient(subscriber)
            data = composed.message(recipient)
            await transport.deliver(Envelope(issue.edition.sender.address, subscriber.email), data)
            total += len(data)
            advance(1)
        await transport.close()

    if show_progress:
        with console.progress(f"{issue.edition.slug} {issue.date.isoformat()}", len(audience)) as advance:
            asyncio.run(run(advance))
    else:
        asyncio.run(run(lambda n=1: None))
    return RenderResult(issue, len(audience), folder, total)


def _render_one(settings: Settings, edition: Edition, date: dt.date, out: Path | None,
                stories: StoryLoad, subscribers: SubscriberLoad, renderer: Renderer) -> RenderResult:
    issue = plan(settings, edition, date, stories.stories)
    folder = out or default_out_dir(settings, issue)
    if issue.is_empty:
        clear_dry_run(folder)  # an earlier run's files must not pass for this (empty) issue
        return RenderResult(issue, 0, None, 0)
    return _render_issue(settings, issue, subscribers.audience(edition.slug), folder, renderer)


def _summary(results: list[RenderResult]) -> None:
    rows = []
    for r in results:
        outcome = "rendered" if r.folder else f"empty: not sent ({r.issue.edition.on_empty})"
        rows.append((r.issue.edition.slug, r.issue.date.isoformat(), len(r.issue.stories),
                     r.issue.reading_minutes or "-", r.written, outcome, r.folder or ""))
    console.table("Dry run", ["edition", "date", "stories", "minutes", ".eml files", "outcome", "folder"], rows)


def _warn_inputs(stories: StoryLoad, subscribers: SubscriberLoad) -> None:
    if stories.problems or subscribers.errors:
        console.note(f"{len(stories.problems)} story file(s) and {len(subscribers.errors)} subscriber row(s) "
                     "were left out; run `digest check` for details")


@cli.command()
@click.argument("edition")
@date_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the .eml files (default: out/EDITION/DATE).")
@click.pass_context
def render(ctx: click.Context, edition: str, date: dt.date | None, out: Path | None) -> None:
    """Dry run: write one .eml per recipient (plus index.html); send nothing."""
    settings = _require_keys(_settings(ctx))
    ed = _edition(settings, edition)
    date = date or today_in(ed)
    if not sends_on(ed, date):
        console.note(f"{ed.slug} does not normally go out on {date:%A}s; rendering anyway")
    stories, subscribers = _load_inputs(settings)
    _warn_inputs(stories, subscribers)
    result = _render_one(settings, ed, date, out, stories, subscribers, Renderer(settings.paths.templates))
    _summary([result])
    if result.folder is None and ed.on_empty == "fail":
        ctx.exit(1)


@cli.command()
@date_option
@click.pass_context
def demo(ctx: click.Context, date: dt.date | None) -> None:
    """Render every edition of the sample day to out/ (no configuration needed)."""
    settings = _settings(ctx)
    if not settings.signing_keys:
        settings = dataclasses.replace(settings, signing_keys=parse_signing_keys(DEMO_SECRET))
        console.note("DIGEST_SECRET_KEY is not set: signing with the built-in demo key (fine for a demo, never for real sends)")
    stories, subscribers = _load_inputs(settings)
    _warn_inputs(stories, subscribers)
    renderer = Renderer(settings.paths.templates)
    results = []
    for ed in settings.editions:
        issue_date = date or settings.demo_date or today_in(ed)
        results.append(_render_one(settings, ed, issue_date, None, stories, subscribers, renderer))
    _summary(results)
    console.line(f"Open {settings.paths.out}/<edition>/<date>/index.html to browse the messages.")


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
        exc.show()
        return 2
    except click.exceptions.Abort:
        console.error("aborted")
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
