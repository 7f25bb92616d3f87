"""UTC instants as integer epoch milliseconds, and whole hours.

The billing contract measures durations in milliseconds; integers keep every sum exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000


class InstantError(ValueError):
    """An instant that is not a well-formed ISO-8601 timestamp with a UTC offset."""


def parse_iso(value: str, *, field: str = "timestamp") -> datetime:
    """Parse ISO-8601 (``Z`` or an offset) into an aware UTC datetime; naive input is refused."""
    if not isinstance(value, str) or not value:
        raise InstantError(f"{field}: expected an ISO-8601 timestamp string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InstantError(f"{field}: {value!r} is not ISO-8601") from exc
    if parsed.tzinfo is None:
        raise InstantError(f"{field}: {value!r} has no UTC offset (instants are UTC)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        # 0001-01-01T00:00+01:00 is valid ISO-8601 but before datetime's first instant in UTC.
        raise InstantError(f"{field}: {value!r} is outside the years 1-9999 in UTC") from exc


def to_ms(moment: datetime) -> int:
    """Aware datetime -> epoch milliseconds (exact to the millisecond, truncating microseconds)."""
    if moment.tzinfo is None:
        raise InstantError("naive datetime: instants must be timezone-aware UTC")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MS_PER_SECOND + delta.microseconds // 1_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_ms(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def utc_day(epoch_ms: int) -> str:
    """Epoch ms -> ``YYYY-MM-DD``, the year always four digits: ``strftime("%Y")`` writes the year 999
    as ``999`` on Linux, which no ISO parser reads back, so stored keys never use it."""
    moment = from_ms(epoch_ms)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def iso_ms(epoch_ms: int) -> str:
    """Epoch ms -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (zero-padded for every year: it is used in stored keys)."""
    moment = from_ms(epoch_ms)
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{epoch_ms % 1000:03d}"
    return f"{utc_day(epoch_ms)}T{clock}Z"


def iso(moment: datetime) -> str:
    return iso_ms(to_ms(moment))


# ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``, ASCII digits only: how AWS writes every timestamp billing reads.
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?Z")
# ``YYYY-MM-DDTHH:MM`` -> epoch ms of that minute, decided by the general parser; bounded.
_MINUTES: dict[str, int] = {}
_MAX_MINUTES = 100_000
# Timestamp -> epoch ms of the strings parsed last (only those that parse); bounded.
_PARSED: dict[str, int] = {}
_MAX_PARSED = 50_000


def parse_iso_ms(value: str, *, field: str = "timestamp") -> int:
    """``to_ms(parse_iso(value))``, remembered for the last strings read (a line's arrival is read by
    the replay's reader, then by ingest; a status's start repeats over many heartbeats). A canonical
    timestamp (``_CANONICAL``) has its minute parsed once, by the general parser, and remembered, then
    its seconds and milliseconds added; anything else, or a minute the general parser refuses, takes the
    general way (the same answer, the same error). ``tests/unit/test_instants.py`` holds the two to
    the same result."""
    if type(value) is not str:
        return to_ms(parse_iso(value, field=field))
    known = _PARSED.get(value)
    if known is not None:
        return known
    parsed = _parse_iso_ms(value, field)
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[value] = parsed
    return parsed


def _parse_iso_ms(value: str, field: str) -> int:
    if _CANONICAL.fullmatch(value) is not None:
        minute_ms = _minute_ms(value[:16])
        seconds = int(value[17:19])
        if minute_ms is not None and seconds < 60:
            return minute_ms + seconds * MS_PER_SECOND + (int(value[20:23]) if len(value) == 24 else 0)
    return to_ms(parse_iso(value, field=field))


def _minute_ms(minute: str) -> int | None:
    """``YYYY-MM-DDTHH:MM`` -> epoch ms, or None when the general parser refuses it (or the hour is 24,
    which some Python versions read as the next day's midnight)."""
    known = _MINUTES.get(minute)
    if known is not None:
        return known
    if int(minute[11:13]) > 23:
        return None
    try:
        known = to_ms(parse_iso(minute + ":00Z"))
    except InstantError:
        return None
    if len(_MINUTES) >= _MAX_MINUTES:
        _MINUTES.clear()
    _MINUTES[minute] = known
    return known


def hour_floor(epoch_ms: int) -> int:
    """Start of the hour [H, H+1h) that contains the instant."""
    return epoch_ms - epoch_ms % MS_PER_HOUR
