"""The reader-facing web app over real HTTP: uvicorn on 127.0.0.1 in a thread, http.client.

Tokens: forged, tampered, cross-edition and rotated-key; GET never changes anything; a repeated
POST is idempotent; an unsubscribe during a send stops that reader's copy; the archive shows a
recorded issue with no reader's data.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import re
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from conftest import ROOT
import uvicorn

from digest.compose.personalise import sign_token
from digest.compose.planning import choose_stories
from digest.config import parse_signing_keys
from digest.deliver.capture import CaptureHandler, CaptureServer
from digest.models import DeliverySettings, Settings, SmtpSettings
from digest.readers.addresses import address_key
from digest.sources.stories import load_folder
from digest.state.ledger import Ledger
from digest.web import CSP, create_app

DATE = dt.date(2026, 12, 1)
ANA = "ana.lucero@example.com"  # reads am and pm in the sample list
OLD_KEY = "old:an-older-signing-key-0123456789"
NEW_KEY = "new:the-newest-signing-key-abcdef012"


# --- a live server ------------------------------------------------------------------------------


class LiveServer:
    """``with LiveServer(app) as server:`` the app served by uvicorn on 127.0.0.1 and a free port."""

    def __init__(self, app, config: uvicorn.Config | None = None) -> None:
        config = config or uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
                                          lifespan="off", server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @classmethod
    def from_config(cls, config: uvicorn.Config) -> LiveServer:
        return cls(config.app, config)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, str]:
        """(status, headers, body text); never follows a redirect."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode("utf-8", "replace")
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, str]:
        return self.request("GET", path)

    def post_form(self, path: str, fields: dict[str, str]) -> tuple[int, http.client.HTTPMessage, str]:
        from urllib.parse import urlencode
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(self, path: str, fields: dict[str, str]) -> tuple[int, http.client.HTTPMessage, str]:
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        return self.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def suppressions(settings: Settings) -> list[tuple[str, str, str]]:
    ledger = Ledger.read_only(settings.state_db)
    if ledger is None:
        return []
    with closing(ledger):
        return sorted(ledger.db.execute("SELECT key, edition, reason FROM suppressions"))


@pytest.fixture()
def settings(sample_settings: Settings, tmp_path: Path) -> Settings:
    configured = dataclasses.replace(sample_settings, state_db=tmp_path / "state" / "digest.sqlite3")
    Ledger(configured.state_db).close()  # an empty state database, as after the first send
    return configured


@pytest.fixture()
def server(settings: Settings):
    with LiveServer(create_app(settings)) as live:
        yield live


def token_for(settings: Settings, email: str = ANA, edition: str = "am") -> str:
    return sign_token(settings.signing_keys, email, edition)


def check_security_headers(headers: http.client.HTTPMessage, *, private: bool) -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP and "form-action 'self'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers.get("Set-Cookie") is None
    if private:
        assert headers["Cache-Control"] == "no-store"


def assert_invalid(status: int, headers: http.client.HTTPMessage, body: str) -> None:
    assert status == 400, body
    assert "this link is not valid" in body.lower()
    for hint in ("Traceback", "signature", "expired", "key id", "HMAC", "Exception", "File \""):
        assert hint not in body
    check_security_headers(headers, private=True)


# --- GET /u/<token> --------------------------------------------------------------------------------------


def test_get_names_edition_and_address_offers_both_buttons_and_changes_nothing(settings, server):
    path = "/u/" + token_for(settings)
    before = suppressions(settings)
    for _ in range(25):
        status, headers, body = server.get(path)
        assert status == 200
        assert server.request("HEAD", path)[0] == 200
    assert suppressions(settings) == before == []
    check_security_headers(headers, private=True)
    assert headers["Content-Type"].startswith("text/html")
    assert "Northline AM" in body and ANA in body
    assert '<html lang="en">' in body and 'name="viewport"' in body
    assert re.search(r'<form method="post"[^>]*>\s*<input type="hidden" name="scope" value="edition">', body)
    assert re.search(r'<input type="hidden" name="scope" value="all">\s*<button type="submit"[^>]*>Leave all editions</button>', body)
    assert ">Leave Northline AM</button>" in body
    assert "<script" not in body.lower() and "http://" not in body and "https://" not in body


