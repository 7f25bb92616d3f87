"""Account claims through the real register and admin handlers: an environment's claim on its AWS account
is unverified until the account proves it, never blocks the account's real owner, and blocks nobody after
seven days; a verified claim keeps one account, one company, even after its environment is removed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from connect_metering.domain.tenancy import AccountClaim, Environment
from tests.integration.registration.conftest import BUS_ARN, T0, World
from tests.integration.registration.test_admin_handler import call, prove
from tests.integration.registration.test_register_handler import register, sign_up, start
from tests.registration_support import instance_arn

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

GLOBEX_BUYER = "111111111111"
ACME_BUYER = "333333333333"


def claim_with_admin(world: World, alias: str, arn: str, name: str = "claimed") -> dict[str, object]:
    status, answer = call(
        world, "POST", f"/companies/{alias}/environments", {"name": name, "instance_arn": arn}
    )
    assert status == 201, answer
    environment: dict[str, object] = answer["environment"]
    return environment


def test_a_buyer_takes_over_its_own_account_claimed_unverified_by_another_company(world: World) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    stolen = instance_arn(ACME_BUYER, 1)
    added = claim_with_admin(world, "globex", stolen)
    assert added["verified"] is False

    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("two", account=ACME_BUYER)))
    assert form_page.status == 200  # not "your account belongs to another company"
    done = sign_up(browser, form_page, company_alias="acme", instance_arn=stolen)
    assert done.status == 303, done.body

    assert world.store.list_environments("globex") == []
    taken = world.store.environment_for_instance(stolen)
    assert taken is not None and taken.company_alias == "acme" and taken.is_verified
    assert world.store.account_claim(ACME_BUYER) == AccountClaim(company="acme")
    success = browser.get(done.location)
    assert 'data-verified="true"' in success.body and "awaiting verification" not in success.body


def test_a_verified_claim_still_refuses_the_buyer_even_after_its_environment_is_removed(
    world: World,
) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    arn = instance_arn(ACME_BUYER, 1)
    claim_with_admin(world, "globex", arn)
    prove(world, arn)
    assert call(world, "DELETE", "/companies/globex/environments/claimed") == (204, None)

    page = world.browser().post(
        "/register", {"x-amzn-marketplace-token": world.token(*world.buyer("two", account=ACME_BUYER))}
    )
    assert page.status == 409
    assert page.heading == "Your AWS account belongs to another company"
    assert world.store.account_claim(ACME_BUYER) == AccountClaim(company="globex")


def test_an_unverified_claim_blocks_other_companies_for_seven_days_only(world: World) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    arn = instance_arn("444455556666", 1)
    claim_with_admin(world, "globex", arn)

    world.clock.advance_to(T0 + timedelta(days=7) - timedelta(minutes=1))
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("two", account=ACME_BUYER)))
    refused = sign_up(browser, form_page, company_alias="acme", instance_arn=arn)
    assert refused.status == 409
    assert world.store.environment_for_instance(arn).company_alias == "globex"  # type: ignore[union-attr]

    world.clock.advance_to(T0 + timedelta(days=7))
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("three", account=ACME_BUYER)))
    done = sign_up(browser, form_page, company_alias="acme", instance_arn=arn)
    assert done.status == 303, done.body
    assert world.store.list_environments("globex") == []
    [environment] = world.store.list_environments("acme")
    # Acme's own claim on that account is unverified in turn: it has not proven it either.
    assert not environment.is_verified
    assert world.store.account_claim("444455556666") == AccountClaim(
        company="acme", unverified_until=T0 + timedelta(days=14)
    )
    success = browser.get(done.location)
    assert environment.verification is not None
    assert 'data-verified="false"' in success.body and environment.verification.code in success.body


def test_the_admin_api_applies_the_same_rules_and_shows_the_forwarder_parameters(world: World) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    register(world, "two", "acme", account=ACME_BUYER)
    arn = instance_arn("444455556666", 1)
    added = claim_with_admin(world, "globex", arn)
    stored = world.store.environment_for_instance(arn)
    assert stored is not None and stored.verification is not None
    assert added["forwarder_parameters"] == {
        "SellerEventBusArn": BUS_ARN,
        "VerificationCode": stored.verification.code,
    }
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", stored.verification.code)
    assert added["claim_expires"] == "2026-11-09T09:00:00.000Z"

    other = {"name": "mine", "instance_arn": instance_arn("444455556666", 2)}
    status, answer = call(world, "POST", "/companies/acme/environments", other)
    assert (status, answer["error"]) == (409, "one_account_one_company")
    world.clock.advance_to(T0 + timedelta(days=8))
    status, answer = call(world, "POST", "/companies/acme/environments", other)
    assert status == 201, answer
    assert world.store.list_environments("globex") == []

    prove(world, other["instance_arn"])
    status, listed = call(world, "GET", "/companies/acme/environments")
    assert status == 200
    states = {e["name"]: e["verified"] for e in listed["environments"]}
    assert states == {"mine": True}
    # Globex cannot take the account back now: the claim is verified.
    status, answer = call(
        world, "POST", "/companies/globex/environments", {"name": "again", "instance_arn": arn}
    )
    assert (status, answer["error"]) == (409, "one_account_one_company")


def test_a_trusted_environment_added_directly_is_verified(world: World) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    arn = instance_arn("555566667777", 1)
    stored = world.store.add_environment(
        Environment.model_validate({"company_alias": "globex", "name": "x", "instance_arn": arn})
    )
    assert stored.is_verified and world.store.account_claim("555566667777") == AccountClaim(company="globex")


def test_removing_the_last_unverified_environment_of_an_account_releases_its_claim(world: World) -> None:
    register(world, "one", "globex", account=GLOBEX_BUYER)
    register(world, "two", "acme", account=ACME_BUYER)
    first, second = instance_arn("444455556666", 1), instance_arn("444455556666", 2)
    claim_with_admin(world, "globex", first, name="first")
    claim_with_admin(world, "globex", second, name="second")
    assert call(world, "DELETE", "/companies/globex/environments/first") == (204, None)
    still = world.store.account_claim("444455556666")
    assert still is not None and still.company == "globex"  # its other environment there still claims it
    assert call(world, "DELETE", "/companies/globex/environments/second") == (204, None)
    assert world.store.account_claim("444455556666") is None
    # Nobody waits a week for a claim its own company withdrew.
    claim_with_admin(world, "acme", first, name="mine")
