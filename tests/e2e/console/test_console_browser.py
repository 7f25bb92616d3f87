"""A real browser (headless Chromium through Playwright, Debian's `chromium`) through `serve`: from the
simulated AWS Marketplace through sign-up, the invitation in /dev/mailbox, the first sign-in with a new
password and every console page; and the usage page of a preloaded replay with its billed minutes.

Screenshots are kept under test-artifacts/console/. Without Chromium the tests skip locally and fail in
CI (CI=true), as the registration browser test does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from connect_metering.local.serve import LocalServer
from tests.conftest import REPO_ROOT
from tests.e2e.registration.test_browser import TIMEOUT_MS, chromium, click, goto, text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("browser"),
    pytest.mark.filterwarnings("ignore:No application metrics"),
]
__all__ = ["chromium"]  # the fixture, shared with the registration browser test

ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
INSTANCE = "arn:aws:connect:eu-west-2:444455556666:instance/dddddddd-0000-0000-0000-000000000001"
SECOND = "arn:aws:connect:us-east-1:444455556666:instance/dddddddd-0000-0000-0000-000000000002"
EMAIL = "ops@walkco.example"
PASSWORD = "Walk-Passw0rd!"


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    page = chromium.new_page(viewport={"width": 1100, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def site(chromium: Browser) -> Iterator[LocalServer]:
    with LocalServer(port=0) as server:
        server.start()
        yield server


def shot(tab: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 0
    return path


def temporary_password(tab: Page, email: str) -> str:
    body = tab.locator(".mail", has_text=email).first.locator(".body").text_content() or ""
    found = re.search(r"temporary password (\S+) ", body)
    assert found, body
    return found.group(1)


def sign_in(tab: Page, alias: str, email: str, password: str) -> int:
    tab.fill("#company_alias", alias)
    tab.fill("#email", email)
    tab.fill("#password", password)
    return click(tab, "#sign-in")


def test_from_marketplace_to_every_console_page(site: LocalServer, tab: Page) -> None:
    assert goto(tab, f"{site.url}/dev/marketplace?pricing=contract") == 200
    assert click(tab, "#setup") == 200
    tab.fill("#company_alias", "walkco")
    tab.fill("#company_name", "Walk & Co")
    tab.fill("#contact_email", EMAIL)
    tab.fill("#instance_arn", INSTANCE)
    assert click(tab, "button[type=submit]") == 200
    assert text(tab, "h1") == "Your company is registered"
    shot(tab, "01-signed-up")

    assert goto(tab, f"{site.url}/dev/mailbox") == 200
    assert EMAIL in text(tab, "main")
    temporary = temporary_password(tab, EMAIL)
    shot(tab, "02-mailbox")

    assert goto(tab, f"{site.url}/console/") == 200
    assert sign_in(tab, "walkco", EMAIL, temporary) == 200
    assert tab.is_visible("#new_password")
    shot(tab, "03-new-password")
    tab.fill("#password", temporary)
    tab.fill("#new_password", PASSWORD)
    assert click(tab, "#sign-in") == 200  # 303 -> licence
    assert tab.url == f"{site.url}/console/licence"
    licence = text(tab, "#licence")
    assert "Walk & Co (walkco)" in licence
    assert "contract" in licence
    assert "10" in licence  # licensed agents
    assert text(tab, "#session-company") == "walkco"
    shot(tab, "04-licence")

    assert goto(tab, f"{site.url}/console/environments") == 200
    assert INSTANCE in text(tab, "#environments")
    tab.fill("#name", "walk-east")
    tab.fill("#instance_arn", SECOND)
    assert click(tab, "#add-environment") == 201
    assert SECOND in text(tab, "#environments")
    assert tab.locator("a.quick-create").count() == 0 or "VerificationCode" in text(tab, "main")
    shot(tab, "05-environments")

    assert goto(tab, f"{site.url}/console/usage") == 200
    assert "This month" in text(tab, "#this-month")
    assert "Not metered yet" in text(tab, "main")
    shot(tab, "06-usage")

    assert goto(tab, f"{site.url}/console/users") == 200
    tab.fill("#email", "second@walkco.example")
    assert click(tab, "#invite") == 201
    assert "second@walkco.example" in text(tab, "#administrators")
    shot(tab, "07-administrators")

    assert click(tab, "#sign-out") == 200
    assert tab.url == f"{site.url}/console/"
    assert goto(tab, f"{site.url}/console/licence") == 200  # redirected to sign-in
    assert tab.url == f"{site.url}/console/"
    shot(tab, "08-signed-out")


def test_a_wrong_alias_is_refused_like_a_wrong_password(site: LocalServer, tab: Page) -> None:
    assert goto(tab, f"{site.url}/console/") == 200
    assert sign_in(tab, "otherco", EMAIL, PASSWORD) == 401
    wrong_alias = text(tab, "#sign-in-error")
    assert sign_in(tab, "walkco", EMAIL, "Not-the-Passw0rd") == 401
    assert text(tab, "#sign-in-error") == wrong_alias
    shot(tab, "09-refused")