def test_get_after_leaving_says_so(settings, server):
    path = "/u/" + token_for(settings)
    server.post_form(path, {"scope": "all"})
    status, _, body = server.get(path)
    assert status == 200 and "already left every edition" in body


# --- POST /u/<token> -------------------------------------------------------------------------------------


def test_one_click_post_unsubscribes_at_once_and_repeats_are_idempotent(settings, server):
    path = "/u/" + token_for(settings)
    for post in (server.post_form, server.post_multipart, server.post_form, server.post_multipart):
        status, headers, body = post(path, ONE_CLICK)
        assert status == 200, body  # never a redirect, never a login
        assert headers["Content-Type"].startswith("text/plain")
        assert "Unsubscribed from Northline AM" in body and len(body) < 200
        check_security_headers(headers, private=True)
    assert suppressions(settings) == [(address_key(ANA), "am", "unsubscribed")]
    with closing(Ledger(settings.state_db)) as ledger:
        assert ledger.is_suppressed(address_key(ANA), "am")
        assert not ledger.is_suppressed(address_key(ANA), "pm")


def test_page_buttons_post_edition_or_all_and_confirm(settings, server):
    path = "/u/" + token_for(settings)
    status, headers, body = server.post_form(path, {"scope": "edition"})
    assert status == 200 and "You're unsubscribed" in body and "Northline AM" in body and ANA in body
    check_security_headers(headers, private=True)
    assert suppressions(settings) == [(address_key(ANA), "am", "unsubscribed")]
    for _ in range(3):
        status, _, body = server.post_form(path, {"scope": "all"})
        assert status == 200 and "any Northline News newsletters" in body
    assert suppressions(settings) == [(address_key(ANA), "*", "unsubscribed"), (address_key(ANA), "am", "unsubscribed")]
    status, _, _ = server.post_form(path, {"scope": "everything-and-more"})
    assert status == 400


def test_cross_edition_only_through_all(settings, server):
    """A token for 'am' leaves 'am'; 'pm' only goes with the 'all editions' action."""
    am = token_for(settings, edition="am")
    server.post_form("/u/" + am, ONE_CLICK)
    server.post_form("/u/" + am, {"scope": "edition"})
    with closing(Ledger(settings.state_db)) as ledger:
        assert ledger.is_suppressed(address_key(ANA), "am")
        assert not ledger.is_suppressed(address_key(ANA), "pm")
    # Rewriting the edition inside the payload breaks the signature.
    payload, mac = am.split(".")
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
                                      .replace(b"|am|", b"|pm|")).rstrip(b"=").decode()
    assert_invalid(*server.post_form(f"/u/{forged}.{mac}", ONE_CLICK))
    assert_invalid(*server.post_form(f"/u/{forged}.{mac}", {"scope": "all"}))
    with closing(Ledger(settings.state_db)) as ledger:
        assert not ledger.is_suppressed(address_key(ANA), "pm")
    server.post_form("/u/" + am, {"scope": "all"})
    with closing(Ledger(settings.state_db)) as ledger:
        assert ledger.is_suppressed(address_key(ANA), "pm")
        assert ledger.is_suppressed(address_key(ANA), "denver")


def _sign_raw(secret: bytes, payload: bytes) -> str:
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return f"{b64(payload)}.{b64(hmac.digest(secret, payload, 'sha256'))}"


def forged_tokens(settings: Settings) -> dict[str, str]:
    good = token_for(settings)
    payload, mac = good.split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    key_id = settings.signing_keys[0].key_id
    return {
        "tampered mac": f"{payload}.{flipped}",
        "tampered address": _sign_raw(b"x" * 32, f"v1|{key_id}|am|someone.else@example.com".encode()).split(".")[0] + "." + mac,
        "wrong secret, same key id": _sign_raw(b"not-the-secret-key-0123456789", f"v1|{key_id}|am|{ANA}".encode()),
        "unknown key id": _sign_raw(settings.signing_keys[0].secret, f"v1|zz|am|{ANA}".encode()),
        "other version": _sign_raw(settings.signing_keys[0].secret, f"v2|{key_id}|am|{ANA}".encode()),
        "edition not configured": sign_token(settings.signing_keys, ANA, "no-such-edition"),
        "empty address": sign_token(settings.signing_keys, "", "am"),
        "no dot": payload + mac,
        "two dots": f"{payload}.{mac}.{mac}",
        "not base64": "%%%%.$$$$",
        "garbage": "hello",
        "empty parts": ".",
        "mac only": "." + mac,
        "huge": "A" * 5000 + "." + mac,
        "truncated mac": f"{payload}.{mac[:-4]}",
        "bad utf-8": base64.urlsafe_b64encode(b"\xff\xfe|x").decode().rstrip("=") + "." + mac,
        "sha1 mac": f"{payload}." + base64.urlsafe_b64encode(
            hmac.digest(settings.signing_keys[0].secret, f"v1|{key_id}|am|{ANA}".encode(), hashlib.sha1)).decode().rstrip("="),
    }


