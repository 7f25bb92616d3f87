"""The context values of the README's Deploy section: each read, validated and documented, and what
`cdk destroy` leaves behind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.app import context_from_arguments
from infra.config import (
    ALLOW_PLACEHOLDER_PRODUCT_CODE,
    PLACEHOLDER_PRODUCT_CODE,
    ContextError,
    InfraSettings,
    default_context,
)
from tests.infra.test_cdk_cli import deploy_section, documented_context_table

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

TEMPLATE_URL = "https://seller-templates.s3.us-east-1.amazonaws.com/forwarder/v1/forwarder.template.json"


def settings_for(default_account: str | None = None, /, **context: Any) -> InfraSettings:
    app = cdk.App(context={**default_context(), **context})
    return InfraSettings.from_scope(app, default_account=default_account)


def test_the_context_values_land_in_the_settings() -> None:
    settings = settings_for(
        account="123456789012",
        region="us-east-1",
        product_code="abc123example",
        forwarder_template_url=TEMPLATE_URL,
    )
    assert (settings.account, settings.region, settings.product_code) == (
        "123456789012",
        "us-east-1",
        "abc123example",
    )
    assert settings.forwarder_template_url == TEMPLATE_URL
    settings.refuse_placeholder_product_code()  # a real product code: nothing to refuse


def test_the_account_comes_from_the_context_before_the_credentials() -> None:
    assert settings_for("210987654321", account="123456789012").account == "123456789012"
    assert settings_for("210987654321").account == "210987654321"
    assert settings_for().account is None  # environment-agnostic, as before


def test_without_a_product_code_only_a_declared_local_synth_goes_on() -> None:
    settings = settings_for()
    assert settings.product_code == PLACEHOLDER_PRODUCT_CODE and settings.product_code_is_placeholder
    with pytest.raises(ContextError, match=r"^product_code is not set: pass -c product_code="):
        settings.refuse_placeholder_product_code()
    for flag in (True, "true", "TRUE", "1"):
        settings_for(**{ALLOW_PLACEHOLDER_PRODUCT_CODE: flag}).refuse_placeholder_product_code()
    with pytest.raises(ContextError):
        settings_for(**{ALLOW_PLACEHOLDER_PRODUCT_CODE: "false"}).refuse_placeholder_product_code()


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"region": "eu-west-1"}, "region"),
        ({"account": "12345"}, "account"),
        ({"account": "\uff11" * 12}, "account"),  # fullwidth digits are not an account id
        (
            {"forwarder_template_url": "http://seller-templates.s3.amazonaws.com/f.json"},
            "forwarder_template_url",
        ),
        ({"forwarder_template_url": "https://example.com/forwarder.template.json"}, "forwarder_template_url"),
        ({"forwarder_template_url": 'https://b.s3.amazonaws.com/"><script>'}, "forwarder_template_url"),
    ],
)
def test_a_bad_value_is_refused_naming_it(context: dict[str, str], field: str) -> None:
    with pytest.raises(ContextError, match=rf"^{field}: "):
        settings_for(**context)


@pytest.mark.parametrize(
    "url",
    [
        TEMPLATE_URL,
        "https://s3.us-east-1.amazonaws.com/seller-templates/forwarder.template.json",
        "https://seller-templates.s3.amazonaws.com/forwarder.template.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800",
    ],
)
def test_s3_template_urls_are_accepted(url: str) -> None:
    assert settings_for(forwarder_template_url=url).forwarder_template_url == url


def test_app_py_takes_context_like_the_cli() -> None:
    assert context_from_arguments(
        ["-c", "product_code=abc", "--context", "forwarder_template_url=https://x?a=b"]
    ) == {
        "product_code": "abc",
        "forwarder_template_url": "https://x?a=b",
    }
    with pytest.raises(SystemExit):
        context_from_arguments(["-c", "product_code"])


def test_every_context_key_the_app_reads_is_documented(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Read keys recorded while the real stacks are built (construction only, no synth)."""
    from constructs import Node

    from infra.app import build_app

    read: set[str] = set()
    original = Node.try_get_context

    def recording(self: Node, key: str) -> Any:
        read.add(key)
        return original(self, key)

    monkeypatch.setattr(Node, "try_get_context", recording)
    build_app(str(tmp_path), {"product_code": "abc123example"})
    assert {"product_code", "region", "forwarder_template_url", "marketplace_sns_topic_arns"} <= read
    assert read <= documented_context_table(), read - documented_context_table()


def test_what_destroy_retains_is_what_the_readme_lists(metering_json: dict[str, Any]) -> None:
    retained = Counter(
        resource["Type"]
        for resource in metering_json["Resources"].values()
        if resource.get("DeletionPolicy") == "Retain"
    )
    assert set(retained) == {
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::Cognito::UserPool",
    }
    assert retained["AWS::Cognito::UserPool"] == 1  # the console's administrators
    assert retained["AWS::DynamoDB::Table"] == 4  # tenancy, agent activity, quarantine, ledger
    assert retained["AWS::KMS::Key"] == 5  # one per table and the alarm topic's
    functions = sum(1 for r in metering_json["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert retained["AWS::Logs::LogGroup"] == functions + 2  # and the registration and admin access logs
    teardown = " ".join(deploy_section().split("### Teardown", 1)[1].split())
    assert "four DynamoDB tables" in teardown and "alarm topic's key" in teardown
    assert "one per function, and the access logs of the registration and admin APIs" in teardown
    assert "the console's Cognito user pool" in teardown
