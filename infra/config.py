"""Settings of the CDK app, read once from the app context.

cdk.json holds the defaults. The CDK CLI passes them to the app itself, but `python infra/app.py`
and the tests do not go through the CLI, so the same file is read here as the base layer: one
source of truth for both ways of running the app.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class InfraSettings:
    """Everything the stacks read from the context, validated once."""

    region: str
    agent_events_bus_name: str
    forwarder_bus_name: str
    powertools_layer_version: int
    log_level: str
    product_code: str

    @classmethod
    def from_scope(cls, scope: Construct) -> InfraSettings:
        def read(key: str) -> Any:
            value = scope.node.try_get_context(key)
            if value is None:
                raise KeyError(f"context key {key!r} is missing (set it in cdk.json or with -c)")
            return value

        return cls(
            region=str(read("region")),
            agent_events_bus_name=str(read("agent_events_bus_name")),
            forwarder_bus_name=str(read("forwarder_bus_name")),
            # -c on the command line passes strings: accept "27" as well as 27.
            powertools_layer_version=int(read("powertools_layer_version")),
            log_level=str(read("log_level")).upper(),
            # The Marketplace product code (set with -c product_code=... at deploy).
            product_code=str(read("product_code")),
        )
