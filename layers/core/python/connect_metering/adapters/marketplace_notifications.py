"""The edge where an SQS record body from AWS Marketplace becomes a ``LifecycleEvent``.

The lifecycle queue receives three shapes, told apart by their content since they share one queue:
an ``aws.agreement-marketplace`` EventBridge event (default-bus rule), an SNS notification whose
``Message`` is the legacy JSON (topic subscription, not raw), and the legacy JSON itself (raw message
delivery, timed by the SQS sent timestamp). The envelopes are read with the Powertools parser models
(``EventBridgeModel``, ``SnsNotificationModel``); what they carry with the domain's models. Powertools'
``SnsSqsEnvelope`` and ``EventBridgeEnvelope`` parse a whole batch of one shape, which this mixed queue
is not, so each body is parsed on its own. Anything unreadable is a ``LifecycleInputError``: the record
fails, SQS redelivers it, then dead-letters it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SnsNotificationModel
from pydantic import HttpUrl, field_validator

from connect_metering.domain.instants import InstantError, from_ms, parse_iso
from connect_metering.domain.lifecycle import (
    EVENTBRIDGE_SOURCE,
    AgreementDetail,
    LegacySubscriptionMessage,
    LifecycleEvent,
    LifecycleInputError,
    legacy_event,
    marketplace_event,
)


def _instant(value: object, field: str) -> datetime:
    """Instants as the rest of the product reads them (ISO-8601 with an offset), not pydantic's wider
    datetime parsing (which also takes naive times and epoch numbers)."""
    if isinstance(value, datetime):
        return value
    try:
        return parse_iso(value if isinstance(value, str) else "", field=field)
    except InstantError as error:
        raise ValueError(str(error)) from None


class MarketplaceEvent(EventBridgeModel):
    detail: AgreementDetail

    @field_validator("time", mode="before")
    @classmethod
    def _iso_time(cls, value: object) -> datetime:
        return _instant(value, "time")


class MarketplaceSnsNotification(SnsNotificationModel):
    """An SNS notification as an SQS subscription delivers it. The product reads ``Message``,
    ``Timestamp`` and ``MessageId`` (else the SQS message id); the topic and the unsubscribe link are
    not required, so a notification is never lost over a field the product does not read."""

    TopicArn: str = ""
    UnsubscribeUrl: HttpUrl | None = None  # type: ignore[assignment]  # relaxed on purpose, see above
    MessageId: str = ""
    Message: str

    @field_validator("Timestamp", mode="before")
    @classmethod
    def _iso_timestamp(cls, value: object) -> datetime:
        return _instant(value, "Timestamp")


def _summary(error: ValidationError) -> str:
    """Field paths and reasons only: a notification's values never reach a log line through this."""
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'body'}: {issue['msg']}"
        for issue in error.errors()
    )


def _legacy(message: Any) -> LegacySubscriptionMessage:
    try:
        return LegacySubscriptionMessage.model_validate(message)
    except ValidationError:
        raise LifecycleInputError("the SNS Message is not a JSON object") from None


def parse_lifecycle_message(body: str, *, message_id: str, sent_at_ms: int) -> LifecycleEvent:
    """An SQS record body -> its event (the three shapes in the module's docstring)."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LifecycleInputError("the message body is not JSON") from None
    if not isinstance(document, dict):
        raise LifecycleInputError("the message body is not a JSON object")
    if document.get("source") == EVENTBRIDGE_SOURCE:
        try:
            event = parse(event=document, model=MarketplaceEvent)
        except ValidationError as error:
            raise LifecycleInputError(f"{EVENTBRIDGE_SOURCE} event: {_summary(error)}") from None
        return marketplace_event(
            event_id=event.id, detail_type=event.detail_type, at=event.time, detail=event.detail, body=body
        )
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        try:
            notification = parse(event=document, model=MarketplaceSnsNotification)
        except ValidationError as error:
            raise LifecycleInputError(f"SNS notification: {_summary(error)}") from None
        try:
            message = json.loads(notification.Message)
        except json.JSONDecodeError:
            raise LifecycleInputError("the SNS Message is not JSON") from None
        return legacy_event(
            _legacy(message),
            event_id=notification.MessageId or message_id,
            at=notification.Timestamp,
            body=notification.Message,
        )
    if "action" in document:
        return legacy_event(_legacy(document), event_id=message_id, at=from_ms(sent_at_ms), body=body)
    raise LifecycleInputError("neither an aws.agreement-marketplace event nor a Marketplace SNS message")
