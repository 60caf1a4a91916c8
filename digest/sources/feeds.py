"""Feed sources: RSS 0.9x/2.0, RSS 1.0, Atom and JSON Feed 1.1 -> ``Story``.

The only feedparser and httpx import. Fetching is defensive (timeouts, a size cap that is enforced
while streaming, redirects limited and loops named, conditional requests with a small JSON cache);
parsing maps each entry to a ``Story`` exactly as strict as a Markdown story: the body goes through
``clean_html``, the published time must carry a UTC offset (or the source names a default zone),
and an entry that cannot become a story is dropped with a reason instead of failing the feed.
``gather`` never raises for one source's failure: it reports it and returns the other stories.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import hashlib
import html as htmlmod
import io
import json
import re
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import feedparser
import feedparser.namespaces.mediarss as _mediarss
import httpx

from ..errors import StoryError
from ..files import write_atomically
from ..models import Image, Story
from .plaintext import word_count
from .sanitise import clean_html

USER_AGENT = "digest/0.1 (newsletter feed reader)"
ACCEPT = ("application/feed+json, application/atom+xml, application/rss+xml, application/rdf+xml, "
          "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf", ".json", ".feed")
_ID_PREFIX = "feed-"


# -- feedparser: keep media:description / media:title apart -------------------------------------
# feedparser files <media:description> as the entry's description (so it lands in ``content`` or
# even ``summary``) and <media:title> as its title. We want them as the image's alt text, so they
# are kept under their own keys. This changes nothing else in feedparser.

def _start_media_description(self: Any, attrs_d: Any) -> None:
    self.push("media_description", 1)


def _end_media_description(self: Any) -> None:
    self.pop("media_description")


def _start_media_title(self: Any, attrs_d: Any) -> None:
    self.push("media_title", 1)


def _end_media_title(self: Any) -> None:
    self.pop("media_title")


_mediarss.Namespace._start_media_description = _start_media_description  # type: ignore[attr-defined]
_mediarss.Namespace._end_media_description = _end_media_description  # type: ignore[attr-defined]
_mediarss.Namespace._start_media_title = _start_media_title  # type: ignore[attr-defined]
_mediarss.Namespace._end_media_title = _end_media_title  # type: ignore[attr-defined]


# -- values --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedSource:
    """One configured feed (``[[sources]]`` in digest.toml)."""

    name: str
    url: str  # http(s)://, file://, or a local path (a file, or a folder of feed files)
    editions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    default_timezone: str | None = None  # for entries whose dates carry no offset; else they are dropped
    categories_as: Literal["tags", "cities", "both"] = "tags"  # what an entry's categories become
    priority: int = 5


@dataclass(frozen=True)
class FetchResult:
    status: Literal["ok", "not-modified", "failed"]
    body: bytes | None
    detail: str
    url: str | None = None  # the final URL after redirects (the base for relative links)
    content_type: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceStatus:
    """One row of ``digest check``'s feed table."""

    name: str
    url: str
    status: Literal["ok", "not-modified", "failed"]
    entries: int
    kept: int
    dropped: tuple[tuple[str, str], ...]
    detail: str
    duplicates: int = 0


@dataclass(frozen=True)
class FeedReport:
    stories: tuple[Story, ...]
    sources: tuple[SourceStatus, ...]
    problems: tuple[StoryError, ...]

    @property
    def failed(self) -> tuple[SourceStatus, ...]:
        return tuple(s for s in self.sources if s.status == "failed")


class _Failed(Exception):
    pass


# -- fetching ------------------------------------------------------------------------------------

def _local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise _Failed(f"unsupported URL scheme '{parts.scheme}' (use http, https, file or a path)")
    return Path(url)


