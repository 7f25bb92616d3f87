"""An administrator of acme can never read or change globex's data, whatever the URL, the form or the
cookie says: every console route, tampered with, answers acme's data or refuses, and globex is unchanged."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from connect_metering.domain.tenancy import PricingModel, Subscription, SubscriptionIdentity
from tests.integration.console.conftest import ARN_B, T0, ConsoleWorld
from tests.integration.console.test_console_handler import _ledger_record

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

ACME_ADMIN, GLOBEX_ADMIN = "ops@acme.test", "it@globex.test"


def subscribe(world: ConsoleWorld, alias: str, licence: str) -> None:
    account = {"acme": "111111111111", "globex": "222222222222"}[alias]
    world.store.add_subscription(
        Subscription(
            company_alias=alias,
            identity=SubscriptionIdentity(
                customer_aws_account_id=account,
                license_arn=f"arn:aws:license-manager::{account}:license:{licence}",
            ),
            pricing=PricingModel.USAGE,
            started=T0 - timedelta(days=30),
        )
    )


@pytest.fixture
def two_companies(console: ConsoleWorld) -> ConsoleWorld:
    subscribe(console, "acme", "l-acme")
    subscribe(console, "globex", "l-globex")
    _ledger_record(console, "globex", "license#l-globex", 1, {"globex-prod": 777})
    console.invitations.invite("globex", GLOBEX_ADMIN)
    return console


def _globex_unchanged(world: ConsoleWorld) -> None:
    assert [(e.name, e.instance_arn.arn) for e in world.store.list_environments("globex")] == [
        ("globex-prod", ARN_B)
    ]
    assert [a.email for a in world.invitations.administrators("globex")] == [GLOBEX_ADMIN]


QUERIES = ("?alias=globex", "?company=globex&company_alias=globex", "?id=globex")
READS = (
    "/console/licence",
    "/console/environments",
    "/console/usage",
    "/console/usage.csv",
    "/console/users",
    "/console/mfa",
)


@pytest.mark.parametrize("path", READS)
def test_reads_show_the_sessions_company_whatever_the_query(two_companies: ConsoleWorld, path: str) -> None:
    browser, _ = two_companies.signed_in("acme", ACME_ADMIN)
    for query in ("", *QUERIES):
        page = browser.get(path + query)
        assert page.status == 200, (path, query)
        assert "globex" not in page.body.lower(), (path, query)
        assert "777" not in page.body


def test_paths_naming_another_company_are_not_found(two_companies: ConsoleWorld) -> None:
    browser, _ = two_companies.signed_in("acme", ACME_ADMIN)
    for path in ("/console/globex/licence", "/console/licence/globex", "/console/environments/globex-prod"):
        assert browser.get(path).status == 404


def test_removing_another_companys_environment_is_refused(two_companies: ConsoleWorld) -> None:
    browser, csrf = two_companies.signed_in("acme", ACME_ADMIN)
    page = browser.post(
        "/console/environments/remove", {"name": "globex-prod", "csrf_token": csrf, "company_alias": "globex"}
    )
    assert page.status == 404
    _globex_unchanged(two_companies)


def test_adding_another_companys_instance_is_refused(two_companies: ConsoleWorld) -> None:
    browser, csrf = two_companies.signed_in("acme", ACME_ADMIN)
    page = browser.post(
        "/console/environments",
        {"name": "stolen", "instance_arn": ARN_B, "csrf_token": csrf, "alias": "globex"},
    )
    assert page.status == 409
    assert [e.name for e in two_companies.store.list_environments("acme")] == ["acme-prod"]
    _globex_unchanged(two_companies)


def test_removing_or_inviting_in_another_company_is_refused(two_companies: ConsoleWorld) -> None:
    browser, csrf = two_companies.signed_in("acme", ACME_ADMIN)
    removed = browser.post(
        "/console/users/remove", {"email": GLOBEX_ADMIN, "csrf_token": csrf, "company_alias": "globex"}
    )
    assert removed.status == 404
    invited = browser.post(
        "/console/users", {"email": "spy@acme.test", "csrf_token": csrf, "company_alias": "globex"}
    )
    assert invited.status == 201
    assert "spy@acme.test" in [a.email for a in two_companies.invitations.administrators("acme")]
    _globex_unchanged(two_companies)


def test_a_cookie_rewritten_to_name_another_company_is_no_session(two_companies: ConsoleWorld) -> None:
    browser, csrf = two_companies.signed_in("acme", ACME_ADMIN)
    payload, mac = browser.cookies["cm_console"].split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["alias"] = "globex"
    browser.cookies["cm_console"] = (
        base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=") + "." + mac
    )
    assert browser.get("/console/licence").location == "/console/"
    page = browser.post("/console/environments/remove", {"name": "globex-prod", "csrf_token": csrf})
    assert page.location == "/console/"
    _globex_unchanged(two_companies)


def test_mfa_posts_act_on_the_sessions_administrator_only(two_companies: ConsoleWorld) -> None:
    browser, csrf = two_companies.signed_in("acme", ACME_ADMIN)
    tampered = {"csrf_token": csrf, "company_alias": "globex", "email": GLOBEX_ADMIN, "alias": "globex"}
    started = browser.post("/console/mfa/start", {**tampered, "password": "Chosen-Passw0rd!"})
    assert started.status == 200
    assert "globex" not in started.body.lower()
    assert "acme%2Fops%40acme.test" in started.body  # the secret is for the session's administrator
    globex_user = two_companies.cognito.admin_get_user(
        UserPoolId=two_companies.pool.user_pool_id, Username=f"globex/{GLOBEX_ADMIN}"
    )
    assert not globex_user.get("UserMFASettingList")
    _globex_unchanged(two_companies)


def test_another_companys_csrf_token_does_not_work(two_companies: ConsoleWorld) -> None:
    acme, _ = two_companies.signed_in("acme", ACME_ADMIN)
    _, globex_csrf = two_companies.signed_in("globex", "second@globex.test")
    page = acme.post("/console/environments/remove", {"name": "acme-prod", "csrf_token": globex_csrf})
    assert page.status == 403
    assert [e.name for e in two_companies.store.list_environments("acme")] == ["acme-prod"]


def test_signing_out_naming_another_company_ends_only_ones_own_session(two_companies: ConsoleWorld) -> None:
    acme, acme_csrf = two_companies.signed_in("acme", ACME_ADMIN)
    globex, _ = two_companies.signed_in("globex", "second@globex.test")
    out = acme.post(
        "/console/sign-out", {"csrf_token": acme_csrf, "company_alias": "globex", "alias": "globex"}
    )
    assert out.location == "/console/"
    assert acme.get("/console/licence").location == "/console/"
    assert globex.get("/console/licence").status == 200
