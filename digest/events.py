"""Structured operational logs: one line per event, ``key=value`` pairs (logfmt).

    2026-12-01T11:00:00.412Z event=issue.finished edition=am date=2026-12-01 sent=11 failed=0

Secrets never pass through here: callers log addresses, counts and codes, not settings.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from .console import visible

LOGGER = logging.getLogger("digest")


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\r\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return visible(text)  # a value from a user's file must not drive the terminal showing the log


def event(name: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one event as a single line."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    parts = [stamp, f"level={logging.getLevelName(level).lower()}", f"event={name}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    LOGGER.log(level, " ".join(parts))


def log_to_stderr(level: int = logging.INFO) -> None:
    """Send event lines to standard error, unadorned (the line carries its own time and level)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False
