"""Every configured source fetched and parsed, duplicates across sources dropped, problems reported.

``gather`` never raises for one source's failure: it reports it and returns the other stories.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from ...errors import StoryError
from ...models import Story
from .fetch import fetch, local_path
from .parse import base_for, parse_body
from .values import FeedFailed, FeedReport, FeedSource, SourceStatus

FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf", ".json", ".feed")


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


def _fetch_and_parse(source: FeedSource, cache_dir: Path | None) -> tuple[SourceStatus, list[Story]]:
    try:
        path = local_path(source.url)
    except FeedFailed as exc:
        return _failed(source, str(exc)), []
    if path is not None and path.is_dir():
        return _folder(source, path, cache_dir)
    result = fetch(source, cache_dir)
    if result.status == "failed" or result.body is None:
        return _failed(source, result.detail), []
    try:
        parsed = parse_body(source, result.body, result.url or base_for(source), result.content_type)
    except FeedFailed as exc:
        return _failed(source, f"{result.detail}; {exc}"), []
    except Exception as exc:  # noqa: BLE001 - one broken feed must never stop an issue
        return _failed(source, f"{result.detail}; could not parse: {type(exc).__name__}: {exc}"), []
    return (SourceStatus(source.name, source.url, result.status, parsed.entries, len(parsed.stories),
                         tuple(parsed.dropped), f"{result.detail}; {parsed.note}"), parsed.stories)


def _folder(source: FeedSource, path: Path, cache_dir: Path | None) -> tuple[SourceStatus, list[Story]]:
    """A local folder as one source: each feed file in it read as the source, one row for them all."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FEED_SUFFIXES)
    stories: list[Story] = []
    dropped: list[tuple[str, str]] = []
    entries = 0
    notes = []
    failures = 0
    for file in files:
        row, got = _fetch_and_parse(dataclasses.replace(source, url=str(file)), cache_dir)
        stories += got
        dropped += row.dropped
        entries += row.entries
        failures += row.status == "failed"
        notes.append(f"{file.name}: {row.status}, {row.detail}")
    status: Literal["ok", "failed"] = "failed" if files and failures == len(files) else "ok"
    detail = "; ".join(notes) if files else f"no feed files ({', '.join(FEED_SUFFIXES)}) in {path}"
    return SourceStatus(source.name, source.url, status, entries, len(stories), tuple(dropped), detail), stories


def _failed(source: FeedSource, detail: str) -> SourceStatus:
    return SourceStatus(source.name, source.url, "failed", 0, 0, (), detail)