def test_forged_tampered_and_malformed_tokens_get_a_plain_400_and_change_nothing(settings, server):
    for name, token in forged_tokens(settings).items():
        path = "/u/" + token
        assert_invalid(*server.get(path)), name
        assert_invalid(*server.post_form(path, ONE_CLICK)), name
        assert_invalid(*server.post_form(path, {"scope": "all"})), name
        assert_invalid(*server.post_multipart(path, ONE_CLICK)), name
    assert suppressions(settings) == []


def test_rotated_keys_old_links_keep_working(settings, tmp_path):
    old_only = dataclasses.replace(settings, signing_keys=parse_signing_keys(OLD_KEY))
    rotated = dataclasses.replace(settings, signing_keys=parse_signing_keys(f"{NEW_KEY},{OLD_KEY}"))
    new_only = dataclasses.replace(settings, signing_keys=parse_signing_keys(NEW_KEY))
    old_token = token_for(old_only)
    new_token = token_for(rotated)
    assert old_token != new_token
    with LiveServer(create_app(new_only)) as server:  # the old key retired: its links stop working
        assert_invalid(*server.get("/u/" + old_token))
        assert_invalid(*server.post_form("/u/" + old_token, ONE_CLICK))
    assert suppressions(settings) == []
    with LiveServer(create_app(rotated)) as server:  # the old key still configured after rotation
        status, _, body = server.get("/u/" + old_token)
        assert status == 200 and ANA in body
        assert server.post_form("/u/" + old_token, ONE_CLICK)[0] == 200
        assert server.post_form("/u/" + new_token, {"scope": "all"})[0] == 200
    assert suppressions(settings) == [(address_key(ANA), "*", "unsubscribed"), (address_key(ANA), "am", "unsubscribed")]


def test_app_refuses_to_start_without_a_signing_key(settings):
    from digest.errors import ConfigError
    with pytest.raises(ConfigError):
        create_app(dataclasses.replace(settings, signing_keys=()))


def test_unknown_routes_404_wrong_methods_405_all_with_security_headers(settings, server):
    for path in ("/", "/nope", "/u/", "/u", "/i/", "/admin", "/u/a/b", "/static/x.css"):
        status, headers, body = server.get(path)
        assert status == 404, path
        assert "Traceback" not in body
        check_security_headers(headers, private=False)
    status, headers, _ = server.request("PUT", "/u/" + token_for(settings))
    assert status == 405 and "POST" in headers["Allow"]
    check_security_headers(headers, private=True)
    status, headers, _ = server.request("POST", "/i/am")
    assert status == 405
    check_security_headers(headers, private=False)


# --- the archive ---------------------------------------------------------------------------------------


def record_issue(settings: Settings, slug: str, date: dt.date, audience: list[str]) -> tuple[str, ...]:
    """Record issue (slug, date) in the ledger as a send would, with its archive page and its
    first copy sent; the headlines of its stories.

    The shipped stories are all for the sample day: an issue of another date gets that day's plan."""
    from digest.compose.archive import public_page
    stories = load_folder(settings.paths.stories).stories
    edition = settings.edition(slug)
    with closing(Ledger(settings.state_db)) as ledger:
        issue = dataclasses.replace(choose_stories(edition, DATE, stories, words_per_minute=settings.newsroom.words_per_minute), date=date)
        assert not issue.is_empty
        record, _ = ledger.create_issue(slug, date, issue.send_time, [s.id for s in issue.stories],
                                        audience=[(a, "Reader Name", address_key(a)) for a in audience])
        ledger.keep_archive_page(record.id, public_page(settings, issue))
        ledger.mark(ledger.deliveries(record.id)[0].id, "sent", 250, "2.0.0 queued")
    return tuple(s.headline for s in issue.stories)


