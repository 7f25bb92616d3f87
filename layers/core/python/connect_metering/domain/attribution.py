"""The primary timeline and the attribution of billable pieces to subscriptions (BILLING.md section 4).

Millisecond [t, t + 1) of a piece goes to primary(t). Change points of the primary are rounded up to the
next whole millisecond, so they agree with ``Subscription.is_active_at`` for instants with
sub-millisecond parts (tested in ``tests/unit/test_usage.py``). Pure: no boto3, no I/O, no clock reads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import pairwise

from connect_metering.domain.instants import from_ms, to_ms
from connect_metering.domain.sessions import Piece
from connect_metering.domain.tenancy import PricingModel, Subscription, primary_subscription
from connect_metering.domain.usage_inputs import UsageInputError, is_int, require_int

Segment = tuple[int, int, Subscription | None]


def _ceil_ms(moment: datetime) -> int:
    """The first whole millisecond at or after ``moment``."""
    epoch_ms = to_ms(moment)
    return epoch_ms if from_ms(epoch_ms) >= moment else epoch_ms + 1


def check_subscriptions(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    checked = tuple(subscriptions)
    for index, subscription in enumerate(checked):
        if not isinstance(subscription, Subscription):
            raise UsageInputError(
                f"subscriptions[{index}]: must be a Subscription, got {type(subscription).__name__}"
            )
    return checked


def _change_points(subscriptions: Iterable[Subscription]) -> list[int]:
    """The whole milliseconds at which the primary may change: each started subscription's ``started``,
    ``ended`` and, for a contract, entitlement expiry (a pending subscription is never active)."""
    moments: list[datetime | None] = []
    for subscription in subscriptions:
        if subscription.started is None:
            continue
        moments += (subscription.started, subscription.ended)
        if subscription.pricing is PricingModel.CONTRACT:
            moments.append(subscription.entitlements.expires)
    return [_ceil_ms(moment) for moment in moments if moment is not None]


def primary_segments(subscriptions: Sequence[Subscription], start_ms: int, end_ms: int) -> list[Segment]:
    """Consecutive half-open segments [a, b) covering [start_ms, end_ms), each with one primary.

    The primary (BILLING.md section 4) only changes at a subscription's ``started``, ``ended`` or, for a
    contract, entitlement expiry; adjacent segments always have different primaries. None means no
    active subscription: that time is unbilled. Empty when ``start_ms == end_ms``.
    """
    subs = check_subscriptions(subscriptions)
    require_int(start_ms, "start_ms")
    require_int(end_ms, "end_ms")
    if end_ms < start_ms:
        raise UsageInputError(f"end_ms: {end_ms} is before start_ms {start_ms} (need start <= end)")
    if end_ms == start_ms:
        return []
    cuts = {start_ms, end_ms}
    cuts.update(cut for cut in _change_points(subs) if start_ms < cut < end_ms)
    segments: list[Segment] = []
    for low, high in pairwise(sorted(cuts)):
        primary = primary_subscription(subs, from_ms(low))
        if segments and segments[-1][2] == primary:
            segments[-1] = (segments[-1][0], high, primary)
        else:
            segments.append((low, high, primary))
    return segments


def _check_segments(segments: Sequence[Segment]) -> None:
    previous_end: int | None = None
    for index, segment in enumerate(segments):
        try:
            low, high, subscription = segment
        except (TypeError, ValueError):
            raise UsageInputError(
                f"segments[{index}]: must be (start_ms, end_ms, Subscription | None), got {segment!r}"
            ) from None
        if not is_int(low) or not is_int(high) or high <= low:
            raise UsageInputError(
                f"segments[{index}]: bounds must be integer ms with start < end, got ({low!r}, {high!r})"
            )
        if subscription is not None and not isinstance(subscription, Subscription):
            raise UsageInputError(f"segments[{index}]: the primary must be a Subscription or None")
        if previous_end is not None and low != previous_end:
            raise UsageInputError(
                f"segments[{index}]: starts at {low} but the previous segment ends at {previous_end} "
                "(segments must be consecutive)"
            )
        previous_end = high


def attribute(
    pieces: Iterable[Piece], segments: Sequence[Segment], *, until_ms: int | None = None
) -> dict[str | None, int]:
    """Billable ms per subscription key (None: unbilled), each millisecond to the primary of its segment.

    A piece [a, b] covers the milliseconds [a, b); with ``until_ms`` only those before it count. A piece
    split across segments gives each its overlap. Only keys with more than 0 ms appear. The segments
    (from ``primary_segments``) must cover every counted millisecond.
    """
    _check_segments(segments)
    if until_ms is not None:
        require_int(until_ms, "until_ms")
    starts = [segment[0] for segment in segments]
    totals: dict[str | None, int] = {}
    for index, piece in enumerate(pieces):
        try:
            low, high = piece
        except (TypeError, ValueError):
            raise UsageInputError(f"pieces[{index}]: must be (start_ms, end_ms), got {piece!r}") from None
        if not is_int(low) or not is_int(high) or high < low:
            raise UsageInputError(
                f"pieces[{index}]: bounds must be integer ms with start <= end, got {piece!r}"
            )
        if until_ms is not None and high > until_ms:
            high = until_ms
        if high <= low:
            continue
        if not segments or low < segments[0][0] or high > segments[-1][1]:
            span = f"[{segments[0][0]}, {segments[-1][1]})" if segments else "empty"
            raise UsageInputError(
                f"pieces[{index}]: [{low}, {high}) is not inside the primary timeline {span} "
                "(the segments must cover every counted millisecond)"
            )
        position = bisect.bisect_right(starts, low) - 1
        while low < high:
            _, segment_end, primary = segments[position]
            upto = min(high, segment_end)
            key = None if primary is None else primary.key
            totals[key] = totals.get(key, 0) + upto - low
            low = upto
            position += 1
    return totals


def attribute_all(
    pieces: list[Piece], subscriptions: tuple[Subscription, ...], until_ms: int
) -> dict[str | None, int]:
    """``attribute`` of pieces the core made itself (integer bounds, start <= end) over the primary
    timeline from the earliest of them to ``until_ms``: every piece lies inside it by construction, so
    the checks are left out, and a timeline of one primary (the usual hour) is a plain sum."""
    counted = [piece for piece in pieces if piece[0] < until_ms]
    if not counted:
        return {}
    start = min(piece[0] for piece in counted)
    segments = primary_segments(subscriptions, start, until_ms)
    if len(segments) == 1:
        primary = segments[0][2]
        total = sum(min(high, until_ms) - low for low, high in counted if high > low)
        return {None if primary is None else primary.key: total} if total > 0 else {}
    starts = [segment[0] for segment in segments]
    totals: dict[str | None, int] = {}
    for low, high in counted:
        high = min(high, until_ms)
        position = bisect.bisect_right(starts, low) - 1
        while low < high:
            _, segment_end, primary = segments[position]
            upto = min(high, segment_end)
            key = None if primary is None else primary.key
            totals[key] = totals.get(key, 0) + upto - low
            low = upto
            position += 1
    return totals
