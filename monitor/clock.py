"""One clock for every output: instants stored as naive UTC are shown in Vietnam time.

JSON carries ISO 8601 with the offset (``2026-12-03T15:05:00+07:00``); tables and the web page
show Vietnam time (Asia/Ho_Chi_Minh) and say so. An article dated by the day only keeps its
day: ``published`` is never turned into an instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

VIETNAM_TIME = ZoneInfo("Asia/Ho_Chi_Minh")
TIME_ZONE_LABEL = "giờ Việt Nam (UTC+7)"
TABLE_TIME_NOTE = "times in Vietnam time (UTC+7)"


def in_vietnam(moment: datetime) -> datetime:
    """``moment`` (naive means UTC, as every stored DateTime) as an aware Vietnam time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VIETNAM_TIME)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with the +07:00 offset, to the second (``None`` stays ``None``)."""
    if moment is None:
        return None
    return in_vietnam(moment).isoformat(timespec="seconds")


def local_text(moment: datetime | None, *, seconds: bool = False) -> str:
    """``YYYY-MM-DD HH:MM[:SS]`` in Vietnam time, for tables (empty for ``None``)."""
    if moment is None:
        return ""
    return in_vietnam(moment).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def published_iso(published: str | None) -> str | None:
    """A page's date as dtmon reads it: a bare day stays a day; a time without an offset is
    Vietnam time and gets ``+07:00``; unreadable text is returned as is."""
    if not published:
        return published
    text = published.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if len(text) <= 10:
        return moment.date().isoformat()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VIETNAM_TIME)
    return moment.isoformat()


def published_text(published: str | None) -> str:
    """A page's date for tables: the day alone, or the day and time in Vietnam time."""
    value = published_iso(published)
    if not value or len(value) <= 10:
        return value or ""
    try:
        return local_text(datetime.fromisoformat(value))
    except ValueError:
        return value


def json_value(value: object) -> object:
    """The JSON form of a date or datetime (``TypeError`` for anything else)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