def test_archive_page_of_a_recorded_issue_has_no_reader_data(settings, server, sample_subscribers):
    audience = [s.email for s in sample_subscribers.audience("am")]
    headlines = record_issue(settings, "am", DATE, audience)
    status, headers, body = server.get(f"/i/am/{DATE.isoformat()}")
    assert status == 200
    check_security_headers(headers, private=False)
    import html
    text = html.unescape(body)
    assert headlines[0] in text
    assert "Good morning." in text  # the neutral greeting
    assert "%%D" not in body  # no placeholder left
    for address in [s.email for s in sample_subscribers.subscribers] + ["probe@example.com"]:
        assert address.casefold() not in text.casefold(), address
    assert "/u/" not in body  # no unsubscribe token of anyone
    # Served again from the cache, the same page.
    assert server.get(f"/i/am/{DATE.isoformat()}")[2] == body


def test_archive_404s(settings, server):
    record_issue(settings, "am", DATE, [ANA])
    for path in (f"/i/am/{(DATE - dt.timedelta(days=1)).isoformat()}", f"/i/pm/{DATE.isoformat()}",
                 f"/i/no-such-edition/{DATE.isoformat()}", "/i/am/20261201", "/i/am/2026-13-01", "/i/am/2026-1-1",
                 "/i/am/latest", "/i/no-such-edition"):
        status, headers, body = server.get(path)
        assert status == 404, path
        assert "Traceback" not in body
        check_security_headers(headers, private=False)


def test_archive_before_any_send_is_empty_not_an_error(settings, tmp_path):
    fresh = dataclasses.replace(settings, state_db=tmp_path / "never" / "digest.sqlite3")
    with LiveServer(create_app(fresh)) as server:
        status, _, body = server.get("/i/am")
        assert status == 200 and "No issues yet" in body
        assert server.get(f"/i/am/{DATE.isoformat()}")[0] == 404
        assert_invalid(*server.get("/u/garbage"))
    assert not fresh.state_db.exists()  # reading pages created nothing


def test_archive_list_newest_first_with_links(settings, server):
    dates = [DATE - dt.timedelta(days=2), DATE, DATE - dt.timedelta(days=1)]
    for date in dates:
        record_issue(settings, "am", date, [ANA])
    status, headers, body = server.get("/i/am")
    assert status == 200
    check_security_headers(headers, private=False)
    links = re.findall(r'<a href="([^"]+)">', body)
    assert links == [f"am/{d.isoformat()}" for d in sorted(dates, reverse=True)]
    assert "Tuesday, December 1, 2026" in body and "Northline AM" in body
    for link in links:  # relative to /i/am
        assert server.get("/i/" + link)[0] == 200
    assert server.get("/i/pm")[0] == 200 and "No issues yet" in server.get("/i/pm")[2]


# --- an unsubscribe during a send ------------------------------------------------------------------------


@dataclasses.dataclass
class SlowHandler(CaptureHandler):
    delay: float = 0.05

    async def data(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().data(server, session, envelope)


def test_unsubscribe_mid_send_skips_that_readers_pending_copy(settings, tmp_path):
    readers = [f"reader{n:02d}@example.com" for n in range(40)]
    target = readers[34]
    subscribers = tmp_path / "subscribers.csv"
    with subscribers.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "editions", "status", "city", "joined"])
        for n, address in enumerate(readers):
            writer.writerow([address, f"Reader {n}", "am", "active", "", "2025-01-01"])
    handler = SlowHandler()
    from digest.deliver.runner import send_issue

    async def scenario():
        async with CaptureServer(handler) as smtp:
            sending = dataclasses.replace(
                settings, paths=dataclasses.replace(settings.paths, subscribers=subscribers),
                smtp=SmtpSettings("127.0.0.1", smtp.port, "none", pool_size=1, timeout=5, data_timeout=5),
                delivery=DeliverySettings(deadline_hours=24 * 365 * 50.0, retry_base=0.01, retry_cap=0.05))
            with LiveServer(create_app(sending)) as web:
                run = asyncio.create_task(send_issue(sending, sending.edition("am"), DATE))
                while len(handler.received) < 3:
                    assert not run.done(), "the send ended before the unsubscribe could be tried"
                    await asyncio.sleep(0.01)
                token = sign_token(sending.signing_keys, target, "am")
                status, _, _ = await asyncio.to_thread(web.post_form, "/u/" + token, ONE_CLICK)
                sent_by_then = len(handler.received)
                report = await asyncio.wait_for(run, 60)
        return status, sent_by_then, report

    status, sent_by_then, report = asyncio.run(scenario())
    assert status == 200
    assert sent_by_then < readers.index(target), "the send reached the reader before the unsubscribe; slow it down"
    received = [r for m in handler.received for r in m.recipients]
    assert target not in received
    assert sorted(received) == sorted(set(readers) - {target})  # everyone else once
    assert report.counts["sent"] == 39 and report.counts["suppressed"] == 1
    with closing(Ledger(settings.state_db)) as ledger:
        record = ledger.find_issue("am", DATE)
        states = {d.email: d.state for d in ledger.deliveries(record.id)}
    assert states[target] == "suppressed"
    assert all(state == "sent" for email, state in states.items() if email != target)


