"""The registration forms read by the resolver (Powertools ``Form`` parameters): the body limits checked
before it parses anything, and the pages (never the resolver's JSON) for what it refuses."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from aws_lambda_powertools.event_handler.middlewares import openapi_validation

from connect_metering.web.forms import MAX_FORM_BYTES, MAX_FORM_FIELDS
from tests.integration.registration.conftest import World
from tests.registration_support import SIGNUP, Browser, Page

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

TOKEN_FIELD = "x-amzn-marketplace-token"


def padded(form: dict[str, str], size: int) -> bytes:
    """``form`` url-encoded and padded with a filler field to exactly ``size`` bytes."""
    encoded = urlencode(form).encode() + b"&pad="
    assert len(encoded) <= size
    return encoded + b"x" * (size - len(encoded))


def assert_problem_page(page: Page, status: int, heading: str) -> None:
    assert (page.status, page.heading) == (status, heading)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert not page.body.lstrip().startswith("{")


@pytest.fixture
def parse_refused(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if the resolver parses a form body (it would, with no limits)."""
    parsed: list[str] = []

    def refuse(body: str, *args: Any, **kwargs: Any) -> dict[str, list[str]]:
        parsed.append(body[:40])
        raise AssertionError("the resolver parsed a body that should have been refused before it")

    monkeypatch.setattr(openapi_validation, "parse_qs", refuse)
    return parsed


def test_a_body_of_16_kb_plus_one_byte_is_413_before_any_parsing(
    world: World, parse_refused: list[str]
) -> None:
    token = world.token(*world.buyer("big"))
    for route in ("/register", "/signup"):
        body = padded({TOKEN_FIELD: token, "registration": "r"}, MAX_FORM_BYTES + 1)
        page = world.browser().request("POST", route, raw_body=body)
        assert_problem_page(page, 413, "The form is too large")
    assert parse_refused == []


def test_the_16_kb_limit_counts_decoded_bytes_and_refusing_spends_no_token(world: World) -> None:
    token = world.token(*world.buyer("edge"))
    # The test browser sends bodies base64-encoded, as API Gateway does: 16 KB arrive as ~21.8 KB of text.
    too_large = world.browser().request(
        "POST", "/register", raw_body=padded({TOKEN_FIELD: token}, MAX_FORM_BYTES + 1)
    )
    assert too_large.status == 413
    at_limit = world.browser().request(
        "POST", "/register", raw_body=padded({TOKEN_FIELD: token}, MAX_FORM_BYTES)
    )
    assert at_limit.status == 303, at_limit.body  # the refused attempt did not spend the token


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe=\xff", b"x-amzn-marketplace-token=%FF", b"company_alias=caf%C3", b"%E9t%E9=1"],
    ids=["raw-bytes", "escaped-byte", "cut-sequence", "latin-1-name"],
)
def test_a_body_that_is_not_utf8_is_400_before_any_parsing(
    world: World, parse_refused: list[str], body: bytes
) -> None:
    for route in ("/register", "/signup"):
        assert_problem_page(
            world.browser().request("POST", route, raw_body=body), 400, "The request could not be read"
        )
    assert parse_refused == []


