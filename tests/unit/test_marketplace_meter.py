"""The BatchMeterUsage sender against calls refused as a whole (BILLING.md section 6): the culprit is
isolated by halving, keeps its own ``Error:<code>`` and stays pending; every other record lands in the
same run; any exception of the client is a failed call, never a crashed run."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from connect_metering.adapters.marketplace_meter import MarketplaceMeter, SendResult
from connect_metering.domain.instants import MS_PER_HOUR, parse_iso_ms
from connect_metering.domain.metering import MeteringRecord, RecordStatus

pytestmark = pytest.mark.unit

H = parse_iso_ms("2026-11-02T08:00:00Z")


def record(number: int) -> MeteringRecord:
    licence = f"arn:aws:license-manager::123456789012:license/l-{number:032d}"
    usage = {
        "Timestamp": "2026-11-02T08:00:00.000Z",
        "CustomerAWSAccountId": "111122223333",
        "LicenseArn": licence,
        "Dimension": "agent_minutes",
        "Quantity": number,
    }
    return MeteringRecord(f"co{number}", f"license#l-{number}", "agent_minutes", H, usage, {})


class RefusingClient:
    """Answers Success per record unless a call carries a culprit: then the whole call fails with
    ``error`` (a ClientError code or any exception), as BatchMeterUsage does."""

    def __init__(self, culprits: set[int], error: Exception | str) -> None:
        self.culprits = culprits
        self.error = error
        self.calls: list[list[int]] = []

    def batch_meter_usage(self, UsageRecords: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        numbers = [int(usage["Quantity"]) for usage in UsageRecords]
        self.calls.append(numbers)
        if self.culprits & set(numbers):
            if isinstance(self.error, Exception):
                raise self.error
            raise ClientError({"Error": {"Code": self.error, "Message": "refused"}}, "BatchMeterUsage")
        return {
            "Results": [
                {"UsageRecord": usage, "Status": "Success", "MeteringRecordId": f"id-{usage['Quantity']}"}
                for usage in UsageRecords
            ],
            "UnprocessedRecords": [],
        }


def meter(client: RefusingClient, observed: list[SendResult]) -> MarketplaceMeter:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return MarketplaceMeter(
        client,  # type: ignore[arg-type]
        now_ms=lambda: H + MS_PER_HOUR,
        monotonic=lambda: clock[0],
        sleep=sleep,
        rng=random.Random(1),
        observer=observed.append,
    )


@pytest.mark.parametrize(
    "error",
    [
        "InvalidLicenseException",
        "TimestampOutOfBoundsException",
        "InvalidTagException",
        ParamValidationError(report='Unknown parameter in UsageRecords[0]: "LicenseArn"'),
        ValueError("anything else the client may raise"),
    ],
)
def test_the_culprit_is_isolated_and_every_other_record_lands(error: Exception | str) -> None:
    client = RefusingClient({7}, error)
    observed: list[SendResult] = []
    answered = meter(client, observed).send([record(n) for n in range(1, 26)])
    code = error if isinstance(error, str) else type(error).__name__
    by_quantity = {r.quantity: r for r in answered}
    assert sorted(by_quantity) == list(range(1, 26))
    culprit = by_quantity.pop(7)
    assert (culprit.status, culprit.result, culprit.attempts) == (RecordStatus.PENDING, f"Error:{code}", 1)
    assert {r.status for r in by_quantity.values()} == {RecordStatus.ACCEPTED}
    # Only the culprit's own outcome is an error; no innocent record is ever reported refused.
    assert [(o.record.quantity, o.status) for o in observed if o.status != "Success"] == [
        (7, f"Error:{code}")
    ]
    # 1 refused call, then halving: about 2 x log2(25) calls more, never one per record.
    assert len(client.calls) <= 1 + 2 * 5
    assert all(len(call) <= 25 for call in client.calls)


def test_two_culprits_in_one_call_are_both_isolated() -> None:
    client = RefusingClient({3, 19}, "InvalidLicenseException")
    answered = meter(client, []).send([record(n) for n in range(1, 26)])
    refused = sorted(r.quantity for r in answered if r.status is RecordStatus.PENDING)
    assert refused == [3, 19]
    assert sum(1 for r in answered if r.status is RecordStatus.ACCEPTED) == 23


@pytest.mark.parametrize("code", ["DisabledApiException", "InvalidProductCodeException"])
def test_an_api_wide_refusal_is_not_split(code: str) -> None:
    client = RefusingClient(set(range(1, 26)), code)
    answered = meter(client, []).send([record(n) for n in range(1, 26)])
    assert len(client.calls) == 1
    assert {(r.status, r.result) for r in answered} == {(RecordStatus.PENDING, f"Error:{code}")}


def test_connection_failures_are_retried_not_split() -> None:
    client = RefusingClient({5}, EndpointConnectionError(endpoint_url="https://metering.marketplace"))
    observed: list[SendResult] = []
    answered = meter(client, observed).send([record(n) for n in range(1, 11)])
    assert answered == []  # still pending, all of them: the next run resends them
    assert len(client.calls) == 5 and all(sorted(call) == list(range(1, 11)) for call in client.calls)
    assert {o.status for o in observed} == {"Error:EndpointConnectionError"}


def test_without_refusal_calls_stay_at_ceil_records_over_25() -> None:
    client = RefusingClient(set(), "InvalidLicenseException")
    answered = meter(client, []).send([record(n) for n in range(1, 61)])
    assert len(answered) == 60 and len(client.calls) == 3
