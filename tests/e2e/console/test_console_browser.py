"""A real browser (headless Chromium through Playwright, Debian's `chromium`) through `serve`: from the
simulated AWS Marketplace through sign-up, the invitation in /dev/mailbox, the first sign-in with a new
password and every console page; the password reset by email (the code from /dev/mailbox) and TOTP
two-step sign-in (enrolment, then a sign-in with a code computed from the secret the page shows, which
moto checks; a new device, turning it off, and another administrator resetting it); and the usage page of a preloaded replay with its billed minutes.

Screenshots are kept under test-artifacts/console/. Without Chromium the tests skip locally and fail in
CI (CI=true), as the registration browser test does.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from playwright.sync_api import Browser, Page

from connect_metering.local.serve import LOCAL_BUS_ARN, LocalServer
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


# As a stack configured with forwarder_template_url has it: the environments page then links each
# unverified environment to the CloudFormation quick-create page (the walk checks the link, never opens it).
TEMPLATE_URL = "https://connect-metering-templates.s3.eu-west-2.amazonaws.com/forwarder.yaml"


@pytest.fixture(scope="module")
def site(chromium: Browser) -> Iterator[LocalServer]:
    before = os.environ.get("FORWARDER_TEMPLATE_URL")
    os.environ["FORWARDER_TEMPLATE_URL"] = TEMPLATE_URL
    try:
        with LocalServer(port=0) as server:
            server.start()
            yield server
    finally:
        if before is None:
            os.environ.pop("FORWARDER_TEMPLATE_URL", None)
        else:
            os.environ["FORWARDER_TEMPLATE_URL"] = before


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


def first_sign_in(tab: Page, url: str, alias: str, email: str, new_password: str) -> None:
    """The invitation's temporary password from /dev/mailbox, then the first sign-in choosing a new one."""
    assert goto(tab, f"{url}/dev/mailbox") == 200
    temporary = temporary_password(tab, email)
    assert goto(tab, f"{url}/console/") == 200
    sign_in(tab, alias, email, temporary)
    tab.fill("#password", temporary)
    tab.fill("#new_password", new_password)
    assert click(tab, "#sign-in") == 200
    assert tab.url == f"{url}/console/licence"


def check_quick_create_link(tab: Page, environment: str, region: str) -> None:
    """The environment's forwarder link: its region, the template, the seller bus and its own code."""
    row = tab.locator("tr.environment", has_text=environment)
    code = row.locator("code").nth(1).text_content() or ""
    link = urlsplit(row.locator("a.quick-create").get_attribute("href") or "")
    assert parse_qs(link.query) == {"region": [region]}
    assert parse_qs(link.fragment.partition("?")[2]) == {
        "templateURL": [TEMPLATE_URL],
        "stackName": ["connect-metering-forwarder"],
        "param_SellerEventBusArn": [LOCAL_BUS_ARN],
        "param_VerificationCode": [code],
    }


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
    check_quick_create_link(tab, "walk-east", "us-east-1")
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


RESET_EMAIL = "ops@resetco.example"
RESET_INSTANCE = "arn:aws:connect:eu-west-1:777788889999:instance/eeeeeeee-0000-0000-0000-000000000001"
RESET_PASSWORD = "Reset-Passw0rd!!"


def sign_up(site: LocalServer, tab: Page, alias: str, name: str, email: str, instance: str) -> None:
    assert goto(tab, f"{site.url}/dev/marketplace?pricing=usage") == 200
    assert click(tab, "#setup") == 200
    tab.fill("#company_alias", alias)
    tab.fill("#company_name", name)
    tab.fill("#contact_email", email)
    tab.fill("#instance_arn", instance)
    assert click(tab, "button[type=submit]") == 200
    assert text(tab, "h1") == "Your company is registered"


def reset_code(tab: Page, email: str) -> str:
    body = tab.locator(".mail", has_text="password reset code").first.locator(".body").text_content() or ""
    assert email in body
    found = re.search(r"Your code is (\S+) ", body)
    assert found, body
    return found.group(1)


def totp_now(secret: str) -> str:
    """What an authenticator app given ``secret`` shows now (RFC 6238: HMAC-SHA1, 6 digits, 30 s)."""
    if 30 - time.time() % 30 < 3:  # too near the step's end: wait for the next one
        time.sleep(3.5)
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    totp = TOTP(key, 6, SHA1(), 30, enforce_key_length=False)  # noqa: S303 (TOTP is HMAC-SHA1, as Cognito)
    return totp.generate(time.time()).decode()


def test_password_reset_by_email_and_two_step_sign_in(site: LocalServer, tab: Page) -> None:
    sign_up(site, tab, "resetco", "Reset Co", RESET_EMAIL, RESET_INSTANCE)
    first_sign_in(tab, site.url, "resetco", RESET_EMAIL, PASSWORD)
    assert click(tab, "#sign-out") == 200
    reset_password_by_email(site, tab)
    assert sign_in(tab, "resetco", RESET_EMAIL, PASSWORD) == 401  # the old one no longer works
    assert sign_in(tab, "resetco", RESET_EMAIL, RESET_PASSWORD) == 200
    assert tab.url == f"{site.url}/console/licence"
    secret = turn_on_two_step_sign_in_and_use_it(site, tab)
    secret = replace_the_authenticator_then_turn_it_off(site, tab, secret)
    another_administrator_resets_it(site, tab)


