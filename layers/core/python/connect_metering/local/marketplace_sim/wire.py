"""What crosses the simulated wire: the request body as botocore serialized it, the answer as botocore's
parser reads it, the error answer, and the string constraints of botocore's own service model (so the
simulator validates exactly what the SDK in use models)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import RpcV2CBORParser, create_parser

METERING_SERVICE = "meteringmarketplace"
ENTITLEMENT_SERVICE = "marketplace-entitlement"
ENTITLEMENT_REGION = "us-east-1"

# The licence id ends every spelling of a licence: ...:license/l-..., ...:license:l-..., ...:l-...
LICENCE_ID = re.compile(r"(?:^|[:/])(l-[A-Za-z0-9]+)$")
Json = dict[str, Any]


class MarketplaceError(Exception):
    """An error answer: the code is the AWS error code the client turns into its exception."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> MarketplaceError:
    return MarketplaceError("ValidationException", message)


@dataclass
class Product:
    """The product the simulator sells, shared by every part (a test may switch it on a running one)."""

    code: str
    dimensions: frozenset[str]


@dataclass(frozen=True)
class Buyer:
    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    customer_identifier: str | None = None


def licence_id(license_arn: str) -> str:
    """The ``l-...`` id that names a licence in every spelling AWS uses (the whole string otherwise)."""
    match = LICENCE_ID.search(license_arn)
    return match.group(1) if match else license_arn


def require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware (UTC) datetime, got {moment!r}")
    return moment


# Model constraints (read from botocore's own service model, so they match the SDK in use) -------------


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
    def from_botocore(cls, session: botocore.session.Session | None = None) -> MeteringRules:
        """The rules of botocore's metering model, read through ``session`` (one that is already loaded
        saves making another: about 0.03 CPU s, a tenth of a small replay's whole cost)."""
        model = (session or botocore.session.get_session()).get_service_model(METERING_SERVICE)
        return cls(
            tag_key=_string_rule(model, "TagKey"),
            tag_value=_string_rule(model, "TagValue"),
            license_arn=_string_rule(model, "LicenseArn"),
            account_id=_string_rule(model, "CustomerAWSAccountId"),
            customer_identifier=_string_rule(model, "CustomerIdentifier"),
            dimension=_string_rule(model, "UsageDimension"),
        )


# Requests and answers -------------------------------------------------------------------------------


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
        raise validation_error("request body is not an object")
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
