"""Sign-up form rules, the pages (escaping, accessibility, security headers) and request parsing."""

from __future__ import annotations

import base64
import hashlib
import html

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.registration import (
    MAX_LENGTHS,
    ResolvedCustomer,
    digest,
    environment_name_for,
    same_secret,
    validate_signup,
)
from connect_metering.domain.tenancy import InstanceArn
from connect_metering.web.forms import FormTooLarge, MalformedForm, check_form_body, cookie_value
from connect_metering.web.pages import (
    PROBLEM_PAGES,
    STYLE,
    STYLE_HASH,
    problem_page,
    security_headers,
    signup_page,
    success_page,
)

pytestmark = pytest.mark.unit

VALID = {
    "company_alias": "acme2",
    "company_name": "Acme",
    "contact_email": "ops@acme.example",
    "instance_arn": "arn:aws:connect:eu-west-2:111122223333:instance/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
}


def test_a_valid_form_and_the_reason_per_field() -> None:
    assert validate_signup(VALID).valid
    assert validate_signup({**VALID, "instance_arn": ""}).valid  # the first environment is optional
    form = validate_signup(
        {
            "company_alias": "Bad Alias",
            "company_name": "",
            "contact_email": "x@",
            "instance_arn": "arn:aws:s3:::b",
        }
    )
    assert sorted(form.errors) == ["company_alias", "company_name", "contact_email", "instance_arn"]
    assert form.values["company_alias"] == "Bad Alias"  # kept as typed, to render it back
    assert "company_name" in validate_signup({**VALID, "company_name": "a\x00b"}).errors


@pytest.mark.parametrize("field", sorted(MAX_LENGTHS))
def test_over_long_fields_are_refused(field: str) -> None:
    form = validate_signup({**VALID, field: "a" * (MAX_LENGTHS[field] + 1)})
    assert form.errors[field].startswith(f"Use at most {MAX_LENGTHS[field]} characters")


def test_identity_and_secrets() -> None:
    licence = "arn:aws:license-manager::123456789012:license:l-1"
    current = ResolvedCustomer(product_code="p", customer_aws_account_id="210987654321", license_arn=licence)
    assert current.identity().product_code is None  # a licence identity never carries the product code
    legacy = ResolvedCustomer(
        product_code="p", customer_identifier="C1", customer_aws_account_id="210987654321"
    )
    assert (legacy.identity().customer_identifier, legacy.identity().product_code) == ("C1", "p")
    assert digest("s") == hashlib.sha256(b"s").hexdigest()
    assert (
        same_secret("s", digest("s"))
        and not same_secret("t", digest("s"))
        and not same_secret(None, digest("s"))
    )
    instance = InstanceArn.parse(VALID["instance_arn"])
    assert environment_name_for(instance) == "eu-west-2-aaaaaaaa"


BUYER = ResolvedCustomer(product_code="prod", customer_aws_account_id="210987654321")
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({name: text for name in VALID}))
def test_whatever_is_typed_comes_back_only_escaped(values: dict[str, str]) -> None:
    form = validate_signup(values)
    page = signup_page(registration_id="r", csrf_token="c", buyer=BUYER, form=form)
    for name, value in form.values.items():
        assert f'name="{name}" type=' in page
        assert f'value="{html.escape(value, quote=True)}"' in page
    typed = "".join(values.values()).lower()
    assert page.lower().count("<script") == 0 or "<script" not in typed
    assert page.lower().count("<script") == 0


def test_pages_escape_and_label_everything() -> None:
    payload = '"><script>alert(1)</script>'
    form = validate_signup({name: payload for name in VALID})
    buyer = ResolvedCustomer(product_code=payload, customer_identifier=payload)
    page = signup_page(
        registration_id=payload, csrf_token=payload, buyer=buyer, form=form, contract=True, free_trial=True
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("&lt;script&gt;") >= 2 + len(VALID)  # the buyer's identifier and product too
    assert sorted(form.errors) == ["company_alias", "contact_email", "instance_arn"]  # a name is free text
    for name in VALID:
        assert f'<label for="{name}">' in page
        described = f"{name}-hint {name}-error" if name in form.errors else f"{name}-hint"
        assert f'aria-describedby="{described}"' in page
    assert 'role="alert"' in page and "There is a problem" in page
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "free trial" in page and "contract" in page
    success = success_page(
        alias=payload,
        company_name=payload,
        landing="created",
        agent_events_bus_arn=payload,
        forwarder_template_url=payload,
    )
    assert "<script>" not in success
    for name in PROBLEM_PAGES:
        status, html = problem_page(name)
        assert 400 <= status < 600 and "What to do:" in html


def test_the_content_security_policy_allows_only_the_inline_stylesheet() -> None:
    headers = security_headers()
    csp = headers["Content-Security-Policy"]
    assert base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() == STYLE_HASH
    assert f"style-src 'sha256-{STYLE_HASH}'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["Strict-Transport-Security"].startswith("max-age=")  # always, whatever the scheme claims


def test_form_limits_and_cookie_parsing() -> None:
    # What the resolver then reads of a form (first of repeated fields, blank values, %-escapes) is tested
    # through the handler: tests/integration/registration/test_register_forms.py.
    check_form_body(b"a=1&b=&a=2&c=%3Cx%3E")
    check_form_body(b"")
    check_form_body(b"a=" + b"x" * (16 * 1024 - 2))
    check_form_body("&".join(f"f{n}=1" for n in range(20)).encode())
    with pytest.raises(FormTooLarge):
        check_form_body(b"a=" + b"x" * 17_000)
    with pytest.raises(FormTooLarge):
        check_form_body(b"a=" + b"x" * (16 * 1024 - 1))
    for malformed in (b"\xff=1", b"a=%FF", b"a=caf%C3", b"a=%C3&b=%A9"):
        with pytest.raises(MalformedForm):
            check_form_body(malformed)
    with pytest.raises(MalformedForm):
        check_form_body("&".join(f"f{n}=1" for n in range(30)).encode())
    with pytest.raises(MalformedForm):
        check_form_body("&".join(f"f{n}=1" for n in range(21)).encode())
    assert cookie_value(["a=1", "cm_signup=xyz", "b=2"], "cm_signup") == "xyz"
    assert cookie_value(["a=1; cm_signup=abc"], "cm_signup") == "abc"
    assert cookie_value(None, "cm_signup") is None


def test_a_licence_buyer_with_a_customer_identifier_is_also_known_by_it() -> None:
    licence = "arn:aws:license-manager::123456789012:license/l-1"
    both = ResolvedCustomer(
        product_code="p",
        customer_aws_account_id="210987654321",
        license_arn=licence,
        customer_identifier="C1",
    )
    assert both.identity().usage_record_identity() == {
        "CustomerAWSAccountId": "210987654321",
        "LicenseArn": licence,
    }
    assert both.alias_keys() == ("customer#p#C1",)
    licence_only = ResolvedCustomer(
        product_code="p", customer_aws_account_id="210987654321", license_arn=licence
    )
    legacy = ResolvedCustomer(product_code="p", customer_identifier="C1")
    assert licence_only.alias_keys() == () == legacy.alias_keys()
