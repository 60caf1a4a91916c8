"""Feed sources, served by a real HTTP server on 127.0.0.1: formats, encodings, failures, caching."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import gzip
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from test_security import XSS_CORPUS, _Audit

from digest.compose.planning import choose_stories
from digest.compose.pipeline import compose
from digest.errors import StoryError
from digest.sources.feeds import FeedSource, fetch, gather, parse

DATA = Path(__file__).resolve().parent / "data" / "feeds"
HUGE = 50 * 1024 * 1024
TYPES = {".xml": "application/rss+xml", ".rdf": "application/rdf+xml", ".json": "application/feed+json"}
UTC = dt.UTC


def _xss_rss() -> bytes:
    items = "".join(
        f"<item><title>XSS {i}</title><link>https://xss.example.org/{i}</link><guid>xss-{i}</guid>"
        f"<pubDate>Tue, 01 Dec 2026 05:00:00 +0000</pubDate>"
        f"<description>{escape('<p><strong>Why it matters:</strong> ' + payload + ' after.</p>')}</description></item>"
        for i, payload in enumerate(XSS_CORPUS))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>X</title>'
            f"<link>https://xss.example.org/</link>{items}</channel></rss>").encode()


def _xss_json() -> bytes:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "X", "items": [
        {"id": f"jxss-{i}", "url": f"https://xss.example.org/j{i}", "title": f"JSON XSS {i}",
         "content_html": f"<p>{payload}</p>", "date_published": "2026-12-01T05:00:00Z"}
        for i, payload in enumerate(XSS_CORPUS)]}).encode()


class _State:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.huge_sent = 0
        self.huge_done = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # bodies without Content-Length end when the connection closes
    state: _State

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/rss+xml", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.state.requests.append((self.path, dict(self.headers.items())))
        path = self.path
        if path.startswith("/feeds/"):
            file = DATA / path.removeprefix("/feeds/")
            ctype = "text/xml" if file.name == "latin1.xml" else TYPES.get(file.suffix, "application/xml")
            self._send(200, file.read_bytes(), ctype)
        elif path.startswith("/gz/"):
            body = gzip.compress((DATA / path.removeprefix("/gz/")).read_bytes())
            self._send(200, body, Content_Encoding="gzip")
        elif path == "/slow":
            time.sleep(2)
            self._send(200, (DATA / "rss2.xml").read_bytes())
        elif path == "/error":
            self._send(500, b"boom", "text/plain")
        elif path in ("/loop/a", "/loop/b"):
            self._send(302, b"", "text/plain", Location="/loop/b" if path == "/loop/a" else "/loop/a")
        elif path == "/hop":
            self._send(301, b"", "text/plain", Location="/feeds/atom.xml")
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            chunk = b"<!-- " + b"x" * 65_000 + b" -->\n"
            try:
                self.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
                while self.state.huge_sent < HUGE:
                    self.wfile.write(chunk)
                    self.state.huge_sent += len(chunk)
            except OSError:
                pass
            finally:
                self.state.huge_done.set()
        elif path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            try:
                self.wfile.write(b"<rss>")
            except OSError:
                pass
        elif path == "/cond":
            etag, modified = '"v1"', "Tue, 01 Dec 2026 10:00:00 GMT"
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self._send(200, (DATA / "rss2.xml").read_bytes(), ETag=etag, Last_Modified=modified)
        elif path == "/xss.xml":
            self._send(200, _xss_rss())
        elif path == "/xss.json":
            self._send(200, _xss_json(), "application/feed+json")
        elif path == "/html":
            self._send(200, b"<html><body><p>Not a feed</p></body></html>", "text/html")
        else:
            self._send(404, b"no", "text/plain")


@pytest.fixture(scope="module")
def server():
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    httpd.handle_error = lambda request, address: None  # a client that hung up is not an error here
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, state
    httpd.shutdown()
    httpd.server_close()


def _src(name: str, url: str, **kw) -> FeedSource:
    return FeedSource(name=name, url=url, **kw)


def _by_headline(stories) -> dict:
    return {s.headline: s for s in stories}


# -- well-formed feeds of each format ------------------------------------------------------------

def test_rss2(server, tmp_path) -> None:
    base, _ = server
    report = gather([_src("wire", f"{base}/feeds/rss2.xml", editions=("am",))], tmp_path)
    row, = report.sources
    assert (row.status, row.entries, row.kept) == ("ok", 4, 2)
    assert dict(row.dropped) == {
        "An entry without a time zone": "no time zone in '2026-12-01T05:00:00' (set default_timezone on the source to accept it)",
        "An entry without any date": "no date (published or updated)",
    }
    stories = _by_headline(report.stories)
    rail = stories["Senate passes the rail safety bill"]
    assert rail.url == "https://wire.example.com/politics/rail-bill"
    assert rail.published == dt.datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert rail.published.utcoffset() == dt.timedelta(hours=-5)
    assert rail.byline == "Dana Ruiz"
    assert rail.tags == {"national", "politics"} and rail.editions == {"am"}
    assert rail.image.src == "https://images.example.com/rail.jpg"
    assert rail.image.alt == "A freight train crosses a bridge at dusk"
    assert rail.image.credit == "Photo: Lee Park/Wire"
    assert "<strong>Why it matters:</strong> Freight derailments" in rail.body_html
    assert "<strong>What's next:</strong>" in rail.body_html
    assert rail.source == "wire: wire-1001" and rail.words == 21
    assert re.fullmatch(r"feed-[0-9a-f]{20}", rail.id)
    # relative links resolve against the feed's own URL (the document base)
    markets = stories["Markets steady ahead of jobs report"]
    assert markets.url == f"{base}/economy/markets-steady"
    assert f'href="{base}/feeds/charts/today"' in markets.body_html
    assert markets.image.src == f"{base}/img/markets.png"  # enclosure type image/*
    assert markets.byline == "Economy Desk"
    assert any(p.field == "An entry without a time zone" for p in report.problems)


def test_rss1_rdf(server, tmp_path) -> None:
    base, _ = server
    story, = gather([_src("rdf", f"{base}/feeds/rss1.rdf")], tmp_path).stories
    assert story.headline == "Leaders agree on a climate fund"
    assert story.url == "https://rdf.example.org/world/summit"
    assert story.published.isoformat() == "2026-12-01T08:00:00+01:00"
    assert story.byline == "Ines Moreau" and story.tags == {"world"}
    assert "<strong>Driving the news:</strong>" in story.body_html


def test_atom(server, tmp_path) -> None:
    base, _ = server
    story, = gather([_src("atom", f"{base}/feeds/atom.xml", cities=("Denver",))], tmp_path).stories
    assert story.headline == "Chip plant breaks ground in Ohio"  # type="html" title: tags stripped
    assert story.url == "https://atom.example.net/news/tech/chip-plant"  # xml:base
    assert story.published.isoformat() == "2026-12-01T03:00:00-08:00"  # published, not updated
    assert story.byline == "Sam Okafor" and story.tags == {"tech"} and story.cities == {"denver"}
    assert story.image.src == "https://images.example.net/chip.jpg"  # media:thumbnail
    assert "<strong>Zoom in:</strong>" in story.body_html and "Summary only" not in story.body_html
    assert 'href="https://atom.example.net/about"' in story.body_html


def test_json_feed(server, tmp_path) -> None:
    base, _ = server
    report = gather([_src("json", f"{base}/feeds/feed.json")], tmp_path)
    row, = report.sources
    assert (row.status, row.entries, row.kept, row.dropped) == ("ok", 3, 2, (("json-79", "no headline (title)"),))
    stories = _by_headline(report.stories)
    storm = stories["Winter storm closes I-80"]
    assert storm.url == "https://json.example.org/national/storm"
    assert storm.published.isoformat() == "2026-12-01T02:00:00-06:00"
    assert storm.byline == "Priya Nair, Tom Beck" and storm.tags == {"national", "weather"}
    assert storm.image.src == "https://images.json.example.org/storm.jpg"
    assert 'href="https://json.example.org/maps/i80"' in storm.body_html
    assert "<strong>Why it matters:</strong>" in storm.body_html
    plain = stories["Plain text item"]
    assert plain.body_html == "<p>First paragraph.</p><p>Second &lt;b&gt;not bold&lt;/b&gt;.</p>"
    assert plain.url is None and plain.published == dt.datetime(2026, 12, 1, 1, tzinfo=UTC)


def test_odd_encodings(server, tmp_path) -> None:
    base, _ = server
    latin, bom = gather([_src("latin", f"{base}/feeds/latin1.xml"), _src("bom", f"{base}/feeds/bom.xml")], tmp_path).stories
    assert latin.headline == "Señora Núñez wins in Zürich"
    assert "Ça coûte" in latin.body_html and "«voilà»" in latin.body_html
    assert bom.headline == "Café owners brace for a “long” winter"
    assert "Crème brûlée ☕" in bom.body_html


def test_gzip_and_one_redirect(server, tmp_path) -> None:
    base, _ = server
    gz, hop = gather([_src("gz", f"{base}/gz/rss1.rdf"), _src("hop", f"{base}/hop")], tmp_path).stories
    assert gz.headline == "Leaders agree on a climate fund"
    assert hop.headline == "Chip plant breaks ground in Ohio"


def test_default_timezone_accepts_naive_dates(server, tmp_path) -> None:
    base, _ = server
    report = gather([_src("wire", f"{base}/feeds/rss2.xml", default_timezone="America/New_York")], tmp_path)
    naive = _by_headline(report.stories)["An entry without a time zone"]
    assert naive.published.isoformat() == "2026-12-01T05:00:00-05:00"
    assert report.sources[0].dropped == (("An entry without any date", "no date (published or updated)"),)


def test_local_file_path_url_and_folder(tmp_path) -> None:
    folder = tmp_path / "feeds"
    folder.mkdir()
    for name in ("rss1.rdf", "atom.xml", "malformed.xml"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    report = gather([_src("path", str(DATA / "rss1.rdf")), _src("uri", (DATA / "atom.xml").as_uri()),
                     _src("folder", str(folder))], tmp_path)
    assert [r.status for r in report.sources] == ["ok", "ok", "ok"]
    assert [s.headline for s in report.stories] == ["Leaders agree on a climate fund", "Chip plant breaks ground in Ohio"]
    assert report.sources[2].kept == 0  # the folder's copies are duplicates of the two above
    assert report.sources[2].duplicates == 2 and "malformed.xml: failed" in report.sources[2].detail


# -- one story, once -----------------------------------------------------------------------------

def test_duplicates_across_feeds_appear_once(server, tmp_path) -> None:
    base, _ = server
    sources = [_src("wire", f"{base}/feeds/rss2.xml"), _src("atom", f"{base}/feeds/atom.xml"),
               _src("partner", f"{base}/feeds/dup.xml")]
    report = gather(sources, tmp_path)
    headlines = [s.headline for s in report.stories]
    assert headlines == ["Senate passes the rail safety bill", "Markets steady ahead of jobs report",
                         "Chip plant breaks ground in Ohio", "Partner original"]  # first source wins
    partner = report.sources[2]
    assert (partner.entries, partner.kept, partner.duplicates) == (3, 1, 2)
    assert len({s.id for s in report.stories}) == 4
    again = gather(sources, tmp_path / "other-cache")
    assert [s.id for s in again.stories] == [s.id for s in report.stories]  # ids are stable across fetches


# -- failures are reported, never fatal ----------------------------------------------------------

def test_each_failure_is_reported_and_the_rest_still_gathered(server, tmp_path) -> None:
    base, state = server
    sources = [
        _src("slow", f"{base}/slow", timeout=0.3),
        _src("error", f"{base}/error"),
        _src("loop", f"{base}/loop/a"),
        _src("malformed", f"{base}/feeds/malformed.xml"),
        _src("huge", f"{base}/huge"),
        _src("declared-huge", f"{base}/declared-huge"),
        _src("html", f"{base}/html"),
        _src("missing-file", str(tmp_path / "nope.xml")),
        _src("good", f"{base}/feeds/rss1.rdf"),
        _src("sloppy", f"{base}/feeds/bozo_usable.xml"),
    ]
    started = time.monotonic()
    report = gather(sources, tmp_path)
    assert time.monotonic() - started < 5
    rows = {r.name: r for r in report.sources}
    assert {n: r.status for n, r in rows.items()} == {
        "slow": "failed", "error": "failed", "loop": "failed", "malformed": "failed", "huge": "failed",
        "declared-huge": "failed", "html": "failed", "missing-file": "failed", "good": "ok", "sloppy": "ok"}
    assert rows["slow"].detail.startswith("timed out after 0.3s")
    assert rows["error"].detail == "HTTP 500 Internal Server Error"
    assert rows["loop"].detail == f"redirect loop: {base}/loop/a -> {base}/loop/b -> {base}/loop/a"
    assert "malformed feed" in rows["malformed"].detail
    assert rows["huge"].detail == "body larger than 5000000 bytes"
    assert rows["declared-huge"].detail == f"body larger than 5000000 bytes (Content-Length {HUGE})"
    assert "not a feed" in rows["html"].detail
    assert "cannot read" in rows["missing-file"].detail
    assert "not well-formed" in rows["sloppy"].detail and rows["sloppy"].kept == 1
    assert [s.headline for s in report.stories] == ["Leaders agree on a climate fund", "Still readable & usable"]
    failed = [p for p in report.problems if p.message.startswith("feed failed")]
    assert len(failed) == 8 and all(isinstance(p, StoryError) for p in failed)
    assert "feed 'error'" in failed[1].where
    # the 50 MB body: the client hung up early, so the server never got to send it all
    assert state.huge_done.wait(5)
    assert state.huge_sent < HUGE // 2


def test_redirect_limit(server, tmp_path) -> None:
    base, _ = server
    result = fetch(_src("hop", f"{base}/hop", max_redirects=0), tmp_path)
    assert result.status == "failed" and result.detail.startswith("too many redirects (more than 0)")


def test_parse_raises_story_error_for_no_feed() -> None:
    with pytest.raises(StoryError, match="malformed feed"):
        parse(_src("m", "https://x.example/feed"), (DATA / "malformed.xml").read_bytes(), None)


# -- conditional requests ------------------------------------------------------------------------

def test_second_fetch_sends_validators_and_reuses_body_on_304(server, tmp_path) -> None:
    base, state = server
    source = _src("cond", f"{base}/cond")
    first = fetch(source, tmp_path / "cache")
    assert first.status == "ok"
    sent = [h for p, h in state.requests if p == "/cond"]
    assert "If-None-Match" not in sent[-1] and "If-Modified-Since" not in sent[-1]
    assert list((tmp_path / "cache").glob("*.json"))  # the small cache, written atomically
    second = fetch(source, tmp_path / "cache")
    sent = [h for p, h in state.requests if p == "/cond"]
    assert sent[-1]["If-None-Match"] == '"v1"'
    assert sent[-1]["If-Modified-Since"] == "Tue, 01 Dec 2026 10:00:00 GMT"
    assert (second.status, second.body) == ("not-modified", first.body)
    report = gather([source], tmp_path / "cache")
    assert report.sources[0].status == "not-modified"
    assert [s.id for s in report.stories] == [s.id for s in parse(source, first.body, f"{base}/cond")[0]]
    assert len(report.stories) == 2


# -- the XSS corpus ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/xss.xml", "/xss.json"])
def test_xss_corpus_in_feed_content(server, tmp_path, path) -> None:
    base, _ = server
    report = gather([_src("xss", base + path)], tmp_path)
    assert len(report.stories) == len(XSS_CORPUS)
    for story in report.stories:
        audit = _Audit()
        audit.feed(story.body_html)
        assert audit.problems == [] and "<img" not in story.body_html, story.body_html
        assert not re.search(r"<\s*script|<[^>]*\son\w+\s*=|=\s*[\"']?\s*(javascript|vbscript|data):", story.body_html, re.IGNORECASE), story.body_html


# -- the composed issue --------------------------------------------------------------------------

def test_composed_issue_from_feeds(server, tmp_path, sample_settings) -> None:
    base, _ = server
    settings = dataclasses.replace(sample_settings, paths=dataclasses.replace(sample_settings.paths, state=tmp_path))
    report = gather([_src("wire", f"{base}/feeds/rss2.xml"), _src("json", f"{base}/feeds/feed.json"),
                     _src("error", f"{base}/error")], settings.paths.state / "feeds")
    edition = settings.edition("am")
    date = dt.date(2026, 12, 1)
    issue = choose_stories(edition, date, report.stories, words_per_minute=settings.newsroom.words_per_minute)
    assert issue.window_start == dt.datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert issue.send_time == dt.datetime(2026, 12, 1, 11, tzinfo=UTC)
    # tagged national / economy: in; "Plain text item" has no tag of the edition: out
    assert {s.headline for s in issue.stories} == {
        "Senate passes the rail safety bill", "Markets steady ahead of jobs report", "Winter storm closes I-80"}
    composed = compose(settings, issue)
    message = composed.message(composed.recipients.for_address("reader@example.com", "Reader"))
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    for part in (html, text):
        assert "Senate passes the rail safety bill" in part
        assert "Winter storm closes I-80" in part
        assert "Why it matters:" in part and "What's next:" in part.replace("&#39;", "'").replace("&#x27;", "'")
    assert re.search(r"<strong[^>]*>Why it matters:</strong>", html)
    assert "A freight train crosses a bridge at dusk" in html and "Photo: Lee Park/Wire" in html
    audit = _Audit()
    audit.feed(html[html.lower().index("<body"):])
    assert [p for p in audit.problems if not p.startswith("img not from")] == []


# -- what a feed says, read as it says it ----------------------------------------------------------

def _rss(items: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Desk</title>'
            f"<link>https://news.example.org/</link>{items}</channel></rss>").encode()


def test_a_well_formed_feed_with_no_entries_is_ok_not_failed(server, tmp_path) -> None:
    base, _ = server
    empty = tmp_path / "empty.xml"
    empty.write_bytes(_rss(""))
    report = gather([_src("quiet-file", str(empty)), _src("quiet-http", f"{base}/feeds/empty.xml")], tmp_path)
    assert [(r.status, r.entries) for r in report.sources] == [("ok", 0), ("ok", 0)]
    assert all(r.detail.endswith("rss20, 0 entries") for r in report.sources)


def test_script_and_style_text_stays_out_of_headlines_and_subjects(tmp_path) -> None:
    title = escape('<script>alert("owned")</script>Council <style>b{color:red}</style><b>votes</b> on the budget')
    feed = tmp_path / "wire.xml"
    feed.write_bytes(_rss(f"<item><title>{title}</title><link>https://news.example.org/a</link>"
                          "<pubDate>Tue, 01 Dec 2026 05:00:00 +0000</pubDate>"
                          f"<description>{escape('<p>Body <script>evil()</script>text</p>')}</description></item>"))
    story, = gather([_src("wire", str(feed))], tmp_path).stories
    assert story.headline == "Council votes on the budget"
    assert "evil" not in story.body_html and "Body" in story.body_html


@pytest.mark.parametrize(("written", "utc"), [
    ("Thu, 30 Apr 2015 01:30:00 -0000", "2015-04-30T01:30:00+00:00"),  # was read as Denver's 01:30
    ("Thu, 30 Apr 2015 01:30:00 +02:00", "2015-04-29T23:30:00+00:00"),
    ("Thu, 30 Apr 2015 08:57:00 MEST", "2015-04-30T06:57:00+00:00"),  # was Denver's 08:57
    ("Mon, 26 Jan 2004 16:31:00 PT", "2004-01-27T00:31:00+00:00"),
    ("Wed, 19 Feb 2012 22:40:00 GMT-01:01", "2012-02-19T23:41:00+00:00"),
])
def test_a_date_that_names_its_zone_never_takes_the_default_zone(tmp_path, written, utc) -> None:
    feed = tmp_path / "wire.xml"
    feed.write_bytes(_rss(f"<item><title>Rail bill</title><link>https://news.example.org/a</link>"
                          f"<pubDate>{written}</pubDate></item>"))
    story, = gather([_src("wire", str(feed), default_timezone="America/Denver")], tmp_path).stories
    assert story.published.astimezone(UTC).isoformat() == utc


def test_an_invalid_offset_drops_the_entry_with_its_reason(tmp_path) -> None:
    feed = tmp_path / "wire.xml"
    feed.write_bytes(_rss("<item><title>Rail bill</title><link>https://news.example.org/a</link>"
                          "<pubDate>Sun, 16 Dec 2012 11:47:32 +zz:00</pubDate></item>"))
    row, = gather([_src("wire", str(feed), default_timezone="America/Denver")], tmp_path).sources
    assert (row.status, row.entries, row.kept) == ("ok", 1, 0)
    assert row.dropped == (("Rail bill", "published: invalid UTC offset '+zz:00' in "
                                         "'Sun, 16 Dec 2012 11:47:32 +zz:00'"),)
