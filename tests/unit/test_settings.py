from __future__ import annotations

import pytest
from pydantic import ValidationError

from connect_metering.settings import BillingPolicy, settings_from

pytestmark = pytest.mark.unit


def test_defaults_are_billing_md_section_8() -> None:
    settings = settings_from({"TENANCY_TABLE": "tenancy"})
    assert settings.policy == BillingPolicy(
        billable_time="logged_in",
        silence_timeout=360,
        grace=600,
        max_record_age=21_600,
        max_event_age=604_800,
        usage_dimension="agent_minutes",
        overage_dimension="overage_agents",
        entitlement_dimension="licensed_agents",
        allocation_tag_key="environment",
    )


def test_policy_values_come_from_the_environment() -> None:
    settings = settings_from({"TENANCY_TABLE": "t", "BILLABLE_TIME": "online", "GRACE_SECONDS": "900"})
    assert settings.policy.billable_time == "online"
    assert settings.policy.grace == 900


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValidationError, match="billable_time"):
        settings_from({"TENANCY_TABLE": "t", "BILLABLE_TIME": "always"})
    with pytest.raises(ValidationError, match="quarantine_retention_days"):
        settings_from({"QUARANTINE_RETENTION_DAYS": "7"})


def test_missing_tables_are_named() -> None:
    settings = settings_from({"TENANCY_TABLE": "t"})
    assert settings.require("tenancy_table") is settings
    with pytest.raises(ValueError, match="ACTIVITY_TABLE, QUARANTINE_TABLE"):
        settings.require("tenancy_table", "activity_table", "quarantine_table")


def test_max_record_age_cannot_exceed_the_marketplace_window() -> None:
    with pytest.raises(ValidationError, match="max_record_age"):
        settings_from({"TENANCY_TABLE": "t", "MAX_RECORD_AGE_SECONDS": "30000"})
