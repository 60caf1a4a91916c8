"""The feed package's values: a configured source, one fetch, one source's row, the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...errors import StoryError
from ...models import Story


@dataclass(frozen=True)
class FeedSource:
    """One configured feed (``[[sources]]`` in digest.toml). These defaults are config.py's too."""

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


class FeedFailed(Exception):
    """One source (or one body) cannot be used; its message becomes the source's detail."""
