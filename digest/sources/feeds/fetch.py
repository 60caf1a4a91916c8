"""Fetching one feed's body: local files, and HTTP through httpx (the only httpx import).

Defensive: timeouts (and an overall deadline for a slow body), a size cap enforced while
streaming, redirects followed by hand so their number is limited and a loop is named, and
conditional requests (ETag / Last-Modified) with a small JSON cache per URL, written atomically.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ...files import write_atomically
from ...lazy import LazyModule
from .values import FeedFailed, FeedSource, FetchResult

httpx: Any = LazyModule("httpx")  # the only httpx import, loaded by the first fetch over HTTP

USER_AGENT = "digest/0.1 (newsletter feed reader)"
ACCEPT = ("application/feed+json, application/atom+xml, application/rss+xml, application/rdf+xml, "
          "application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
_REDIRECTS = (301, 302, 303, 307, 308)


def fetch(source: FeedSource, cache_dir: Path | None) -> FetchResult:
    """Fetch one source's body. Never raises for network, HTTP or size trouble: returns ``failed``."""
    try:
        path = local_path(source.url)
        if path is not None:
            if path.is_dir():
                raise FeedFailed(f"{path} is a folder (gather() reads the feed files in it)")
            return FetchResult("ok", _read_local(path, source.max_bytes), f"read {path}", url=path.resolve().as_uri())
        return _fetch_http(source, cache_dir)
    except FeedFailed as exc:
        return FetchResult("failed", None, str(exc))


def local_path(url: str) -> Path | None:
    """The file a source's URL names, or None for http(s); raises ``FeedFailed`` for other schemes."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise FeedFailed(f"unsupported URL scheme '{parts.scheme}' (use http, https, file or a path)")
    return Path(url)


def _read_local(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FeedFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise FeedFailed(f"body larger than {max_bytes} bytes")
    return data


# -- HTTP ----------------------------------------------------------------------------------------

def _fetch_http(source: FeedSource, cache_dir: Path | None) -> FetchResult:
    """GET with the cache's validators; every failure becomes a ``failed`` result with its reason."""
    cached = _load_cache(cache_dir, source.url)
    headers = _request_headers(cached)
    try:
        return _get(source, cache_dir, cached, headers)
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__.replace("Timeout", " timeout").lower().strip()
        return FetchResult("failed", None, f"timed out after {source.timeout:g}s ({kind})", request_headers=headers)
    except httpx.HTTPError as exc:
        return FetchResult("failed", None, f"request failed: {type(exc).__name__}: {exc}", request_headers=headers)
    except FeedFailed as exc:
        return FetchResult("failed", None, str(exc), request_headers=headers)
    except OSError as exc:
        return FetchResult("failed", None, f"cache error: {exc}", request_headers=headers)


def _request_headers(cached: dict[str, Any] | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if cached:
        if cached.get("etag"):
            headers["If-None-Match"] = cached["etag"]
        if cached.get("last_modified"):
            headers["If-Modified-Since"] = cached["last_modified"]
    return headers


def _get(source: FeedSource, cache_dir: Path | None, cached: dict[str, Any] | None,
         headers: dict[str, str]) -> FetchResult:
    """The request, following redirects one at a time; a 200 body is cached when it has validators."""
    deadline = time.monotonic() + max(source.timeout * 3, source.timeout + 5)
    seen = [source.url]
    with httpx.Client(timeout=source.timeout, follow_redirects=False, headers=headers) as client:
        while True:
            with client.stream("GET", seen[-1]) as response:
                if response.status_code == 304:
                    return _not_modified(response, cached, headers)
                if response.status_code in _REDIRECTS:
                    seen.append(_redirect_target(response, seen, source.max_redirects))
                    continue
                body = _read_body(response, source, deadline)
                content_type = response.headers.get("content-type")
                _save_cache(cache_dir, source.url, response.headers.get("etag"),
                            response.headers.get("last-modified"), body, content_type)
                return FetchResult("ok", body, f"HTTP 200, {len(body)} bytes", url=str(response.url),
                                   content_type=content_type, request_headers=headers)


def _not_modified(response: httpx.Response, cached: dict[str, Any] | None, headers: dict[str, str]) -> FetchResult:
    if not cached:
        raise FeedFailed("HTTP 304 Not Modified, but nothing is cached for this URL")
    return FetchResult("not-modified", cached["body_bytes"], "HTTP 304 Not Modified; cached copy used",
                       url=str(response.url), content_type=cached.get("content_type"), request_headers=headers)


def _redirect_target(response: httpx.Response, seen: list[str], max_redirects: int) -> str:
    """Where a redirect points, refused when it leaves HTTP, loops, or is one too many."""
    location = response.headers.get("location")
    if not location:
        raise FeedFailed(f"HTTP {response.status_code} redirect without a Location header")
    nxt = str(response.url.join(location))
    if urlsplit(nxt).scheme not in ("http", "https"):
        raise FeedFailed(f"redirect to a non-HTTP URL: {nxt}")
    if nxt in seen:
        raise FeedFailed(f"redirect loop: {' -> '.join(seen + [nxt])}")
    if len(seen) > max_redirects:
        raise FeedFailed(f"too many redirects (more than {max_redirects}), last to {nxt}")
    return nxt


def _read_body(response: httpx.Response, source: FeedSource, deadline: float) -> bytes:
    """A 200 response's body, within the size cap and the deadline."""
    if response.status_code >= 400:
        raise FeedFailed(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
    if response.status_code != 200:
        raise FeedFailed(f"HTTP {response.status_code} {response.reason_phrase} (expected 200)".rstrip())
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > source.max_bytes \
            and not response.headers.get("content-encoding"):
        raise FeedFailed(f"body larger than {source.max_bytes} bytes (Content-Length {declared})")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decoded (gzip/deflate) bytes: the cap counts those
        size += len(chunk)
        if size > source.max_bytes:
            raise FeedFailed(f"body larger than {source.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FeedFailed(f"timed out reading the body (after {source.timeout:g}s)")
        chunks.append(chunk)
    return b"".join(chunks)


# -- the conditional-request cache -----------------------------------------------------------------

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
