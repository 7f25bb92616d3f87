"""Every synthesized function's environment against its handler's settings class: each required
variable present and non-empty, and no variable its handler does not read (a retyped name would be one)."""

from __future__ import annotations

from typing import Any

import pytest

from connect_metering.observability import powertools_environment, service_name
from connect_metering.settings import (
    AdminSettings,
    ConsoleSettings,
    DispatchSettings,
    HandlerSettings,
    IngestSettings,
    LifecycleSettings,
    MeterWorkerSettings,
    RegistrationSettings,
)
from tests.infra.template_helpers import resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

SETTINGS_BY_FUNCTION: dict[str, type[HandlerSettings]] = {
    "ingest": IngestSettings,
    "meter_dispatch": DispatchSettings,
    "meter_worker": MeterWorkerSettings,
    "lifecycle": LifecycleSettings,
    "register": RegistrationSettings,
    "admin": AdminSettings,
    "console": ConsoleSettings,
}
POWERTOOLS_VARIABLES = set(powertools_environment("any", "INFO"))


def _variables_by_service(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for logical_id, function in resources_of_type(template, "AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert "POWERTOOLS_SERVICE_NAME" in variables, f"{logical_id} is not one of the product's handlers"
        found[variables["POWERTOOLS_SERVICE_NAME"]] = variables
    return found


def test_every_handler_is_deployed_once(metering_json: dict[str, Any]) -> None:
    assert set(_variables_by_service(metering_json)) == {service_name(name) for name in SETTINGS_BY_FUNCTION}


@pytest.mark.parametrize("function", sorted(SETTINGS_BY_FUNCTION))
def test_environment_matches_the_handlers_settings(metering_json: dict[str, Any], function: str) -> None:
    variables = _variables_by_service(metering_json)[service_name(function)]
    readable = SETTINGS_BY_FUNCTION[function].variables()
    required = {name for name, needed in readable.items() if needed}
    assert required <= set(variables), f"{function} lacks {sorted(required - set(variables))}"
    assert all(variables[name] not in ("", None) for name in required)
    unknown = set(variables) - set(readable) - POWERTOOLS_VARIABLES
    assert not unknown, f"{function} is given variables its handler never reads: {sorted(unknown)}"
