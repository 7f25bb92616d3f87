"""The console handler on moto's Cognito: sign-in, first password, wrong alias, lockout, sign-out, CSRF,
every page, invitations, and the sign-up that makes the contact email the first administrator."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from connect_metering.adapters.meter_store import ledger_key
from connect_metering.domain.console import LOCKED_OUT, MAX_FAILED_SIGN_INS, WRONG_CREDENTIALS
from connect_metering.domain.instants import to_ms
from connect_metering.domain.metering import MeteringRecord, RecordStatus
from connect_metering.web.console_pages import CONSOLE_CONTENT_SECURITY_POLICY
from tests.integration.console.conftest import (
    ARN_A,
    LEDGER,
    PASSWORD,
    T0,
    ConsoleWorld,
    csrf_of,
    sign_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

EMAIL = "ops@acme.test"


def test_first_sign_in_asks_for_a_new_password_then_signs_in(console: ConsoleWorld) -> None:
    temporary = console.admin("acme", EMAIL)
    browser = console.browser()
    first = sign_in(browser, "acme", EMAIL, temporary)
    assert first.status == 200
    assert 'name="new_password"' in first.body
    done = sign_in(browser, "acme", EMAIL, temporary, new_password=PASSWORD)
    assert done.status == 303
    assert done.location == "/console/licence"
    session_cookie = next(c for c in done.cookies if c.startswith("cm_console="))
    assert "HttpOnly" in session_cookie
    assert "Secure" in session_cookie
    assert "SameSite=Strict" in session_cookie
    licence = browser.get("/console/licence")
    assert licence.status == 200
    assert "Acme Inc" in licence.body
    # Later sign-ins use the chosen password and need no new one.
    again = sign_in(console.browser(), "acme", EMAIL, PASSWORD)
    assert again.status == 303


def test_a_weak_new_password_is_refused_with_the_reason(console: ConsoleWorld) -> None:
    temporary = console.admin("acme", EMAIL)
    page = sign_in(console.browser(), "acme", EMAIL, temporary, new_password="short")
    assert page.status == 200
    assert "stronger password" in page.body


def test_wrong_password_and_wrong_alias_get_the_same_answer(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    wrong_password = sign_in(console.browser(), "acme", EMAIL, "Not-the-passw0rd")
    wrong_alias = sign_in(console.browser(), "globex", EMAIL, PASSWORD)
    unknown = sign_in(console.browser(), "acme", "nobody@acme.test", PASSWORD)
    for page in (wrong_password, wrong_alias, unknown):
        assert page.status == 401
        assert WRONG_CREDENTIALS.replace("'", "&#x27;") in page.body
        assert not any(cookie.startswith("cm_console=") for cookie in page.cookies)


def test_sign_in_is_locked_after_repeated_failures_then_open_again(console: ConsoleWorld) -> None:
    console.signed_in("acme", EMAIL)
    for _ in range(MAX_FAILED_SIGN_INS):
        assert sign_in(console.browser(), "acme", EMAIL, "Wrong-passw0rd!").status == 401
    locked = sign_in(console.browser(), "acme", EMAIL, PASSWORD)
    assert locked.status == 401
    assert LOCKED_OUT in locked.body
    console.clock.advance_to(console.clock.now() + timedelta(minutes=15))
    assert sign_in(console.browser(), "acme", EMAIL, PASSWORD).status == 303


def test_sign_out_ends_the_session_even_for_a_copied_cookie(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    copied = dict(browser.cookies)
    out = browser.post("/console/sign-out", {"csrf_token": csrf})
    assert out.status == 303
    assert out.location == "/console/"
    thief = console.browser()
    thief.cookies.update(copied)
    assert thief.get("/console/licence").location == "/console/"


def test_a_session_expires_on_the_server(console: ConsoleWorld) -> None:
    browser, _ = console.signed_in("acme", EMAIL)
    console.clock.advance_to(console.clock.now() + timedelta(hours=8))
    page = browser.get("/console/licence")
    assert page.status == 303
    assert page.location == "/console/"


def test_pages_need_a_session(console: ConsoleWorld) -> None:
    for path in (
        "/console/licence",
        "/console/environments",
        "/console/usage",
        "/console/usage.csv",
        "/console/users",
        "/console/mfa",
    ):
        page = console.browser().get(path)
        assert (page.status, page.location) == (303, "/console/"), path


def test_every_post_needs_the_csrf_token(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    posts = {
        "/console/environments": {
            "name": "new",
            "instance_arn": ARN_A.replace("111111111111", "333333333333"),
        },
        "/console/environments/remove": {"name": "acme-prod"},
        "/console/users": {"email": "new@acme.test"},
        "/console/users/remove": {"email": EMAIL},
        "/console/mfa/start": {"password": "Chosen-Passw0rd!"},
        "/console/mfa/verify": {"code": "123456"},
        "/console/sign-out": {},
    }
    for path, form in posts.items():
        for token in (None, "wrong", csrf + "x"):
            sent = dict(form) if token is None else {**form, "csrf_token": token}
            assert browser.post(path, sent).status == 403, path
    assert [e.name for e in console.store.list_environments("acme")] == ["acme-prod"]
    assert [a.email for a in console.invitations.administrators("acme")] == [EMAIL]
    assert browser.get("/console/licence").status == 200  # still signed in


def test_sign_in_form_needs_its_double_submit_cookie(console: ConsoleWorld) -> None:
    temporary = console.admin("acme", EMAIL)
    browser = console.browser()
    token = csrf_of(browser.get("/console/"))
    form = {"company_alias": "acme", "email": EMAIL, "password": temporary, "csrf_token": token}
    assert browser.post("/console/", form, send_cookies=False).status == 403
    assert browser.post("/console/", {**form, "csrf_token": "other"}).status == 403


def test_pages_send_the_security_headers(console: ConsoleWorld) -> None:
    browser, _ = console.signed_in("acme", EMAIL)
    for path in (
        "/console/",
        "/console/licence",
        "/console/environments",
        "/console/usage",
        "/console/users",
        "/console/mfa",
        "/console/forgot-password",
        "/console/reset-password",
    ):
        headers = browser.get(path).headers
        assert headers["Content-Security-Policy"] == CONSOLE_CONTENT_SECURITY_POLICY
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_environments_add_and_remove_with_the_admin_api_rules(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    arn = "arn:aws:connect:us-west-2:111111111111:instance/aaaaaaaa-0000-0000-0000-000000000009"
    added = browser.post(
        "/console/environments", {"name": "acme-west", "instance_arn": arn, "csrf_token": csrf}
    )
    assert added.status == 201
    assert "acme-west" in added.body
    assert "quick-create" not in added.body or "VerificationCode" in added.body
    malformed = browser.post(
        "/console/environments", {"name": "x", "instance_arn": "arn:nope", "csrf_token": csrf}
    )
    assert malformed.status == 422
    assert 'value="arn:nope"' in malformed.body
    bad_name = browser.post(
        "/console/environments",
        {"name": "no spaces!", "instance_arn": arn.replace("0009", "0010"), "csrf_token": csrf},
    )
    assert bad_name.status == 422
    assert 'id="name-error"' in bad_name.body
    taken = browser.post("/console/environments", {"name": "again", "instance_arn": arn, "csrf_token": csrf})
    assert taken.status == 409
    removed = browser.post("/console/environments/remove", {"name": "acme-west", "csrf_token": csrf})
    assert removed.status == 200
    assert [e.name for e in console.store.list_environments("acme")] == ["acme-prod"]


def test_a_new_environment_shows_its_verification_code_and_forwarder_link(
    console: ConsoleWorld, monkeypatch: object
) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    arn = "arn:aws:connect:us-west-2:444444444444:instance/aaaaaaaa-0000-0000-0000-000000000008"
    page = browser.post("/console/environments", {"name": "west", "instance_arn": arn, "csrf_token": csrf})
    environment = next(e for e in console.store.list_environments("acme") if e.name == "west")
    assert environment.verification is not None
    assert environment.verification.code in page.body
    assert "awaiting verification" in page.body


def _ledger_record(
    world: ConsoleWorld, company: str, subscription: str, hour_offset: int, allocations: dict[str, int]
) -> None:
    record = MeteringRecord(
        company=company,
        subscription_key=subscription,
        dimension="agent_minutes",
        hour_ms=to_ms(T0 - timedelta(hours=hour_offset)),
        usage_record={"Quantity": sum(allocations.values())},
        allocations=allocations,
        status=RecordStatus.ACCEPTED,
    )
    world.dynamodb.put_item(
        TableName=LEDGER,
        Item={**ledger_key(record), "record": {"S": json.dumps(record.to_json())}},
    )


def test_usage_shows_the_ledgers_billed_minutes_and_a_csv(console: ConsoleWorld) -> None:
    from tests.integration.console.test_tenant_isolation import subscribe

    subscribe(console, "acme", "l-acme")
    _ledger_record(console, "acme", "license#l-acme", 2, {"acme-prod": 41})
    _ledger_record(console, "acme", "license#l-acme", 1, {"acme-prod": 17})
    browser, _ = console.signed_in("acme", EMAIL)
    page = browser.get("/console/usage")
    assert page.status == 200
    assert "58 agent-minutes" in page.body
    assert "<svg" in page.body
    assert "Not metered yet" in page.body
    csv_page = browser.get("/console/usage.csv")
    assert csv_page.headers["Content-Type"].startswith("text/csv")
    assert "2026-11,2026-11-20,acme-prod,agent_minutes,58" in csv_page.body


def test_administrators_invite_and_remove_each_other(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    invited = browser.post("/console/users", {"email": "Second@Acme.test", "csrf_token": csrf})
    assert invited.status == 201
    assert console.mailbox.mails[-1].to == "second@acme.test"
    assert "second@acme.test" in browser.get("/console/users").body
    second = console.browser()
    temporary = console.mailbox.temporary_password("second@acme.test")
    assert sign_in(second, "acme", "second@acme.test", temporary, new_password=PASSWORD).status == 303
    assert second.get("/console/users").status == 200
    twice = browser.post("/console/users", {"email": "second@acme.test", "csrf_token": csrf})
    assert twice.status == 409
    bad = browser.post("/console/users", {"email": "not an email", "csrf_token": csrf})
    assert bad.status == 422
    myself = browser.post("/console/users/remove", {"email": EMAIL, "csrf_token": csrf})
    assert myself.status == 409
    removed = browser.post("/console/users/remove", {"email": "second@acme.test", "csrf_token": csrf})
    assert removed.status == 200
    assert [a.email for a in console.invitations.administrators("acme")] == [EMAIL]
    assert sign_in(console.browser(), "acme", "second@acme.test", PASSWORD).status == 401
    # The removed administrator's open session ends at once; the remover's goes on.
    assert second.get("/console/users").location == "/console/"
    assert browser.get("/console/users").status == 200
    # Invited again later, they sign in afresh.
    console.clock.advance_to(console.clock.now() + timedelta(seconds=1))
    again = console.browser()
    temporary = console.admin("acme", "second@acme.test")
    assert sign_in(again, "acme", "second@acme.test", temporary, new_password=PASSWORD).status == 303
    assert again.get("/console/users").status == 200


def test_the_quick_create_link_fills_in_the_forwarders_parameters(
    console: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from html import unescape
    from urllib.parse import parse_qs, urlsplit

    from connect_metering.settings import load_settings
    from tests.integration.console.conftest import BUS_ARN

    template = "https://connect-metering-templates.s3.us-east-1.amazonaws.com/forwarder.yaml"
    monkeypatch.setenv("FORWARDER_TEMPLATE_URL", template)
    load_settings.cache_clear()
    browser, csrf = console.signed_in("acme", EMAIL)
    arn = "arn:aws:connect:eu-central-1:444444444444:instance/aaaaaaaa-0000-0000-0000-000000000007"
    page = browser.post(
        "/console/environments", {"name": "frankfurt", "instance_arn": arn, "csrf_token": csrf}
    )
    assert page.status == 201
    environment = next(e for e in console.store.list_environments("acme") if e.name == "frankfurt")
    assert environment.verification is not None
    links = re.findall(r'<a class="quick-create" href="([^"]+)"', page.body)
    assert len(links) == 1  # acme-prod, made verified in the fixture, needs none
    url = urlsplit(unescape(links[0]))
    assert url.netloc == "console.aws.amazon.com"
    assert parse_qs(url.query) == {"region": ["eu-central-1"]}
    fragment_path, _, fragment_query = url.fragment.partition("?")
    assert fragment_path == "/stacks/quickcreate"
    assert parse_qs(fragment_query) == {
        "templateURL": [template],
        "stackName": ["connect-metering-forwarder"],
        "param_SellerEventBusArn": [BUS_ARN],
        "param_VerificationCode": [environment.verification.code],
    }


def test_usage_table_per_day_and_environment_both_months_and_company_wide_overage(
    console: ConsoleWorld,
) -> None:
    from tests.integration.console.test_tenant_isolation import subscribe

    subscribe(console, "acme", "l-acme")
    _ledger_record(console, "acme", "license#l-acme", 1, {"acme-prod": 30, "acme-dev": 12})
    _ledger_record(console, "acme", "license#l-acme", 24 * 25, {"acme-prod": 9})  # October 26th
    overage = MeteringRecord(
        company="acme",
        subscription_key="license#l-acme",
        dimension="overage_agents",
        hour_ms=to_ms(T0 - timedelta(hours=3)),
        usage_record={"Quantity": 4},
        allocations={},  # contract overage: billed to the company as a whole
        status=RecordStatus.ACCEPTED,
    )
    console.dynamodb.put_item(
        TableName=LEDGER, Item={**ledger_key(overage), "record": {"S": json.dumps(overage.to_json())}}
    )
    browser, _ = console.signed_in("acme", EMAIL)
    body = browser.get("/console/usage").body
    this_month, last_month = body.split('id="last-month"', 1)
    assert "November 2026" in this_month and "October 2026" in last_month
    for day, environment, unit, quantity in (
        ("2026-11-20", "acme-dev", "agent-minutes", 12),
        ("2026-11-20", "acme-prod", "agent-minutes", 30),
        ("2026-11-20", "(whole company)", "overage agent-hours", 4),
    ):
        row = (
            f'<tr><td>{day}</td><td>{environment}</td><td>{unit}</td><td class="number">{quantity}</td></tr>'
        )
        assert row in this_month
    assert (
        '<tr><td>2026-10-26</td><td>acme-prod</td><td>agent-minutes</td><td class="number">9</td></tr>'
        in last_month
    )
    assert "42 agent-minutes" in this_month and "4 overage agent-hours" in this_month
    assert this_month.count("<svg") == 2  # one chart per unit billed
    assert "Not metered yet" in this_month
