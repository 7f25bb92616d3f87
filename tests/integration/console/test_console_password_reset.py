"""Password reset by email on moto's Cognito (ForgotPassword, ConfirmForgotPassword): the sign-in page's
link, the same answer whoever asks, the mailed code (the mailbox shows the code moto issued, the one the
confirmation accepts), wrong, used and other-company codes refused alike, the policy's refusal of a weak
password, and CSRF and security headers on both forms.

moto checks a code only when it has its own form (``moto-confirmation-code:NNNNNN``, what it issues) and
takes any other as right; the wrong codes here are of moto's form so that moto, like Cognito, refuses
them. moto's ConfirmForgotPassword does not apply the pool's password policy: the console checks it
first (``domain.console.password_policy_problem``), and maps Cognito's InvalidPasswordException to the
same words when Cognito refuses.
"""

from __future__ import annotations

import re

import pytest

from connect_metering.domain.console import RESET_CODE_SENT, WEAK_PASSWORD, WRONG_RESET_CODE
from connect_metering.web.console_pages import CONSOLE_CONTENT_SECURITY_POLICY
from tests.integration.console.conftest import PASSWORD, ConsoleWorld, csrf_of, sign_in
from tests.registration_support import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

EMAIL = "ops@acme.test"
NEW_PASSWORD = "Brand-New-Passw0rd?"
RESET_SUBJECT = "Your password reset code"


def html(text: str) -> str:
    return text.replace("'", "&#x27;")


def ask_code(browser: Browser, alias: str, email: str) -> Page:
    token = csrf_of(browser.get("/console/forgot-password"))
    return browser.post(
        "/console/forgot-password", {"company_alias": alias, "email": email, "csrf_token": token}
    )


def confirm(browser: Browser, alias: str, email: str, code: str, new_password: str = NEW_PASSWORD) -> Page:
    token = csrf_of(browser.get("/console/reset-password"))
    form = {
        "company_alias": alias,
        "email": email,
        "code": code,
        "new_password": new_password,
        "csrf_token": token,
    }
    return browser.post("/console/reset-password", form)


def reset_mails(world: ConsoleWorld) -> int:
    return sum(1 for mail in world.mailbox.mails if mail.subject == RESET_SUBJECT)


def test_sign_in_page_links_to_the_reset(console: ConsoleWorld) -> None:
    page = console.browser().get("/console/")
    assert 'href="/console/forgot-password"' in page.body
    assert "Forgot your password?" in page.body


def test_a_mailed_code_resets_the_password(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    browser = console.browser()
    asked = ask_code(browser, "acme", EMAIL)
    assert asked.status == 200
    assert html(RESET_CODE_SENT) in asked.body
    assert 'name="code"' in asked.body and 'name="new_password"' in asked.body
    code = console.mailbox.reset_code(EMAIL)
    assert console.mailbox.mails[-1].to == EMAIL
    done = confirm(browser, "acme", EMAIL, code)
    assert done.status == 200
    assert "Your password is changed" in done.body
    assert sign_in(console.browser(), "acme", EMAIL, PASSWORD).status == 401
    assert sign_in(console.browser(), "acme", EMAIL, NEW_PASSWORD).status == 303
    # The code is used: it does not work twice.
    again = confirm(console.browser(), "acme", EMAIL, code, "Another-Passw0rd#")
    assert again.status == 401
    assert html(WRONG_RESET_CODE) in again.body
    assert sign_in(console.browser(), "acme", EMAIL, NEW_PASSWORD).status == 303


def test_the_answer_is_the_same_whoever_asks(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    console.invitations.invite("globex", "it@globex.test")

    def normalised(page: Page, alias: str, email: str) -> str:
        body = re.sub(r'name="csrf_token" value="[^"]*"', "", page.body)
        return body.replace(f'value="{alias}"', "").replace(f'value="{email}"', "")

    answers = {
        (alias, email): ask_code(console.browser(), alias, email)
        for alias, email in (
            ("acme", EMAIL),  # an administrator
            ("globex", EMAIL),  # another company's alias
            ("acme", "nobody@acme.test"),  # nobody
            ("acme", "it@globex.test"),  # another company's administrator under this alias
            ("no such alias!", "not-an-email"),  # malformed
        )
    }
    statuses = {page.status for page in answers.values()}
    bodies = {normalised(page, *who) for who, page in answers.items()}
    assert statuses == {200}
    assert len(bodies) == 1
    headers = [{k: v for k, v in page.headers.items()} for page in answers.values()]
    assert all(h == headers[0] for h in headers)
    # Only the real administrator of acme got a mail.
    assert [mail.to for mail in console.mailbox.mails if mail.subject == RESET_SUBJECT] == [EMAIL]


def test_wrong_or_other_company_codes_are_refused_alike(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    ask_code(console.browser(), "acme", EMAIL)
    code = console.mailbox.reset_code(EMAIL)
    wrong = (
        "moto-confirmation-code:000000"
        if code != "moto-confirmation-code:000000"
        else "moto-confirmation-code:000001"
    )
    refusals = [
        confirm(console.browser(), "acme", EMAIL, wrong),  # a wrong code
        confirm(console.browser(), "globex", EMAIL, code),  # the right code under another company's alias
        confirm(console.browser(), "acme", "nobody@acme.test", code),  # nobody
        confirm(console.browser(), "acme", EMAIL, "with space"),  # malformed
    ]
    for page in refusals:
        assert page.status == 401
        assert html(WRONG_RESET_CODE) in page.body
    assert sign_in(console.browser(), "acme", EMAIL, PASSWORD).status == 303
    # The real code still works afterwards.
    assert confirm(console.browser(), "acme", EMAIL, code).status == 200


def test_a_weak_password_is_refused_with_the_policy(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    ask_code(console.browser(), "acme", EMAIL)
    code = console.mailbox.reset_code(EMAIL)
    for weak in ("short1!A", "no-digits-Here!", "n0-upper-case!!", "N0-LOWER-CASE!!", "NoSymbols12345"):
        page = confirm(console.browser(), "acme", EMAIL, code, weak)
        assert page.status == 422, weak
        assert WEAK_PASSWORD in page.body
        assert 'id="new_password-error"' in page.body
    assert sign_in(console.browser(), "acme", EMAIL, PASSWORD).status == 303


def test_reset_ends_earlier_sessions(console: ConsoleWorld) -> None:
    browser, _ = console.signed_in("acme", EMAIL)
    ask_code(console.browser(), "acme", EMAIL)
    console.clock.advance_to(console.clock.now().replace(second=30))
    assert confirm(console.browser(), "acme", EMAIL, console.mailbox.reset_code(EMAIL)).status == 200
    assert browser.get("/console/licence").location == "/console/"


def test_reset_forms_need_the_double_submit_token_and_send_the_headers(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    mails = reset_mails(console)
    browser = console.browser()
    for path in ("/console/forgot-password", "/console/reset-password"):
        page = browser.get(path)
        assert page.headers["Content-Security-Policy"] == CONSOLE_CONTENT_SECURITY_POLICY
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        assert any(c.startswith("cm_console_form=") and "HttpOnly" in c for c in page.cookies)
        token = csrf_of(page)
        form = {"company_alias": "acme", "email": EMAIL, "code": "x", "new_password": NEW_PASSWORD}
        assert browser.post(path, form).status == 403
        assert browser.post(path, {**form, "csrf_token": token + "x"}).status == 403
        assert browser.post(path, {**form, "csrf_token": token}, send_cookies=False).status == 403
    assert reset_mails(console) == mails
    assert sign_in(console.browser(), "acme", EMAIL, PASSWORD).status == 303
