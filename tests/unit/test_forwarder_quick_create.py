"""The success page's CloudFormation quick-create link for the forwarder: filled in, encoded, escaped."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from connect_metering.domain.tenancy import Environment, EnvironmentVerification
from connect_metering.web.pages import (
    FORWARDER_STACK_NAME,
    forwarder_quick_create_url,
    success_page,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CODE = "Zm9yd2FyZGVyLWNvZGUtMDAwMQ"
BUS = "arn:aws:events:us-east-1:123456789012:event-bus/connect-metering-agent-events"
TEMPLATE = "https://seller-templates.s3.us-east-1.amazonaws.com/forwarder/v1/forwarder.template.json"
INSTANCE = "arn:aws:connect:eu-west-2:111122223333:instance/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
HOSTILE = "\"><script>alert(1)</script>&param_VerificationCode=stolen#/evil?x='y"


def _environment(*, verified: bool = False, code: str = CODE) -> Environment:
    return Environment(
        company_alias="acme2",
        name="eu-west-2-aaaaaaaa",
        instance_arn=INSTANCE,
        verification=EnvironmentVerification(
            code=code, claimed_at=NOW, verified_at=NOW if verified else None
        ),
    )


class _Links(HTMLParser):
    """Every <a>'s attributes as the browser would read them (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))
        if tag == "script":
            self.scripts += 1


def _parse(page: str) -> _Links:
    parser = _Links()
    parser.feed(page)
    return parser


def _fragment_query(url: str) -> dict[str, list[str]]:
    fragment = urlsplit(url).fragment
    path, _, query = fragment.partition("?")
    assert path == "/stacks/quickcreate"
    return parse_qs(query, keep_blank_values=True, strict_parsing=True)


def test_the_link_names_the_region_stack_and_parameters() -> None:
    url = forwarder_quick_create_url(
        region="eu-west-2", template_url=TEMPLATE, seller_bus_arn=BUS, verification_code=CODE
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "console.aws.amazon.com",
        "/cloudformation/home",
    )
    assert parse_qs(parts.query) == {"region": ["eu-west-2"]}
    assert _fragment_query(url) == {
        "templateURL": [TEMPLATE],
        "stackName": [FORWARDER_STACK_NAME],
        "param_SellerEventBusArn": [BUS],
        "param_VerificationCode": [CODE],
    }


def test_a_presigned_template_url_survives_encoding() -> None:
    presigned = f"{TEMPLATE}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800&X-Amz-Signature=ab%2Fcd"
    url = forwarder_quick_create_url(
        region="us-east-1", template_url=presigned, seller_bus_arn=BUS, verification_code=CODE
    )
    assert _fragment_query(url)["templateURL"] == [presigned]


def test_the_success_page_links_each_environment_awaiting_verification() -> None:
    page = success_page(
        alias="acme2",
        company_name="Acme",
        landing="created",
        agent_events_bus_arn=BUS,
        forwarder_template_url=TEMPLATE,
        environments=[_environment(), _environment(verified=True)],
    )
    links = [link for link in _parse(page).links if link.get("class") == "quick-create"]
    assert len(links) == 1  # a verified environment has its forwarder already
    href = links[0]["href"]
    assert href is not None and href.startswith(
        "https://console.aws.amazon.com/cloudformation/home?region=eu-west-2#"
    )
    assert _fragment_query(href)["param_VerificationCode"] == [CODE]
    assert links[0]["rel"] == "noopener noreferrer"


@pytest.mark.parametrize(
    ("template_url", "bus"), [("", BUS), (TEMPLATE, "")], ids=["no template URL", "no bus ARN"]
)
def test_no_link_without_a_template_url_or_bus(template_url: str, bus: str) -> None:
    page = success_page(
        alias="acme2",
        company_name="Acme",
        landing="created",
        agent_events_bus_arn=bus,
        forwarder_template_url=template_url,
        environments=[_environment()],
    )
    assert "quickcreate" not in page and CODE in page  # the code is still shown to copy by hand


def test_hostile_values_stay_inside_the_attribute_and_their_parameter() -> None:
    page = success_page(
        alias="acme2",
        company_name="Acme",
        landing="created",
        agent_events_bus_arn=HOSTILE,
        forwarder_template_url=HOSTILE,
        environments=[_environment()],
    )
    parsed = _parse(page)
    assert parsed.scripts == 0 and "<script>" not in page
    links = [link for link in parsed.links if link.get("class") == "quick-create"]
    assert len(links) == 1 and set(links[0]) == {"class", "href", "rel"}  # no attribute was added
    href = links[0]["href"]
    assert href is not None
    # The URL itself carries no quote, angle bracket or second fragment: only percent-encoded bytes.
    assert re.fullmatch(r"[A-Za-z0-9:/?=&#%._~-]+", href) and href.count("#") == 1
    assert _fragment_query(href) == {
        "templateURL": [HOSTILE],
        "stackName": [FORWARDER_STACK_NAME],
        "param_SellerEventBusArn": [HOSTILE],
        "param_VerificationCode": [CODE],  # the hostile "&param_VerificationCode=" added nothing
    }
    # The template download link of step 1 is escaped the same way.
    download = [link for link in parsed.links if link.get("class") != "quick-create"]
    assert [link["href"] for link in download] == [HOSTILE]
    assert html.escape(HOSTILE, quote=True) in page
