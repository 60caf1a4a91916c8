"""A feed's date text -> the instant it names, or the wall time when it names no zone, or why not.

The rule: a date that names its zone or offset is read in that zone, never in the source's
``default_timezone``; only a date that names none comes back naive, for the caller to place in
the default zone. A zone that cannot be read is a reason to drop the entry, not a guess.

RFC 3339 / ISO 8601 text is read by the standard library. Everything else (RFC 822 in its many
real-world shapes, asctime, Greek, Hungarian, Korean, Perforce and MSSQL forms) is read by
feedparser's date parsers, through ``rss.instant``. feedparser silently takes any zone name it
does not know as UTC, so the zone is looked at here first: a number, a name feedparser knows, or a
name in the short table below; anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

from . import rss


class DateUnreadable(Exception):
    """The entry's date cannot be used; the message is the reason shown for the dropped entry."""


# Zone abbreviations that real feeds write and feedparser does not know (it would take them as
# UTC). Only names with one common meaning in feeds: IST (India, Israel or Ireland) is left out.
_MORE_ZONES = {
    "wet": 0, "west": 1, "cet": 1, "cest": 2, "eet": 2, "eest": 3, "msk": 3,
    "bst": 1, "hkt": 8, "jst": 9, "kst": 9, "aest": 10, "aedt": 11, "nzst": 12, "nzdt": 13,
    "hst": -10, "akst": -9, "akdt": -8,
}
_TIME = re.compile(r"\d{1,2}:\d\d(?::\d\d)?(?:[.,]\d+)?")
_OFFSET = re.compile(r"^(?:(?:etc/)?(?:gmt|utc|ut))?([+-])(\d\d):?(\d\d)$")
_SIGNED = re.compile(r"^(?:(?:etc/)?(?:gmt|utc|ut))?[+-]")
_REDUCED = re.compile(r"(\d{4})(?:-(\d\d))?")
_MONTH = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.IGNORECASE)
_UTC_NAMES = {"z", "ut", "utc", "gmt", "etc/gmt", "etc/utc", "etc/ut", "etc/zulu", "zulu"}


def read_date(raw: Any) -> dt.datetime:
    """The instant ``raw`` names (aware), or its wall time (naive) when it names no zone.

    Raises ``DateUnreadable`` with the reason when the text is no date, has an impossible time
    of day, or names a zone that cannot be read (an invalid offset such as ``+zz:00``, or an
    unknown abbreviation).
    """
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise DateUnreadable("empty date")
    iso = text.replace(" ", "T", 1) if re.match(r"^\d{4}-\d\d-\d\d \d", text) else text
    # Python takes any character between the date and the time ("2013-01-27-01" is 01:00): only T.
    if not re.match(r"^\d{4}-\d\d-\d\d[^T]", iso):
        try:
            return dt.datetime.fromisoformat(iso)
        except ValueError:
            pass
    _check_time_of_day(text)
    zone = _written_zone(text)
    if zone is not None:
        return _in_zone(text, zone)
    return _wall_time(text)


def _check_time_of_day(text: str) -> None:
    """feedparser's readers roll 25:14 or 10:61 over into the next hour or day; that is no date."""
    time = _TIME.search(text)
    if time is None:
        return
    hour, minute, second = (int(part) for part in (re.split(r"[:.,]", time.group()) + ["0"])[:3])
    if hour > 23 or minute > 59 or second > 60:
        raise DateUnreadable(f"time of day '{time.group()}' in '{text}' is not a real time")


def _written_zone(text: str) -> str | None:
    """The zone token written after the time of day (lower-cased), or None when none is written."""
    time = _TIME.search(text)
    if time is None:
        return None
    tail = re.sub(r"\([^)]*\)\s*$", "", text[time.end():]).strip()  # "+0000 (GMT)": the comment goes
    tail = re.sub(r"(?:^|\s)\d{4}$", "", tail).strip()  # asctime's year after the zone
    return tail.split()[0].lower() if tail else None


def _wall_time(text: str) -> dt.datetime:
    """A date with no zone: naive wall time, or aware when its format itself implies a zone."""
    if not text.isascii():
        # Korean blog dates name no zone but are KST by definition; feedparser's reader knows it.
        return _instant(text)
    reduced = _REDUCED.fullmatch(text)
    fields = email.utils.parsedate(text)
    if reduced or fields is not None:  # W3C-DTF's "2003" and "2003-12", or RFC 822 without a zone
        try:
            if reduced:
                return dt.datetime(int(reduced.group(1)), int(reduced.group(2) or 1), 1)
            return dt.datetime(*fields[:6])
        except ValueError:
            raise DateUnreadable(f"date '{text}' is not a real date") from None
    if not _MONTH.search(text):
        # Two-digit-year ISO forms ("031231", "-0312", "03335") and numeric junk ("2013-01-27-01")
        # would be read by some reader of feedparser's, each a guess at the century or the layout.
        raise DateUnreadable(f"date '{text}' not understood (write RFC 3339, such as "
                             "2026-12-04T06:00:00-05:00, or RFC 822)")
    # feedparser reads a date without a zone as UTC, so its instant is the wall time as written.
    return _instant(text).replace(tzinfo=None)


def _in_zone(text: str, zone: str) -> dt.datetime:
    """The instant of a date that names ``zone``, kept in the offset it was written in."""
    offset = _OFFSET.match(zone)
    if offset:
        sign, hours, minutes = offset.groups()
        if int(hours) > 18 or int(minutes) > 59:
            raise DateUnreadable(f"invalid UTC offset '{zone}' in '{text}'")
        written = dt.timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
        return _instant(text).astimezone(dt.timezone(written))
    if _SIGNED.match(zone):
        raise DateUnreadable(f"invalid UTC offset '{zone}' in '{text}'")
    if zone in _UTC_NAMES:
        return _instant(text)
    known = rss.zone_names()
    if zone in known:
        return _instant(text).astimezone(dt.timezone(dt.timedelta(hours=known[zone])))
    if zone in _MORE_ZONES:
        # feedparser took this name as UTC, so its instant is the wall time; the table gives the zone
        wall = _instant(text).replace(tzinfo=None)
        return wall.replace(tzinfo=dt.timezone(dt.timedelta(hours=_MORE_ZONES[zone])))
    raise DateUnreadable(f"time zone '{zone}' in '{text}' is not one digest can read "
                         "(write a UTC offset such as +0200)")


def _instant(text: str) -> dt.datetime:
    time = _TIME.search(text)
    written = time is not None and re.sub(r"[^1-9]", "", time.group()) != ""
    found = rss.instant(text, has_time=written)
    if found is None:
        raise DateUnreadable(f"date '{text}' not understood")
    return found
