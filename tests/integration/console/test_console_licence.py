"""The licence page through the handler, for each status the admin API computes: what the administrator
sees (identity, product, pricing, licensed and active agents, renewal or expiration date), what the
status means, and the warning before a contract expires (nobody is locked out)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape

import pytest

from connect_metering.domain.licence import LicenceStatus
from connect_metering.domain.tenancy import Entitlements, PricingModel, Subscription, SubscriptionIdentity
from connect_metering.web.console_pages import STATUS_MEANINGS
from tests.integration.console.conftest import T0, ConsoleWorld

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

EMAIL = "ops@acme.test"
ACCOUNT = "111111111111"
LICENSE_ARN = f"arn:aws:license-manager::{ACCOUNT}:license:l-acme"


def subscription(
    *,
    pricing: PricingModel = PricingModel.USAGE,
    started: datetime | None = T0 - timedelta(days=30),
    ended: datetime | None = None,
    licensed: int | None = None,
    expires: datetime | None = None,
) -> Subscription:
    return Subscription(
        company_alias="acme",
        identity=SubscriptionIdentity(customer_aws_account_id=ACCOUNT, license_arn=LICENSE_ARN),
        pricing=pricing,
        started=started,
        ended=ended,
        entitlements=Entitlements(licensed_agents=licensed, expires=expires),
    )


def licence_text(world: ConsoleWorld, held: Subscription | None) -> tuple[str, str]:
    if held is not None:
        world.store.add_subscription(held)
    browser, _ = world.signed_in("acme", EMAIL)
    page = browser.get("/console/licence")
    assert page.status == 200
    return page.body, unescape(re.sub(r"<[^>]+>", " ", page.body))


CASES = {
    "active": (subscription(), LicenceStatus.ACTIVE),
    "pending": (subscription(started=None), LicenceStatus.PENDING),
    "ended": (subscription(ended=T0 - timedelta(days=1)), LicenceStatus.ENDED),
    "expired": (
        subscription(pricing=PricingModel.CONTRACT, licensed=10, expires=T0 - timedelta(days=1)),
        LicenceStatus.EXPIRED,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_status_is_shown_with_what_it_means(console: ConsoleWorld, case: str) -> None:
    held, status = CASES[case]
    body, text = licence_text(console, held)
    assert f"Status {status.value}" in " ".join(text.split())
    meaning = re.search(r'<p id="status-meaning">(.*?)</p>', body, re.S)
    assert meaning is not None
    assert unescape(re.sub(r"<[^>]+>", "", meaning.group(1))) == f"{status.value}: {STATUS_MEANINGS[status]}"
    assert ACCOUNT in text and LICENSE_ARN in text
    assert "Acme Inc (acme)" in text


def test_a_contract_shows_its_agents_and_a_warning_before_it_expires(console: ConsoleWorld) -> None:
    held = subscription(pricing=PricingModel.CONTRACT, licensed=25, expires=T0 + timedelta(days=10))
    body, text = licence_text(console, held)
    flat = " ".join(text.split())
    assert "Pricing model contract (licensed agents, overage billed)" in flat
    assert "Licensed agents 25" in flat
    assert "Active agents now 0" in flat
    assert "Renewal or expiration 2026-11-30" in flat
    assert "Status active" in flat
    assert 'class="warning" role="alert"' in body
    assert "Your contract expires on 2026-11-30" in flat
    assert "nobody is locked out" in flat


def test_no_warning_long_before_expiry_or_for_pay_as_you_go(console: ConsoleWorld) -> None:
    held = subscription(pricing=PricingModel.CONTRACT, licensed=25, expires=T0 + timedelta(days=45))
    body, _ = licence_text(console, held)
    assert 'class="warning"' not in body


def test_a_legacy_buyer_sees_customer_identifier_and_product_code(console: ConsoleWorld) -> None:
    legacy = Subscription(
        company_alias="acme",
        identity=SubscriptionIdentity(customer_identifier="cust-LEGACY-1", product_code="prod-legacy"),
        pricing=PricingModel.USAGE,
        started=T0 - timedelta(days=3),
    )
    _, text = licence_text(console, legacy)
    flat = " ".join(text.split())
    assert "Customer identifier" in flat and "cust-LEGACY-1" in flat
    assert "Product code prod-legacy" in flat