def reset_password_by_email(site: LocalServer, tab: Page) -> None:
    """Forgot the password: the link, alias and email, the code in the mailbox, a new password."""
    assert click(tab, "#forgot-password") == 200
    assert tab.url == f"{site.url}/console/forgot-password"
    shot(tab, "20-forgot-password")
    tab.fill("#company_alias", "resetco")
    tab.fill("#email", RESET_EMAIL)
    assert click(tab, "#send-code") == 200
    assert "a code is on its way" in text(tab, "main")
    shot(tab, "21-reset-code-asked")
    assert goto(tab, f"{site.url}/dev/mailbox") == 200
    code = reset_code(tab, RESET_EMAIL)
    shot(tab, "22-mailbox-reset-code")
    assert goto(tab, f"{site.url}/console/reset-password") == 200
    tab.fill("#company_alias", "resetco")
    tab.fill("#email", RESET_EMAIL)
    tab.fill(
        "#code",
        "moto-confirmation-code:000000" if not code.endswith(":000000") else "moto-confirmation-code:000001",
    )
    tab.fill("#new_password", RESET_PASSWORD)
    assert click(tab, "#reset-password") == 401
    assert "not right or has expired" in text(tab, "main")
    shot(tab, "23-reset-wrong-code")
    tab.fill("#code", code)
    tab.fill("#new_password", "weak")
    assert click(tab, "#reset-password") == 422
    assert "stronger password" in text(tab, "main")
    tab.fill("#code", code)
    tab.fill("#new_password", RESET_PASSWORD)
    assert click(tab, "#reset-password") == 200
    assert "Your password is changed" in text(tab, "main")
    shot(tab, "24-password-changed")


def turn_on_two_step_sign_in_and_use_it(site: LocalServer, tab: Page) -> str:
    """The password again, the secret as text and a URI, the first code; then a sign-in with a code."""
    assert goto(tab, f"{site.url}/console/mfa") == 200
    assert "off" in text(tab, "#mfa-state")
    tab.fill("#password", RESET_PASSWORD)
    assert click(tab, "#start-mfa") == 200
    secret = text(tab, "#mfa-secret")
    assert (tab.get_attribute("#mfa-uri", "href") or "").startswith("otpauth://totp/connect-metering")
    shot(tab, "25-mfa-secret")
    tab.fill("#code", totp_now(secret))
    assert click(tab, "#verify-mfa") == 200
    assert "on" in text(tab, "#mfa-state")
    shot(tab, "26-mfa-on")
    assert click(tab, "#sign-out") == 200

    assert sign_in(tab, "resetco", RESET_EMAIL, RESET_PASSWORD) == 200
    assert tab.is_visible("#code")
    shot(tab, "27-sign-in-code")
    tab.fill("#code", totp_now(secret))
    assert click(tab, "#submit-code") == 200
    assert tab.url == f"{site.url}/console/licence"
    assert text(tab, "#session-company") == "resetco"
    shot(tab, "28-signed-in-with-code")
    return secret


def change_two_step_sign_in(tab: Page, secret: str, button: str) -> int:
    tab.fill("#password", RESET_PASSWORD)
    tab.fill("#code", totp_now(secret))
    return click(tab, button)


def replace_the_authenticator_then_turn_it_off(site: LocalServer, tab: Page, secret: str) -> str:
    """A new device (password and current code, the new key's first code), then two-step sign-in off;
    then on again, for the next step. Returns the key in use."""
    assert goto(tab, f"{site.url}/console/mfa") == 200
    assert change_two_step_sign_in(tab, secret, "#replace-mfa") == 200
    new = text(tab, "#mfa-secret")
    assert "new key is being set up" in text(tab, "#mfa-state")
    shot(tab, "29-mfa-new-device")
    tab.fill("#code", totp_now(new))
    assert click(tab, "#verify-mfa") == 200
    assert "new device is in use" in text(tab, "main")
    shot(tab, "30-mfa-replaced")
    assert change_two_step_sign_in(tab, new, "#turn-off-mfa") == 200
    assert "off" in text(tab, "#mfa-state")
    shot(tab, "31-mfa-off")
    tab.fill("#password", RESET_PASSWORD)
    assert click(tab, "#start-mfa") == 200
    secret = text(tab, "#mfa-secret")
    tab.fill("#code", totp_now(secret))
    assert click(tab, "#verify-mfa") == 200
    assert "on" in text(tab, "#mfa-state")
    return secret


def another_administrator_resets_it(site: LocalServer, tab: Page) -> None:
    """A lost device: a second administrator turns the first one's two-step sign-in off, and the first
    signs in with the password alone."""
    second = "second@resetco.example"
    assert goto(tab, f"{site.url}/console/users") == 200
    tab.fill("#email", second)
    assert click(tab, "#invite") == 201
    assert click(tab, "#sign-out") == 200
    first_sign_in(tab, site.url, "resetco", second, PASSWORD)
    assert goto(tab, f"{site.url}/console/users") == 200
    assert tab.locator(f'button[aria-label="Turn off two-step sign-in of {second}"]').count() == 0
    assert click(tab, f'button[aria-label="Turn off two-step sign-in of {RESET_EMAIL}"]') == 200
    assert f"Two-step sign-in is off for {RESET_EMAIL}" in text(tab, "main")
    shot(tab, "32-mfa-reset-by-another-administrator")
    assert click(tab, "#sign-out") == 200
    assert sign_in(tab, "resetco", RESET_EMAIL, RESET_PASSWORD) == 200
    assert tab.url == f"{site.url}/console/licence"
