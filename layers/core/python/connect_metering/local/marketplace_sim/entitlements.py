"""GetEntitlements: the buyers' entitlements per dimension, filtered and paged as AWS pages them
(signed NextTokens bound to the query, and, as a fault, empty pages that still carry a NextToken)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from connect_metering.domain.instants import to_ms
from connect_metering.local.marketplace_sim.faults import FaultPlan, fraction
from connect_metering.local.marketplace_sim.wire import (
    Buyer,
    Call,
    Json,
    MarketplaceError,
    Product,
    licence_id,
)

MAX_ENTITLEMENTS_PAGE = 25
ENTITLEMENT_FILTER_KEYS = ("CUSTOMER_AWS_ACCOUNT_ID", "LICENSE_ARN", "CUSTOMER_IDENTIFIER", "DIMENSION")
EntitlementValue = int | float | bool | str


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


class Entitlements:
    """The product's entitlements and the GetEntitlements operation over them."""

    def __init__(self, product: Product, faults: Callable[[], FaultPlan], page_seed: int) -> None:
        self._product = product
        self._faults = faults
        self._page_key = hashlib.sha256(f"page-token|{page_seed}|{product.code}".encode()).digest()
        self._entitlements: list[Entitlement] = []

    def set(self, entitlement: Entitlement) -> None:
        """Create or replace the entitlement of one buyer on one dimension."""
        self._entitlements = [
            existing
            for existing in self._entitlements
            if (existing.buyer, existing.dimension) != (entitlement.buyer, entitlement.dimension)
        ]
        self._entitlements.append(entitlement)

    def remove(self, *, license_arn: str | None, customer_identifier: str | None) -> None:
        self._entitlements = [
            entitlement
            for entitlement in self._entitlements
            if not _belongs_to(entitlement.buyer, license_arn, customer_identifier)
        ]

    def get_entitlements(self, call: Call) -> Json:
        product_code = call.body.get("ProductCode")
        if product_code != self._product.code:
            raise MarketplaceError(
                "InvalidParameterException", f"ProductCode {product_code!r} is not this seller's product"
            )
        filters = entitlement_filters(call.body.get("Filter"))
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
        answer: Json = {"Entitlements": [entitlement.to_wire(self._product.code) for entitlement in chunk]}
        if offset + len(chunk) < len(matching):
            answer["NextToken"] = self._page_token(query, offset + len(chunk), page + 1)
        return answer

    def _serve_empty_page(self, query: str, offset: int, page: int) -> bool:
        faults = self._faults()
        rate = faults.empty_page_rate
        return rate > 0 and fraction(faults.seed, "empty-page", query, offset, page) < rate

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


def _belongs_to(buyer: Buyer, license_arn: str | None, customer_identifier: str | None) -> bool:
    same_licence = (
        license_arn is not None
        and buyer.license_arn is not None
        and licence_id(buyer.license_arn) == licence_id(license_arn)
    )
    return same_licence or (
        customer_identifier is not None and buyer.customer_identifier == customer_identifier
    )


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


def entitlement_filters(raw: object) -> dict[str, list[str]]:
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
