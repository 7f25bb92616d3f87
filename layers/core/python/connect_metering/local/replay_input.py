"""The replay's input: the registry (companies, subscriptions, environments, billing policy), the fault
plan, and E.jsonl read as the deliveries EventBridge would make, each validated with a message that
names the file and the line or field. Formats: README.md, section Replay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connect_metering.domain.agent_events import NOT_DECODED
from connect_metering.domain.instants import from_ms, iso_ms, parse_iso, parse_iso_ms
from connect_metering.domain.tenancy import Company, Environment, SubscriptionIdentity, TenancyError, build
from connect_metering.local.marketplace_sim import FaultPlan, Outage, OutageError, Revocation
from connect_metering.local.recordings import (
    AUTO,
    RecordedItem,
    RecordingError,
    read_recording,
    recording_files,
)
from connect_metering.local.traffic import eventbridge_envelope
from connect_metering.settings import BillingPolicy

DEFAULT_PRODUCT_CODE = "connectmetering"


POLICY_ALIASES = {
    "dimension (usage)": "usage_dimension",
    "dimension (contract overage)": "overage_dimension",
    "entitlement dimension": "entitlement_dimension",
    "allocation tag key": "allocation_tag_key",
}


class BadInput(Exception):
    """Input the replay cannot run: the message names the file and the line or field."""


# Input formats ---------------------------------------------------------------------------------------


class RegistrySubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    customer_identifier: str | None = None
    pricing: Literal["usage", "contract"]
    # None: bought but not active until a License Updated / subscribe-success line of E.jsonl says so.
    started: datetime | None
    ended: datetime | None = None
    entitlements: dict[str, int] | None = None
    expires: datetime | None = None

    @field_validator("started", "ended", "expires", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value


class RegistryEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    instance_arn: str
    # Set: the environment's account claim is unverified (as after a sign-up) until an event from the
    # account carries this code in ``resources``; its minutes are billed from then on.
    verification_code: str | None = None


class RegistryCompany(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str
    name: str = ""
    subscriptions: list[RegistrySubscription] = Field(default_factory=list)
    environments: list[RegistryEnvironment] = Field(default_factory=list)


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_code: str = DEFAULT_PRODUCT_CODE
    policy: BillingPolicy = BillingPolicy()
    companies: list[RegistryCompany]
    # Dollar prices for replay's table and report, checked by replay_console.resolve_pricing.
    pricing: dict[str, Any] | None = None

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_names(cls, value: Any) -> Any:
        """BILLING.md section 8 names (``dimension (usage)``, ``allocation tag key``...) or setting names."""
        if isinstance(value, dict):
            return {POLICY_ALIASES.get(name, name): setting for name, setting in value.items()}
        return value


class FaultOutage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    error: OutageError

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value


class FaultRevocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    license_arn: str = Field(min_length=1)
    at: datetime

    @field_validator("at", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value


class FaultsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    outages: list[FaultOutage] = Field(default_factory=list)
    unprocessed_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    crash_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    revoked: list[FaultRevocation] = Field(default_factory=list)

    def plan(self) -> FaultPlan:
        outages = []
        for index, outage in enumerate(self.outages):
            try:
                outages.append(Outage(start=outage.start, end=outage.end, error=outage.error))
            except ValueError as error:
                raise ValueError(f"outages.{index}: {error}") from None
        revoked = tuple(Revocation(license_arn=entry.license_arn, at=entry.at) for entry in self.revoked)
        return FaultPlan(
            seed=self.seed,
            outages=tuple(outages),
            unprocessed_rate=self.unprocessed_rate,
            revoked=revoked,
        )


def _load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BadInput(f"{path}: cannot read the {what}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"{path}:{error.lineno}: not JSON ({error.msg})") from None


def _validation_message(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{path}: {where}: {first['msg']}"


def load_registry(path: Path) -> Registry:
    try:
        registry = Registry.model_validate(_load_json(path, "registry"))
    except ValidationError as error:
        raise BadInput(_validation_message(path, error)) from None
    check_registry(registry, path)
    return registry


def check_registry(registry: Registry, path: Path) -> None:
    """Every company, environment and subscription identity as the domain will build them, so a
    malformed licence ARN, account id or a missing identity is refused before anything runs."""
    for index, company in enumerate(registry.companies):
        where = f"companies.{index}"
        try:
            build(Company, alias=company.alias, name=company.name)
            for number, env in enumerate(company.environments):
                where = f"companies.{index}.environments.{number}"
                build(Environment, company_alias=company.alias, name=env.name, instance_arn=env.instance_arn)
            for number, sub in enumerate(company.subscriptions):
                where = f"companies.{index}.subscriptions.{number}"
                build(SubscriptionIdentity, **subscription_identity(sub, registry.product_code))
        except TenancyError as error:
            raise BadInput(f"{path}: {where}.{error}") from None


def subscription_identity(sub: RegistrySubscription, product_code: str) -> dict[str, str | None]:
    """The identity fields of a registry subscription (the product code only for a legacy one)."""
    return {
        "customer_aws_account_id": sub.customer_aws_account_id,
        "license_arn": sub.license_arn,
        "customer_identifier": sub.customer_identifier,
        "product_code": product_code if sub.license_arn is None else None,
    }


def load_faults(path: Path | None) -> FaultsFile:
    if path is None:
        return FaultsFile()
    try:
        faults = FaultsFile.model_validate(_load_json(path, "faults"))
        faults.plan()  # a plan the simulator refuses (an outage ending before it starts) is bad input too
        return faults
    except (ValidationError, ValueError) as error:
        message = (
            _validation_message(path, error) if isinstance(error, ValidationError) else f"{path}: {error}"
        )
        raise BadInput(message) from None


MARKETPLACE_SOURCE = "aws.agreement-marketplace"


# Every byte a digit is "0", every other a blank: a run of 19 digits is then a run of 19 "0".
_DIGITS_ONLY = bytes(48 if 48 <= code <= 57 else 32 for code in range(256))
_LONG_NUMBER = b"0" * 19


def decode_json(text: str) -> Any:
    """``json.loads(text)``, the same value or the same exception, decoded faster.

    orjson decodes the JSON it accepts to the values json.loads gives, except integers past 64 bits
    (floats for orjson), which need a run of 19 digits: such a text, and anything orjson refuses (NaN,
    1e400, lone surrogates, nesting past 1024), is left to json.loads. ``tests/unit/test_replay_input.py``
    holds the two to the same answer."""
    if _LONG_NUMBER not in text.encode("utf-8", "surrogatepass").translate(_DIGITS_ONLY):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# Not frozen: a frozen dataclass's __init__ costs a call per field, and there is one delivery per line.
@dataclass(slots=True)
class Delivery:
    """One item of the recording (a line of E.jsonl) as EventBridge would deliver it: to the agent-events queue, or (``lifecycle``)
    to the subscription lifecycle queue (a Marketplace EventBridge event or SNS notification)."""

    line: int
    arrival_ms: int | None
    body: str
    event_ms: int | None = None
    lifecycle: bool = False
    # A raw agent event (no envelope): it arrives at its EventTimestamp, or at the clock when that is
    # already later (nothing arrives in the past), so an out-of-order or ancient raw line is delivered
    # late, as the bus would deliver it.
    raw: bool = False
    # Where the item was read ("E.jsonl line 7", "shard.json document 2 Records[5]"), for messages.
    where: str = ""
    # Why the item could not be read as text (not UTF-8, not base64...): it is never delivered, and
    # counts as quarantined ``unparseable`` with its position (summary ``unreadable_input``).
    unreadable: str | None = None
    # ``json.loads(body)`` as the reader decoded it, passed on so ingest does not decode it again (an
    # agent-event delivery that is JSON); ``NOT_DECODED`` otherwise.
    document: Any = field(default=NOT_DECODED, compare=False, repr=False)

    def delivered_at(self, clock_ms: int) -> str:
        """The body as delivered when the replay clock reads ``clock_ms``."""
        return self.delivered(clock_ms)[0]

    def delivered(self, clock_ms: int) -> tuple[str, Any]:
        """The body as delivered when the replay clock reads ``clock_ms``, and its decoded JSON."""
        if not self.raw or self.arrival_ms is None or self.arrival_ms >= clock_ms:
            return self.body, self.document
        envelope = json.loads(self.body)
        envelope["time"] = iso_ms(clock_ms)
        return json.dumps(envelope), envelope


def read_events(path: Path, fmt: str = AUTO) -> Iterator[Delivery]:
    """Raw agent events (arrival = EventTimestamp, account = AWSAccountId) or whole envelopes
    (arrival = ``time``), from a recording of any format of ``recordings`` (a file or a folder; checked
    here, read as the replay goes). A line that is not an event is still delivered: the product
    quarantines it. An item that cannot be read as text is handed over ``unreadable``."""
    try:
        files = recording_files(path)
    except RecordingError as error:
        raise BadInput(str(error)) from None
    return _deliveries(read_recording(files, fmt))


def _deliveries(items: Iterator[RecordedItem]) -> Iterator[Delivery]:
    try:
        for number, item in enumerate(items, start=1):
            if item.problem is not None:
                yield Delivery(number, None, item.text, where=item.where, unreadable=item.problem)
            else:
                yield _delivery(number, item.text.strip(), item.where)
    except RecordingError as error:
        raise BadInput(str(error)) from None


def _arrival(value: object) -> int | None:
    try:
        return parse_iso_ms(value, field="arrival") if isinstance(value, str) else None
    except ValueError:
        return None


def _delivery(number: int, text: str, where: str = "") -> Delivery:
    try:
        document = decode_json(text)
    except (json.JSONDecodeError, RecursionError):
        return Delivery(number, None, text, where=where)
    if not isinstance(document, dict):
        return Delivery(number, None, text, where=where)
    if document.get("source") == MARKETPLACE_SOURCE:
        return Delivery(number, _arrival(document.get("time")), text, lifecycle=True, where=where)
    if "Message" in document and document.get("Type") == "Notification":
        return Delivery(number, _arrival(document.get("Timestamp")), text, lifecycle=True, where=where)
    if "detail" in document and "source" in document:
        detail = document["detail"]
        event_ms = _arrival(detail.get("EventTimestamp")) if isinstance(detail, dict) else None
        return Delivery(
            number, _arrival(document.get("time")), text, event_ms, where=where, document=document
        )
    arrival = _arrival(document.get("EventTimestamp"))
    account = document.get("AWSAccountId")
    envelope = eventbridge_envelope(
        document,
        arrived=from_ms(arrival or 0),
        account=account if isinstance(account, str) else "",
    )
    if arrival is None:
        envelope["time"] = document.get("EventTimestamp")
    body = json.dumps(envelope)
    # The envelope holds the decoded event itself: what decoding its JSON gives back.
    return Delivery(number, arrival, body, arrival, raw=True, where=where, document=envelope)


def marketplace_change(body: str) -> tuple[str, str | None, str | None] | None:
    """("start" | "end", licence ARN, CustomerIdentifier) of a Marketplace notification that activates or
    ends a subscription; None for any other (agreements, entitlement updates, unreadable)."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    if document.get("source") == MARKETPLACE_SOURCE:
        detail = document.get("detail")
        licence = detail.get("license") if isinstance(detail, dict) else None
        arn = licence.get("arn") if isinstance(licence, dict) else None
        kind_by_type = {"License Updated": "start", "License Deprovisioned": "end"}
        kind = kind_by_type.get(str(document.get("detail-type", "")).rsplit(" - ", 1)[0])
        return (kind, arn.strip(), None) if kind and isinstance(arn, str) else None
    try:
        message = json.loads(document.get("Message", ""))
    except (TypeError, json.JSONDecodeError):
        return None
    if not isinstance(message, dict):
        return None
    customer = message.get("customer-identifier", message.get("CustomerIdentifier"))
    kind = {"subscribe-success": "start", "unsubscribe-pending": "end", "unsubscribe-success": "end"}.get(
        str(message.get("action", "")).strip()
    )
    return (kind, None, customer.strip()) if kind and isinstance(customer, str) else None
