"""Feed sources: RSS 0.9x/2.0, RSS 1.0, Atom and JSON Feed 1.1 -> ``Story``.

    gather (gather.py) -> fetch (fetch.py: files, httpx, the conditional-request cache)
                       -> parse_body (parse.py) <- rss.py (feedparser) | jsonfeed.py -> Entry
                       -> Story, or the entry dropped with a reason

values.py holds the values the rest of digest sees (FeedSource, FeedReport, ...); entry.py the
format-neutral ``Entry``. httpx is imported only in fetch.py, feedparser only in rss.py.
Imports the top-level models, errors and files (the cache's atomic write), and sources'
sanitise and plaintext.
"""

from .fetch import ACCEPT, USER_AGENT, fetch
from .gather import FEED_SUFFIXES, gather
from .parse import ParseResult, parse
from .values import FeedReport, FeedSource, FetchResult, SourceStatus

__all__ = ["ACCEPT", "FEED_SUFFIXES", "USER_AGENT", "FeedReport", "FeedSource", "FetchResult", "ParseResult",
           "SourceStatus", "fetch", "gather", "parse"]
