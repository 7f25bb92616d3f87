from __future__ import annotations

import pytest
from pydantic import ValidationError

from connect_metering.settings import (
    AdminSettings,
    BillingPolicy,
    DispatchSettings,
    IngestSettings,
    LifecycleSettings,
    MeterWorkerSettings,
    RegistrationSettings,
    load_settings,
)

pytestmark = pytest.mark.unit

INGEST_TABLES = {"TENANCY_TABLE": "t", "ACTIVITY_TABLE": "a", "QUARANTINE_TABLE": "q"}


def test_defaults_are_billing_md_section_8() -> None:
    settings = AdminSettings.from_environment({"TENANCY_TABLE": "tenancy", "ACTIVITY_TABLE": "activity"})
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
    settings = IngestSettings.from_environment(
        {**INGEST_TABLES, "BILLABLE_TIME": "online", "GRACE_SECONDS": "900"}
    )
    assert settings.policy.billable_time == "online"
    assert settings.policy.grace == 900


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValidationError, match="billable_time"):
        IngestSettings.from_environment({**INGEST_TABLES, "BILLABLE_TIME": "always"})
    with pytest.raises(ValidationError, match="QUARANTINE_RETENTION_DAYS"):
        IngestSettings.from_environment({**INGEST_TABLES, "QUARANTINE_RETENTION_DAYS": "7"})


def test_missing_tables_are_named() -> None:
    with pytest.raises(ValidationError) as refused:
        IngestSettings.from_environment({"TENANCY_TABLE": "t"})
    assert {error["loc"] for error in refused.value.errors()} == {("ACTIVITY_TABLE",), ("QUARANTINE_TABLE",)}


def test_a_blank_required_variable_counts_as_missing() -> None:
    with pytest.raises(ValidationError, match="TENANCY_TABLE"):
        MeterWorkerSettings.from_environment(
            {"TENANCY_TABLE": "", "ACTIVITY_TABLE": "a", "LEDGER_TABLE": "l"}
        )


def test_the_lifecycle_and_registration_need_the_meter_queue() -> None:
    # No log-only stand-in: a subscription that ends must have its last hours metered.
    for kind in (LifecycleSettings, RegistrationSettings):
        assert kind.variables()["METER_QUEUE_URL"] is True
        with pytest.raises(ValidationError, match="METER_QUEUE_URL"):
            kind.from_environment({"TENANCY_TABLE": "t"})


def test_each_handler_names_what_it_requires() -> None:
    def required(kind: type[AdminSettings] | type[DispatchSettings] | type[IngestSettings]) -> set[str]:
        return {name for name, needed in kind.variables().items() if needed}

    assert required(IngestSettings) == {"TENANCY_TABLE", "ACTIVITY_TABLE", "QUARANTINE_TABLE"}
    assert required(DispatchSettings) == {"TENANCY_TABLE", "ACTIVITY_TABLE", "METER_QUEUE_URL"}
    assert required(AdminSettings) == {"TENANCY_TABLE", "ACTIVITY_TABLE"}
    assert "GRACE_SECONDS" in IngestSettings.variables()  # every policy value is readable, none required


def test_max_record_age_cannot_exceed_the_marketplace_window() -> None:
    with pytest.raises(ValidationError, match="max_record_age"):
        IngestSettings.from_environment({**INGEST_TABLES, "MAX_RECORD_AGE_SECONDS": "30000"})


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in INGEST_TABLES.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    first = load_settings(IngestSettings)
    monkeypatch.setenv("TENANCY_TABLE", "other")
    assert load_settings(IngestSettings) is first
    load_settings.cache_clear()
    assert load_settings(IngestSettings).tenancy_table == "other"
    load_settings.cache_clear()
