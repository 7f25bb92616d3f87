"""A real browser (headless Chromium) through `connect-metering serve`: the whole happy path from the
simulated AWS Marketplace page to the success page, an expired token, and a taken alias.

Screenshots are kept under test-artifacts/browser/. Without Chromium the tests skip locally and fail
in CI (CI=true), where `.ci/run` installs Debian's `chromium` package.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connect_metering.local.serve import LocalServer
from tests.conftest import REPO_ROOT
from tests.e2e.registration.chromium import Chromium, Tab, find_chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("browser"),
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
INSTANCE = "arn:aws:connect:us-west-2:222233334444:instance/aaaaaaaa-bbbb-cccc-dddd-000000000001"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        reason = "headless Chromium is needed for the browser test: apt-get install -y chromium (or set CHROMIUM_BIN)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    with Chromium(binary, tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


@pytest.fixture(scope="module")
def site(chromium: Chromium, served: LocalServer) -> LocalServer:
    """`serve`, started only once Chromium is known to be there."""
    return served


@pytest.fixture
def tab(chromium: Chromium) -> Tab:
    return chromium.new_tab()


def shot(tab: Tab, name: str) -> Path:
    return tab.screenshot(ARTIFACTS / f"{name}.png")


def fill_signup(tab: Tab, alias: str, name: str) -> None:
    tab.fill("#company_alias", alias)
    tab.fill("#company_name", name)
    tab.fill("#contact_email", "ops@example.com")


def test_the_happy_path_from_marketplace_to_the_success_page(site: LocalServer, tab: Tab) -> None:
    assert tab.goto(f"{site.url}/dev/marketplace?pricing=contract") == 200
    assert "AWS Marketplace (simulated)" in tab.text("h1")
    shot(tab, "01-marketplace")

    assert tab.click("#setup") == 200  # POST /register -> 303 -> GET /signup
    assert tab.url.startswith(f"{site.url}/signup?id=")
    assert "token" not in tab.url
    assert tab.text("h1") == "Create your company account"
    assert "contract" in tab.text("main p")
    shot(tab, "02-signup")

    fill_signup(tab, "browserco", "Browser & Co <Ltd>")
    tab.fill("#instance_arn", INSTANCE)
    assert tab.click("button[type=submit]") == 200  # POST /signup -> 303 -> GET success
    assert tab.text("h1") == "Your company is registered"
    assert tab.text("#company-alias") == "browserco"
    assert "Browser & Co <Ltd>" in tab.text("main")  # shown as text, not markup
    assert "Deploy the forwarder template" in tab.text("main")
    shot(tab, "03-success")

    licence = site.aws.tenancy.list_subscriptions("browserco")
    assert [s.started is not None for s in licence] == [True]  # the early activation was applied
    assert [e.instance_arn.arn for e in site.aws.tenancy.list_environments("browserco")] == [INSTANCE]


def test_an_expired_token_gets_a_clear_page(site: LocalServer, tab: Tab) -> None:
    assert tab.goto(f"{site.url}/dev/marketplace?token=expired") == 200
    assert tab.click("#setup") == 410
    assert tab.text("h1") == "This registration link has expired"
    assert "Set up your account" in tab.text("main")
    shot(tab, "04-expired-token")


def test_a_taken_alias_keeps_the_form_and_says_why_at_the_field(site: LocalServer, tab: Tab) -> None:
    for alias in ("takenco", "takenco"):
        assert tab.goto(f"{site.url}/dev/marketplace") == 200
        assert tab.click("#setup") == 200
        fill_signup(tab, alias, "Second Company")
        status = tab.click("button[type=submit]")
    assert status == 409
    assert "already taken" in tab.text("#company_alias-error")
    assert tab.value("#company_alias") == "takenco"
    assert tab.value("#company_name") == "Second Company"
    assert "There is a problem" in tab.text("[role=alert]")
    shot(tab, "05-alias-taken")
