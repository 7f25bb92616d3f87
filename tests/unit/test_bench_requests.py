"""The metering benchmark charges each DynamoDB request to the companies it serves (issue 14: requests per
subscription-hour of an active company)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from connect_metering.local.bench_requests import CompanyRequests

pytestmark = pytest.mark.unit

COMPANY = re.compile(r"co\d{3}")


def counted(requests: CompanyRequests, operation: str, params: dict[str, object]) -> None:
    requests._count(params=params, model=SimpleNamespace(name=operation))


def test_a_request_is_charged_to_the_companies_it_names_and_the_rest_shared_by_all() -> None:
    requests = CompanyRequests(COMPANY, lambda found: found)
    counted(requests, "Query", {"ExpressionAttributeValues": {":pk": {"S": "COMPANY#co001"}}})
    counted(
        requests,
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"Item": {"pk": {"S": "COMPANY#co001"}}}}] * 3},
    )
    # a settle batch: three entries of co001, one of co002
    counted(
        requests,
        "BatchWriteItem",
        {
            "RequestItems": {
                "ledger": [{"PutRequest": {"Item": {"company": {"S": "co001"}}}}] * 3,
                "tenancy": [{"DeleteRequest": {"Key": {"pk": {"S": "COMPANY#co002"}}}}],
            }
        },
    )
    counted(requests, "Query", {"IndexName": "active-subscriptions"})  # the dispatcher's: nobody's own
    counted(requests, "BatchGetItem", {"RequestItems": {"t": {"Keys": [{"pk": {"S": "co001 co002"}}]}}})
    assert requests.requests == 5
    assert requests.shares == pytest.approx({"co001": 2.75 + 0.5, "co002": 0.25 + 0.5})
    assert requests.unattributed == 1
    # co001's own 3.25 plus its share (one of two companies) of the unattributed request
    assert requests.per_company(["co001"], everyone=2) == pytest.approx(3.75)
    assert requests.per_company(["co002"], everyone=2) == pytest.approx(1.25)
    assert requests.per_company([], everyone=2) == 0
    requests.clear()
    assert (requests.requests, requests.shares, requests.unattributed) == (0, {}, 0)
