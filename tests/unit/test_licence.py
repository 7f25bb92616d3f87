"""Licence information and the seat check (BILLING.md section 7), on values alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connect_metering.domain.licence import LicenceStatus, SeatReason, licence_info, seat_decision
from connect_metering.domain.tenancy import Company, Subscription, build

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
ACME = Company(alias="acme", name="Acme")


def subscription(suffix: str, *, pricing: str = "contract", **fields: Any) -> Subscription:
    return build(
        Subscription,
        company_alias="acme",
        identity={
            "customer_aws_account_id": "210987654321",
            "license_arn": f"arn:aws:license-manager::123456789012:license:l-{suffix}",
        },
        pricing=pricing,
        **fields,
    )


def contract(
    suffix: str, licensed: int, *, started: datetime = T0, expires: datetime | None = None, **fields: Any
) -> Subscription:
    return subscription(
        suffix, started=started, entitlements={"licensed_agents": licensed, "expires": expires}, **fields
    )


def test_status_follows_the_subscriptions() -> None:
    now = T0 + timedelta(hours=1)
    cases = [
        ([], LicenceStatus.PENDING),
        ([subscription("p")], LicenceStatus.PENDING),
        ([subscription("u", pricing="usage", started=T0)], LicenceStatus.ACTIVE),
        ([contract("c", 5, expires=T0 + timedelta(minutes=30))], LicenceStatus.EXPIRED),
        (
            [subscription("e", pricing="usage", started=T0, ended=T0 + timedelta(minutes=10))],
            LicenceStatus.ENDED,
        ),
        ([subscription("f", ended=T0)], LicenceStatus.ENDED),  # subscribe-fail: never active
        ([subscription("later", pricing="usage", started=now + timedelta(hours=1))], LicenceStatus.PENDING),
    ]
    for subscriptions, status in cases:
        assert licence_info(ACME, subscriptions, active_agents=0, now=now).status is status, subscriptions


def test_contract_licences_add_up_and_the_earliest_expiry_is_shown() -> None:
    now = T0 + timedelta(days=1)
    first = contract("a", 10, expires=T0 + timedelta(days=30))
    second = contract("b", 5, started=T0 + timedelta(hours=1), expires=T0 + timedelta(days=90))
    old = contract("c", 100, expires=T0 + timedelta(hours=2))  # expired: not counted
    info = licence_info(ACME, [second, old, first], active_agents=12, now=now, product_code="prod1")
    assert (info.licensed_agents, info.active_agents, info.status) == (15, 12, LicenceStatus.ACTIVE)
    assert info.renews_or_expires == T0 + timedelta(days=30)
    assert info.license_arn == first.identity.license_arn  # the primary speaks for the company
    assert info.product_code == "prod1"
    assert [summary.active for summary in info.subscriptions] == [True, True, False]
    over = licence_info(ACME, [first, second], active_agents=16, now=now)
    assert over.status is LicenceStatus.OVER_LICENSED


def test_seat_decisions() -> None:
    now = T0 + timedelta(hours=1)

    def decide(
        subscriptions: list[Subscription], active: int, already: bool = False
    ) -> tuple[bool, SeatReason, bool]:
        decision = seat_decision(
            licence_info(ACME, subscriptions, active_agents=active, now=now), agent_already_active=already
        )
        return decision.allowed, decision.reason, decision.flagged

    licensed = contract("c", 2, expires=now + timedelta(days=1))
    assert decide([licensed], 1) == (True, SeatReason.WITHIN_LICENCE, False)
    assert decide([licensed], 2) == (True, SeatReason.OVER_LICENCE, True)  # allowed and flagged
    assert decide([licensed], 2, already=True) == (True, SeatReason.WITHIN_LICENCE, False)
    assert decide([licensed], 7) == (True, SeatReason.OVER_LICENCE, True)  # lowering never locks anyone out
    assert decide([subscription("u", pricing="usage", started=T0)], 500) == (True, SeatReason.ACTIVE, False)
    assert decide([contract("x", 9, expires=now)], 0) == (False, SeatReason.EXPIRED, False)
    assert decide([subscription("p")], 0) == (False, SeatReason.PENDING, False)
    assert decide([subscription("e", pricing="usage", started=T0, ended=now)], 0) == (
        False,
        SeatReason.ENDED,
        False,
    )
