"""Licence information of a company and the seat check at agent login (BILLING.md section 7).

Pure: the caller passes the company, its subscriptions, the agents logged in now and ``now``.

Status, decided at ``now`` over all of the company's subscriptions:
    active          some subscription is active (and, for contracts, active agents <= licensed agents)
    over-licensed   a contract company with more agents logged in than licensed (overage is metered)
    pending         none active, one registered but not yet activated by Marketplace
    expired         none active or pending, a contract passed its ExpirationDate
    ended           none of the above: every subscription ended (or never started)

The seat check never removes anyone and never refuses for being over the licence: over the licence
the agent is allowed and the answer is flagged, because the overage is billed (section 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connect_metering.domain.tenancy import Company, PricingModel, Subscription, primary_subscription


class LicenceStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    OVER_LICENSED = "over-licensed"
    EXPIRED = "expired"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class SubscriptionSummary:
    key: str
    customer_aws_account_id: str | None
    license_arn: str | None
    product_code: str | None
    pricing: PricingModel
    started: datetime | None
    ended: datetime | None
    licensed_agents: int | None
    expires: datetime | None
    active: bool


@dataclass(frozen=True, slots=True)
class LicenceInfo:
    company_alias: str
    company_name: str
    pricing: PricingModel | None
    customer_aws_account_id: str | None
    product_code: str | None
    license_arn: str | None
    licensed_agents: int | None
    active_agents: int
    renews_or_expires: datetime | None
    status: LicenceStatus
    subscriptions: tuple[SubscriptionSummary, ...]


def _is_pending(subscription: Subscription, now: datetime) -> bool:
    if subscription.ended is not None and subscription.ended <= now:
        return False
    return subscription.started is None or subscription.started > now


def _is_expired(subscription: Subscription, now: datetime) -> bool:
    expires = subscription.entitlements.expires
    return (
        subscription.pricing is PricingModel.CONTRACT
        and expires is not None
        and expires <= now
        and (subscription.ended is None or subscription.ended > expires)
    )


def licence_info(
    company: Company,
    subscriptions: Sequence[Subscription],
    *,
    active_agents: int,
    now: datetime,
    product_code: str | None = None,
) -> LicenceInfo:
    active = [subscription for subscription in subscriptions if subscription.is_active_at(now)]
    contracts = [s for s in active if s.pricing is PricingModel.CONTRACT]
    licensed = sum(s.entitlements.licensed_agents or 0 for s in contracts) if contracts else None
    if active:
        over = licensed is not None and active_agents > licensed
        status = LicenceStatus.OVER_LICENSED if over else LicenceStatus.ACTIVE
    elif any(_is_pending(subscription, now) for subscription in subscriptions):
        status = LicenceStatus.PENDING
    elif any(_is_expired(subscription, now) for subscription in subscriptions):
        status = LicenceStatus.EXPIRED
    elif subscriptions:
        status = LicenceStatus.ENDED
    else:
        status = LicenceStatus.PENDING
    # The subscription that speaks for the company: the primary now, else the most recent one.
    shown = primary_subscription(subscriptions, now) or max(
        subscriptions, key=lambda s: (s.started or s.ended or now, s.key), default=None
    )
    expiries = [s.entitlements.expires for s in (contracts or subscriptions) if s.entitlements.expires]
    if not contracts and licensed is None and shown is not None:
        licensed = shown.entitlements.licensed_agents
    return LicenceInfo(
        company_alias=company.alias,
        company_name=company.name,
        pricing=shown.pricing if shown else None,
        customer_aws_account_id=shown.identity.customer_aws_account_id if shown else None,
        product_code=(shown.identity.product_code or product_code) if shown else product_code,
        license_arn=shown.identity.license_arn if shown else None,
        licensed_agents=licensed,
        active_agents=active_agents,
        renews_or_expires=(min(expiries) if contracts else max(expiries)) if expiries else None,
        status=status,
        subscriptions=tuple(
            SubscriptionSummary(
                key=s.key,
                customer_aws_account_id=s.identity.customer_aws_account_id,
                license_arn=s.identity.license_arn,
                product_code=s.identity.product_code,
                pricing=s.pricing,
                started=s.started,
                ended=s.ended,
                licensed_agents=s.entitlements.licensed_agents,
                expires=s.entitlements.expires,
                active=s.is_active_at(now),
            )
            for s in sorted(subscriptions, key=lambda s: s.key)
        ),
    )


class SeatReason(StrEnum):
    ACTIVE = "active"
    WITHIN_LICENCE = "within_licence"
    OVER_LICENCE = "over_licence"
    PENDING = "pending"
    EXPIRED = "expired"
    ENDED = "ended"
    UNKNOWN_ENVIRONMENT = "unknown_environment"


@dataclass(frozen=True, slots=True)
class SeatDecision:
    allowed: bool
    reason: SeatReason
    flagged: bool
    message: str
    company_alias: str | None = None
    licensed_agents: int | None = None
    active_agents: int | None = None


def seat_decision(info: LicenceInfo, *, agent_already_active: bool) -> SeatDecision:
    """May one more agent log in now? ``info.active_agents`` counts the agents logged in now."""
    after = info.active_agents + (0 if agent_already_active else 1)

    def decide(allowed: bool, reason: SeatReason, message: str, flagged: bool = False) -> SeatDecision:
        return SeatDecision(
            allowed=allowed,
            reason=reason,
            flagged=flagged,
            message=message,
            company_alias=info.company_alias,
            licensed_agents=info.licensed_agents,
            active_agents=after if allowed else info.active_agents,
        )

    if info.status is LicenceStatus.PENDING:
        return decide(False, SeatReason.PENDING, "the subscription is not active yet")
    if info.status is LicenceStatus.EXPIRED:
        return decide(False, SeatReason.EXPIRED, "the contract has expired")
    if info.status is LicenceStatus.ENDED:
        return decide(False, SeatReason.ENDED, "the subscription has ended")
    if info.pricing is not PricingModel.CONTRACT or info.licensed_agents is None:
        return decide(True, SeatReason.ACTIVE, "usage is billed per agent minute")
    if after > info.licensed_agents:
        return decide(
            True,
            SeatReason.OVER_LICENCE,
            f"{after} agents logged in for {info.licensed_agents} licensed: the overage is metered",
            flagged=True,
        )
    return decide(True, SeatReason.WITHIN_LICENCE, f"{after} of {info.licensed_agents} licensed agents")
