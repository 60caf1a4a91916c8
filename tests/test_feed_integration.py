"""[[sources]] end to end: check lists each feed, render and send use the ones that answered."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import json
from pathlib import Path

from conftest import SECRET_KEY, copy_newsroom

from digest.cli import main
from digest.config import load_settings, parse_signing_keys
from digest.deliver.capture import CaptureServer
from digest.deliver.runner import send_issue
from digest.models import DeliverySettings, SmtpSettings

HEADLINE = "Wire desk: rail freight deal reached overnight"


def newsroom(tmp_path: Path) -> Path:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Wire",
        "home_page_url": "https://wire.example.org/",
        "items": [{
            "id": "wire-1",
            "url": "https://wire.example.org/rail-deal",
            "title": HEADLINE,
            "content_html": "<p>Negotiators settled before dawn.</p><p><strong>Why it matters:</strong> shipping resumes.</p>",
            "date_published": "2026-12-01T04:30:00-05:00",
            "authors": [{"name": "Wire Staff"}],
            "tags": ["national"],
        }],
    }
    (tmp_path / "wire.json").write_text(json.dumps(feed), encoding="utf-8")
    sources = (
        '\n[[sources]]\nname = "wire"\nurl = "wire.json"\n'
        '\n[[sources]]\nname = "down"\nurl = "http://127.0.0.1:9/feed.xml"\ntimeout = 1\n'
    )
    return copy_newsroom(tmp_path, edit=lambda text: text + sources)


def test_check_lists_each_feed_and_render_uses_the_one_that_answered(tmp_path: Path, monkeypatch, capsys) -> None:
    config = newsroom(tmp_path)
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET_KEY)
    main(["--config", str(config), "check", "am", "--date", "2026-12-01"])
    out = capsys.readouterr().out
    assert "Feeds" in out and "wire" in out and "down" in out and "failed" in out
    assert "warning: feed 'down'" in out
    folder = tmp_path / "dry-run"
    assert main(["--config", str(config), "render", "am", "--date", "2026-12-01", "--out", str(folder)]) == 0
    first = sorted((folder / "am" / "2026-12-01").glob("*.eml"))[0]
    message = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    assert HEADLINE in message.get_body(("plain",)).get_content()


def test_a_failing_feed_never_stops_an_issue(tmp_path: Path) -> None:
    config = newsroom(tmp_path)

    async def scenario():
        async with CaptureServer() as server:
            settings = load_settings(config, environ={})
            settings = dataclasses.replace(
                settings, signing_keys=parse_signing_keys(SECRET_KEY), state_db=tmp_path / "s.db",
                smtp=SmtpSettings("127.0.0.1", server.port, "none", pool_size=2),
                delivery=DeliverySettings(deadline_hours=24 * 365 * 50))
            report = await send_issue(settings, settings.edition("am"), dt.date(2026, 12, 1))
            return report, server.handler.received

    report, received = asyncio.run(scenario())
    assert report.ok and report.counts["sent"] == 11 and len(received) == 11
    assert any(story_id.startswith("feed-") for story_id in report.issue.story_ids)
