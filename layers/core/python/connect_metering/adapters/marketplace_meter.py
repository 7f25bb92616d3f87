"""BatchMeterUsage with the product's own retries and pacing (the AWS client's retries are off).

Records are sent as stored: at most 25 per call, licence identities and legacy CustomerIdentifier ones
in separate calls (the latter with the ProductCode, the former never with it). Throttling, 5xx,
connection failures and UnprocessedRecords are retried inside the run with exponential back-off and
full jitter; whatever is still unsettled stays pending and is resent by the next run. Calls are paced
client-side so all workers together stay under Marketplace's 10 calls per second (maximum
concurrency x rate < 10).

A call refused as a whole for one of its records (InvalidLicenseException, TimestampOutOfBounds, a
client-side ParamValidationError, any exception that is neither transient nor API-wide) must not hold
back the others (BILLING.md section 6): the chunk is split in halves that are sent again, paced like
every call, until the record that causes the refusal is alone; it comes back pending with its own
outcome ``Error:<code>`` (stored, alarmed) and every other record lands in the same run. One culprit
among 25 costs about 2 x log2(25) = 10 more calls. An API-wide refusal (DisabledApiException, or an
InvalidProductCodeException, whose ProductCode every record of a legacy call shares) has no culprit:
every record of the call keeps that outcome, without splitting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from connect_metering.domain.instants import hour_floor, iso_ms, parse_iso, to_ms
from connect_metering.domain.metering import MeteringRecord, RecordStatus

if TYPE_CHECKING:
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient
    from mypy_boto3_meteringmarketplace.type_defs import BatchMeterUsageResultTypeDef

MAX_RECORDS_PER_CALL = 25
RETRYABLE_ERRORS = frozenset({"ThrottlingException", "InternalServiceErrorException", "ServiceUnavailable"})
# Refusals that concern the call, not one of its records: splitting cannot isolate anything.
API_WIDE_ERRORS = frozenset({"DisabledApiException", "InvalidProductCodeException"})


class WorkerCrash(Exception):
    """Fault injection only: the worker dies right after a call returned its results, before storing
    them (the case that matters: AWS accepted records the ledger still holds as pending)."""


@dataclass(frozen=True)
class _CallOutcome:
    """What one call left: records to retry, records settled, and a whole-call refusal (its code)."""

    retry: list[MeteringRecord]
    settled: list[MeteringRecord]
    refusal: str | None = None


def _error_code(error: Exception) -> tuple[str, bool]:
    """(code, retryable) of any exception the client raised: a modeled error's code, else the class name.
    Connection failures and timeouts are transient; everything else is a refusal."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code") or "ClientError")
        return code, code in RETRYABLE_ERRORS
    return type(error).__name__, isinstance(error, ConnectionError | HTTPClientError)


@dataclass(frozen=True)
class SendResult:
    record: MeteringRecord
    status: str  # Success | DuplicateRecord | CustomerNotSubscribed | Unprocessed | Error:<code>
    sent_at_ms: int


Observer = Callable[[SendResult], None]


def _identity(usage_record: dict[str, Any] | Any) -> tuple[str, str, str, int]:
    timestamp = usage_record["Timestamp"]
    moment = timestamp if isinstance(timestamp, datetime) else parse_iso(str(timestamp))
    return (
        str(usage_record.get("LicenseArn") or usage_record.get("CustomerIdentifier") or ""),
        str(usage_record.get("CustomerAWSAccountId") or ""),
        str(usage_record["Dimension"]),
        hour_floor(to_ms(moment)),
    )


def wire_record(record: MeteringRecord) -> dict[str, Any]:
    """The stored UsageRecord as boto3 takes it (Timestamp as a datetime)."""
    wire = dict(record.usage_record)
    wire["Timestamp"] = parse_iso(str(wire["Timestamp"]))
    return wire