# --- issue 9: the archive serves what was sent, to whom it was sent ----------------------------------


def send_for_real(settings: Settings, slug: str = "am", date: dt.date = DATE, **smtp_server: object):
    """Send issue (slug, date) through a real capture SMTP server; the send's report."""
    from smtp_faults import settings_for

    from digest.deliver.runner import send_issue

    async def scenario():
        async with CaptureServer(**smtp_server) as smtp:
            sending = settings_for(settings, settings.state_db, smtp.port,
                                   smtp={"username": "u", "password": "wrong"} if smtp_server else None)
            return await send_issue(sending, sending.edition(slug), date)

    return asyncio.run(scenario())


def page_text(body: str) -> str:
    import html
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def test_archive_serves_the_issue_as_sent_after_its_stories_left_the_source(settings, tmp_path):
    import shutil
    stories = tmp_path / "stories"
    shutil.copytree(settings.paths.stories, stories)
    local = dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, stories=stories,
                                                                    state=tmp_path / "state"))
    report = send_for_real(local)
    assert report.counts["sent"] == 11
    with LiveServer(create_app(local)) as server:
        status, _, first = server.get(f"/i/am/{DATE.isoformat()}")
    assert status == 200
    for story in stories.glob("*.md"):  # every story leaves the source after the send
        story.unlink()
    with LiveServer(create_app(local)) as server:  # a fresh process: nothing cached
        status, headers, again = server.get(f"/i/am/{DATE.isoformat()}")
        assert status == 200, again
        check_security_headers(headers, private=False)
        assert page_text(again) == page_text(first)
        assert re.findall(r'<a href="([^"]+)">', server.get("/i/am")[2]) == [f"am/{DATE.isoformat()}"]


class CountingFeed:
    """A JSON Feed on a real local HTTP server that counts the requests it answers."""

    def __init__(self) -> None:
        import http.server
        import json

        feed = json.dumps({
            "version": "https://jsonfeed.org/version/1.1", "title": "Wire", "home_page_url": "https://wire.example.org/",
            "items": [{"id": "wire-1", "url": "https://wire.example.org/rail-deal",
                       "title": "Wire desk: rail freight deal reached overnight",
                       "content_html": "<p>Negotiators settled before dawn.</p>",
                       "date_published": "2026-12-01T04:30:00-05:00", "tags": ["national"]}],
        }).encode()
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with counter.lock:
                    counter.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/feed+json")
                self.send_header("Content-Length", str(len(feed)))
                self.end_headers()
                self.wfile.write(feed)

            def log_message(self, *args: object) -> None:
                pass

        self.lock = threading.Lock()
        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_cold_archive_views_never_fetch_a_feed(settings, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from digest.config import load_settings

    with CountingFeed() as feed:
        (tmp_path / "digest.toml").write_text(
            (ROOT / "digest.toml").read_text(encoding="utf-8")
            + f'\n[[sources]]\nname = "wire"\nurl = "{feed.url}"\n', encoding="utf-8")
        import shutil
        shutil.copytree(ROOT / "stories", tmp_path / "stories")
        shutil.copytree(ROOT / "templates", tmp_path / "templates")
        shutil.copy(ROOT / "subscribers.csv", tmp_path / "subscribers.csv")
        local = dataclasses.replace(load_settings(tmp_path / "digest.toml", environ={}),
                                    signing_keys=settings.signing_keys, state_db=tmp_path / "state" / "digest.sqlite3")
        report = send_for_real(local)
        assert report.counts["sent"] == 11
        assert feed.requests >= 1  # the send gathered the feed
        assert any(story_id.startswith("feed-") for story_id in report.issue.story_ids)
        fetched_by_send = feed.requests
        with LiveServer(create_app(local)) as server, ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: server.get(f"/i/am/{DATE.isoformat()}"), range(20)))
            assert [status for status, _, _ in answers] == [200] * 20
            assert "Wire desk: rail freight deal reached overnight" in answers[0][2]
            assert server.get("/i/am")[0] == 200
        assert feed.requests == fetched_by_send  # not one fetch for 21 public requests


