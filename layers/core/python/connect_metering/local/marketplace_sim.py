"""An in-process AWS Marketplace (metering + entitlement) that answers real boto3 clients.

``MarketplaceSimulator.attach(client)`` hooks botocore's ``before-call`` event of a
``meteringmarketplace`` or ``marketplace-entitlement`` client: the client validates and serializes
the request as usual, the simulator reads the serialized body, applies AWS Marketplace's rules and
answers with a wire-format body that botocore's own parser turns into the result (or the modeled
exception), so the calling code sees exactly what it would see from AWS. Nothing goes over the
network and botocore's retries do not run: the product's retry logic is what gets exercised.

Local runtime only (tests, ``replay``, ``serve``, ``bench``); never shipped in a Lambda asset.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar, cast

import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.client import BaseClient
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import RpcV2CBORParser, create_parser

from connect_metering.domain.instants import from_ms, hour_floor, iso_ms, to_ms

METERING_SERVICE = "meteringmarketplace"
ENTITLEMENT_SERVICE = "marketplace-entitlement"
ENTITLEMENT_REGION = "us-east-1"

MAX_RECORDS_PER_CALL = 25
MAX_REQUEST_BYTES = 1024 * 1024
MAX_QUANTITY = 2_147_483_647
MAX_ALLOCATIONS = 2500
MAX_TAGS_PER_ALLOCATION = 5
MAX_ENTITLEMENTS_PAGE = 25
FINAL_METERING_WINDOW = timedelta(hours=1)
THROTTLE_WINDOW_SECONDS = 1.0
ENTITLEMENT_FILTER_KEYS = ("CUSTOMER_AWS_ACCOUNT_ID", "LICENSE_ARN", "CUSTOMER_IDENTIFIER", "DIMENSION")

OutageError = Literal["ThrottlingException", "InternalServiceErrorException", "DisabledApiException"]
OUTAGE_ERRORS: tuple[OutageError, ...] = (
    "ThrottlingException",
    "InternalServiceErrorException",
    "DisabledApiException",
)
EntitlementValue = int | float | bool | str
QuantityKind = Literal["whole", "decimal"]
# botocore's UsageQuantityAsDecimalString / AllocatedUsageQuantityAsDecimalString (max length 17).
DECIMAL_QUANTITY = re.compile(r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?")
# The licence id ends every spelling of a licence: ...:license/l-..., ...:license:l-..., ...:l-...
LICENCE_ID = re.compile(r"(?:^|[:/])(l-[A-Za-z0-9]+)$")
ClientT = TypeVar("ClientT", bound=BaseClient)
Json = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outage:
    """Every call of every operation fails with ``error`` while ``start <= clock() < end``."""

    start: datetime
    end: datetime
    error: OutageError

    def __post_init__(self) -> None:
        _require_aware(self.start, "Outage.start")
        _require_aware(self.end, "Outage.end")
        if self.end <= self.start:
            raise ValueError(f"Outage ends ({self.end}) before it starts ({self.start})")

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Revocation:
    """From ``at``, the licence is revoked: any BatchMeterUsage call carrying one of its records is
    refused whole with InvalidLicenseException (the licence is matched by its licence id)."""

    license_arn: str
    at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.at, "Revocation.at")

    def revokes(self, license_arn: str, moment: datetime) -> bool:
        return licence_id(self.license_arn) == licence_id(license_arn) and moment >= self.at


@dataclass(frozen=True)
class FaultPlan:
    """Deterministic faults: the same seed and the same calls give the same answers."""

    seed: int = 0
    outages: tuple[Outage, ...] = ()
    unprocessed_rate: float = 0.0
    empty_page_rate: float = 0.0
    revoked: tuple[Revocation, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.unprocessed_rate <= 1.0:
            raise ValueError(f"unprocessed_rate must be in [0, 1], got {self.unprocessed_rate}")
        # At 1.0 every page would be empty and paging would never end.
        if not 0.0 <= self.empty_page_rate < 1.0:
            raise ValueError(f"empty_page_rate must be in [0, 1), got {self.empty_page_rate}")


# --------------------------------------------------------------------------------------------
# Ledger of accepted records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Allocation:
    """``quantity`` is the whole part of ``exact_quantity`` (they differ only for a fractional
    AllocatedUsageQuantityAsDecimal, which this product never sends)."""

    quantity: int
    tags: tuple[tuple[str, str], ...]
    exact_quantity: Decimal = Decimal(0)

    def tag(self, key: str) -> str | None:
        return next((value for tag_key, value in self.tags if tag_key == key), None)


@dataclass(frozen=True)
class LedgerEntry:
    metering_record_id: str
    customer_aws_account_id: str | None
    license_arn: str | None
    customer_identifier: str | None
    product_code: str
    dimension: str
    hour: datetime
    quantity: int
    allocations: tuple[Allocation, ...]
    accepted_at: datetime
    exact_quantity: Decimal = Decimal(0)

    @property
    def identity(self) -> str:
        if self.license_arn is not None:
            return f"{self.customer_aws_account_id}/{self.license_arn}"
        return f"{self.product_code}/{self.customer_identifier}"


class Ledger:
    """The records Marketplace accepted (``Success`` the first time), in acceptance order."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    def append(self, entry: LedgerEntry) -> None:
        self._entries.append(entry)

    def accepted(
        self,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
        hour: datetime | None = None,
    ) -> list[LedgerEntry]:
        wanted = {
            "dimension": dimension,
            "license_arn": license_arn,
            "customer_identifier": customer_identifier,
            "customer_aws_account_id": customer_aws_account_id,
            "hour": hour,
        }
        filters = {name: value for name, value in wanted.items() if value is not None}
        if license_arn is not None:
            filters["license_arn"] = licence_id(license_arn)
        return [
            entry
            for entry in self._entries
            if all(_ledger_field(entry, name) == value for name, value in filters.items())
        ]

    def total_quantity(
        self,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
    ) -> int:
        return sum(
            entry.quantity
            for entry in self.accepted(
                dimension=dimension,
                license_arn=license_arn,
                customer_identifier=customer_identifier,
                customer_aws_account_id=customer_aws_account_id,
            )
        )

    def quantity_by_tag(
        self,
        tag_key: str,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
    ) -> dict[str, int]:
        """Allocated quantity per value of one tag (e.g. per ``environment``)."""
        totals: dict[str, int] = defaultdict(int)
        entries = self.accepted(
            dimension=dimension, license_arn=license_arn, customer_identifier=customer_identifier
        )
        for entry in entries:
            for allocation in entry.allocations:
                value = allocation.tag(tag_key)
                if value is not None:
                    totals[value] += allocation.quantity
        return dict(totals)


