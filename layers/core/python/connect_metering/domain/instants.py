"""UTC instants as integer epoch milliseconds, and whole hours.

The billing contract measures durations in milliseconds; integers keep every sum exact.
"""

from __future__ import annotations

from collections.abc import Mapping
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


_ONE_MS = timedelta(milliseconds=1)
# Timestamp -> epoch ms of the strings parsed last (only those that parse); bounded.
_PARSED: dict[str, int] = {}
_MAX_PARSED = 50_000
# The same, read-only: a string found here is one ``parse_iso_ms`` gives this answer for (a hot loop may
# look here first and spare itself the call).
PARSED_MS: Mapping[str, int] = _PARSED


def parse_iso_ms(value: str, *, field: str = "timestamp") -> int:
    """``to_ms(parse_iso(value))``, remembered for the last strings read (a line's arrival is read by
    the replay's reader, then by ingest; a status's start repeats over many heartbeats). A timestamp
    ``datetime.fromisoformat`` reads as it is, in UTC (``...Z``, how AWS writes every timestamp billing
    reads), skips the general parser's other steps (``_utc_ms``); anything else takes the general way
    (the same answer, the same error). ``tests/unit/test_instants.py`` holds the two to the same
    result."""
    if type(value) is not str:
        return to_ms(parse_iso(value, field=field))
    known = _PARSED.get(value)
    if known is None:
        known = _utc_ms(value)
        if known is None:
            known = to_ms(parse_iso(value, field=field))
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        _PARSED[value] = known
    return known


def _utc_ms(value: str) -> int | None:
    """Epoch ms of a timestamp ``datetime.fromisoformat`` reads with the UTC zone, or None. What
    ``parse_iso`` would give: it strips blanks (fromisoformat refuses them), writes a final ``Z`` as
    ``+00:00`` (which fromisoformat reads alike) and converts to UTC (nothing to convert); ``to_ms`` is
    the whole milliseconds since the epoch, as the floor division is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment - _EPOCH) // _ONE_MS if moment.tzinfo is UTC else None


def hour_floor(epoch_ms: int) -> int:
    """Start of the hour [H, H+1h) that contains the instant."""
    return epoch_ms - epoch_ms % MS_PER_HOUR
