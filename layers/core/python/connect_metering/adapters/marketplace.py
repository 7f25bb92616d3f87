"""AWS Marketplace: ResolveCustomer (registration) and GetEntitlements (contracts), clients injected.

Errors are sorted into what the caller must tell apart: a token Marketplace does not know, an expired
token, and Marketplace being unavailable (throttling, 5xx, no connection), which is worth retrying.
The registration token is passed to AWS and nowhere else: never logged, never in an exception text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, EndpointConnectionError, HTTPClientError, ParamValidationError

from connect_metering.domain.lifecycle import ENTITLEMENT_DIMENSION, EntitlementRecord, summarize_entitlements
from connect_metering.domain.registration import ResolvedCustomer
from connect_metering.domain.tenancy import Entitlements, TenancyError, licence_id, trimmed
from connect_metering.services.ports import (
    ExpiredRegistrationToken,
    InvalidRegistrationToken,
    MarketplaceUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_marketplace_entitlement import MarketplaceEntitlementServiceClient
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient

UNAVAILABLE_CODES = frozenset(
    {"ThrottlingException", "InternalServiceErrorException", "ServiceUnavailableException"}
)
MAX_ENTITLEMENTS_PAGE = 25
# A guard against a NextToken that never ends; 10,000 pages of 25 is far beyond any one buyer.
MAX_ENTITLEMENT_PAGES = 10_000


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _is_unavailable(error: ClientError) -> bool:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return _code(error) in UNAVAILABLE_CODES or status >= 500


class MarketplaceCustomers:
    """ResolveCustomer: the registration token -> the buyer."""

    def __init__(self, client: MarketplaceMeteringClient) -> None:
        self._client = client

    def resolve(self, token: str) -> ResolvedCustomer:
        try:
            answer = self._client.resolve_customer(RegistrationToken=token)
        except ClientError as error:
            code = _code(error)
            # `from None`: the botocore error carries the request context; nothing of it goes further.
            if code == "InvalidTokenException":
                raise InvalidRegistrationToken from None
            if code == "ExpiredTokenException":
                raise ExpiredRegistrationToken from None
            if _is_unavailable(error):
                raise MarketplaceUnavailable("ResolveCustomer", code) from None
            raise RuntimeError(f"ResolveCustomer failed: {code}") from None
        except ParamValidationError:
            raise InvalidRegistrationToken from None  # its message could quote the token
        except (EndpointConnectionError, HTTPClientError) as error:
            raise MarketplaceUnavailable("ResolveCustomer", type(error).__name__) from None
        # Trimmed (never otherwise re-spelt: the LicenseArn is sent back to BatchMeterUsage as given).
        return ResolvedCustomer(
            product_code=trimmed(answer["ProductCode"]) or "",
            customer_aws_account_id=trimmed(answer.get("CustomerAWSAccountId")),
            license_arn=trimmed(answer.get("LicenseArn")),
            customer_identifier=trimmed(answer.get("CustomerIdentifier")),
        )


def _expiration(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def _same_licence(answered: object, asked: str) -> bool:
    """An entitlement belongs to the licence asked for unless it names another licence id (the answer
    may spell the ARN differently from ResolveCustomer; an entry without a LicenseArn is the filter's)."""
    if trimmed(answered) is None:
        return True
    try:
        return licence_id(answered) == licence_id(asked)
    except TenancyError:
        return False


class MarketplaceEntitlements:
    """GetEntitlements with full paging: it keeps asking while a NextToken comes back, even after a page
    with no entitlements (Marketplace returns those)."""

    def __init__(
        self,
        client: MarketplaceEntitlementServiceClient,
        *,
        dimension: str = ENTITLEMENT_DIMENSION,
        page_size: int = MAX_ENTITLEMENTS_PAGE,
    ) -> None:
        if not 1 <= page_size <= MAX_ENTITLEMENTS_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_ENTITLEMENTS_PAGE}, got {page_size}")
        self._client = client
        self._dimension = dimension
        self._page_size = page_size
        self.pages_read = 0

    def records(
        self, *, product_code: str, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> list[EntitlementRecord]:
        if license_arn is not None:
            filters = {"LICENSE_ARN": [license_arn]}
        elif customer_identifier is not None:
            filters = {"CUSTOMER_IDENTIFIER": [customer_identifier]}
        else:
            raise ValueError("entitlements need a licence ARN or a customer identifier")
        records: list[EntitlementRecord] = []
        request: dict[str, Any] = {
            "ProductCode": product_code,
            "Filter": filters,
            "MaxResults": self._page_size,
        }
        for _ in range(MAX_ENTITLEMENT_PAGES):
            try:
                page = self._client.get_entitlements(**request)
            except ClientError as error:
                if _is_unavailable(error):
                    raise MarketplaceUnavailable("GetEntitlements", _code(error)) from None
                raise
            except (EndpointConnectionError, HTTPClientError) as error:
                raise MarketplaceUnavailable("GetEntitlements", type(error).__name__) from None
            self.pages_read += 1
            for entry in page.get("Entitlements", []):
                if license_arn is not None and not _same_licence(entry.get("LicenseArn"), license_arn):
                    continue
                value = entry.get("Value", {})
                records.append(
                    EntitlementRecord(
                        dimension=str(entry.get("Dimension", "")),
                        integer_value=value.get("IntegerValue"),
                        expiration=_expiration(entry.get("ExpirationDate")),
                    )
                )
            token = page.get("NextToken")
            if not token:
                return records
            request["NextToken"] = token
        raise RuntimeError(f"GetEntitlements: still paging after {MAX_ENTITLEMENT_PAGES} pages")

    def entitlements_for(
        self, *, product_code: str, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> Entitlements | None:
        """Licensed agents and expiry of one buyer; None when it holds no licensed-agents entitlement."""
        records = self.records(
            product_code=product_code, license_arn=license_arn, customer_identifier=customer_identifier
        )
        return summarize_entitlements(records, dimension=self._dimension)
