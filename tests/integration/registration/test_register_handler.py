"""The registration Lambda on moto + the Marketplace simulator, through HTTP API v2 events: the sign-up flow,
every refusal, tokens, CSRF and browser binding, escaping, limits, logs, and concurrent sign-ups."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connect_metering.domain.instants import iso
from connect_metering.domain.registration import MAX_SIGNUP_ATTEMPTS, digest
from connect_metering.domain.tenancy import (
    Company,
    Entitlements,
    Environment,
    PricingModel,
    build,
    license_key,
)
from connect_metering.local.marketplace_sim import FaultPlan, Outage
from connect_metering.services.registration import INSTANCE_REFUSED_MESSAGE, Completed, FormRejected
from tests.integration.registration.conftest import BUS_ARN, T0, World
from tests.registration_support import SIGNUP, Browser, Page, instance_arn, license_arn

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

ACCOUNT = "210987654321"
XSS = [
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>",
    "' onmouseover='alert(1)",
    "</textarea><svg/onload=alert(1)>",
]


def start(world: World, browser: Browser, token: str, **form: str) -> Page:
    page = browser.post("/register", {"x-amzn-marketplace-token": token, **form})
    assert page.status == 303, page.body
    return browser.get(page.location)


def sign_up(browser: Browser, form_page: Page, **fields: str) -> Page:
    return browser.post(
        "/signup",
        {
            "registration": form_page.field("registration"),
            "csrf_token": form_page.field("csrf_token"),
            **SIGNUP,
            **fields,
        },
    )


def register(world: World, suffix: str, alias: str, *, account: str = ACCOUNT, **extra: Any) -> Browser:
    """A whole sign-up; returns the browser that did it."""
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer(suffix, account=account, **extra)))
    done = sign_up(browser, form_page, company_alias=alias)
    assert done.status == 303, done.body
    return browser


def assert_secure_page(page: Page) -> None:
    headers = page.headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert "<script" not in page.body.lower()


# The flow --------------------------------------------------------------------------------------------


def test_the_whole_sign_up_of_a_new_buyer(world: World) -> None:
    browser = world.browser()
    token = world.token(*world.buyer("one"))
    redirect = browser.post("/register", {"x-amzn-marketplace-token": token})
    assert redirect.status == 303
    target = urlsplit(redirect.location)
    assert target.path == "/signup"
    assert set(parse_qs(target.query)) == {"id"}  # only the opaque id, never the token
    assert token not in redirect.location and all(token not in cookie for cookie in redirect.cookies)
    [cookie] = redirect.cookies
    assert cookie.startswith("cm_signup=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/signup", "Max-Age=1800"):
        assert attribute in cookie

    form_page = browser.get(redirect.location)
    assert form_page.status == 200
    assert_secure_page(form_page)
    for name in ("company_alias", "company_name", "contact_email", "instance_arn"):
        assert f'<label for="{name}">' in form_page.body and f'name="{name}"' in form_page.body
    assert token not in form_page.body

    arn = instance_arn(ACCOUNT, 1)
    done = sign_up(browser, form_page, instance_arn=arn)
    assert done.status == 303 and done.location == redirect.location
    success = browser.get(done.location)
    assert success.status == 200
    assert_secure_page(success)
    assert success.heading == "Your company is registered"
    assert '<strong class="alias" id="company-alias">acme</strong>' in success.body
    assert "forwarder template" in success.body and BUS_ARN in success.body and "environments" in success.body

    assert world.store.get_company("acme") == Company(alias="acme", name="Acme Contact Centers")
    assert world.store.company_contact("acme") == "ops@acme.example"
    [subscription] = world.store.list_subscriptions("acme")
    assert subscription.pricing is PricingModel.USAGE
    assert subscription.is_pending  # activated by Marketplace, not by sign-up
    assert subscription.identity.license_arn and subscription.identity.product_code is None
    [environment] = world.store.list_environments("acme")
    assert environment.model_copy(update={"verification": None}) == build(
        Environment, company_alias="acme", name="us-east-1-aaaaaaaa", instance_arn=arn
    )
    # The instance is in the buyer's own account, which ResolveCustomer proved: verified at once.
    assert environment.verification is not None and environment.is_verified
    assert world.store.owner_of_account(ACCOUNT) == "acme"


def test_a_contract_buyer_gets_its_entitlements_at_sign_up(world: World) -> None:
    expires = T0 + timedelta(days=365)
    register(world, "contract", "globex", licensed_agents=12, expires=expires)
    [subscription] = world.store.list_subscriptions("globex")
    assert subscription.pricing is PricingModel.CONTRACT
    assert subscription.entitlements == Entitlements(licensed_agents=12, expires=expires)


def test_entitlements_are_read_across_empty_pages_at_sign_up(world: World) -> None:
    world.marketplace.faults = FaultPlan(seed=3, empty_page_rate=0.7)
    account, licence = world.buyer("paged", licensed_agents=9)
    for number in range(30):  # other dimensions fill pages ahead of the one that matters
        world.marketplace.set_entitlement(
            license_arn=licence, customer_aws_account_id=account, dimension=f"seats_{number:02d}", value=1
        )
    browser = world.browser()
    sign_up(browser, start(world, browser, world.token(account, licence)), company_alias="paged")
    [subscription] = world.store.list_subscriptions("paged")
    assert subscription.entitlements.licensed_agents == 9
    assert world.marketplace.counter("GetEntitlements").calls >= 3


def test_an_activation_that_arrived_before_sign_up_is_applied_at_sign_up(world: World) -> None:
    account, licence = world.buyer("early")
    activated = T0 - timedelta(minutes=3)
    _, [kept] = world.deliver(world.license_updated(account, licence, activated))
    assert kept.outcome.value == "kept_for_signup"
    browser = world.browser()
    sign_up(browser, start(world, browser, world.token(account, licence)), company_alias="early")
    [subscription] = world.store.list_subscriptions("early")
    assert subscription.started == activated
    assert [
        s.key
        for s in world.store.list_metered_subscriptions(active_from=T0, active_before=T0 + timedelta(hours=1))
    ] == [subscription.key]
    assert world.final_requests() == []


def test_an_end_that_arrived_before_sign_up_is_applied_with_its_final_metering(world: World) -> None:
    account, licence = world.buyer("brief")
    world.deliver(world.license_updated(account, licence, T0 - timedelta(hours=2)))
    world.deliver(world.deprovisioned(licence, T0 - timedelta(minutes=10)))
    browser = world.browser()
    sign_up(browser, start(world, browser, world.token(account, licence)), company_alias="brief")
    [subscription] = world.store.list_subscriptions("brief")
    assert (subscription.started, subscription.ended) == (T0 - timedelta(hours=2), T0 - timedelta(minutes=10))
    assert world.final_requests() == [
        {
            "kind": "final",
            "company": "brief",
            "subscription": subscription.key,
            "at": iso(T0 - timedelta(minutes=10)),
        }
    ]


def test_a_returning_buyer_lands_on_its_company(world: World) -> None:
    account, licence = world.buyer("one")
    browser = world.browser()
    sign_up(browser, start(world, browser, world.token(account, licence)))
    again = world.browser()
    page = start(world, again, world.token(account, licence))
    assert page.status == 200
    assert page.heading == "You are already registered"
    assert ">acme<" in page.body
    assert len(world.store.list_subscriptions("acme")) == 1


def test_a_second_subscription_of_a_buyer_attaches_to_its_company(world: World) -> None:
    register(world, "one", "acme")
    browser = world.browser()
    page = start(world, browser, world.token(*world.buyer("two")))
    assert page.heading == "Your new subscription was added to your company"
    assert len(world.store.list_subscriptions("acme")) == 2


def test_mixing_pricing_models_is_refused(world: World) -> None:
    register(world, "one", "acme")
    browser = world.browser()
    page = browser.post(
        "/register", {"x-amzn-marketplace-token": world.token(*world.buyer("two", licensed_agents=5))}
    )
    assert page.status == 409
    assert page.heading == "This subscription cannot join your company"
    assert_secure_page(page)
    assert len(world.store.list_subscriptions("acme")) == 1


def test_a_buyer_account_owned_by_another_company_is_refused(world: World) -> None:
    register(world, "one", "acme", account="111111111111")
    world.store.add_environment(
        build(Environment, company_alias="acme", name="b", instance_arn=instance_arn("222222222222", 7))
    )
    browser = world.browser()
    page = browser.post(
        "/register", {"x-amzn-marketplace-token": world.token(*world.buyer("two", account="222222222222"))}
    )
    assert page.status == 409
    assert page.heading == "Your AWS account belongs to another company"
    assert world.store.owner_of_subscription(license_key(license_arn("two"))) is None


# Refusals with the form kept ------------------------------------------------------------------------


def test_a_taken_alias_is_409_with_the_form_kept_and_the_reason_at_the_field(world: World) -> None:
    register(world, "one", "acme", account="111111111111")
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("two", account="222222222222")))
    refused = sign_up(browser, form_page, company_name="Other Acme", contact_email="it@other.example")
    assert refused.status == 409
    assert_secure_page(refused)
    assert 'id="company_alias-error">Error: This alias is already taken' in refused.body
    assert 'aria-invalid="true"' in refused.body
    assert 'value="Other Acme"' in refused.body and 'value="it@other.example"' in refused.body
    retried = sign_up(browser, refused, company_alias="acme2", company_name="Other Acme")
    assert retried.status == 303


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("company_alias", "9lives", "lower-case letters and digits"),
        ("company_alias", "Acme", "lower-case letters and digits"),
        ("company_alias", "ab", "lower-case letters and digits"),
        ("company_name", "   ", "Enter your company"),
        ("contact_email", "not-an-email", "email address"),
        ("instance_arn", "arn:aws:connect:us-east-1:1:instance/x", "Amazon Connect instance ARN"),
        ("company_alias", "a" * 33, "at most 32 characters"),
        ("company_name", "n" * 201, "at most 200 characters"),
        ("contact_email", "a" * 250 + "@x.io", "at most 254 characters"),
        ("instance_arn", "arn:" + "a" * 300, "at most 200 characters"),
    ],
)
def test_malformed_or_over_long_input_is_422_next_to_the_field(
    world: World, field: str, value: str, reason: str
) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one")))
    refused = sign_up(browser, form_page, **{field: value})
    assert refused.status == 422
    error = refused.body.split(f'id="{field}-error">', 1)[1].split("</p>", 1)[0]
    assert reason in error
    assert world.store.get_company("acme") is None


def test_an_instance_of_another_company_is_409_at_the_instance_field(world: World) -> None:
    arn = instance_arn("111111111111", 1)
    first = world.browser()
    sign_up(
        first, start(world, first, world.token(*world.buyer("one", account="111111111111"))), instance_arn=arn
    )
    messages = []
    # The instance itself taken, and an instance whose account another company owns: one answer, so
    # the form tells nobody which instances or accounts are registered with us.
    for candidate in (arn, instance_arn("111111111111", 2)):
        browser = world.browser()
        form_page = start(
            world, browser, world.token(*world.buyer(f"x{candidate[-1]}", account="222222222222"))
        )
        refused = sign_up(browser, form_page, company_alias="bravo", instance_arn=candidate)
        assert refused.status == 409
        messages.append(refused.body.split('id="instance_arn-error">', 1)[1].split("</p>", 1)[0])
    assert messages[0] == messages[1] == f"Error: {INSTANCE_REFUSED_MESSAGE}"
    assert "registered" not in messages[0] and "another company" not in messages[0]
    assert world.store.get_company("bravo") is None


def test_a_buyer_account_taken_between_register_and_sign_up_is_409(world: World) -> None:
    first, second = world.browser(), world.browser()
    first_form = start(world, first, world.token(*world.buyer("one")))
    second_form = start(world, second, world.token(*world.buyer("two")))  # same account, both still open
    assert sign_up(first, first_form).status == 303
    refused = sign_up(second, second_form, company_alias="bravo")
    assert refused.status == 409
    assert "already belongs to another company" in refused.body
    assert world.store.get_company("bravo") is None


FULLWIDTH_ACCOUNT = "\uff12\uff11\uff10\uff19\uff18\uff17\uff16\uff15\uff14\uff13\uff12\uff11"
FULLWIDTH_CASES = [
    ("company_alias", "acme\uff11\uff12"),
    (
        "instance_arn",
        f"arn:aws:connect:us-east-1:{FULLWIDTH_ACCOUNT}:instance/{'a' * 8}-bbbb-cccc-dddd-{'e' * 12}",
    ),
    (
        "instance_arn",
        f"arn:aws:connect:us-east-\uff11:210987654321:instance/{'a' * 8}-bbbb-cccc-dddd-{'e' * 12}",
    ),
    (
        "instance_arn",
        f"arn:aws:connect:us-east-1:210987654321:instance/{'a' * 8}-bbbb-cccc-dddd-{'e' * 11}\u0663",
    ),
]


def test_non_ascii_digits_are_422_at_their_field_never_500_nor_stored(world: World) -> None:
    """``\\d`` matches fullwidth and Arabic-Indic digits; AWS identifiers never hold them."""
    for n, (field, value) in enumerate(FULLWIDTH_CASES):
        browser = world.browser()
        form_page = start(world, browser, world.token(*world.buyer(f"wide{n}")))
        refused = sign_up(browser, form_page, **{field: value})
        assert refused.status == 422, (field, value, refused.status)
        assert f'id="{field}-error">' in refused.body
        assert world.store.get_company("acme") is None


# Who the registration is for, attempts, transport ----------------------------------------------------


def test_the_form_names_the_account_and_the_product_it_registers(world: World) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one", account="123456789012")))
    statement = form_page.body.split('<p id="registration-for">', 1)[1].split("</p>", 1)[0]
    assert '<strong id="buyer-account">123456789012</strong>' in statement
    assert '<code id="product-code">connectmeter0demo1</code>' in statement
    legacy = world.browser()
    token = world.marketplace.issue_token(customer_identifier="CUST<b>1")
    legacy_page = start(world, legacy, token)
    assert "AWS Marketplace customer" in legacy_page.body
    assert "CUST&lt;b&gt;1" in legacy_page.body and "CUST<b>1" not in legacy_page.body
    # shown again on a refused form, where a buyer is most likely to read it
    refused = sign_up(browser, form_page, company_alias="9bad")
    assert refused.status == 422 and '<strong id="buyer-account">123456789012</strong>' in refused.body


def test_refused_attempts_spend_the_registration_after_the_limit(world: World) -> None:
    register(world, "one", "acme", account="111111111111")
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("two", account="222222222222")))
    malformed = sign_up(browser, form_page, company_alias="9bad")
    assert malformed.status == 422  # a typo is answered from the form alone and costs no attempt
    for _ in range(MAX_SIGNUP_ATTEMPTS - 1):
        assert sign_up(browser, form_page).status == 409  # the alias acme is taken
    spent = sign_up(browser, form_page)
    assert (spent.status, spent.heading) == (429, "Too many sign-up attempts")
    assert_secure_page(spent)
    again = browser.get(f"/signup?id={form_page.field('registration')}")
    assert again.status == 429
    late = sign_up(browser, form_page, company_alias="bravo")  # even a free alias: the link is spent
    assert late.status == 429
    assert world.store.get_company("bravo") is None


def test_the_attempt_counter_is_atomic_in_the_store(world: World) -> None:
    registration_id, _, _ = opened(world, "count", "222222222222")
    id_digest = digest(registration_id)
    answers = [
        world.registrations.reserve_signup_attempt(id_digest, limit=MAX_SIGNUP_ATTEMPTS) for _ in range(7)
    ]
    assert answers == [True] * MAX_SIGNUP_ATTEMPTS + [False, False]
    stored = world.registrations.get_registration(id_digest)
    assert stored is not None and stored.signup_attempts == MAX_SIGNUP_ATTEMPTS and stored.attempts_exhausted


def test_the_cookie_is_secure_and_hsts_is_sent_whatever_the_forwarded_proto(world: World) -> None:
    browser = world.browser()
    browser.https = False  # x-forwarded-proto: http, which anyone in front can claim
    redirect = browser.post("/register", {"x-amzn-marketplace-token": world.token(*world.buyer("one"))})
    [cookie] = redirect.cookies
    assert "Secure" in cookie.split("; ")
    assert redirect.headers["Strict-Transport-Security"].startswith("max-age=")
    page = browser.get(redirect.location)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


# Tokens and Marketplace -------------------------------------------------------------------------------


def test_expired_invalid_missing_and_reused_tokens_get_clear_pages(world: World) -> None:
    account, licence = world.buyer("one")
    cases = [
        (
            world.marketplace.expired_token(customer_aws_account_id=account, license_arn=licence),
            410,
            "expired",
        ),
        ("forged-token", 400, "not valid"),
        ("", 400, "not valid"),
        ("x" * 5000, 400, "not valid"),
    ]
    for token, status, words in cases:
        page = world.browser().post("/register", {"x-amzn-marketplace-token": token})
        assert page.status == status, token[:20]
        assert words in page.heading
        assert "Set up your account" in page.body  # what to do
        assert_secure_page(page)
        assert not token or token not in page.body
    token = world.token(account, licence)
    assert world.browser().post("/register", {"x-amzn-marketplace-token": token}).status == 303
    reused = world.browser().post("/register", {"x-amzn-marketplace-token": token})
    assert (reused.status, reused.heading) == (409, "This registration link was already used")


def test_a_marketplace_outage_is_503_and_does_not_spend_the_token(world: World) -> None:
    token = world.token(*world.buyer("one"))
    world.marketplace.faults = FaultPlan(
        outages=(Outage(T0, T0 + timedelta(minutes=5), "InternalServiceErrorException"),)
    )
    page = world.browser().post("/register", {"x-amzn-marketplace-token": token})
    assert page.status == 503
    assert page.headers["Retry-After"] == "60"
    assert page.heading == "AWS Marketplace is not answering right now"
    world.marketplace.faults = FaultPlan(
        outages=(Outage(T0, T0 + timedelta(minutes=5), "ThrottlingException"),)
    )
    assert world.browser().post("/register", {"x-amzn-marketplace-token": token}).status == 503
    world.clock.advance_to(T0 + timedelta(minutes=6))
    assert world.browser().post("/register", {"x-amzn-marketplace-token": token}).status == 303


def test_a_free_trial_is_noted(world: World) -> None:
    browser = world.browser()
    page = start(
        world, browser, world.token(*world.buyer("trial")), **{"x-amzn-marketplace-offer-type": "free-trial"}
    )
    assert "free trial" in page.body


def test_a_legacy_buyer_registers_with_its_customer_identifier(world: World) -> None:
    world.marketplace.add_subscription(customer_identifier="CUSTLEGACY1", started=T0)
    browser = world.browser()
    token = world.marketplace.issue_token(customer_identifier="CUSTLEGACY1")
    assert sign_up(browser, start(world, browser, token), company_alias="oldco").status == 303
    [subscription] = world.store.list_subscriptions("oldco")
    assert (subscription.identity.customer_identifier, subscription.identity.product_code) == (
        "CUSTLEGACY1",
        "connectmeter0demo1",
    )


# Session, CSRF, expiry -------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(world: World) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one")))
    for csrf in (None, "", "guessed", form_page.field("csrf_token")[:-1]):
        form = {"registration": form_page.field("registration"), **SIGNUP}
        if csrf is not None:
            form["csrf_token"] = csrf
        refused = browser.post("/signup", form)
        assert (refused.status, refused.heading) == (403, "The form could not be verified")
    assert world.store.get_company("acme") is None


def test_another_browser_cannot_use_the_sign_up_link(world: World) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one")))
    link = f"/signup?id={form_page.field('registration')}"
    stranger = world.browser()
    assert stranger.get(link).status == 403
    refused = sign_up(stranger, form_page)
    assert refused.status == 403
    assert world.store.get_company("acme") is None


def test_unknown_and_expired_sign_up_links(world: World) -> None:
    browser = world.browser()
    assert browser.get("/signup?id=nothing-like-this").status == 404
    assert browser.get("/signup?id=%3Cscript%3Ealert(1)%3C/script%3E").status == 404
    assert browser.get("/signup").status == 404
    form_page = start(world, browser, world.token(*world.buyer("one")))
    world.clock.advance_to(T0 + timedelta(minutes=31))
    expired = sign_up(browser, form_page)
    assert (expired.status, expired.heading) == (410, "This sign-up link has expired")
    assert world.store.get_company("acme") is None


def test_a_second_submit_is_single_use_and_lands_on_the_same_company(world: World) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one")))
    assert sign_up(browser, form_page).status == 303
    again = sign_up(browser, form_page, company_alias="another")
    assert again.status == 303
    assert world.store.get_company("another") is None
    assert ">acme<" in browser.get(again.location).body


def test_unknown_routes_and_oversized_bodies(world: World) -> None:
    browser = world.browser()
    assert browser.get("/admin").status == 404
    assert browser.request("POST", "/register", raw_body=b"x=" + b"a" * 20_000).status == 413
    assert browser.request("POST", "/register", raw_body=b"\xff\xfe=\xff").status == 400


# Escaping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", XSS)
def test_xss_payloads_in_every_field_come_back_escaped(world: World, payload: str) -> None:
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer("one")))
    fields = {name: payload for name in ("company_alias", "company_name", "contact_email", "instance_arn")}
    refused = sign_up(browser, form_page, **fields)
    assert refused.status == 422
    assert payload not in refused.body
    assert "<script" not in refused.body.lower() and "<img" not in refused.body and "<svg" not in refused.body
    assert refused.body.count("&lt;") + refused.body.count("&#x27;") >= 4
    # a valid sign-up whose free-text name is the payload: stored as typed, shown escaped
    created = sign_up(browser, form_page, company_name=payload)
    assert created.status == 303
    success = browser.get(created.location)
    assert payload not in success.body and "<script" not in success.body.lower()
    company = world.store.get_company("acme")
    assert company is not None and company.name == payload.strip()


# Logs -------------------------------------------------------------------------------------------------


def test_no_log_line_of_the_whole_flow_contains_the_token(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    account, licence = world.buyer("one")
    tokens = [world.token(account, licence) for _ in range(2)]
    expired = world.marketplace.expired_token(customer_aws_account_id=account, license_arn=licence)
    browser = world.browser()
    form_page = start(world, browser, tokens[0])
    sign_up(browser, form_page, company_alias="9bad")
    sign_up(browser, form_page)
    browser.get(f"/signup?id={form_page.field('registration')}")
    browser.post("/register", {"x-amzn-marketplace-token": tokens[0]})  # reused
    browser.post("/register", {"x-amzn-marketplace-token": expired})
    world.marketplace.faults = FaultPlan(
        outages=(Outage(T0, T0 + timedelta(minutes=1), "ThrottlingException"),)
    )
    browser.post("/register", {"x-amzn-marketplace-token": tokens[1]})
    captured = capsys.readouterr()
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    everything = captured.out + captured.err + logged
    assert "registration token resolved" in everything  # the handler did log the flow
    for token in [*tokens, expired]:
        assert token not in everything
    assert form_page.field("registration") not in everything
    assert form_page.field("csrf_token") not in everything


# Concurrency ------------------------------------------------------------------------------------------


def race(actions: list[Callable[[], Completed | FormRejected]]) -> list[Completed | FormRejected]:
    barrier = threading.Barrier(len(actions))
    results: list[Completed | FormRejected] = []

    def run(action: Callable[[], Completed | FormRejected]) -> None:
        barrier.wait()
        results.append(action())

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def opened(world: World, suffix: str, account: str) -> tuple[str, str, str]:
    """An open registration: (id, browser cookie, csrf token)."""
    browser = world.browser()
    form_page = start(world, browser, world.token(*world.buyer(suffix, account=account)))
    return form_page.field("registration"), browser.cookies["cm_signup"], form_page.field("csrf_token")


@pytest.mark.usefixtures("serializable_transactions")
def test_two_sign_ups_claiming_one_alias_have_one_winner(world: World) -> None:
    service = world.register.registration_service()
    contenders = [opened(world, f"alias{n}", f"3000000000{n:02d}") for n in range(6)]
    results = race(
        [
            partial(service.complete, *contender, {**SIGNUP, "company_alias": "shared"})
            for contender in contenders
        ]
    )
    assert sum(isinstance(result, Completed) for result in results) == 1
    refused = [result for result in results if isinstance(result, FormRejected)]
    assert [(r.status, sorted(r.form.errors)) for r in refused] == [(409, ["company_alias"])] * 5
    assert len(world.store.list_subscriptions("shared")) == 1


@pytest.mark.usefixtures("serializable_transactions")
def test_two_sign_ups_claiming_one_account_have_one_winner(world: World) -> None:
    service = world.register.registration_service()
    contenders = [opened(world, f"acct{n}", "444455556666") for n in range(6)]
    results = race(
        [
            partial(service.complete, *contender, {**SIGNUP, "company_alias": f"company{n}"})
            for n, contender in enumerate(contenders)
        ]
    )
    winners = [result for result in results if isinstance(result, Completed)]
    assert len(winners) == 1
    assert world.store.owner_of_account("444455556666") == winners[0].company_alias
    refused = [result for result in results if isinstance(result, FormRejected)]
    assert [(r.status, sorted(r.form.errors)) for r in refused] == [(409, ["form"])] * 5
    companies = [n for n in range(6) if world.store.get_company(f"company{n}") is not None]
    assert len(companies) == 1  # nothing of a refused sign-up was written
