"""Settings of the CDK app, read once from the app context.

cdk.json holds the defaults. The CDK CLI passes them to the app itself, but `python infra/app.py`
and the tests do not go through the CLI, so the same file is read here as the base layer: one
source of truth for both ways of running the app.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Construct

from connect_metering.observability import METRICS_NAMESPACE as METRICS_NAMESPACE  # what the alarms watch

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"
FUNCTIONS_DIR = REPO_ROOT / "functions"
CORE_LAYER_DIR = REPO_ROOT / "layers" / "core"

# Fixed interface (DESIGN.md): the envelope every forwarded agent event carries.
FORWARDER_EVENT_SOURCE = "connect-metering.forwarder"
AGENT_EVENT_DETAIL_TYPE = "Amazon Connect Agent Event"


def default_context() -> dict[str, Any]:
    """The `context` block of cdk.json (empty when the file is absent)."""
    if not CDK_JSON.is_file():
        return {}
    context = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    if not isinstance(context, dict):
        raise TypeError(f"{CDK_JSON}: 'context' must be an object")
    return context


# The only region MeteringStack can live in: its web ACL has scope CLOUDFRONT, which AWS WAF creates only
# in us-east-1, and the Marketplace metering and entitlement endpoints a SaaS product calls are there too.
METERING_REGION = "us-east-1"
# What the stacks get when no `-c product_code=` was given: synth, checkov and the tests run offline with
# it, but `python infra/app.py` (what `cdk synth` and `cdk deploy` run) refuses it unless told this is a
# local synth (ALLOW_PLACEHOLDER_PRODUCT_CODE), so no deployed stack ever meters a product that is not
# the seller's.
PLACEHOLDER_PRODUCT_CODE = "connectmetering"
ALLOW_PLACEHOLDER_PRODUCT_CODE = "allow_placeholder_product_code"
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# CloudFormation reads a TemplateURL only from Amazon S3 (virtual-hosted or path style, any partition).
_S3_TEMPLATE_URL = re.compile(
    r"https://([a-z0-9.-]+\.)?s3([.-][a-z0-9-]+)*\.amazonaws\.com(\.cn)?/[^\s<>\"']+"
)


class ContextError(ValueError):
    """A context value the app cannot deploy with; the message names the value and how to set it."""


def context_flag(value: Any) -> bool:
    """`-c key=true` arrives as the string "true"; cdk.json and the tests may pass a real boolean."""
    return value is True or str(value).strip().lower() in {"true", "1", "yes"}


@dataclass(frozen=True)
class InfraSettings:
    """Everything the stacks read from the context, validated once (the README's Deploy table)."""

    region: str
    agent_events_bus_name: str
    forwarder_bus_name: str
    powertools_layer_version: int
    log_level: str
    product_code: str
    # None: the account the CDK CLI's credentials belong to (CDK_DEFAULT_ACCOUNT), or environment-agnostic.
    account: str | None = None
    forwarder_template_url: str = ""
    allow_placeholder_product_code: bool = False

    @property
    def product_code_is_placeholder(self) -> bool:
        return self.product_code == PLACEHOLDER_PRODUCT_CODE

    @classmethod
    def from_scope(cls, scope: Construct, *, default_account: str | None = None) -> InfraSettings:
        def read(key: str) -> Any:
            value = scope.node.try_get_context(key)
            if value is None:
                raise KeyError(f"context key {key!r} is missing (set it in cdk.json or with -c)")
            return value

        def optional(key: str) -> str:
            return str(scope.node.try_get_context(key) or "").strip()

        return cls(
            region=_checked_region(str(read("region")).strip()),
            agent_events_bus_name=str(read("agent_events_bus_name")),
            forwarder_bus_name=str(read("forwarder_bus_name")),
            # -c on the command line passes strings: accept "27" as well as 27.
            powertools_layer_version=int(read("powertools_layer_version")),
            log_level=str(read("log_level")).upper(),
            # The Marketplace product code of the seller's listing (-c product_code=...).
            product_code=optional("product_code") or PLACEHOLDER_PRODUCT_CODE,
            account=_checked_account(optional("account") or (default_account or "").strip()),
            forwarder_template_url=_checked_template_url(optional("forwarder_template_url")),
            allow_placeholder_product_code=context_flag(
                scope.node.try_get_context(ALLOW_PLACEHOLDER_PRODUCT_CODE)
            ),
        )

    def refuse_placeholder_product_code(self) -> None:
        """Raise unless a real product code was given or this synth is declared local."""
        if self.product_code_is_placeholder and not self.allow_placeholder_product_code:
            raise ContextError(
                "product_code is not set: pass -c product_code=<your AWS Marketplace product code> "
                f"(or -c {ALLOW_PLACEHOLDER_PRODUCT_CODE}=true for a local synth that is never deployed)"
            )


def _checked_region(region: str) -> str:
    if region != METERING_REGION:
        raise ContextError(
            f"region: {region!r} cannot hold MeteringStack; use -c region={METERING_REGION} "
            "(its CloudFront web ACL and AWS Marketplace metering live there)"
        )
    return region


def _checked_account(account: str) -> str | None:
    if not account:
        return None
    if not _ACCOUNT_ID.fullmatch(account):
        raise ContextError(f"account: {account!r} is not a 12-digit AWS account id (-c account=123456789012)")
    return account


def _checked_template_url(url: str) -> str:
    if url and not _S3_TEMPLATE_URL.fullmatch(url):
        raise ContextError(
            f"forwarder_template_url: {url!r} is not an https:// Amazon S3 object URL "
            "(CloudFormation reads templates only from S3)"
        )
    return url