@dataclass(frozen=True)
class Refusal:
    """A record answered CustomerNotSubscribed or DuplicateRecord, and why."""

    at: datetime
    status: str
    reason: str
    usage_record: Json


@dataclass
class OperationCounters:
    calls: int = 0
    throttled: int = 0
    faulted: int = 0
    rejected: int = 0
    succeeded: int = 0
    unprocessed_records: int = 0


# --------------------------------------------------------------------------------------------
# Marketplace state
# --------------------------------------------------------------------------------------------
class MarketplaceError(Exception):
    """An error answer: the code is the AWS error code the client turns into its exception."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _validation(message: str) -> MarketplaceError:
    return MarketplaceError("ValidationException", message)


@dataclass(frozen=True)
class Buyer:
    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    customer_identifier: str | None = None


@dataclass
class Subscription:
    buyer: Buyer
    product_code: str
    started_ms: int | None  # None: bought, not active yet (its activation comes later)
    ended_ms: int | None = None
    agreement_id: str | None = None

    @property
    def key(self) -> str:
        if self.buyer.license_arn is not None:
            return f"licence:{licence_id(self.buyer.license_arn)}"
        return f"customer:{self.product_code}/{self.buyer.customer_identifier}"

    def inactive_reason(self, timestamp_ms: int, now_ms: int) -> str | None:
        """Why usage at ``timestamp_ms``, sent at ``now_ms``, is outside the subscription, if it is.

        Active from ``started`` until ``ended`` (half-open); records of the active time are still taken
        for one hour after the end (final metering)."""
        if self.started_ms is None:
            return "the subscription has not been activated"
        if now_ms < self.started_ms:
            return f"the subscription starts at {iso_ms(self.started_ms)}"
        if timestamp_ms < self.started_ms:
            return f"Timestamp {iso_ms(timestamp_ms)} is before the usage started ({iso_ms(self.started_ms)})"
        if self.ended_ms is None:
            return None
        if timestamp_ms >= self.ended_ms:
            return (
                f"Timestamp {iso_ms(timestamp_ms)} is after the subscription ended ({iso_ms(self.ended_ms)})"
            )
        final_window_ms = to_ms(from_ms(self.ended_ms) + FINAL_METERING_WINDOW)
        if now_ms > final_window_ms:
            return f"the subscription ended at {iso_ms(self.ended_ms)}, more than 1 hour ago"
        return None


@dataclass(frozen=True)
class RegistrationToken:
    buyer: Buyer
    product_code: str
    expires_ms: int
    agreement_id: str | None = None


@dataclass
class Entitlement:
    buyer: Buyer
    dimension: str
    value: EntitlementValue
    expiration: datetime | None

    def matches(self, filters: dict[str, list[str]]) -> bool:
        fields = {
            "CUSTOMER_AWS_ACCOUNT_ID": self.buyer.customer_aws_account_id,
            "LICENSE_ARN": self.buyer.license_arn,
            "CUSTOMER_IDENTIFIER": self.buyer.customer_identifier,
            "DIMENSION": self.dimension,
        }
        return all(_matches_filter(name, fields[name], values) for name, values in filters.items())

    def to_wire(self, product_code: str) -> Json:
        wire: Json = {
            "ProductCode": product_code,
            "Dimension": self.dimension,
            "Value": _entitlement_value(self.value),
        }
        optional = {
            "CustomerIdentifier": self.buyer.customer_identifier,
            "CustomerAWSAccountId": self.buyer.customer_aws_account_id,
            "LicenseArn": self.buyer.license_arn,
            "ExpirationDate": None if self.expiration is None else to_ms(self.expiration) / 1000,
        }
        wire.update({name: value for name, value in optional.items() if value is not None})
        return wire


@dataclass(frozen=True)
class UsageRecord:
    """One validated UsageRecord of a BatchMeterUsage call; ``wire`` is the record as received."""

    index: int
    wire: Json
    timestamp_ms: int
    dimension: str
    quantity: Decimal
    allocations: tuple[Allocation, ...]
    buyer: Buyer

    @property
    def hour_ms(self) -> int:
        return hour_floor(self.timestamp_ms)

    def fault_identity(self, product_code: str) -> str:
        licence = self.buyer.license_arn
        who = licence_id(licence) if licence else f"{product_code}/{self.buyer.customer_identifier}"
        return f"{who}|{self.dimension}|{self.hour_ms}"


@dataclass(frozen=True)
class AcceptedRecord:
    metering_record_id: str
    quantity: Decimal

    def same_quantity(self, record: UsageRecord) -> bool:
        # AWS: DuplicateRecord is "the same customer, dimension, and time, but a different quantity";
        # quantities compare by value (17, "17.0" and "17.00" are one quantity); allocations play no part.
        return self.quantity == record.quantity


# --------------------------------------------------------------------------------------------
# Throttling and deterministic faults
# --------------------------------------------------------------------------------------------
class SlidingWindowThrottle:
    """At most ``limit`` admitted calls per operation in any window (t - 1 s, t]."""

    def __init__(self, limit: int, monotonic: Callable[[], float]) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._admitted: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, operation: str) -> bool:
        now = self._monotonic()
        admitted = self._admitted[operation]
        while admitted and admitted[0] <= now - THROTTLE_WINDOW_SECONDS:
            admitted.popleft()
        if len(admitted) >= self._limit:
            return False
        admitted.append(now)
        return True


def _fraction(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from its inputs (independent of call order)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class DeterministicIds:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._issued: dict[str, int] = defaultdict(int)

    def _digest(self, kind: str) -> bytes:
        self._issued[kind] += 1
        return hashlib.sha256(f"{self._seed}|{kind}|{self._issued[kind]}".encode()).digest()

    def uuid(self, kind: str) -> str:
        return str(uuid.UUID(bytes=self._digest(kind)[:16], version=4))

    def token(self) -> str:
        return base64.urlsafe_b64encode(self._digest("token")).decode().rstrip("=")


# --------------------------------------------------------------------------------------------
# Model constraints (read from botocore's own service model, so they match the SDK in use)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StringRule:
    name: str
    pattern: re.Pattern[str] | None
    min_length: int
    max_length: int | None

    def violation(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"{self.name} must be a string"
        if len(value) < self.min_length or (self.max_length is not None and len(value) > self.max_length):
            return f"{self.name} length {len(value)} is outside {self.min_length}..{self.max_length}"
        if self.pattern is not None and not self.pattern.search(value):
            return f"{self.name} {value!r} does not match {self.pattern.pattern}"
        return None


def _string_rule(model: ServiceModel, shape_name: str) -> StringRule:
    metadata = model.shape_for(shape_name).metadata
    pattern = metadata.get("pattern")
    return StringRule(
        name=shape_name,
        pattern=None if pattern is None else re.compile(pattern),
        min_length=int(metadata.get("min", 0)),
        max_length=None if metadata.get("max") is None else int(metadata["max"]),
    )


@dataclass(frozen=True)
class MeteringRules:
    tag_key: StringRule
    tag_value: StringRule
    license_arn: StringRule
    account_id: StringRule
    customer_identifier: StringRule
    dimension: StringRule

    @classmethod
    def from_botocore(cls) -> MeteringRules:
        model = botocore.session.get_session().get_service_model(METERING_SERVICE)
        return cls(
            tag_key=_string_rule(model, "TagKey"),
            tag_value=_string_rule(model, "TagValue"),
            license_arn=_string_rule(model, "LicenseArn"),
            account_id=_string_rule(model, "CustomerAWSAccountId"),
            customer_identifier=_string_rule(model, "CustomerIdentifier"),
            dimension=_string_rule(model, "UsageDimension"),
        )


# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    operation: str
    body: Json
    body_size: int
    now: datetime


def decode_request_body(params: Json) -> tuple[Json, int]:
    raw = params.get("body") or b""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if not data:
        return {}, 0
    content_type = str(params.get("headers", {}).get("Content-Type", ""))
    if "cbor" in content_type:
        parser = RpcV2CBORParser()
        decoded = parser.parse_data_item(parser.get_peekable_stream_from_bytes(data))
    else:
        decoded = json.loads(data)
    if not isinstance(decoded, dict):
        raise _validation("request body is not an object")
    return decoded, len(data)


class _RawBody:
    """Enough of urllib3's response for ``AWSResponse.content`` to read the body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def wire_response(
    model: OperationModel, url: str, status: int, body: Json, request_id: str
) -> tuple[AWSResponse, Json]:
    """Parse a JSON wire answer with botocore's parser, as the endpoint would for a real response."""
    payload = json.dumps(body).encode()
    headers = HTTPHeaders()
    headers["x-amzn-requestid"] = request_id
    headers["content-type"] = "application/x-amz-json-1.1"
    response_dict = {"status_code": status, "headers": dict(headers.items()), "body": payload}
    parser = create_parser("json")
    output_shape = model.output_shape
    parsed: Json = parser.parse(response_dict, output_shape) if output_shape else {}
    if status >= 300:
        error_shape = model.service_model.shape_for_error_code(body["__type"])
        if error_shape is not None:
            parsed.update(parser.parse(response_dict, error_shape))
    return AWSResponse(url, status, headers, _RawBody(payload)), parsed


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------
class MarketplaceSimulator:
    """AWS Marketplace Metering + Entitlement for one product, with a virtual clock and faults."""

    def __init__(
        self,
        *,
        product_code: str,
        dimensions: Iterable[str] = ("agent_minutes", "overage_agents"),
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        faults: FaultPlan | None = None,
        calls_per_second: int = 10,
        acceptance_window: timedelta = timedelta(hours=6),
        token_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.product_code = product_code
        self.dimensions = frozenset(dimensions)
        self.faults = faults or FaultPlan()
        self.acceptance_window = acceptance_window
        self.token_ttl = token_ttl
        self.calls_per_second = calls_per_second
        self.ledger = Ledger()
        self.refusals: list[Refusal] = []
        self.counters: dict[str, OperationCounters] = defaultdict(OperationCounters)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic or time.monotonic
        self._throttle = SlidingWindowThrottle(calls_per_second, self._monotonic)
        # Every call as it arrived: (operation, monotonic seconds), throttled ones included.
        self.calls: list[tuple[str, float]] = []
        self._ids = DeterministicIds(self.faults.seed)
        self._rules = MeteringRules.from_botocore()
        self._page_key = hashlib.sha256(f"page-token|{self.faults.seed}|{product_code}".encode()).digest()
        self._subscriptions: dict[str, Subscription] = {}
        self._entitlements: list[Entitlement] = []
        self._tokens: dict[str, RegistrationToken] = {}
        self._accepted: dict[tuple[str, str, int], AcceptedRecord] = {}
        self._attempts: dict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self._operations: dict[str, Callable[[Call], Json]] = {
            "BatchMeterUsage": self._batch_meter_usage,
            "ResolveCustomer": self._resolve_customer,
            "GetEntitlements": self._get_entitlements,
        }

    # ---- seller-side set-up -----------------------------------------------------------------
    def add_subscription(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        started: datetime | None,
        ended: datetime | None = None,
        agreement_id: str | None = None,
    ) -> None:
        """``agreement_id`` is what ResolveCustomer returns as ``Metadata.AgreementId`` (default: one
        derived from the identity, in AWS's ``agmt-...`` form). ``started`` None: not active until
        ``start_subscription``."""
        buyer = Buyer(customer_aws_account_id, license_arn, customer_identifier)
        if license_arn is None and customer_identifier is None:
            raise ValueError(
                "a subscription needs license_arn (+ customer_aws_account_id) or customer_identifier"
            )
        if license_arn is not None and customer_aws_account_id is None:
            raise ValueError("a subscription with license_arn needs customer_aws_account_id")
        subscription = Subscription(
            buyer=buyer,
            product_code=product_code or self.product_code,
            started_ms=None if started is None else to_ms(_require_aware(started, "started")),
            ended_ms=None if ended is None else to_ms(_require_aware(ended, "ended")),
        )
        subscription.agreement_id = agreement_id or _agreement_id(subscription.key)
        with self._lock:
            if subscription.key in self._subscriptions:
                raise ValueError(f"subscription {subscription.key} already exists")
            self._subscriptions[subscription.key] = subscription

    def start_subscription(
        self,
        *,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        started: datetime,
    ) -> None:
        """Activate a subscription added with ``started=None`` (an earlier start is kept)."""
        with self._lock:
            subscription = self._known_subscription(license_arn, customer_identifier, product_code)
            moment = to_ms(_require_aware(started, "started"))
            if subscription.started_ms is None or moment < subscription.started_ms:
                subscription.started_ms = moment

    def end_subscription(
        self,
        *,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        ended: datetime,
    ) -> None:
        with self._lock:
            subscription = self._known_subscription(license_arn, customer_identifier, product_code)
            subscription.ended_ms = to_ms(_require_aware(ended, "ended"))

    def set_entitlement(
        self,
        *,
        license_arn: str | None = None,
        customer_aws_account_id: str | None = None,
        customer_identifier: str | None = None,
        dimension: str,
        value: EntitlementValue,
        expiration: datetime | None = None,
    ) -> None:
        """Create or replace the entitlement of one buyer on one dimension. The value's Python type picks
        the EntitlementValue member AWS fills: bool BooleanValue, int IntegerValue, float DoubleValue,
        str StringValue."""
        if expiration is not None:
            _require_aware(expiration, "expiration")
        with self._lock:
            buyer = self._complete_buyer(Buyer(customer_aws_account_id, license_arn, customer_identifier))
            self._entitlements = [
                entitlement
                for entitlement in self._entitlements
                if (entitlement.buyer, entitlement.dimension) != (buyer, dimension)
            ]
            self._entitlements.append(Entitlement(buyer, dimension, value, expiration))

    def remove_entitlements(
        self, *, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> None:
        with self._lock:
            self._entitlements = [
                entitlement
                for entitlement in self._entitlements
                if not (
                    (
                        license_arn is not None
                        and entitlement.buyer.license_arn is not None
                        and licence_id(entitlement.buyer.license_arn) == licence_id(license_arn)
                    )
                    or (
                        customer_identifier is not None
                        and entitlement.buyer.customer_identifier == customer_identifier
                    )
                )
            ]

    def issue_token(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        """A registration token as Marketplace posts it to the seller's registration page."""
        expires = self._now() + (self.token_ttl if ttl is None else ttl)
        return self._issue(Buyer(customer_aws_account_id, license_arn, customer_identifier), to_ms(expires))

    def expired_token(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
    ) -> str:
        expired_at = to_ms(self._now()) - 1
        return self._issue(Buyer(customer_aws_account_id, license_arn, customer_identifier), expired_at)

    def _issue(self, requested: Buyer, expires_ms: int) -> str:
        with self._lock:
            buyer = self._complete_buyer(requested)
            subscription = self._subscription_for(buyer.license_arn, buyer.customer_identifier, None)
            product_code = subscription.product_code if subscription else self.product_code
            agreement_id = subscription.agreement_id if subscription else None
            token = self._ids.token()
            self._tokens[token] = RegistrationToken(buyer, product_code, expires_ms, agreement_id)
            return token

    def counter(self, operation: str) -> OperationCounters:
        return self.counters[operation]

    def reset_counters(self) -> None:
        self.counters.clear()

    # ---- plugging under boto3 ---------------------------------------------------------------
    def attach(self, client: ClientT) -> ClientT:
        """Answer every call of this metering or entitlement client from the simulator."""
        service = client.meta.service_model
        if service.service_name not in (METERING_SERVICE, ENTITLEMENT_SERVICE):
            raise ValueError(
                f"cannot simulate {service.service_name}: only {METERING_SERVICE} and {ENTITLEMENT_SERVICE}"
            )
        if service.service_name == ENTITLEMENT_SERVICE and client.meta.region_name != ENTITLEMENT_REGION:
            raise ValueError(
                f"GetEntitlements is served only in {ENTITLEMENT_REGION}, not {client.meta.region_name}"
            )
        event = f"before-call.{service.service_id.hyphenize()}"
        # botocore-stubs types handlers as returning None; before-call handlers may return a response.
        handler = cast("Callable[..., None]", self._on_before_call)
        client.meta.events.register(event, handler, unique_id=f"marketplace-sim-{id(self)}")
        return client

    def attach_session(self, events: Any) -> None:
        """Answer every metering and entitlement client created *later* from the session whose event
        emitter is ``events`` (clients copy it), e.g. the clients the Lambda handlers build themselves."""
        handler = cast("Callable[..., None]", self._on_before_call)
        for service_id in ("marketplace-metering", "marketplace-entitlement-service"):
            events.register(
                f"before-call.{service_id}",
                handler,
                unique_id=f"marketplace-sim-session-{service_id}-{id(self)}",
            )

    def detach_session(self, events: Any) -> None:
        """Undo ``attach_session`` (a stale simulator must never answer a later run's clients)."""
        for service_id in ("marketplace-metering", "marketplace-entitlement-service"):
            events.unregister(
                f"before-call.{service_id}", unique_id=f"marketplace-sim-session-{service_id}-{id(self)}"
            )

    def _on_before_call(self, *, model: OperationModel, params: Json, **_: Any) -> tuple[AWSResponse, Json]:
        with self._lock:
            request_id = self._ids.uuid("request")
            try:
                status, body = 200, self._serve(model, params)
            except MarketplaceError as error:
                status, body = error.status, {"__type": error.code, "message": error.message}
        return wire_response(model, str(params.get("url", "")), status, body, request_id)

    def _serve(self, model: OperationModel, params: Json) -> Json:
        operation = model.name
        counters = self.counters[operation]
        counters.calls += 1
        self.calls.append((operation, self._monotonic()))
        if not self._throttle.admit(operation):
            counters.throttled += 1
            raise MarketplaceError(
                "ThrottlingException",
                f"Rate exceeded: more than {self.calls_per_second} {operation} calls within 1 second",
            )
        now = self._now()
        # An outage answers only with an error the operation models (GetEntitlements has no DisabledApi).
        modeled = {shape.name for shape in model.error_shapes}
        outage = next(
            (outage for outage in self.faults.outages if outage.covers(now) and outage.error in modeled),
            None,
        )
        if outage is not None:
            counters.faulted += 1
            raise _outage_error(outage, operation)
        handler = self._operations.get(operation)
        if handler is None:
            counters.rejected += 1
            raise MarketplaceError("UnsupportedOperation", f"the simulator does not model {operation}")
        try:
            body, size = decode_request_body(params)
            answer = handler(Call(operation, body, size, now))
        except MarketplaceError:
            counters.rejected += 1
            raise
        counters.succeeded += 1
        return answer

    # ---- BatchMeterUsage --------------------------------------------------------------------
    def _batch_meter_usage(self, call: Call) -> Json:
        records = self._validate_batch(call)
        counters = self.counters[call.operation]
        results: list[Json] = []
        unprocessed: list[Json] = []
        for record in records:
            if self._left_unprocessed(record):
                counters.unprocessed_records += 1
                unprocessed.append(record.wire)
            else:
                results.append(self._meter(record, call.now))
        return {"Results": results, "UnprocessedRecords": unprocessed}

    def _validate_batch(self, call: Call) -> list[UsageRecord]:
        """Whole-call checks: any failure refuses the entire batch, as AWS does."""
        if call.body_size >= MAX_REQUEST_BYTES:
            raise _validation(f"BatchMeterUsage request is {call.body_size} bytes; it must be less than 1 MB")
        raw_records = call.body.get("UsageRecords")
        # The model's UsageRecordList is 0..25 records: an empty batch is answered with empty results.
        if not isinstance(raw_records, list) or len(raw_records) > MAX_RECORDS_PER_CALL:
            count = len(raw_records) if isinstance(raw_records, list) else 0
            raise _validation(
                f"UsageRecords has {count} records; BatchMeterUsage takes 0 to {MAX_RECORDS_PER_CALL}"
            )
        product_code = call.body.get("ProductCode")
        self._check_product_code(product_code, raw_records)
        records = [self._parse_record(index, raw, product_code) for index, raw in enumerate(raw_records)]
        for record in records:
            self._check_timestamp(record, call.now)
            self._check_licence_owner(record)
            self._check_licence_activation(record, call.now)
            self._check_usage_start(record, call.now)
        return records

    def _check_product_code(self, product_code: object, raw_records: list[Any]) -> None:
        licensed = [
            index for index, raw in enumerate(raw_records) if isinstance(raw, dict) and "LicenseArn" in raw
        ]
        if product_code is not None and licensed:
            raise _validation(
                f"UsageRecords[{licensed[0]}] carries LicenseArn: records identified by LicenseArn "
                "must be sent without ProductCode (the licence names the product)"
            )
        if product_code is not None and product_code != self.product_code:
            raise MarketplaceError(
                "InvalidProductCodeException", f"ProductCode {product_code!r} is not this seller's product"
            )

    def _parse_record(self, index: int, raw: object, product_code: object) -> UsageRecord:
        where = f"UsageRecords[{index}]"
        if not isinstance(raw, dict):
            raise _validation(f"{where} is not an object")
        buyer = self._parse_buyer(where, raw)
        if buyer.customer_identifier is not None and product_code is None:
            raise MarketplaceError(
                "InvalidProductCodeException",
                f"{where} identifies the customer by CustomerIdentifier, which needs ProductCode",
            )
        dimension = raw.get("Dimension")
        problem = self._rules.dimension.violation(dimension)
        if problem:
            raise _validation(f"{where}.Dimension: {problem}")
        if dimension not in self.dimensions:
            raise MarketplaceError(
                "InvalidUsageDimensionException",
                f"{where}.Dimension {dimension!r} is not a dimension of {self.product_code} "
                f"(known: {', '.join(sorted(self.dimensions))})",
            )
        quantity, kind = _quantity(raw, "Quantity", "QuantityAsDecimal", where, "ValidationException")
        allocations = self._parse_allocations(raw, quantity, kind, where)
        return UsageRecord(
            index=index,
            wire=raw,
            timestamp_ms=_timestamp_ms(raw.get("Timestamp"), f"{where}.Timestamp"),
            dimension=str(dimension),
            quantity=quantity,
            allocations=allocations,
            buyer=buyer,
        )

    def _parse_buyer(self, where: str, raw: Json) -> Buyer:
        customer_identifier = raw.get("CustomerIdentifier")
        account = raw.get("CustomerAWSAccountId")
        licence = raw.get("LicenseArn")
        if customer_identifier is not None and (account is not None or licence is not None):
            raise MarketplaceError(
                "InvalidCustomerIdentifierException",
                f"{where}: CustomerIdentifier and CustomerAWSAccountId/LicenseArn are mutually exclusive",
            )
        if customer_identifier is not None:
            problem = self._rules.customer_identifier.violation(customer_identifier)
            if problem or customer_identifier == "":
                raise MarketplaceError(
                    "InvalidCustomerIdentifierException",
                    f"{where}.CustomerIdentifier: {problem or 'is empty'}",
                )
            return Buyer(customer_identifier=customer_identifier)
        if account is None:
            raise MarketplaceError(
                "InvalidCustomerIdentifierException",
                f"{where} names no customer: send CustomerAWSAccountId + LicenseArn "
                "(or legacy CustomerIdentifier)",
            )
        problem = self._rules.account_id.violation(account)
        if problem:
            raise MarketplaceError(
                "InvalidCustomerIdentifierException", f"{where}.CustomerAWSAccountId: {problem}"
            )
        if licence is None:
            raise MarketplaceError(
                "InvalidLicenseException", f"{where}: CustomerAWSAccountId needs its LicenseArn"
            )
        problem = self._rules.license_arn.violation(licence)
        if problem:
            raise MarketplaceError("InvalidLicenseException", f"{where}.LicenseArn: {problem}")
        return Buyer(customer_aws_account_id=account, license_arn=licence)

    def _parse_allocations(
        self, raw: Json, quantity: Decimal, kind: QuantityKind | None, where: str
    ) -> tuple[Allocation, ...]:
        raw_allocations = raw.get("UsageAllocations")
        if raw_allocations is None:
            return ()
        if not isinstance(raw_allocations, list) or not 1 <= len(raw_allocations) <= MAX_ALLOCATIONS:
            count = len(raw_allocations) if isinstance(raw_allocations, list) else 0
            raise MarketplaceError(
                "InvalidUsageAllocationsException",
                f"{where}.UsageAllocations has {count} entries; 1 to {MAX_ALLOCATIONS} are allowed",
            )
        allocations = tuple(
            self._parse_allocation(allocation, f"{where}.UsageAllocations[{position}]", kind)
            for position, allocation in enumerate(raw_allocations)
        )
        allocated = sum((allocation.exact_quantity for allocation in allocations), Decimal(0))
        if allocated != quantity:
            raise MarketplaceError(
                "InvalidUsageAllocationsException",
                f"{where}: UsageAllocations add up to {allocated} but Quantity is {quantity}",
            )
        return allocations

    def _parse_allocation(self, raw: object, where: str, record_kind: QuantityKind | None) -> Allocation:
        error = "InvalidUsageAllocationsException"
        if not isinstance(raw, dict):
            raise MarketplaceError(error, f"{where} is not an object")
        quantity, kind = _quantity(
            raw, "AllocatedUsageQuantity", "AllocatedUsageQuantityAsDecimal", where, error
        )
        if kind is None:
            raise MarketplaceError(
                error,
                f"{where}: give exactly one of AllocatedUsageQuantity or AllocatedUsageQuantityAsDecimal",
            )
        if record_kind is not None and kind != record_kind:
            raise MarketplaceError(
                error,
                f"{where}: the record's quantity is a {record_kind} number but this allocation's is a {kind} "
                "one (AllocatedUsageQuantity goes with Quantity, AllocatedUsageQuantityAsDecimal with "
                "QuantityAsDecimal)",
            )
        raw_tags = raw.get("Tags")
        if (
            raw_tags is None
        ):  # the model: "For the bucket of items with no tags, this parameter can be left out."
            return Allocation(quantity=int(quantity), tags=(), exact_quantity=quantity)
        if not isinstance(raw_tags, list) or len(raw_tags) > MAX_TAGS_PER_ALLOCATION or raw_tags == []:
            count = len(raw_tags) if isinstance(raw_tags, list) else 0
            raise MarketplaceError(
                "InvalidTagException",
                f"{where}.Tags has {count} tags; 1 to {MAX_TAGS_PER_ALLOCATION} are allowed",
            )
        tags = tuple(
            self._parse_tag(tag, f"{where}.Tags[{position}]") for position, tag in enumerate(raw_tags)
        )
        keys = [key for key, _ in tags]
        if len(set(keys)) != len(keys):
            raise MarketplaceError("InvalidTagException", f"{where}.Tags repeats a Key: {keys}")
        return Allocation(quantity=int(quantity), tags=tuple(sorted(tags)), exact_quantity=quantity)

    def _parse_tag(self, raw: object, where: str) -> tuple[str, str]:
        if not isinstance(raw, dict):
            raise MarketplaceError("InvalidTagException", f"{where} is not an object")
        key, value = raw.get("Key"), raw.get("Value")
        for name, rule, candidate in (
            ("Key", self._rules.tag_key, key),
            ("Value", self._rules.tag_value, value),
        ):
            problem = rule.violation(candidate)
            if problem:
                raise MarketplaceError("InvalidTagException", f"{where}.{name}: {problem}")
        return str(key), str(value)

    def _check_timestamp(self, record: UsageRecord, now: datetime) -> None:
        now_ms = to_ms(now)
        oldest_ms = now_ms - int(self.acceptance_window.total_seconds() * 1000)
        where = f"UsageRecords[{record.index}].Timestamp {iso_ms(record.timestamp_ms)}"
        if record.timestamp_ms > now_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException", f"{where} is in the future (now {iso_ms(now_ms)})"
            )
        # AWS: "Usage records aren't accepted 6 hours or more after an event."
        if record.timestamp_ms <= oldest_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException",
                f"{where} is {self.acceptance_window} or more before now ({iso_ms(now_ms)}); "
                "the whole batch is refused",
            )

    def _check_licence_owner(self, record: UsageRecord) -> None:
        subscription = self._subscription_for(record.buyer.license_arn, None, None)
        if subscription is None or record.buyer.license_arn is None:
            return
        if subscription.buyer.customer_aws_account_id != record.buyer.customer_aws_account_id:
            raise MarketplaceError(
                "InvalidLicenseException",
                f"UsageRecords[{record.index}]: LicenseArn {record.buyer.license_arn} does not belong to "
                f"CustomerAWSAccountId {record.buyer.customer_aws_account_id}",
            )

    def _check_licence_activation(self, record: UsageRecord, now: datetime) -> None:
        """A licence record outside its licence's activation period refuses the whole call (the model's
        InvalidLicenseException: "usage is within the license activation period")."""
        licence = record.buyer.license_arn
        if licence is None:
            return
        where = f"UsageRecords[{record.index}]: LicenseArn {licence}"
        revocation = next((revoked for revoked in self.faults.revoked if revoked.revokes(licence, now)), None)
        if revocation is not None:
            raise MarketplaceError(
                "InvalidLicenseException", f"{where} was revoked at {iso_ms(to_ms(revocation.at))}"
            )
        subscription = self._subscription_for(licence, None, None)
        if subscription is None or subscription.product_code != self.product_code:
            return  # unknown licence: that record is answered CustomerNotSubscribed
        reason = subscription.inactive_reason(record.timestamp_ms, to_ms(now))
        if reason is not None:
            raise MarketplaceError("InvalidLicenseException", f"{where} is not active: {reason}")

    def _check_usage_start(self, record: UsageRecord, now: datetime) -> None:
        """A legacy record timestamped before its subscription's usage started refuses the whole call:
        the Timestamp "must not be before the start of the software usage", and an out-of-range
        Timestamp is TimestampOutOfBoundsException for the whole batch."""
        if record.buyer.customer_identifier is None:
            return
        subscription = self._subscription_for(None, record.buyer.customer_identifier, None)
        if subscription is None or subscription.started_ms is None or to_ms(now) < subscription.started_ms:
            return  # not subscribed (yet): that record is answered CustomerNotSubscribed
        if record.timestamp_ms < subscription.started_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException",
                f"UsageRecords[{record.index}].Timestamp {iso_ms(record.timestamp_ms)} is before the "
                f"subscription's usage started ({iso_ms(subscription.started_ms)}); the whole batch is refused",
            )

    def _left_unprocessed(self, record: UsageRecord) -> bool:
        identity = record.fault_identity(self.product_code)
        self._attempts[identity] += 1
        rate = self.faults.unprocessed_rate
        return (
            rate > 0 and _fraction(self.faults.seed, "unprocessed", identity, self._attempts[identity]) < rate
        )

    def _meter(self, record: UsageRecord, now: datetime) -> Json:
        subscription = self._subscription_for(
            record.buyer.license_arn, record.buyer.customer_identifier, None
        )
        if subscription is None or subscription.product_code != self.product_code:
            return self._refuse(record, now, "CustomerNotSubscribed", "no subscription to this product")
        # Licence records outside their activation period never get here (whole-call refusal).
        reason = subscription.inactive_reason(record.timestamp_ms, to_ms(now))
        if reason is not None:
            return self._refuse(record, now, "CustomerNotSubscribed", reason)
        key = (subscription.key, record.dimension, record.hour_ms)
        earlier = self._accepted.get(key)
        if earlier is not None and not earlier.same_quantity(record):
            reason = f"hour already accepted as {earlier.metering_record_id} with quantity {earlier.quantity}"
            return self._refuse(record, now, "DuplicateRecord", reason)
        accepted = earlier or self._accept(record, key, now)
        return {
            "UsageRecord": record.wire,
            "MeteringRecordId": accepted.metering_record_id,
            "Status": "Success",
        }

    def _accept(self, record: UsageRecord, key: tuple[str, str, int], now: datetime) -> AcceptedRecord:
        accepted = AcceptedRecord(self._ids.uuid("metering-record"), record.quantity)
        self._accepted[key] = accepted
        self.ledger.append(
            LedgerEntry(
                metering_record_id=accepted.metering_record_id,
                customer_aws_account_id=record.buyer.customer_aws_account_id,
                license_arn=record.buyer.license_arn,
                customer_identifier=record.buyer.customer_identifier,
                product_code=self.product_code,
                dimension=record.dimension,
                hour=from_ms(record.hour_ms),
                quantity=int(record.quantity),
                allocations=record.allocations,
                accepted_at=now,
                exact_quantity=record.quantity,
            )
        )
        return accepted

    def _refuse(self, record: UsageRecord, now: datetime, status: str, reason: str) -> Json:
        # AWS gives no reason for a per-record status; keeping one makes failed tests explain themselves.
        self.refusals.append(Refusal(now, status, f"UsageRecords[{record.index}]: {reason}", record.wire))
        return {"UsageRecord": record.wire, "Status": status}

    # ---- ResolveCustomer --------------------------------------------------------------------
    def _resolve_customer(self, call: Call) -> Json:
        token = call.body.get("RegistrationToken")
        issued = self._tokens.get(token) if isinstance(token, str) else None
        if issued is None:
            raise MarketplaceError(
                "InvalidTokenException", "RegistrationToken was not issued by AWS Marketplace"
            )
        if to_ms(call.now) >= issued.expires_ms:
            raise MarketplaceError(
                "ExpiredTokenException", f"RegistrationToken expired at {iso_ms(issued.expires_ms)}"
            )
        answer: Json = {"ProductCode": issued.product_code}
        # New-style products get no CustomerIdentifier at all (AWS: "not populated").
        optional = {
            "CustomerIdentifier": issued.buyer.customer_identifier,
            "CustomerAWSAccountId": issued.buyer.customer_aws_account_id,
            "LicenseArn": issued.buyer.license_arn,
        }
        answer.update({name: value for name, value in optional.items() if value is not None})
        if issued.agreement_id is not None:
            answer["Metadata"] = {"AgreementId": issued.agreement_id}
        return answer

    # ---- GetEntitlements --------------------------------------------------------------------
    def _get_entitlements(self, call: Call) -> Json:
        product_code = call.body.get("ProductCode")
        if product_code != self.product_code:
            raise MarketplaceError(
                "InvalidParameterException", f"ProductCode {product_code!r} is not this seller's product"
            )
        filters = _entitlement_filters(call.body.get("Filter"))
        page_size = call.body.get("MaxResults", MAX_ENTITLEMENTS_PAGE)
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_ENTITLEMENTS_PAGE:
            raise MarketplaceError(
                "InvalidParameterException", f"MaxResults {page_size} must be 1..{MAX_ENTITLEMENTS_PAGE}"
            )
        query = hashlib.sha256(json.dumps([product_code, filters], sort_keys=True).encode()).hexdigest()[:16]
        offset, page = self._read_page_token(call.body.get("NextToken"), query)
        matching = [entitlement for entitlement in self._entitlements if entitlement.matches(filters)]
        if offset < len(matching) and self._serve_empty_page(query, offset, page):
            return {"Entitlements": [], "NextToken": self._page_token(query, offset, page + 1)}
        chunk = matching[offset : offset + page_size]
        answer: Json = {"Entitlements": [entitlement.to_wire(self.product_code) for entitlement in chunk]}
        if offset + len(chunk) < len(matching):
            answer["NextToken"] = self._page_token(query, offset + len(chunk), page + 1)
        return answer

    def _serve_empty_page(self, query: str, offset: int, page: int) -> bool:
        rate = self.faults.empty_page_rate
        return rate > 0 and _fraction(self.faults.seed, "empty-page", query, offset, page) < rate

    def _page_token(self, query: str, offset: int, page: int) -> str:
        payload = json.dumps({"q": query, "o": offset, "p": page}, separators=(",", ":")).encode()
        signature = hmac.new(self._page_key, payload, hashlib.sha256).hexdigest()[:24]
        return f"{base64.urlsafe_b64encode(payload).decode()}.{signature}"

    def _read_page_token(self, token: object, query: str) -> tuple[int, int]:
        if token is None:
            return 0, 0
        bad = MarketplaceError("InvalidParameterException", "NextToken is not a token this call returned")
        if not isinstance(token, str) or token.count(".") != 1:
            raise bad
        encoded, signature = token.split(".")
        try:
            payload = base64.urlsafe_b64decode(encoded.encode())
        except (binascii.Error, ValueError):
            raise bad from None
        expected = hmac.new(self._page_key, payload, hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(signature, expected):
            raise bad
        position = json.loads(payload)
        if position["q"] != query:
            raise MarketplaceError(
                "InvalidParameterException",
                "NextToken belongs to a request with another ProductCode or Filter",
            )
        return int(position["o"]), int(position["p"])

    # ---- lookups ----------------------------------------------------------------------------
    def _now(self) -> datetime:
        return _require_aware(self._clock(), "clock()").astimezone(UTC)

    def _subscription_for(
        self, license_arn: str | None, customer_identifier: str | None, product_code: str | None
    ) -> Subscription | None:
        if license_arn is not None:
            return self._subscriptions.get(f"licence:{licence_id(license_arn)}")
        if customer_identifier is not None:
            return self._subscriptions.get(
                f"customer:{product_code or self.product_code}/{customer_identifier}"
            )
        return None

    def _known_subscription(
        self, license_arn: str | None, customer_identifier: str | None, product_code: str | None
    ) -> Subscription:
        subscription = self._subscription_for(license_arn, customer_identifier, product_code)
        if subscription is None:
            raise KeyError(f"no subscription for license_arn={license_arn} customer={customer_identifier}")
        return subscription

    def _complete_buyer(self, buyer: Buyer) -> Buyer:
        """Fill identity fields Marketplace knows from the subscription (e.g. the account of a licence)."""
        subscription = self._subscription_for(buyer.license_arn, buyer.customer_identifier, None)
        known = subscription.buyer if subscription else Buyer()
        completed = Buyer(
            customer_aws_account_id=buyer.customer_aws_account_id or known.customer_aws_account_id,
            license_arn=buyer.license_arn or known.license_arn,
            customer_identifier=buyer.customer_identifier or known.customer_identifier,
        )
        has_licence = completed.license_arn is not None and completed.customer_aws_account_id is not None
        if not has_licence and completed.customer_identifier is None:
            raise ValueError("need customer_aws_account_id + license_arn, or customer_identifier")
        return completed


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware (UTC) datetime, got {moment!r}")
    return moment


def _outage_error(outage: Outage, operation: str) -> MarketplaceError:
    status = 500 if outage.error == "InternalServiceErrorException" else 400
    window = f"{iso_ms(to_ms(outage.start))}..{iso_ms(to_ms(outage.end))}"
    return MarketplaceError(outage.error, f"{operation} unavailable: simulated outage {window}", status)


def licence_id(license_arn: str) -> str:
    """The ``l-...`` id that names a licence in every spelling AWS uses (the whole string otherwise)."""
    match = LICENCE_ID.search(license_arn)
    return match.group(1) if match else license_arn


def _ledger_field(entry: LedgerEntry, name: str) -> object:
    value = getattr(entry, name)
    return licence_id(value) if name == "license_arn" and value is not None else value


def _agreement_id(subscription_key: str) -> str:
    digest = hashlib.sha256(subscription_key.encode()).hexdigest()
    return f"agmt-{digest[:25]}"


def _entitlement_value(value: EntitlementValue) -> Json:
    # bool before int: True is an int in Python, but a BooleanValue at AWS.
    if isinstance(value, bool):
        return {"BooleanValue": value}
    if isinstance(value, int):
        return {"IntegerValue": value}
    if isinstance(value, float):
        return {"DoubleValue": value}
    return {"StringValue": value}


def _matches_filter(name: str, field: str | None, values: list[str]) -> bool:
    if name == "LICENSE_ARN":
        return field is not None and licence_id(field) in {licence_id(value) for value in values}
    return field in values


def _timestamp_ms(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _validation(f"{where} must be a timestamp, got {value!r}")
    return round(value * 1000)


def _quantity(
    raw: Json, integer_field: str, decimal_field: str, where: str, error: str
) -> tuple[Decimal, QuantityKind | None]:
    """The quantity of a record or allocation, exactly, and which field gave it (None: neither did).

    The model: the integer field is an Integer 0..2147483647, the decimal field a string matching
    UsageQuantityAsDecimalString (up to 6 decimals); never both."""
    if integer_field in raw and decimal_field in raw:
        raise MarketplaceError(error, f"{where}: send {integer_field} or {decimal_field}, not both")
    if decimal_field in raw:
        text = raw[decimal_field]
        if not isinstance(text, str) or not DECIMAL_QUANTITY.fullmatch(text):
            raise MarketplaceError(
                error, f"{where}.{decimal_field} {text!r} does not match {DECIMAL_QUANTITY.pattern}"
            )
        return Decimal(text), "decimal"
    if integer_field not in raw:
        return Decimal(0), None
    value = raw[integer_field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUANTITY:
        raise MarketplaceError(
            error, f"{where}.{integer_field} {value!r} must be an integer 0..{MAX_QUANTITY}"
        )
    return Decimal(value), "whole"


def _entitlement_filters(raw: object) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MarketplaceError("InvalidParameterException", "Filter must be a map of filter name to values")
    filters: dict[str, list[str]] = {}
    for name, values in raw.items():
        if name not in ENTITLEMENT_FILTER_KEYS:
            raise MarketplaceError(
                "InvalidParameterException",
                f"Filter key {name!r} is not one of {', '.join(ENTITLEMENT_FILTER_KEYS)}",
            )
        if not isinstance(values, list) or not values or not all(isinstance(value, str) for value in values):
            raise MarketplaceError(
                "InvalidParameterException", f"Filter {name} needs a non-empty list of strings"
            )
        filters[name] = sorted(values)
    if "CUSTOMER_IDENTIFIER" in filters and "CUSTOMER_AWS_ACCOUNT_ID" in filters:
        raise MarketplaceError(
            "InvalidParameterException",
            "Filter keys CUSTOMER_IDENTIFIER and CUSTOMER_AWS_ACCOUNT_ID are mutually exclusive",
        )
    return filters


__all__ = [
    "MAX_RECORDS_PER_CALL",
    "Allocation",
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