def test_a_body_that_is_not_base64_is_400(world: World) -> None:
    def garbled(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result: dict[str, Any] = world.register.lambda_handler({**event, "body": "not*base64!"}, context)
        return result

    page = Browser(garbled).request("POST", "/register", raw_body=b"x=1")
    assert_problem_page(page, 400, "The request could not be read")


def test_more_than_20_fields_are_400_before_any_parsing(world: World, parse_refused: list[str]) -> None:
    fillers = {f"f{n}": "1" for n in range(MAX_FORM_FIELDS - 1)}
    for route in ("/register", "/signup"):
        too_many = world.browser().post(route, {TOKEN_FIELD: "t", **fillers, "one_more": "1"})
        assert_problem_page(too_many, 400, "The request could not be read")
    assert parse_refused == []


def test_20_fields_are_read(world: World) -> None:
    token = world.token(*world.buyer("many"))
    fillers = {f"f{n}": "1" for n in range(MAX_FORM_FIELDS - 1)}
    assert world.browser().post("/register", {TOKEN_FIELD: token, **fillers}).status == 303


def test_a_missing_token_is_the_invalid_link_page_not_json(world: World) -> None:
    for form in ({}, {"x-amzn-marketplace-offer-type": "free-trial"}):
        page = world.browser().post("/register", form)
        assert_problem_page(page, 400, "This registration link is not valid")
        assert "Set up your account" in page.body
    empty = world.browser().request("POST", "/register", raw_body=b"")
    assert_problem_page(empty, 400, "This registration link is not valid")


def test_a_sign_up_without_its_registration_is_the_unknown_link_page_not_json(world: World) -> None:
    page = world.browser().post("/signup", {"csrf_token": "x", **SIGNUP})
    assert_problem_page(page, 404, "We do not know this sign-up link")


def test_sign_up_fields_left_out_are_422_next_to_the_field_as_empty_ones(world: World) -> None:
    browser = world.browser()
    form_page = browser.get(
        browser.post("/register", {TOKEN_FIELD: world.token(*world.buyer("few"))}).location
    )
    refused = browser.post(
        "/signup",
        {"registration": form_page.field("registration"), "csrf_token": form_page.field("csrf_token")},
    )
    assert refused.status == 422
    for name in ("company_alias", "company_name", "contact_email"):
        assert f'id="{name}-error">' in refused.body
    assert 'id="instance_arn-error">' not in refused.body  # optional, as before
    assert world.store.get_company("acme") is None


def test_the_first_of_repeated_fields_is_read_and_blank_ones_are_kept(world: World) -> None:
    browser = world.browser()
    form_page = browser.get(
        browser.post("/register", {TOKEN_FIELD: world.token(*world.buyer("twice"))}).location
    )
    body = "&".join(
        [
            urlencode(
                {"registration": form_page.field("registration"), "csrf_token": form_page.field("csrf_token")}
            ),
            urlencode({**SIGNUP, "company_alias": "first"}),
            "company_alias=second&instance_arn=&instance_arn=not-an-arn",
        ]
    ).encode()
    assert browser.request("POST", "/signup", raw_body=body).status == 303
    assert world.store.get_company("first") is not None and world.store.get_company("second") is None
    assert world.store.list_environments("first") == []  # the blank first instance_arn, not the second


def with_content_type(world: World, content_type: str | None) -> Browser:
    def send(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {name: value for name, value in event["headers"].items() if name != "content-type"}
        if content_type is not None:
            headers["content-type"] = content_type
        result: dict[str, Any] = world.register.lambda_handler({**event, "headers": headers}, context)
        return result

    return Browser(send)


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x"])
def test_a_form_body_is_read_as_a_form_whatever_its_content_type_says(
    world: World, content_type: str | None
) -> None:
    token = world.token(*world.buyer("typed"))
    page = with_content_type(world, content_type).post("/register", {TOKEN_FIELD: token})
    assert page.status == 303


def test_a_json_body_is_no_second_way_to_register(world: World) -> None:
    token = world.token(*world.buyer("json"))
    browser = with_content_type(world, "application/json")
    page = browser.request("POST", "/register", raw_body=f'{{"{TOKEN_FIELD}": "{token}"}}'.encode())
    assert_problem_page(page, 400, "This registration link is not valid")
    assert world.browser().post("/register", {TOKEN_FIELD: token}).status == 303  # the token was not spent


def test_other_routes_are_not_read_as_forms(world: World) -> None:
    browser = world.browser()
    assert_problem_page(
        browser.request("POST", "/admin", raw_body=b"x=" + b"a" * 20_000), 404, "Page not found"
    )
    assert browser.request("GET", "/signup?id=nothing", raw_body=b"\xff" * 20_000).status == 404
