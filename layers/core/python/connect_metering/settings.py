"""Settings: the environment is read once, at cold start, into pydantic models; logic never reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BillingPolicy(BaseModel):
    """BILLING.md section 8: the policy values and their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    billable_time: Literal["logged_in", "online"] = "logged_in"
    silence_timeout: int = Field(default=360, ge=0, description="seconds")
    grace: int = Field(default=600, ge=0, description="seconds")
    max_record_age: int = Field(default=21_600, ge=0, le=21_600, description="seconds")
    max_event_age: int = Field(default=604_800, ge=0, description="seconds")
    usage_dimension: str = Field(default="agent_minutes", min_length=1)
    overage_dimension: str = Field(default="overage_agents", min_length=1)
    entitlement_dimension: str = Field(default="licensed_agents", min_length=1)
    allocation_tag_key: str = Field(default="environment", min_length=1)


class Settings(BaseModel):
    """Everything the Lambdas need from their environment; each handler ``require``s what it uses."""

    model_config = ConfigDict(frozen=True)

    tenancy_table: str = ""
    activity_table: str = ""
    quarantine_table: str = ""
    ledger_table: str = ""
    meter_queue_url: str = ""
    quarantine_retention_days: int = Field(default=30, ge=14)
    product_code: str = ""
    policy: BillingPolicy = BillingPolicy()
    # Registration and subscription lifecycle (issue 5): what the sign-up success page tells buyers.
    agent_events_bus_arn: str = ""
    forwarder_template_url: str = ""

    def require(self, *names: str) -> Settings:
        missing = [TABLE_VARIABLES[name] for name in names if not getattr(self, name)]
        if missing:
            raise ValueError(f"missing environment variables: {', '.join(missing)}")
        return self


TABLE_VARIABLES = {
    "tenancy_table": "TENANCY_TABLE",
    "activity_table": "ACTIVITY_TABLE",
    "quarantine_table": "QUARANTINE_TABLE",
    "ledger_table": "LEDGER_TABLE",
    "meter_queue_url": "METER_QUEUE_URL",
    "product_code": "PRODUCT_CODE",
}
# Registration and subscription lifecycle (issue 5).
TABLE_VARIABLES.update(
    {"agent_events_bus_arn": "AGENT_EVENTS_BUS_ARN", "forwarder_template_url": "FORWARDER_TEMPLATE_URL"}
)


POLICY_VARIABLES = {
    "billable_time": "BILLABLE_TIME",
    "silence_timeout": "SILENCE_TIMEOUT_SECONDS",
    "grace": "GRACE_SECONDS",
    "max_record_age": "MAX_RECORD_AGE_SECONDS",
    "max_event_age": "MAX_EVENT_AGE_SECONDS",
    "usage_dimension": "USAGE_DIMENSION",
    "overage_dimension": "OVERAGE_DIMENSION",
    "entitlement_dimension": "ENTITLEMENT_DIMENSION",
    "allocation_tag_key": "ALLOCATION_TAG_KEY",
}


def settings_from(environ: Mapping[str, str]) -> Settings:
    policy = {name: environ[variable] for name, variable in POLICY_VARIABLES.items() if variable in environ}
    tables = {name: environ.get(variable, "") for name, variable in TABLE_VARIABLES.items()}
    retention = environ.get("QUARANTINE_RETENTION_DAYS")
    extra = {"quarantine_retention_days": retention} if retention else {}
    return Settings.model_validate({**tables, **extra, "policy": BillingPolicy.model_validate(policy)})


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read once per Lambda container."""
    return settings_from(os.environ)
