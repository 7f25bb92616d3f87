"""Optional TOTP MFA on moto's Cognito: enrolment (password again, AssociateSoftwareToken, the secret as
text and an ``otpauth://`` URI, VerifySoftwareToken, SetUserMFAPreference), then sign-ins answered with
the SOFTWARE_TOKEN_MFA challenge and a code (AdminRespondToAuthChallenge).

moto takes any TOTP code unless ``MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP`` is true; the console's offline
pool sets it (``ConsolePool.environment``), and moto then checks codes as RFC 6238 at the wall clock
against the one fixed secret AssociateSoftwareToken hands out. So these tests compute real codes from
the secret the page shows, and wrong codes are refused by moto as by Cognito. The flow's shape, wrong or
tampered or expired challenges and enrolments, and CSRF are tested too.
"""

from __future__ import annotations

import base64
import html
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from connect_metering.domain.console import MAX_FAILED_SIGN_INS, sign_in_name
from connect_metering.domain.console_mfa import WRONG_MFA_CODE
from tests.integration.console.conftest import PASSWORD, ConsoleWorld, csrf_of, sign_in
from tests.integration.console.test_console_audit import audit_items, subject_of
from tests.registration_support import Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

EMAIL = "ops@acme.test"


def totp(secret: str, offset_steps: int = 0) -> str:
    """The code an authenticator app shows for ``secret`` now (a step later or earlier with an offset)."""
    if 30 - time.time() % 30 < 2:  # too near the step's end for moto to check it in the same step
        time.sleep(2.5)
    key = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    return (
        TOTP(key, 6, SHA1(), 30, enforce_key_length=False)  # noqa: S303 (RFC 6238 TOTP is HMAC-SHA1, as Cognito)
        .generate(time.time() + 30 * offset_steps)
        .decode()
    )


def secret_of(page: Page) -> str:
    found = re.search(r'<code id="mfa-secret">([^<]+)</code>', page.body)
    assert found, page.body[:800]
    return found.group(1)


def enrol(world: ConsoleWorld, browser: Browser, csrf: str) -> str:
    started = browser.post("/console/mfa/start", {"password": PASSWORD, "csrf_token": csrf})
    assert started.status == 200, started.body[:800]
    secret = secret_of(started)
    done = browser.post("/console/mfa/verify", {"code": totp(secret), "csrf_token": csrf})
    assert done.status == 200, done.body[:800]
    assert "<strong>on</strong>" in done.body
    return secret


def mfa_settings(world: ConsoleWorld, alias: str, email: str) -> Any:
    user = world.cognito.admin_get_user(
        UserPoolId=world.pool.user_pool_id, Username=sign_in_name(alias, email)
    )
    return user.get("UserMFASettingList") or []


