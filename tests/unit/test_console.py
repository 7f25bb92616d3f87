"""The console's pure rules: signed session cookies, sign-in input, lockout, and the usage page's numbers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connect_metering.domain.console import (
    LOCKOUT_PERIOD,
    MAX_FAILED_SIGN_INS,
    NO_FAILURES,
    SESSION_LIFETIME,
    ConsoleSession,
    credentials_plausible,
    csrf_matches,
    invitation_email_error,
    new_session,
    read_session,
    sign_in_name,
    sign_session,
)
from connect_metering.domain.console_usage import (
    COMPANY_WIDE,
    month_of,
    month_usage,
    previous_month,
    usage_csv_rows,
)
from connect_metering.domain.instants import MS_PER_HOUR, to_ms
from connect_metering.domain.metering import MeteringRecord, RecordStatus
from connect_metering.web.console_pages import (
    CONSOLE_CONTENT_SECURITY_POLICY,
    CONSOLE_STYLE,
    environments_page,
    sign_in_page,
    users_page,
)

pytestmark = pytest.mark.unit

KEY = b"k" * 32
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def _session() -> tuple[str, ConsoleSession]:
    session = new_session(company_alias="acme", email="ops@acme.test", subject="sub-1", now=NOW)
    return sign_session(session, KEY), session


def test_a_signed_session_reads_back_until_it_expires() -> None:
    cookie, session = _session()
    assert read_session(cookie, KEY, NOW) == session
    assert read_session(cookie, KEY, NOW + SESSION_LIFETIME - timedelta(seconds=1)) == session
    assert read_session(cookie, KEY, NOW + SESSION_LIFETIME) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda cookie: cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),  # another MAC
        lambda cookie: "e30" + cookie[3:],  # another payload, same MAC
        lambda cookie: cookie.replace(".", ""),
        lambda cookie: cookie + ".x",
        lambda cookie: "",
    ],
)
def test_an_altered_or_forged_cookie_is_no_session(tamper: object) -> None:
    cookie, _ = _session()
    assert callable(tamper)
    assert read_session(tamper(cookie), KEY, NOW) is None


def test_a_cookie_signed_with_another_key_is_no_session() -> None:
    cookie, _ = _session()
    assert read_session(cookie, b"o" * 32, NOW) is None


def test_the_payload_cannot_name_another_company_without_the_key() -> None:
    import base64
    import json

    cookie, _ = _session()
    payload, mac = cookie.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["alias"] = "globex"
    forged = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    assert read_session(f"{forged}.{mac}", KEY, NOW) is None


def test_csrf_token_must_be_the_sessions() -> None:
    _, session = _session()
    assert csrf_matches(session, session.csrf_token)
    assert not csrf_matches(session, None)
    assert not csrf_matches(session, "x")


def test_sign_in_input() -> None:
    assert credentials_plausible("acme", "ops@acme.test", "pw")
    assert not credentials_plausible("Acme!", "ops@acme.test", "pw")
    assert not credentials_plausible("acme", "not-an-email", "pw")
    assert not credentials_plausible("acme", "ops@acme.test", "")
    assert sign_in_name("acme", " Ops@Acme.Test ") == "acme/ops@acme.test"
    assert invitation_email_error("a@b.test") is None
    assert invitation_email_error("nope") is not None


def test_lockout_after_the_maximum_failures_and_forgotten_after_a_quiet_period() -> None:
    failures = NO_FAILURES
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        failures = failures.after_failure(NOW)
    assert not failures.locked(NOW)
    failures = failures.after_failure(NOW)
    assert failures.locked(NOW)
    assert failures.locked(NOW + LOCKOUT_PERIOD - timedelta(seconds=1))
    assert not failures.locked(NOW + LOCKOUT_PERIOD)
    assert failures.after_failure(NOW + LOCKOUT_PERIOD).count == 1


# Usage ----------------------------------------------------------------------------------------------


def _record(
    hour: datetime,
    allocations: dict[str, int],
    *,
    dimension: str = "agent_minutes",
    status: RecordStatus = RecordStatus.ACCEPTED,
) -> MeteringRecord:
    quantity = sum(allocations.values()) or 3
    return MeteringRecord(
        company="acme",
        subscription_key="license#l-1",
        dimension=dimension,
        hour_ms=to_ms(hour),
        usage_record={"Quantity": quantity},
        allocations=allocations,
        status=status,
    )


def test_month_usage_sums_per_day_and_environment_and_leaves_out_refused_records() -> None:
    month = month_of(NOW)
    records = [
        _record(datetime(2026, 11, 3, 9, tzinfo=UTC), {"prod": 30, "test": 5}),
        _record(datetime(2026, 11, 3, 10, tzinfo=UTC), {"prod": 12}),
        _record(datetime(2026, 11, 4, 9, tzinfo=UTC), {"prod": 7}, status=RecordStatus.PENDING),
        _record(datetime(2026, 11, 4, 10, tzinfo=UTC), {"prod": 99}, status=RecordStatus.NOT_SUBSCRIBED),
        _record(datetime(2026, 10, 31, 23, tzinfo=UTC), {"prod": 50}),  # last month
        _record(datetime(2026, 11, 5, 9, tzinfo=UTC), {}, dimension="overage_agents"),
        _record(datetime(2026, 11, 6, 9, tzinfo=UTC), {"prod": 0}),  # metered at zero: no row
    ]
    through = {"license#l-1": to_ms(datetime(2026, 11, 20, 8, tzinfo=UTC))}
    usage = month_usage(records, month, now=NOW, metered_through_ms=through)
    assert [(row.day, row.environment, row.quantity) for row in usage.rows] == [
        ("2026-11-03", "prod", 42),
        ("2026-11-03", "test", 5),
        ("2026-11-04", "prod", 7),
        ("2026-11-05", COMPANY_WIDE, 3),
    ]
    assert usage.total("agent_minutes") == 54
    assert usage.per_day("agent_minutes") == {"2026-11-03": 47, "2026-11-04": 7}
    assert usage.unmetered_from_ms == to_ms(datetime(2026, 11, 20, 9, tzinfo=UTC))
    last = month_usage(records, previous_month(month), now=NOW, metered_through_ms=through)
    assert [row.quantity for row in last.rows] == [50]
    assert last.unmetered_from_ms is None
    assert usage_csv_rows([usage])[1] == ["2026-11", "2026-11-03", "prod", "agent_minutes", "42"]


def test_a_month_never_metered_is_unmetered_from_its_first_hour_up_to_now() -> None:
    usage = month_usage([], month_of(NOW), now=NOW, metered_through_ms={})
    assert usage.unmetered_from_ms == month_of(NOW).first_ms
    caught_up = {"s": to_ms(NOW) // MS_PER_HOUR * MS_PER_HOUR - MS_PER_HOUR}
    assert month_usage([], month_of(NOW), now=NOW, metered_through_ms=caught_up).unmetered_from_ms is None


def test_december_and_january_months() -> None:
    december = month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert december.label == "December 2026"
    assert previous_month(month_of(datetime(2027, 1, 1, tzinfo=UTC))) == december


# Pages ----------------------------------------------------------------------------------------------


def test_the_console_style_is_the_one_the_policy_allows() -> None:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(CONSOLE_STYLE.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CONSOLE_CONTENT_SECURITY_POLICY
    assert "script-src" not in CONSOLE_CONTENT_SECURITY_POLICY


def test_echoed_values_are_escaped() -> None:
    hostile = '"><script>alert(1)</script>'
    pages = [
        sign_in_page(csrf_token="t", alias=hostile, email=hostile, error=hostile),
        environments_page(
            [],
            alias="acme",
            csrf_token="t",
            values={"name": hostile, "instance_arn": hostile},
            errors={"name": hostile},
        ),
        users_page([], alias="acme", me="me@acme.test", csrf_token="t", email=hostile, error=hostile),
    ]
    for page in pages:
        assert "<script>" not in page
        assert "&lt;script&gt;" in page


def test_over_licence_is_warned_and_nobody_is_locked_out() -> None:
    from connect_metering.domain.licence import LicenceInfo, LicenceStatus
    from connect_metering.domain.tenancy import PricingModel
    from connect_metering.web.console_pages import STATUS_MEANINGS, licence_page

    info = LicenceInfo(
        company_alias="acme",
        company_name="Acme Inc",
        pricing=PricingModel.CONTRACT,
        customer_aws_account_id="111111111111",
        product_code="prod-1",
        license_arn="arn:aws:license-manager::111111111111:license:l-1",
        licensed_agents=5,
        active_agents=7,
        renews_or_expires=NOW + timedelta(days=200),
        status=LicenceStatus.OVER_LICENSED,
        subscriptions=(),
    )
    page = licence_page(info, now=NOW, csrf_token="t")
    assert page.count('class="warning" role="alert"') == 1
    assert "7 agents are logged in and your contract licenses 5" in page
    assert "Nobody is locked out." in page
    assert (
        "over-licensed</strong>: " + STATUS_MEANINGS[LicenceStatus.OVER_LICENSED].replace("'", "&#x27;")
        in page
    )
    expiring = licence_page(replace(info, renews_or_expires=NOW + timedelta(days=3)), now=NOW, csrf_token="t")
    assert expiring.count('class="warning" role="alert"') == 2  # expiring soon, and over licence


def test_every_console_form_field_is_labelled_and_described() -> None:
    """Accessible like the registration pages: each visible field has its label, hints and errors are
    tied to it with aria-describedby, errors mark it aria-invalid, and echoed values are escaped."""
    import re

    from connect_metering.web.console_account_pages import (
        forgot_password_page,
        mfa_code_page,
        mfa_page,
        reset_password_page,
    )

    hostile = '"><script>alert(1)</script>'
    pages = {
        "sign-in": sign_in_page(
            csrf_token="t", alias=hostile, email=hostile, error=hostile, new_password=True
        ),
        "forgot": forgot_password_page(csrf_token="t", alias=hostile, email=hostile),
        "reset": reset_password_page(
            csrf_token="t", alias=hostile, email=hostile, errors={"code": hostile, "new_password": hostile}
        ),
        "code": mfa_code_page(csrf_token="t", error=hostile),
        "mfa-off": mfa_page(alias="acme", csrf_token="t", enabled=False, errors={"password": hostile}),
        "mfa-setup": mfa_page(
            alias="acme",
            csrf_token="t",
            enabled=False,
            secret=hostile,
            uri="otpauth://totp/x?secret=" + hostile,
            errors={"code": hostile},
        ),
        "mfa-on": mfa_page(alias="acme", csrf_token="t", enabled=True, notice=hostile),
        "environments": environments_page(
            [], alias="acme", csrf_token="t", values={"name": hostile}, errors={"name": hostile}
        ),
        "users": users_page(
            [], alias="acme", me="me@acme.test", csrf_token="t", email=hostile, error=hostile
        ),
    }
    for name, page in pages.items():
        assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page, name
        assert "<script>" not in page and "&lt;script&gt;" in page, name
        assert 'name="csrf_token"' in page, name
        fields = re.findall(r'<input id="([^"]+)" name="[^"]+" type="(?!hidden)', page)
        assert fields or name == "mfa-on", name
        for field in fields:
            assert f'<label for="{field}">' in page, (name, field)
            tag = re.search(rf'<input id="{field}"[^>]*>', page)
            assert tag is not None
            if f'id="{field}-error"' in page:
                assert 'aria-invalid="true"' in tag.group(0), (name, field)
                assert f"{field}-error" in tag.group(0), (name, field)
            if f'id="{field}-hint"' in page:
                assert f"{field}-hint" in tag.group(0), (name, field)
