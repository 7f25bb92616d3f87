"""An in-process AWS Marketplace (metering + entitlement) that answers real boto3 clients.

``MarketplaceSimulator.attach(client)`` hooks botocore's ``before-call`` event of a
``meteringmarketplace`` or ``marketplace-entitlement`` client: the client validates and serializes
the request as usual, the simulator reads the serialized body, applies AWS Marketplace's rules and
answers with a wire-format body that botocore's own parser turns into the result (or the modeled
exception), so the calling code sees exactly what it would see from AWS. Nothing goes over the
network and botocore's retries do not run: the product's retry logic is what gets exercised.

The parts, one concern each: ``wire`` (the serialized request, the parsed answer, botocore's model
constraints), ``usage_records`` (a UsageRecord validated as the model says), ``faults`` (outages,
revocations, dropped records, empty pages, the throttle), ``registration`` (subscriptions, tokens,
ResolveCustomer), ``metering`` (BatchMeterUsage) with its ``ledger``, ``entitlements``
(GetEntitlements); ``simulator`` composes them behind ``MarketplaceSimulator``.

Local runtime only (tests, ``replay``, ``serve``, ``bench``); never shipped in a Lambda asset.
"""

from connect_metering.local.marketplace_sim.entitlements import (
    ENTITLEMENT_FILTER_KEYS,
    MAX_ENTITLEMENTS_PAGE,
    EntitlementValue,
)
from connect_metering.local.marketplace_sim.faults import (
    OUTAGE_ERRORS,
    FaultPlan,
    OperationCounters,
    Outage,
    OutageError,
    Revocation,
)
from connect_metering.local.marketplace_sim.ledger import Ledger, LedgerEntry, Refusal
from connect_metering.local.marketplace_sim.metering import MAX_RECORDS_PER_CALL, MAX_REQUEST_BYTES
from connect_metering.local.marketplace_sim.registration import FINAL_METERING_WINDOW
from connect_metering.local.marketplace_sim.simulator import MarketplaceSimulator
from connect_metering.local.marketplace_sim.usage_records import (
    DECIMAL_QUANTITY,
    MAX_ALLOCATIONS,
    MAX_QUANTITY,
    MAX_TAGS_PER_ALLOCATION,
    Allocation,
)
from connect_metering.local.marketplace_sim.wire import (
    ENTITLEMENT_REGION,
    ENTITLEMENT_SERVICE,
    METERING_SERVICE,
    MarketplaceError,
    decode_request_body,
    licence_id,
)

__all__ = [
    "DECIMAL_QUANTITY",
    "ENTITLEMENT_FILTER_KEYS",
    "ENTITLEMENT_REGION",
    "ENTITLEMENT_SERVICE",
    "FINAL_METERING_WINDOW",
    "MAX_ALLOCATIONS",
    "MAX_ENTITLEMENTS_PAGE",
    "MAX_QUANTITY",
    "MAX_RECORDS_PER_CALL",
    "MAX_REQUEST_BYTES",
    "MAX_TAGS_PER_ALLOCATION",
    "METERING_SERVICE",
    "OUTAGE_ERRORS",
    "Allocation",
    "EntitlementValue",
    "FaultPlan",
    "Ledger",
    "LedgerEntry",
    "MarketplaceError",
    "MarketplaceSimulator",
    "OperationCounters",
    "Outage",
    "OutageError",
    "Refusal",
    "Revocation",
    "decode_request_body",
    "licence_id",
]
