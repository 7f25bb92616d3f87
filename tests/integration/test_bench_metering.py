"""The metering benchmark reports DynamoDB requests per subscription-hour for companies whose agents were
active and for idle ones, besides the average (issue 14 target: at most 3 for an active company)."""

from __future__ import annotations

import pytest

from connect_metering.local.bench import measure_metering, metering_figures
from tests.conftest import environment_restored

pytestmark = pytest.mark.integration


def test_active_and_idle_companies_are_measured_apart_and_add_up_to_the_average() -> None:
    subscriptions = 20
    with environment_restored():
        measured, throttled = measure_metering(subscriptions=subscriptions, active_share=0.5)
    active = measured.requests_per_active_subscription_hour
    idle = measured.requests_per_idle_subscription_hour
    assert measured.records == subscriptions
    assert idle < measured.requests_per_subscription_hour < active <= 3
    # every request is charged to someone: the average is the companies' mean, so the active count is whole
    active_companies = subscriptions * (measured.requests_per_subscription_hour - idle) / (active - idle)
    assert active_companies == pytest.approx(round(active_companies))
    assert 0 < round(active_companies) < subscriptions
    figures = {figure.name: figure for figure in metering_figures(measured, throttled)}
    per_active = figures["metering: DynamoDB requests per subscription-hour, company with agents active"]
    assert per_active.value == active
    assert per_active.meets_target is True