def _read_local(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _Failed(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise _Failed(f"body larger than {max_bytes} bytes")
    return data


def _cache_file(cache_dir: Path, url: str) -> Path:
    return Path(cache_dir) / f"feed-{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"


def _load_cache(cache_dir: Path | None, url: str) -> dict[str, Any] | None:
    if cache_dir is None:
        return None
    try:
        data = json.loads(_cache_file(cache_dir, url).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("url") != url or not isinstance(data.get("body"), str):
            return None
        data["body_bytes"] = base64.b64decode(data["body"], validate=True)
        return data
    except (OSError, ValueError):
        return None


def _save_cache(cache_dir: Path | None, url: str, etag: str | None, last_modified: str | None,
                body: bytes, content_type: str | None) -> None:
    if cache_dir is None:
        return
    target = _cache_file(cache_dir, url)
    if not etag and not last_modified:
        target.unlink(missing_ok=True)
        return
    record = {"url": url, "etag": etag, "last_modified": last_modified, "content_type": content_type,
              "fetched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "body": base64.b64encode(body).decode("ascii")}
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, json.dumps(record).encode("utf-8"))


def fetch(source: FeedSource, cache_dir: Path | None) -> FetchResult:
    """Fetch one source's body. Never raises for network, HTTP or size trouble: returns ``failed``."""
    try:
        path = _local_path(source.url)
        if path is not None:
            if path.is_dir():
                raise _Failed(f"{path} is a folder (gather() reads the feed files in it)")
            return FetchResult("ok", _read_local(path, source.max_bytes), f"read {path}", url=path.resolve().as_uri())
        return _fetch_http(source, cache_dir)
    except _Failed as exc:
        return FetchResult("failed", None, str(exc))


def _fetch_http(source: FeedSource, cache_dir: Path | None) -> FetchResult:
    cached = _load_cache(cache_dir, source.url)
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if cached:
        if cached.get("etag"):
            headers["If-None-Match"] = cached["etag"]
        if cached.get("last_modified"):
            headers["If-Modified-Since"] = cached["last_modified"]
    deadline = time.monotonic() + max(source.timeout * 3, source.timeout + 5)
    url = source.url
    seen = [url]
    try:
        with httpx.Client(timeout=source.timeout, follow_redirects=False, headers=headers) as client:
            while True:
                with client.stream("GET", url) as response:
                    if response.status_code == 304:
                        if not cached:
                            raise _Failed("HTTP 304 Not Modified, but nothing is cached for this URL")
                        return FetchResult("not-modified", cached["body_bytes"], "HTTP 304 Not Modified; cached copy used",
                                           url=str(response.url), content_type=cached.get("content_type"),
                                           request_headers=headers)
                    if response.status_code in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise _Failed(f"HTTP {response.status_code} redirect without a Location header")
                        nxt = str(response.url.join(location))
                        if urlsplit(nxt).scheme not in ("http", "https"):
                            raise _Failed(f"redirect to a non-HTTP URL: {nxt}")
                        if nxt in seen:
                            raise _Failed(f"redirect loop: {' -> '.join(seen + [nxt])}")
                        if len(seen) > source.max_redirects:
                            raise _Failed(f"too many redirects (more than {source.max_redirects}), last to {nxt}")
                        seen.append(nxt)
                        url = nxt
                        continue
                    final = str(response.url)
                    content_type = response.headers.get("content-type")
                    if response.status_code >= 400:
                        raise _Failed(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
                    if response.status_code != 200:
                        raise _Failed(f"HTTP {response.status_code} {response.reason_phrase} (expected 200)".rstrip())
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > source.max_bytes \
                            and not response.headers.get("content-encoding"):
                        raise _Failed(f"body larger than {source.max_bytes} bytes (Content-Length {declared})")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in response.iter_bytes():  # decoded (gzip/deflate) bytes: the cap counts those
                        size += len(chunk)
                        if size > source.max_bytes:
                            raise _Failed(f"body larger than {source.max_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise _Failed(f"timed out reading the body (after {source.timeout:g}s)")
                        chunks.append(chunk)
                    body = b"".join(chunks)
                    _save_cache(cache_dir, source.url, response.headers.get("etag"),
                                response.headers.get("last-modified"), body, content_type)
                    return FetchResult("ok", body, f"HTTP 200, {len(body)} bytes", url=final,
                                       content_type=content_type, request_headers=headers)
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__.replace("Timeout", " timeout").lower().strip()
        return FetchResult("failed", None, f"timed out after {source.timeout:g}s ({kind})", request_headers=headers)
    except httpx.HTTPError as exc:
        return FetchResult("failed", None, f"request failed: {type(exc).__name__}: {exc}", request_headers=headers)
    except _Failed as exc:
        return FetchResult("failed", None, str(exc), request_headers=headers)
    except OSError as exc:
        return FetchResult("failed", None, f"cache error: {exc}", request_headers=headers)


# -- parsing helpers -----------------------------------------------------------------------------

class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _strip_tags(value: str) -> str:
    parser = _Text()
    parser.feed(value)
    parser.close()
    return "".join(parser.parts)


def _one_line(value: Any, *, html: bool = False) -> str | None:
    if not isinstance(value, str):
        return None
    if html:
        value = _strip_tags(value)
    value = " ".join(value.replace("\x00", " ").split())
    return value or None


def _absolute(url: Any, base: str | None) -> str | None:
    """An absolute http(s) URL, or None."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    try:
        joined = urljoin(base, url) if base else url
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s<>\"]", joined):
        return None
    return joined


_LINK_ATTR = re.compile(r"""(\s(?:href|src)\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def _absolutise_links(html: str, base: str | None) -> str:
    """Make relative href/src values absolute against ``base`` (before sanitising)."""
    if not base:
        return html

    def fix(match: re.Match[str]) -> str:
        raw = next(g for g in match.groups()[1:] if g is not None)
        value = htmlmod.unescape(raw).strip()
        if not value or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) or value.startswith("#"):
            return match.group(0)
        try:
            joined = urljoin(base, value)
        except ValueError:
            return match.group(0)
        return f'{match.group(1)}"{htmlmod.escape(joined, quote=True)}"'

    return _LINK_ATTR.sub(fix, html)


def _body_html(value: str | None, mime: str | None, base: str | None) -> str:
    if not value:
        return ""
    if mime and "html" not in mime:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", value) if p.strip()]
        value = "".join(f"<p>{htmlmod.escape(p)}</p>" for p in paragraphs)
    return clean_html(_absolutise_links(value, base)).strip()


def _parse_date(raw: Any) -> dt.datetime | None:
    """RFC 822 / RFC 3339 / W3C-DTF text -> datetime (naive when the text has no offset)."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    iso = text.replace(" ", "T", 1) if re.match(r"^\d{4}-\d\d-\d\d \d", text) else text
    try:
        return dt.datetime.fromisoformat(iso)
    except ValueError:
        pass
    try:
        # RFC 822/5322; naive for "-0000", which RFC 5322 defines as "no offset known"
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class _Entry:
    """What a feed entry says, format-neutral."""

    key: str  # GUID, else link, else None
    label: str  # for messages: the title or the id
    title: str | None
    link: str | None
    dates: list[tuple[str, Any]]
    author: str | None
    categories: list[str]
    body: str | None
    body_type: str | None
    base: str | None
    image: Image | None = None


class _Drop(Exception):
    pass


def _tz(source: FeedSource) -> ZoneInfo | None:
    if not source.default_timezone:
        return None
    try:
        return ZoneInfo(source.default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _to_story(source: FeedSource, entry: _Entry) -> Story:
    headline = entry.title
    if not headline:
        raise _Drop("no headline (title)")
    published = None
    seen_raw = None
    for _name, raw in entry.dates:
        if raw:
            seen_raw = raw
            published = _parse_date(raw)
            if published is not None:
                break
    if published is None:
        raise _Drop(f"date '{seen_raw}' not understood" if seen_raw else "no date (published or updated)")
    if published.tzinfo is None or published.utcoffset() is None:
        zone = _tz(source)
        if zone is None and source.default_timezone:
            raise _Drop(f"no time zone in '{seen_raw}', and default_timezone '{source.default_timezone}' is not a known IANA zone")
        if zone is None:
            raise _Drop("no time zone" + (f" in '{seen_raw}'" if seen_raw else "")
                        + " (set default_timezone on the source to accept it)")
        published = published.replace(tzinfo=zone)
    url = _absolute(entry.link, entry.base)
    key = entry.key or url or f"{headline}|{published.isoformat()}"
    story_id = _ID_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    body_html = _body_html(entry.body, entry.body_type, url or entry.base)
    cats = [c.strip().casefold() for c in entry.categories if c and c.strip()]
    tags = {t.strip().casefold() for t in source.tags if t.strip()}
    cities = {c.strip().casefold() for c in source.cities if c.strip()}
    if source.categories_as in ("tags", "both"):
        tags.update(cats)
    if source.categories_as in ("cities", "both"):
        cities.update(re.sub(r"\s+", "-", c) for c in cats)
    return Story(
        id=story_id,
        headline=headline,
        published=published,
        body_html=body_html,
        words=word_count(body_html),
        source=f"{source.name}: {entry.key or url or headline}",
        editions=frozenset(e.strip().casefold() for e in source.editions if e.strip()),
        tags=frozenset(tags),
        cities=frozenset(cities),
        priority=source.priority,
        byline=entry.author,
        url=url,
        image=entry.image,
    )


# -- feedparser formats --------------------------------------------------------------------------

def _fp_image(e: Any, base: str | None) -> Image | None:
    alt = _one_line(e.get("media_description"), html=True) or _one_line(e.get("media_title"), html=True)
    credit = None
    for c in e.get("media_credit") or []:
        credit = _one_line(c.get("content") if isinstance(c, dict) else None)
        if credit:
            break
    candidates: list[str | None] = []
    for m in e.get("media_content") or []:
        mtype = (m.get("type") or "").lower()
        medium = (m.get("medium") or "").lower()
        if medium == "image" or mtype.startswith("image/") or (not mtype and not medium):
            candidates.append(m.get("url"))
    for m in e.get("media_thumbnail") or []:
        candidates.append(m.get("url"))
    for link in e.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").lower().startswith("image/"):
            candidates.append(link.get("href"))
    for src in candidates:
        absolute = _absolute(src, base)
        if absolute:
            return Image(src=absolute, alt=alt, credit=credit, caption=None)
    return None


def _fp_entries(parsed: Any, base_url: str | None) -> list[_Entry]:
    out = []
    for e in parsed.entries:
        title_detail = e.get("title_detail") or {}
        title = _one_line(e.get("title"), html="html" in (title_detail.get("type") or ""))
        base = title_detail.get("base") or base_url
        link = e.get("link")
        guid = e.get("id") or None
        body, body_type = None, None
        for c in e.get("content") or []:
            if c.get("value"):
                body, body_type = c.get("value"), c.get("type")
                break
        if body is None and e.get("summary"):
            detail = e.get("summary_detail") or {}
            body, body_type = e.get("summary"), detail.get("type") or "text/html"
            base = detail.get("base") or base
        author = None
        detail = e.get("author_detail") or {}
        author = _one_line(detail.get("name")) or _one_line(e.get("author"))
        cats = [t.get("term") or t.get("label") or "" for t in e.get("tags") or []]
        # dict.get: FeedParserDict maps a missing "published" to "updated" with a DeprecationWarning
        dates = [(key, dict.get(e, key)) for key in ("published", "updated", "created")]
        link_abs = _absolute(link, base)
        out.append(_Entry(key=guid or link_abs or "", label=title or guid or link or "(untitled)", title=title,
                          link=link, dates=dates, author=author, categories=cats, body=body, body_type=body_type,
                          base=link_abs or base, image=_fp_image(e, link_abs or base)))
    return out


# -- JSON Feed -----------------------------------------------------------------------------------

def _json_entries(doc: Any, base_url: str | None) -> list[_Entry]:
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/1"):
        raise _Failed("JSON document is not a JSON Feed (no https://jsonfeed.org/version/1.x version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise _Failed("JSON Feed has no 'items' list")
    base = _absolute(doc.get("home_page_url"), base_url) or base_url
    feed_authors = doc.get("authors") or ([doc["author"]] if isinstance(doc.get("author"), dict) else [])
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(_Entry("", "(not an object)", None, None, [], None, [], None, None, base))
            continue
        raw_id = item.get("id")
        guid = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id).strip() else None
        title = _one_line(item.get("title"))
        link = item.get("url") if isinstance(item.get("url"), str) else item.get("external_url")
        link_abs = _absolute(link, base)
        if isinstance(item.get("content_html"), str) and item["content_html"].strip():
            body, body_type = item["content_html"], "text/html"
        elif isinstance(item.get("content_text"), str) and item["content_text"].strip():
            body, body_type = item["content_text"], "text/plain"
        elif isinstance(item.get("summary"), str):
            body, body_type = item["summary"], "text/plain"
        else:
            body, body_type = None, None
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else feed_authors)
        names = [_one_line(a.get("name")) for a in authors if isinstance(a, dict)] if isinstance(authors, list) else []
        names = [n for n in names if n]
        tags = [t for t in item.get("tags") or [] if isinstance(t, str)] if isinstance(item.get("tags"), list) else []
        image = None
        src = _absolute(item.get("image"), link_abs or base) or _absolute(item.get("banner_image"), link_abs or base)
        if src:
            image = Image(src=src, alt=None, credit=None, caption=None)
        out.append(_Entry(key=guid or link_abs or "", label=title or guid or str(link or "(untitled)"), title=title,
                          link=link, dates=[("date_published", item.get("date_published")),
                                            ("date_modified", item.get("date_modified"))],
                          author=", ".join(names) or None, categories=tags, body=body, body_type=body_type,
                          base=link_abs or base, image=image))
    return out


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


# -- parse / gather ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParseResult:
    stories: list[Story]
    dropped: list[tuple[str, str]]
    entries: int
    note: str  # e.g. "feed is not well-formed (...), 3 entries still read"


def _parse(source: FeedSource, body: bytes, base_url: str | None, content_type: str | None) -> ParseResult:
    note = ""
    if _looks_like_json(body, content_type):
        try:
            doc = json.loads(body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Failed(f"malformed JSON: {exc}") from None
        entries = _json_entries(doc, base_url)
        kind = f"JSON Feed {str(doc.get('version')).rsplit('/', 1)[-1]}"
    else:
        headers = {}
        if base_url:
            headers["content-location"] = base_url
        if content_type and "charset=" in content_type.lower():
            headers["content-type"] = content_type
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                                  resolve_relative_uris=True)
        if not parsed.entries and not parsed.version:
            raise _Failed("not a feed (no RSS, Atom or JSON Feed found)")
        if not parsed.entries and parsed.bozo:
            raise _Failed(f"malformed feed: {parsed.get('bozo_exception')}")
        if parsed.bozo:
            exc = parsed.get("bozo_exception")
            if not isinstance(exc, (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)):
                note = f"feed is not well-formed ({exc}); {len(parsed.entries)} entries still read"
        entries = _fp_entries(parsed, base_url)
        kind = parsed.version or "feed"
    stories: list[Story] = []
    dropped: list[tuple[str, str]] = []
    for entry in entries:
        try:
            stories.append(_to_story(source, entry))
        except _Drop as exc:
            dropped.append((entry.label, str(exc)))
    detail = f"{kind}, {len(entries)} entries"
    return ParseResult(stories, dropped, len(entries), f"{detail}; {note}" if note else detail)


def parse(source: FeedSource, body: bytes, base_url: str | None = None, *,
          content_type: str | None = None) -> tuple[list[Story], list[tuple[str, str]]]:
    """Parse a feed body into (stories, dropped). Raises ``StoryError`` when the body is no usable feed."""
    try:
        result = _parse(source, body, base_url or _base_for(source), content_type)
    except _Failed as exc:
        raise StoryError(str(exc), file=source.name) from None
    return result.stories, result.dropped


def _base_for(source: FeedSource) -> str | None:
    parts = urlsplit(source.url)
    if parts.scheme in ("http", "https", "file"):
        return source.url
    return Path(source.url).resolve().as_uri()


def _fetch_and_parse(source: FeedSource, cache_dir: Path | None) -> tuple[SourceStatus, list[Story]]:
    try:
        path = _local_path(source.url)
    except _Failed as exc:
        return SourceStatus(source.name, source.url, "failed", 0, 0, (), str(exc)), []
    if path is not None and path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FEED_SUFFIXES)
        stories: list[Story] = []
        dropped: list[tuple[str, str]] = []
        entries = 0
        notes = []
        failures = 0
        for file in files:
            sub = dataclasses.replace(source, url=str(file))
            row, got = _fetch_and_parse(sub, cache_dir)
            stories += got
            dropped += row.dropped
            entries += row.entries
            failures += row.status == "failed"
            notes.append(f"{file.name}: {row.status}, {row.detail}")
        status: Literal["ok", "failed"] = "failed" if files and failures == len(files) else "ok"
        detail = "; ".join(notes) if files else f"no feed files ({', '.join(FEED_SUFFIXES)}) in {path}"
        return SourceStatus(source.name, source.url, status, entries, len(stories), tuple(dropped), detail), stories
    result = fetch(source, cache_dir)
    if result.status == "failed" or result.body is None:
        return SourceStatus(source.name, source.url, "failed", 0, 0, (), result.detail), []
    try:
        parsed = _parse(source, result.body, result.url or _base_for(source), result.content_type)
    except _Failed as exc:
        return SourceStatus(source.name, source.url, "failed", 0, 0, (), f"{result.detail}; {exc}"), []
    except Exception as exc:  # noqa: BLE001 - one broken feed must never stop an issue
        return SourceStatus(source.name, source.url, "failed", 0, 0, (),
                            f"{result.detail}; could not parse: {type(exc).__name__}: {exc}"), []
    return (SourceStatus(source.name, source.url, result.status, parsed.entries, len(parsed.stories),
                         tuple(parsed.dropped), f"{result.detail}; {parsed.note}"), parsed.stories)


def gather(sources: list[FeedSource] | tuple[FeedSource, ...], cache_dir: Path | None) -> FeedReport:
    """Fetch and parse every source; one source's failure is reported, never raised."""
    stories: list[Story] = []
    rows: list[SourceStatus] = []
    problems: list[StoryError] = []
    seen_urls: set[str] = set()
    seen_ids: set[str] = set()
    for source in sources:
        row, got = _fetch_and_parse(source, cache_dir)
        duplicates = 0
        kept = 0
        for story in got:
            if story.id in seen_ids or (story.url and story.url in seen_urls):
                duplicates += 1
                continue
            seen_ids.add(story.id)
            if story.url:
                seen_urls.add(story.url)
            stories.append(story)
            kept += 1
        row = SourceStatus(row.name, row.url, row.status, row.entries, kept, row.dropped, row.detail, duplicates)
        rows.append(row)
        if row.status == "failed":
            problems.append(StoryError(f"feed failed: {row.detail}", file=f"feed '{source.name}' ({source.url})"))
        for label, reason in row.dropped:
            problems.append(StoryError(f"entry dropped: {reason}", file=f"feed '{source.name}'", field=label))
    return FeedReport(tuple(stories), tuple(rows), tuple(problems))
