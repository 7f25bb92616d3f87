"""Builders for the registration and lifecycle tests: Marketplace notifications from the documented samples,
HTTP API v2 events, and a small browser that keeps cookies across handler calls."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from connect_metering.domain.instants import iso
from connect_metering.local.serve import LocalContext, http_api_event
from connect_metering.local.traffic import sqs_batch
from tests.conftest import SAMPLES

PRODUCT_CODE = "connectmeter0demo1"
SELLER_ACCOUNT = "123456789012"


def license_arn(suffix: str) -> str:
    return f"arn:aws:license-manager::{SELLER_ACCOUNT}:license:l-{suffix}"


def instance_arn(account: str, number: int, region: str = "us-east-1") -> str:
    return f"arn:aws:connect:{region}:{account}:instance/aaaaaaaa-bbbb-cccc-dddd-{number:012d}"


@cache
def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return loaded


def eventbridge(
    detail_type: str,
    *,
    licence: str,
    account: str | None,
    at: datetime,
    event_id: str = "event-1",
    product_code: str = PRODUCT_CODE,
) -> dict[str, Any]:
    """The documented License Updated sample, re-aimed (any aws.agreement-marketplace detail-type)."""
    event = copy.deepcopy(_sample("marketplace-license-updated.json"))
    event["id"] = event_id
    event["detail-type"] = detail_type
    event["time"] = iso(at)
    event["detail"]["license"]["arn"] = licence
    event["detail"]["product"]["code"] = product_code
    if account is None:
        del event["detail"]["acceptor"]
    else:
        event["detail"]["acceptor"]["accountId"] = account
    return event


def sns_message(action: str, *, customer: str, product_code: str = PRODUCT_CODE) -> dict[str, Any]:
    """The documented legacy SNS message sample, with another action and customer."""
    message = copy.deepcopy(_sample("marketplace-sns-subscription.json"))
    message.update({"action": action, "customer-identifier": customer, "product-code": product_code})
    return message


def sns_notification(
    message: Mapping[str, Any], *, at: datetime, message_id: str = "sns-1"
) -> dict[str, Any]:
    """An SNS notification as an SQS subscription (not raw) delivers it."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-connectmeter0demo1",
        "Message": json.dumps(message),
        "Timestamp": iso(at),
        "SignatureVersion": "1",
    }


def lifecycle_batch(*bodies: Mapping[str, Any] | str) -> dict[str, Any]:
    event = sqs_batch([body if isinstance(body, str) else json.dumps(body) for body in bodies])
    for index, record in enumerate(event["Records"]):
        record["messageId"] = f"message-{index}-{abs(hash(record['body'])) % 10**8}"
        record["attributes"]["SentTimestamp"] = "1730000000000"
    return event


def context(name: str) -> LocalContext:
    return LocalContext(function_name=f"connect-metering-{name}", aws_request_id="request-1")


@dataclass
class Page:
    """A handler's answer as a browser sees it."""

    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def field(self, name: str) -> str:
        found = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', self.body)
        assert found, f"no field {name} in {self.body[:300]}"
        return found.group(1)

    @property
    def heading(self) -> str:
        found = re.search(r"<h1>(.*?)</h1>", self.body)
        return found.group(1) if found else ""


@dataclass
class Browser:
    """Sends HTTP API v2 events to a handler and keeps its cookies, like a browser would."""

    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    cookies: dict[str, str] = field(default_factory=dict)
    https: bool = True

    def request(
        self,
        method: str,
        target: str,
        form: Mapping[str, str] | None = None,
        *,
        raw_body: bytes | None = None,
        send_cookies: bool = True,
    ) -> Page:
        parts = urlsplit(target)
        body = raw_body if raw_body is not None else (urlencode(form).encode() if form is not None else b"")
        headers = {"content-type": "application/x-www-form-urlencoded", "user-agent": "pytest"}
        if send_cookies and self.cookies:
            headers["cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        event = http_api_event(
            method=method,
            path=parts.path,
            query=parts.query,
            headers=headers,
            body=body,
            source_ip="192.0.2.1",
        )
        event["headers"]["x-forwarded-proto"] = "https" if self.https else "http"
        result = self.handler(event, context("register"))
        for cookie in result.get("cookies") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return Page(
            status=int(result["statusCode"]),
            headers=dict(result.get("headers") or {}),
            cookies=list(result.get("cookies") or []),
            body=str(result.get("body") or ""),
        )

    def post(self, target: str, form: Mapping[str, str], **options: Any) -> Page:
        return self.request("POST", target, form, **options)

    def get(self, target: str, **options: Any) -> Page:
        return self.request("GET", target, **options)


SIGNUP = {
    "company_alias": "acme",
    "company_name": "Acme Contact Centers",
    "contact_email": "ops@acme.example",
    "instance_arn": "",
}


def audit_items(dynamodb: Any, table: str, alias: str) -> list[dict[str, Any]]:
    """A company's ``AUDIT#<alias>`` trail, each item's attributes as plain values."""
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"AUDIT#{alias}"}},
    )["Items"]
    return [{name: next(iter(value.values())) for name, value in item.items()} for item in items]
