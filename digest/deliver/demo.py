"""`digest demo` as a library call: every edition of the sample day sent to a loopback capture server.

Each demo is a fresh newsroom day (a state database of its own, thrown away after), sent through
``runner.send_issue`` as a real send is, and what the server received is kept as a dry-run folder
per issue under ``[paths] out``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..compose.editions import today_in
from ..compose.pipeline import default_out_dir
from ..compose.planning import plan_issue
from ..models import Settings, SmtpSettings
from ..sources.stories import StoryLoad
from .capture import CaptureServer
from .dryrun import write_received
from .eml import claim_dry_run_folder
from .runner import EmptyIssue, send_issue
from .transport import Envelope

COLUMNS = ("edition", "date", "stories", "sent", "received", "outcome", "saved as .eml in")


def run_demo(settings: Settings, date: dt.date | None, stories: StoryLoad,
             warn: Callable[[str], None]) -> list[tuple]:
    """Send every edition's issue of ``date`` (else the ``[demo]`` date, else today there); a row per edition (``COLUMNS``)."""
    dates = {ed.slug: date or settings.demo_date or today_in(ed) for ed in settings.editions}
    folders = {ed.slug: default_out_dir(settings, plan_issue(settings, ed, dates[ed.slug], stories.stories))
               for ed in settings.editions}
    for folder in folders.values():  # before anything is sent: a folder of the user's stops the demo
        claim_dry_run_folder(folder)
    with tempfile.TemporaryDirectory(prefix="digest-demo-") as state:  # every demo is a fresh newsroom day
        return asyncio.run(_send_all(settings, Path(state), dates, folders, warn))


async def _send_all(settings: Settings, state: Path, dates: dict[str, dt.date], folders: dict[str, Path],
                    warn: Callable[[str], None]) -> list[tuple]:
    rows = []
    async with CaptureServer() as server:
        demo_settings = dataclasses.replace(settings, state_db=state / "digest.sqlite3",
                                            smtp=SmtpSettings("127.0.0.1", server.port, "none", pool_size=4),
                                            relays=())  # the capture server only, whatever relays digest.toml names
        for ed in settings.editions:
            issue_date = dates[ed.slug]
            before = len(server.handler.received)
            outcome = await send_issue(demo_settings, ed, issue_date, warn=warn)
            received = server.handler.received[before:]
            folder = folders[ed.slug]
            await write_received(folder, f"{ed.name}, {issue_date}: as received by the capture server",
                                 ((Envelope(m.sender, m.recipients[0]), m.data) for m in received))
            if isinstance(outcome, EmptyIssue):
                rows.append((ed.slug, issue_date, 0, "-", "-", "empty: not sent", ""))
            else:
                rows.append((ed.slug, issue_date, len(outcome.issue.story_ids), outcome.counts["sent"],
                             len(received), "sent" if outcome.ok else "incomplete", folder))
    return rows
