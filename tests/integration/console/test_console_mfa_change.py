"""Changing two-step sign-in once it is on, on moto's Cognito: the administrator turns it off or replaces
the authenticator (password and a current code, as a sign-in; a replacement is a new secret verified by
its first code before it takes effect), and an administrator resets another administrator's of the same
company (AdminSetUserMFAPreference). Each is audited by subject, needs its CSRF token, and never reaches
another company's administrator.

moto (TOTP checking on, as the offline pool sets it) hands out one fixed secret, so a "new" key is the
same string as the old: these tests check the flow, the Cognito settings and the trail, not that the two
keys differ.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from connect_metering.domain.console import MAX_FAILED_SIGN_INS
from connect_metering.domain.console_mfa import MFA_CURRENT_CODE, MFA_NOT_ON
from connect_metering.services.console import NO_SUCH_ADMINISTRATOR, OWN_MFA_RESET
from tests.integration.console import test_console_mfa as mfa
from tests.integration.console.conftest import PASSWORD, ConsoleWorld, csrf_of, sign_in
from tests.integration.console.test_console_audit import audit_items, subject_of

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

OTHER = "second@acme.test"
GLOBEX_ADMIN = "it@globex.test"


def outcomes(world: ConsoleWorld, alias: str, prefix: str = "mfa_") -> list[tuple[str, str, str]]:
    return [
        (item["outcome"], item["caller"], item["target"])
        for item in audit_items(world, alias)
        if item["outcome"].startswith(prefix)
    ]


def signs_in_with_password_alone(world: ConsoleWorld, alias: str, email: str) -> bool:
    page = sign_in(world.browser(), alias, email, PASSWORD)
    return page.status == 303 and page.location == "/console/licence"


def test_the_administrator_turns_mfa_off_with_password_and_code(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    secret = mfa.enrol(console, browser, csrf)
    page = browser.get("/console/mfa")
    assert 'action="/console/mfa/off"' in page.body and 'formaction="/console/mfa/replace"' in page.body
    assert 'name="password"' in page.body and 'name="code"' in page.body
    # A wrong password, a wrong code, a malformed code: refused, MFA stays on.
    wrong_password = browser.post(
        "/console/mfa/off", {"password": "Wrong-Passw0rd!", "code": mfa.totp(secret), "csrf_token": csrf}
    )
    assert wrong_password.status == 401
    wrong_code = browser.post(
        "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret, 5), "csrf_token": csrf}
    )
    assert wrong_code.status == 401
    assert MFA_CURRENT_CODE in wrong_code.body
    assert (
        browser.post("/console/mfa/off", {"password": PASSWORD, "code": "12", "csrf_token": csrf}).status
        == 401
    )
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    assert [outcome for outcome, _, _ in outcomes(console, "acme")] == ["mfa_enabled"]
    done = browser.post(
        "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret), "csrf_token": csrf}
    )
    assert done.status == 200, done.body[:800]
    assert "<strong>off</strong>" in done.body
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == []
    assert signs_in_with_password_alone(console, "acme", mfa.EMAIL)
    me = subject_of(console, "acme", mfa.EMAIL)
    assert ("mfa_disabled", f"console:{me}", f"administrator console:{me}") in outcomes(console, "acme")
    # Off already: asking again is refused with what is wrong.
    again = browser.post("/console/mfa/off", {"password": PASSWORD, "code": "123456", "csrf_token": csrf})
    assert again.status == 409
    assert MFA_NOT_ON in again.body


def test_wrong_passwords_and_codes_count_towards_the_lockout(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    secret = mfa.enrol(console, browser, csrf)
    for _ in range(MAX_FAILED_SIGN_INS):
        browser.post(
            "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret, 5), "csrf_token": csrf}
        )
    locked = browser.post(
        "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret), "csrf_token": csrf}
    )
    assert locked.status == 429
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    console.clock.advance_to(console.clock.now() + timedelta(minutes=15))
    done = browser.post(
        "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret), "csrf_token": csrf}
    )
    assert done.status == 200


def test_replacing_the_authenticator_takes_effect_once_verified(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    old = mfa.enrol(console, browser, csrf)
    refused = browser.post(
        "/console/mfa/replace", {"password": PASSWORD, "code": mfa.totp(old, 5), "csrf_token": csrf}
    )
    assert refused.status == 401
    assert "mfa-secret" not in refused.body
    started = browser.post(
        "/console/mfa/replace", {"password": PASSWORD, "code": mfa.totp(old), "csrf_token": csrf}
    )
    assert started.status == 200, started.body[:800]
    new = mfa.secret_of(started)
    assert "<strong>on</strong>" in started.body and "Use the new key" in started.body
    assert any(c.startswith("cm_console_mfa_setup=") and "HttpOnly" in c for c in started.cookies)
    # Not verified yet: MFA is still on, the sign-in still asks for a code, the page shows the set-up.
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    mfa.password_step(console.browser())
    assert mfa.secret_of(browser.get("/console/mfa")) == new
    wrong = browser.post("/console/mfa/verify", {"code": mfa.totp(new, 5), "csrf_token": csrf})
    assert wrong.status == 422
    assert mfa.secret_of(wrong) == new
    done = browser.post("/console/mfa/verify", {"code": mfa.totp(new), "csrf_token": csrf})
    assert done.status == 200, done.body[:800]
    assert "new device is in use" in done.body
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    me = subject_of(console, "acme", mfa.EMAIL)
    assert sorted(outcome for outcome, _, _ in outcomes(console, "acme")) == ["mfa_enabled", "mfa_replaced"]
    assert ("mfa_replaced", f"console:{me}", f"administrator console:{me}") in outcomes(console, "acme")
    # The sign-in asks for a code of the new key.
    fresh = console.browser()
    step = mfa.password_step(fresh)
    signed = fresh.post("/console/sign-in/code", {"code": mfa.totp(new), "csrf_token": csrf_of(step)})
    assert (signed.status, signed.location) == (303, "/console/licence")


def test_a_replacement_belongs_to_its_session(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    old = mfa.enrol(console, browser, csrf)
    started = browser.post(
        "/console/mfa/replace", {"password": PASSWORD, "code": mfa.totp(old), "csrf_token": csrf}
    )
    other, other_csrf = console.signed_in("acme", OTHER)
    other.cookies["cm_console_mfa_setup"] = browser.cookies["cm_console_mfa_setup"]
    stolen = other.post(
        "/console/mfa/verify", {"code": mfa.totp(mfa.secret_of(started)), "csrf_token": other_csrf}
    )
    assert stolen.status == 409
    assert mfa.mfa_settings(console, "acme", OTHER) == []


def test_an_administrator_resets_another_administrators_mfa(console: ConsoleWorld) -> None:
    owner, owner_csrf = console.signed_in("acme", mfa.EMAIL)
    other, other_csrf = console.signed_in("acme", OTHER)
    mfa.enrol(console, other, other_csrf)
    users = owner.get("/console/users")
    assert 'action="/console/users/mfa-reset"' in users.body
    assert f'aria-label="Turn off two-step sign-in of {OTHER}"' in users.body
    assert f'aria-label="Turn off two-step sign-in of {mfa.EMAIL}"' not in users.body  # not one's own
    done = owner.post("/console/users/mfa-reset", {"email": OTHER.upper(), "csrf_token": owner_csrf})
    assert done.status == 200, done.body[:800]
    assert f"Two-step sign-in is off for {OTHER}" in done.body
    assert mfa.mfa_settings(console, "acme", OTHER) == []
    assert signs_in_with_password_alone(console, "acme", OTHER)
    me, them = subject_of(console, "acme", mfa.EMAIL), subject_of(console, "acme", OTHER)
    assert outcomes(console, "acme", "mfa_reset") == [
        ("mfa_reset", f"console:{me}", f"administrator console:{them}")
    ]
    # Oneself (the page that asks for password and code is the way) and nobody: refused and audited.
    own = owner.post("/console/users/mfa-reset", {"email": mfa.EMAIL, "csrf_token": owner_csrf})
    assert own.status == 409
    assert OWN_MFA_RESET in own.body
    nobody = owner.post("/console/users/mfa-reset", {"email": "nobody@acme.test", "csrf_token": owner_csrf})
    assert nobody.status == 404
    assert NO_SUCH_ADMINISTRATOR in nobody.body
    refusals = [int(i["status"]) for i in audit_items(console, "acme") if i["outcome"] == "mfa_reset_refused"]
    assert sorted(refusals) == [404, 409]


def test_mfa_change_forms_need_their_csrf_tokens(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    secret = mfa.enrol(console, browser, csrf)
    other, _ = console.signed_in("acme", OTHER)
    for path, form in (
        ("/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret)}),
        ("/console/mfa/replace", {"password": PASSWORD, "code": mfa.totp(secret)}),
        ("/console/users/mfa-reset", {"email": mfa.EMAIL}),
    ):
        for token in (None, "wrong"):
            sent = dict(form) if token is None else {**form, "csrf_token": token}
            assert other.post(path, sent).status == 403, path
            assert browser.post(path, sent).status == 403, path
    assert mfa.mfa_settings(console, "acme", mfa.EMAIL) == ["SOFTWARE_TOKEN_MFA"]
    assert not browser.cookies.get("cm_console_mfa_setup")  # no replacement begun


def test_mfa_change_pages_send_the_security_headers(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", mfa.EMAIL)
    secret = mfa.enrol(console, browser, csrf)
    for page in (
        browser.get("/console/mfa"),
        browser.post(
            "/console/mfa/replace", {"password": PASSWORD, "code": mfa.totp(secret), "csrf_token": csrf}
        ),
        browser.post(
            "/console/mfa/off", {"password": PASSWORD, "code": mfa.totp(secret), "csrf_token": csrf}
        ),
        browser.post("/console/users/mfa-reset", {"email": OTHER, "csrf_token": csrf}),
    ):
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"


def _globex_mfa(world: ConsoleWorld) -> object:
    return mfa.mfa_settings(world, "globex", GLOBEX_ADMIN)


def test_resetting_another_companys_administrator_is_refused(console: ConsoleWorld) -> None:
    globex, globex_csrf = console.signed_in("globex", GLOBEX_ADMIN)
    mfa.enrol(console, globex, globex_csrf)
    acme, acme_csrf = console.signed_in("acme", mfa.EMAIL)
    for form in (
        {"email": GLOBEX_ADMIN},
        {"email": GLOBEX_ADMIN, "company_alias": "globex", "alias": "globex"},
        {"email": f"globex/{GLOBEX_ADMIN}"},
        {"email": f"../globex/{GLOBEX_ADMIN}"},
    ):
        page = acme.post("/console/users/mfa-reset", {**form, "csrf_token": acme_csrf})
        assert page.status == 404, (form, page.status)
        assert NO_SUCH_ADMINISTRATOR in page.body
    assert _globex_mfa(console) == ["SOFTWARE_TOKEN_MFA"]
    assert outcomes(console, "globex", "mfa_reset") == []
    # A globex administrator's CSRF token does not work in acme's session either.
    assert (
        acme.post("/console/users/mfa-reset", {"email": GLOBEX_ADMIN, "csrf_token": globex_csrf}).status
        == 403
    )
    assert _globex_mfa(console) == ["SOFTWARE_TOKEN_MFA"]


def test_mfa_off_and_replace_act_on_the_sessions_administrator_only(console: ConsoleWorld) -> None:
    globex, globex_csrf = console.signed_in("globex", GLOBEX_ADMIN)
    globex_secret = mfa.enrol(console, globex, globex_csrf)
    acme, acme_csrf = console.signed_in("acme", mfa.EMAIL)
    tampered = {"company_alias": "globex", "alias": "globex", "email": GLOBEX_ADMIN, "csrf_token": acme_csrf}
    for path in ("/console/mfa/off", "/console/mfa/replace"):
        page = acme.post(path, {**tampered, "password": PASSWORD, "code": mfa.totp(globex_secret)})
        assert page.status == 409  # acme's administrator has no MFA to change
        assert "globex" not in page.body.lower()
    assert _globex_mfa(console) == ["SOFTWARE_TOKEN_MFA"]
    assert [outcome for outcome, _, _ in outcomes(console, "globex")] == ["mfa_enabled"]  # its own enrolment