def test_enrolment_shows_the_secret_and_turns_mfa_on(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    page = browser.get("/console/mfa")
    assert page.status == 200
    assert "<strong>off</strong>" in page.body
    assert (
        browser.post("/console/mfa/start", {"password": "Wrong-Passw0rd!", "csrf_token": csrf}).status == 401
    )
    started = browser.post("/console/mfa/start", {"password": PASSWORD, "csrf_token": csrf})
    assert started.status == 200
    secret = secret_of(started)
    uri = html.unescape(re.search(r'<a id="mfa-uri" href="([^"]+)"', started.body).group(1))  # type: ignore[union-attr]
    assert uri.startswith("otpauth://totp/connect-metering%3Aacme%2Fops%40acme.test?")
    assert f"secret={secret}" in uri and "issuer=connect-metering" in uri
    assert "<img" not in started.body and "https://" not in started.body.split("<main>", 1)[1]
    assert any(c.startswith("cm_console_mfa_setup=") and "HttpOnly" in c for c in started.cookies)
    # Reloading the page shows the set-up in progress.
    assert secret_of(browser.get("/console/mfa")) == secret
    wrong = totp(secret, offset_steps=5)
    refused = browser.post("/console/mfa/verify", {"code": wrong, "csrf_token": csrf})
    assert refused.status == 422
    assert secret_of(refused) == secret  # try again with the same key
    assert mfa_settings(console, "acme", EMAIL) == []
    done = browser.post("/console/mfa/verify", {"code": totp(secret), "csrf_token": csrf})
    assert done.status == 200
    assert "<strong>on</strong>" in done.body
    assert mfa_settings(console, "acme", EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    assert "<strong>on</strong>" in browser.get("/console/mfa").body
    # Audited by subject, like every console change.
    me = subject_of(console, "acme", EMAIL)
    assert [
        (i["outcome"], i["caller"]) for i in audit_items(console, "acme") if i["outcome"] == "mfa_enabled"
    ] == [("mfa_enabled", f"console:{me}")]
    # Already on: starting again is refused.
    assert browser.post("/console/mfa/start", {"password": PASSWORD, "csrf_token": csrf}).status == 409


def password_step(browser: Browser, alias: str = "acme", email: str = EMAIL) -> Page:
    page = sign_in(browser, alias, email, PASSWORD)
    assert page.status == 200, page.body[:500]
    assert 'name="code"' in page.body and 'action="/console/sign-in/code"' in page.body
    assert any(c.startswith("cm_console_mfa=") and "HttpOnly" in c for c in page.cookies)
    assert not any(c.startswith("cm_console=") for c in page.cookies)
    return page


def test_sign_in_asks_for_the_code_once_mfa_is_on(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    secret = enrol(console, browser, csrf)
    fresh = console.browser()
    step = password_step(fresh)
    assert fresh.get("/console/licence").location == "/console/"  # not signed in yet
    done = fresh.post("/console/sign-in/code", {"code": totp(secret), "csrf_token": csrf_of(step)})
    assert (done.status, done.location) == (303, "/console/licence")
    assert fresh.get("/console/licence").status == 200


def test_a_wrong_code_restarts_the_sign_in(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    secret = enrol(console, browser, csrf)
    fresh = console.browser()
    step = password_step(fresh)
    refused = fresh.post("/console/sign-in/code", {"code": totp(secret, 5), "csrf_token": csrf_of(step)})
    assert refused.status == 401
    assert WRONG_MFA_CODE in refused.body
    assert 'name="password"' in refused.body
    assert fresh.get("/console/licence").location == "/console/"
    for malformed in ("", "12345", "abcdef", "1234567"):
        step = password_step(fresh)
        assert (
            fresh.post("/console/sign-in/code", {"code": malformed, "csrf_token": csrf_of(step)}).status
            == 401
        )


def test_wrong_codes_count_towards_the_lockout(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    secret = enrol(console, browser, csrf)
    fresh = console.browser()
    for _ in range(MAX_FAILED_SIGN_INS):
        step = password_step(fresh)
        fresh.post("/console/sign-in/code", {"code": totp(secret, 5), "csrf_token": csrf_of(step)})
    assert sign_in(fresh, "acme", EMAIL, PASSWORD).status == 401  # locked, even with the right password
    console.clock.advance_to(console.clock.now() + timedelta(minutes=15))
    step = password_step(fresh)
    done = fresh.post("/console/sign-in/code", {"code": totp(secret), "csrf_token": csrf_of(step)})
    assert done.status == 303


def test_a_missing_tampered_or_expired_challenge_is_refused(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    secret = enrol(console, browser, csrf)
    # No challenge at all (no password step).
    lone = console.browser()
    token = csrf_of(lone.get("/console/"))
    assert lone.post("/console/sign-in/code", {"code": totp(secret), "csrf_token": token}).status == 401
    # A challenge rewritten to name another company or administrator: its signature no longer holds.
    fresh = console.browser()
    step = password_step(fresh)
    payload, mac = fresh.cookies["cm_console_mfa"].split(".")
    document = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(b'"acme"', b'"globex"')
    fresh.cookies["cm_console_mfa"] = base64.urlsafe_b64encode(document).decode().rstrip("=") + "." + mac
    assert (
        fresh.post("/console/sign-in/code", {"code": totp(secret), "csrf_token": csrf_of(step)}).status == 401
    )
    # A challenge whose 3 minutes are over.
    late = console.browser()
    step = password_step(late)
    console.clock.advance_to(console.clock.now() + timedelta(minutes=3))
    assert (
        late.post("/console/sign-in/code", {"code": totp(secret), "csrf_token": csrf_of(step)}).status == 401
    )
    # A session cookie is no challenge, and a challenge is no session.
    thief = console.browser()
    step = password_step(thief)
    thief.cookies["cm_console"] = thief.cookies["cm_console_mfa"]
    assert thief.get("/console/licence").location == "/console/"


def test_an_enrolment_belongs_to_its_session(console: ConsoleWorld) -> None:
    first, first_csrf = console.signed_in("acme", EMAIL)
    started = first.post("/console/mfa/start", {"password": PASSWORD, "csrf_token": first_csrf})
    secret = secret_of(started)
    other, other_csrf = console.signed_in("acme", "second@acme.test")
    other.cookies["cm_console_mfa_setup"] = first.cookies["cm_console_mfa_setup"]
    stolen = other.post("/console/mfa/verify", {"code": totp(secret), "csrf_token": other_csrf})
    assert stolen.status == 409
    assert mfa_settings(console, "acme", "second@acme.test") == []
    # Without any enrolment, verify asks to start again; after 10 minutes, so does the first one.
    assert other.post("/console/mfa/verify", {"code": "123456", "csrf_token": other_csrf}).status == 409
    console.clock.advance_to(console.clock.now() + timedelta(minutes=10))
    late = first.post("/console/mfa/verify", {"code": totp(secret), "csrf_token": first_csrf})
    assert late.status == 409
    assert mfa_settings(console, "acme", EMAIL) == []


def test_mfa_forms_need_their_csrf_tokens(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    for path, form in (
        ("/console/mfa/start", {"password": PASSWORD}),
        ("/console/mfa/verify", {"code": "123456"}),
    ):
        for token in (None, "wrong"):
            sent = dict(form) if token is None else {**form, "csrf_token": token}
            assert browser.post(path, sent).status == 403, path
    assert "cm_console_mfa_setup" not in browser.cookies
    secret = enrol(console, browser, csrf)
    fresh = console.browser()
    step = password_step(fresh)
    code = totp(secret)
    assert fresh.post("/console/sign-in/code", {"code": code, "csrf_token": "wrong"}).status == 403
    assert fresh.post("/console/sign-in/code", {"code": code}).status == 403
    assert (
        fresh.post(
            "/console/sign-in/code", {"code": code, "csrf_token": csrf_of(step)}, send_cookies=False
        ).status
        == 403
    )