class MarketplaceMeter:
    def __init__(
        self,
        client: MarketplaceMeteringClient,
        *,
        now_ms: Callable[[], int],
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
        rng: random.Random,
        calls_per_second: float = 4.0,
        max_attempts: int = 5,
        base_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        observer: Observer | None = None,
        crash: Callable[[], bool] | None = None,
    ) -> None:
        self._client = client
        self._now_ms = now_ms
        self._monotonic = monotonic
        self._sleep = sleep
        self._rng = rng
        self._interval = 1.0 / calls_per_second
        self._max_attempts = max_attempts
        self._base_delay = base_delay_s
        self._max_delay = max_delay_s
        self._observer = observer
        self._crash = crash
        self._last_call: float | None = None
        self.calls = 0
        self.retried_records = 0

    def send(self, records: Sequence[MeteringRecord]) -> list[MeteringRecord]:
        """Send records (oldest first); returns those Marketplace answered: settled ones with their new
        status, and refused ones still PENDING with ``result`` ``Error:<code>``. Records not returned
        are still pending too (their last attempt was throttled, failed or left unprocessed)."""
        settled: list[MeteringRecord] = []
        groups: dict[str | None, list[MeteringRecord]] = {}
        for record in sorted(records, key=lambda r: (r.hour_ms, r.subscription_key, r.dimension)):
            groups.setdefault(record.product_code if record.is_legacy else None, []).append(record)
        for product_code, group in groups.items():
            for first in range(0, len(group), MAX_RECORDS_PER_CALL):
                settled += self._send_chunk(group[first : first + MAX_RECORDS_PER_CALL], product_code)
        return settled

    def _send_chunk(self, chunk: list[MeteringRecord], product_code: str | None) -> list[MeteringRecord]:
        answered: list[MeteringRecord] = []
        remaining = chunk
        for attempt in range(self._max_attempts):
            if attempt:
                self.retried_records += len(remaining)
                self._sleep(self._backoff(attempt))
            outcome = self._call(remaining, product_code)
            answered += outcome.settled
            if outcome.refusal is not None:
                return answered + self._isolate(remaining, product_code, outcome.refusal)
            remaining = outcome.retry
            if not remaining:
                break
        return answered

    def _isolate(
        self, refused: list[MeteringRecord], product_code: str | None, code: str
    ) -> list[MeteringRecord]:
        """The records of a call refused as a whole: the culprit alone keeps the refusal; the others are
        sent again in halves (BILLING.md section 6)."""
        if len(refused) == 1 or code in API_WIDE_ERRORS:
            sent_at = self._now_ms()
            for record in refused:
                self._observe(record, f"Error:{code}", sent_at)
            return [record.refused(f"Error:{code}") for record in refused]
        middle = len(refused) // 2
        return self._send_chunk(refused[:middle], product_code) + self._send_chunk(
            refused[middle:], product_code
        )

    def _call(self, chunk: list[MeteringRecord], product_code: str | None) -> _CallOutcome:
        self._pace()
        extra = {"ProductCode": product_code} if product_code else {}
        sent_at = self._now_ms()
        self.calls += 1
        try:
            response = self._client.batch_meter_usage(
                UsageRecords=[wire_record(record) for record in chunk],  # type: ignore[misc]
                **extra,
            )
        except Exception as error:  # any failure of the client is a failed call, never a crashed run
            code, retryable = _error_code(error)
            if not retryable:
                return _CallOutcome([], [], refusal=code)
            for record in chunk:
                self._observe(record, f"Error:{code}", sent_at)
            return _CallOutcome(chunk, [])
        by_identity: dict[tuple[str, str, str, int], MeteringRecord | None] = {
            _identity(record.usage_record): record for record in chunk
        }
        settled = self._settled(response, by_identity, sent_at)
        if self._crash is not None and self._crash():
            raise WorkerCrash("injected crash after BatchMeterUsage returned")
        return _CallOutcome([record for record in by_identity.values() if record is not None], settled)

    def _settled(
        self,
        response: BatchMeterUsageResultTypeDef,
        by_identity: dict[tuple[str, str, str, int], MeteringRecord | None],
        sent_at: int,
    ) -> list[MeteringRecord]:
        """The records the response settles, taken out of ``by_identity`` (what is left was not
        answered: unprocessed, throttled, or an answer the call did not ask for)."""
        settled: list[MeteringRecord] = []
        for result in response.get("Results", []):
            answered = by_identity.pop(_identity(result["UsageRecord"]), None)
            if answered is None:
                continue
            record = answered
            status = result["Status"]
            self._observe(record, status, sent_at)
            if status in ("Success", "DuplicateRecord"):
                # DuplicateRecord: AWS already holds this hour; it counts as accepted (and is alarmed).
                settled.append(record.settled(RecordStatus.ACCEPTED, status, result.get("MeteringRecordId")))
            elif status == "CustomerNotSubscribed":
                settled.append(record.settled(RecordStatus.NOT_SUBSCRIBED, status))
        for unprocessed in response.get("UnprocessedRecords", []):
            left = by_identity.get(_identity(unprocessed))
            if left is not None:
                self._observe(left, "Unprocessed", sent_at)
        return settled

    def _observe(self, record: MeteringRecord, status: str, sent_at_ms: int) -> None:
        if self._observer is not None:
            self._observer(SendResult(record, status, sent_at_ms))

    def _pace(self) -> None:
        now = self._monotonic()
        if self._last_call is not None:
            wait = self._last_call + self._interval - now
            if wait > 0:
                self._sleep(wait)
                now += wait
        self._last_call = now

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random delay up to base * 2^attempt, capped."""
        return self._rng.uniform(0, min(self._max_delay, self._base_delay * 2**attempt))


def sent_at_iso(result: SendResult) -> str:
    return iso_ms(result.sent_at_ms)