def test_an_issue_nobody_received_is_not_public(settings, server):
    from digest.deliver.transport import SmtpSetupError
    try:
        report = send_for_real(settings, credentials=("u", "p"), auth_require_tls=False)  # refused at login
    except SmtpSetupError:
        report = None
    if report is not None:
        assert report.counts["sent"] == 0
    with closing(Ledger(settings.state_db)) as ledger:
        assert ledger.find_issue("am", DATE) is not None  # the issue was created; no copy went
    status, _, body = server.get(f"/i/am/{DATE.isoformat()}")
    assert status == 404, body
    status, _, body = server.get("/i/am")
    assert status == 200 and f"am/{DATE.isoformat()}" not in body and "No issues yet" in body


def test_an_issue_sent_before_archiving_was_kept_is_gone_not_an_error(settings, server):
    """Created and sent by a version that kept no archive copy: a clear 410, never a recomposition."""
    with closing(Ledger(settings.state_db)) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc),
                                        ["no-such-story"], audience=[(ANA, "Ana", address_key(ANA))])
        ledger.mark(ledger.deliveries(record.id)[0].id, "sent", 250, "ok")
    status, headers, body = server.get(f"/i/am/{DATE.isoformat()}")
    assert status == 410, body
    assert "before" in body and "archiv" in body
    check_security_headers(headers, private=False)
    assert f"am/{DATE.isoformat()}" not in server.get("/i/am")[2]


