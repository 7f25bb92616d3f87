"""A real browser (headless Chromium through Playwright) through `connect-metering serve`: the whole happy
path from the simulated AWS Marketplace page to the success page, an expired token, and a taken alias.

Playwright drives Debian's `chromium` (`executable_path`): no browser is downloaded, so `playwright
install` is never run. Screenshots are kept under test-artifacts/browser/. Without Chromium the tests
skip locally and fail in CI (CI=true), where `.ci/run` installs Debian's `chromium` package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from connect_metering.local.serve import LocalServer
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("browser"),
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
INSTANCE = "arn:aws:connect:us-west-2:222233334444:instance/aaaaaaaa-bbbb-cccc-dddd-000000000001"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
# Every wait (navigation, an element to appear) gives up after this long, in milliseconds.
TIMEOUT_MS = 20_000


def find_chromium() -> str | None:
    """Debian's `chromium` (or CHROMIUM_BIN): Playwright launches it instead of a browser of its own."""
    configured = os.environ.get("CHROMIUM_BIN")
    if configured:
        return configured if Path(configured).is_file() else None
    found = shutil.which("chromium")
    if found:
        return found
    return DEBIAN_CHROMIUM if Path(DEBIAN_CHROMIUM).is_file() else None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        reason = "headless Chromium is needed for the browser test: apt-get install -y chromium (or set CHROMIUM_BIN)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=["--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(chromium: Browser, served: LocalServer) -> LocalServer:
    """`serve`, started only once Chromium is known to be there."""
    return served


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    page = chromium.new_page(viewport={"width": 1024, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()


def goto(tab: Page, url: str) -> int:
    """Open a URL; the HTTP status of the document it ends on."""
    response = tab.goto(url)
    assert response is not None
    return response.status


def click(tab: Page, selector: str) -> int:
    """Click what submits a form; the HTTP status of the document it leads to (after any redirect)."""
    with tab.expect_navigation() as navigation:
        tab.click(selector)
    response = navigation.value
    assert response is not None
    return response.status


def text(tab: Page, selector: str) -> str:
    return tab.text_content(selector) or ""


def shot(tab: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=path, full_page=True)
    return path


def fill_signup(tab: Page, alias: str, name: str) -> None:
    tab.fill("#company_alias", alias)
    tab.fill("#company_name", name)
    tab.fill("#contact_email", "ops@example.com")


def test_the_happy_path_from_marketplace_to_the_success_page(site: LocalServer, tab: Page) -> None:
    assert goto(tab, f"{site.url}/dev/marketplace?pricing=contract") == 200
    assert "AWS Marketplace (simulated)" in text(tab, "h1")
    shot(tab, "01-marketplace")

    assert click(tab, "#setup") == 200  # POST /register -> 303 -> GET /signup
    assert tab.url.startswith(f"{site.url}/signup?id=")
    assert "token" not in tab.url
    assert text(tab, "h1") == "Create your company account"
    assert "contract" in text(tab, "main p")
    shot(tab, "02-signup")

    fill_signup(tab, "browserco", "Browser & Co <Ltd>")
    tab.fill("#instance_arn", INSTANCE)
    assert click(tab, "button[type=submit]") == 200  # POST /signup -> 303 -> GET success
    assert text(tab, "h1") == "Your company is registered"
    assert text(tab, "#company-alias") == "browserco"
    assert "Browser & Co <Ltd>" in text(tab, "main")  # shown as text, not markup
    assert "Deploy the forwarder template" in text(tab, "main")
    shot(tab, "03-success")

    licence = site.aws.tenancy.list_subscriptions("browserco")
    assert [s.started is not None for s in licence] == [True]  # the early activation was applied
    assert [e.instance_arn.arn for e in site.aws.tenancy.list_environments("browserco")] == [INSTANCE]


def test_an_expired_token_gets_a_clear_page(site: LocalServer, tab: Page) -> None:
    assert goto(tab, f"{site.url}/dev/marketplace?token=expired") == 200
    assert click(tab, "#setup") == 410
    assert text(tab, "h1") == "This registration link has expired"
    assert "Set up your account" in text(tab, "main")
    shot(tab, "04-expired-token")


def test_a_taken_alias_keeps_the_form_and_says_why_at_the_field(site: LocalServer, tab: Page) -> None:
    for alias in ("takenco", "takenco"):
        assert goto(tab, f"{site.url}/dev/marketplace") == 200
        assert click(tab, "#setup") == 200
        fill_signup(tab, alias, "Second Company")
        status = click(tab, "button[type=submit]")
    assert status == 409
    assert "already taken" in text(tab, "#company_alias-error")
    assert tab.input_value("#company_alias") == "takenco"
    assert tab.input_value("#company_name") == "Second Company"
    assert "There is a problem" in text(tab, "[role=alert]")
    shot(tab, "05-alias-taken")