def test_an_existing_database_is_upgraded_in_place(tmp_path):
    """A state database from before the archive table: read as it is, upgraded when opened for writing."""
    path = tmp_path / "old.sqlite3"
    with closing(Ledger(path)) as ledger:
        record, _ = ledger.create_issue("am", DATE, dt.datetime(2026, 12, 1, 11, tzinfo=dt.timezone.utc), ["s1"],
                                        audience=[(ANA, "Ana", address_key(ANA))])
        ledger.mark(ledger.deliveries(record.id)[0].id, "sent", 250, "ok")
        ledger.db.execute("DROP TABLE archive_pages")  # as the previous version left it
        ledger.db.execute("DROP TABLE alembic_version")  # ... which recorded no migrations
    reader = Ledger.read_only(path)
    with closing(reader):
        assert reader.public_issue("am", DATE) == (True, None)
        assert reader.public_dates("am") == []
    with closing(Ledger(path)) as ledger:
        tables = {row[0] for row in ledger.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "archive_pages" in tables
        ledger.keep_archive_page(record.id, "<p>kept</p>")
        ledger.keep_archive_page(record.id, "<p>not this one</p>")
        assert ledger.public_issue("am", DATE) == (True, "<p>kept</p>")
        assert ledger.public_dates("am") == [DATE]



def test_archive_page_footer_is_public_not_a_readers(settings, server):
    send_for_real(settings)
    status, _, body = server.get(f"/i/am/{DATE.isoformat()}")
    assert status == 200
    text = page_text(body)
    assert "You're receiving this" not in text and "subscribed to" not in text
    assert "Unsubscribe" not in text and "View in browser" not in text
    assert 'href="#"' not in body and 'href=""' not in body
    links = dict((page_text(label), href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>(.*?)</a>', body, re.S))
    assert links["Past issues of Northline AM"] == f"{settings.base_url}/i/am"
    assert links["Northline News"] == f"https://{settings.newsroom.domain}/"
    assert links["Sign up for Northline AM"] == settings.newsroom.signup_url == "https://northline.example.org/newsletters"
    assert settings.newsroom.postal_address in text


# --- issue 9, item 17: one token, one spelling ---------------------------------------------------


def test_only_the_canonical_spelling_of_a_token_verifies(settings):
    from digest.compose.personalise import verify_token
    keys = settings.signing_keys
    good = token_for(settings)
    assert verify_token(keys, good) == (ANA, "am")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/"
    accepted = []
    for position in range(len(good)):
        for char in alphabet:
            edited = good[:position] + char + good[position + 1:]
            if edited != good and verify_token(keys, edited) is not None:
                accepted.append(edited)
    payload, mac = good.split(".")
    for extra in (f"{good}=", f"{good}==", f"{good}===", f"{payload}=.{mac}", f"{payload}==.{mac}",
                  f"{payload}.{mac}\n", f" {good}", f"{payload}.{mac[:10]} {mac[10:]}"):
        if verify_token(keys, extra) is not None:
            accepted.append(extra)
    assert accepted == []


def test_padding_variants_are_refused_over_http(settings, server):
    good = token_for(settings)
    last = good[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = [c for c in alphabet if c != last and alphabet.index(c) // 16 == alphabet.index(last) // 16]
    for token in [good + "=", good + "=="] + [good[:-1] + c for c in same_bits]:
        assert_invalid(*server.get("/u/" + token))
        assert_invalid(*server.post_form("/u/" + token, ONE_CLICK))
    assert suppressions(settings) == []
    assert server.get("/u/" + good)[0] == 200


# --- issue 9, item 18: limits and timeouts -----------------------------------------------------------


def test_chunked_body_over_the_limit_is_refused_and_unsubscribes_no_one(settings, server):
    path = "/u/" + token_for(settings)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        chunks = iter([b"List-Unsubscribe=One-Click&pad="] + [b"x" * 9000] * 100)
        connection.request("POST", path, body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        status = response.status
        response.read()
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server stopped reading and closed: the same refusal
    finally:
        connection.close()
    assert status == 413
    assert suppressions(settings) == []
    # A small chunked one-click body is still a one-click unsubscribe.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=iter([b"List-Unsubscribe=", b"One-Click"]), encode_chunked=True,
                           headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert suppressions(settings) == [(address_key(ANA), "am", "unsubscribed")]


def test_one_click_needs_the_rfc_8058_body(settings, server):
    path = "/u/" + token_for(settings)
    for body, content_type in ((b"List-Unsubscribe=No", "application/x-www-form-urlencoded"),
                               (b"", "text/plain"), (b"", "application/x-www-form-urlencoded"),
                               (b"List-Unsubscribe=One-Click", "text/plain"),
                               (b"hello", "application/octet-stream")):
        status, _, _ = server.request("POST", path, body, {"Content-Type": content_type})
        assert status == 400, (body, content_type)
    assert server.request("POST", path)[0] == 400  # no body at all
    assert suppressions(settings) == []
    assert server.post_form(path, ONE_CLICK)[0] == 200
    assert suppressions(settings) == [(address_key(ANA), "am", "unsubscribed")]


def test_trailing_slash_redirect_uses_base_url_not_the_host_header(settings, server):
    for path, target in ((f"/i/am/", "/i/am"), (f"/i/am/{DATE.isoformat()}/", f"/i/am/{DATE.isoformat()}")):
        status, headers, _ = server.request("GET", path, headers={"Host": "evil.example"})
        assert status in (301, 307, 308), path
        assert headers["Location"] == settings.base_url + target
        check_security_headers(headers, private=False)
    assert server.request("GET", "/i/no-such-edition/", headers={"Host": "evil.example"})[0] == 404


def _seconds_until_closed(port: int, head: bytes, trickle: bytes, limit: float) -> float | None:
    """Send ``head`` at once, then ``trickle`` one byte a second; seconds until the server closed."""
    import socket
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(1.0)
        for byte in trickle:
            if time.monotonic() - start > limit:
                return None
            try:
                sock.sendall(bytes([byte]))
                data = sock.recv(4096)
                if data == b"" or b"HTTP/1.1" in data:
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start
    return None


def test_slow_header_and_slow_body_connections_are_closed(settings):
    from digest.web import server_config
    config = server_config(create_app(settings), "127.0.0.1", 0, request_seconds=1.0)  # a second: each probe below trickles a byte a second
    live = LiveServer.from_config(config)
    with live:
        path = "/u/" + token_for(settings)
        slow_header = _seconds_until_closed(live.port, b"GET /i/am HTTP/1.1\r\n", b"X-Slow: " + b"a" * 60, 8)
        assert slow_header is not None and slow_header < 5, slow_header
        slow_body = _seconds_until_closed(
            live.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       "Content-Length: 400\r\n\r\n".encode(), b"List-Unsubscribe=One-Click&p=" + b"x" * 60, 8)
        assert slow_body is not None and slow_body < 5, slow_body
        chunked = _seconds_until_closed(
            live.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n".encode(), b"1\r\nx\r\n" * 20, 8)
        assert chunked is not None and chunked < 5, chunked
        assert live.get("/i/am")[0] == 200  # the server itself is fine
    assert suppressions(settings) == []


# --- issue 9, item 19: rotating away from a bare key ------------------------------------------------


def test_readme_rotation_from_a_bare_key_keeps_old_links(settings):
    bare = "an-original-bare-secret-0123456789"
    from digest.compose.personalise import IMPLICIT_KEY_ID
    before = dataclasses.replace(settings, signing_keys=parse_signing_keys(bare))
    assert before.signing_keys[0].key_id == IMPLICIT_KEY_ID  # what the old links carry
    old_token = token_for(before)
    # README: "id:secret,old-id:old-secret to rotate"; the old secret under any id.
    rotated = dataclasses.replace(settings, signing_keys=parse_signing_keys(f"new-id:{NEW_KEY.split(':', 1)[1]},old-id:{bare}"))
    other = dataclasses.replace(settings, signing_keys=parse_signing_keys(f"new-id:{NEW_KEY.split(':', 1)[1]},old-id:{OLD_KEY.split(':', 1)[1]}"))
    with LiveServer(create_app(other)) as server:  # the bare secret not configured: refused
        assert_invalid(*server.get("/u/" + old_token))
    with LiveServer(create_app(rotated)) as server:
        status, _, body = server.get("/u/" + old_token)
        assert status == 200 and ANA in body
        assert server.post_form("/u/" + old_token, ONE_CLICK)[0] == 200
        assert server.post_form("/u/" + token_for(rotated), {"scope": "all"})[0] == 200
    assert suppressions(settings) == [(address_key(ANA), "*", "unsubscribed"), (address_key(ANA), "am", "unsubscribed")]
    # Forging an implicit-id token still needs a configured secret.
    payload = f"v1|k0|am|{ANA}".encode()
    with LiveServer(create_app(rotated)) as server:
        assert_invalid(*server.get("/u/" + _sign_raw(b"some-other-secret-0123456789", payload)))


def test_rotation_keeps_the_message_id_of_a_copy_already_tried(settings, tmp_path):
    """A copy deferred after its body went keeps its Message-ID when the resend runs under a new key."""
    from smtp_faults import FaultHandler, Reply, message_id, settings_for

    from digest.deliver.runner import send_issue

    bare = "an-original-bare-secret-0123456789"
    handler = FaultHandler(data_script={ANA: [Reply("451 4.3.0 try again later")]})

    async def scenario():
        async with CaptureServer(handler) as smtp:
            first = settings_for(settings, settings.state_db, smtp.port, signing_keys=parse_signing_keys(bare))
            report = await send_issue(first, first.edition("am"), DATE, wait_for_retries=False)
            assert report.counts["deferred"] == 1
            with closing(Ledger(settings.state_db)) as ledger:
                tried = {d.email: d.message_id for d in ledger.deliveries(ledger.find_issue("am", DATE).id)}
            rotated = dataclasses.replace(first, signing_keys=parse_signing_keys(f"new-id:{NEW_KEY.split(':', 1)[1]},old-id:{bare}"))
            return tried, await send_issue(rotated, rotated.edition("am"), DATE)

    tried, report = asyncio.run(scenario())
    assert report.counts["sent"] == 11
    assert tried[ANA] is not None  # recorded when its body went, before the 451
    ana = [m for m in handler.received if ANA in m.recipients]
    assert len(ana) == 1 and message_id(ana[0].data) == tried[ANA]
    first_ids = [message_id(m.data) for m in handler.received if ANA not in m.recipients]
    assert len(set(first_ids)) == 10
