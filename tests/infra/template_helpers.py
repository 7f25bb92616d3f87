"""Small readers over synthesized template JSON, shared by the infra tests."""

from __future__ import annotations

from typing import Any


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of `resource_type` in a template's JSON."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    matches = resources_of_type(template, resource_type)
    assert len(matches) == 1, f"expected one {resource_type}, found {sorted(matches)}"
    return next(iter(matches.items()))


def resource_with_prefix(
    template: dict[str, Any], resource_type: str, prefix: str
) -> tuple[str, dict[str, Any]]:
    """The one resource of `resource_type` whose logical id starts with `prefix` (its construct path)."""
    matches = {
        logical_id: resource
        for logical_id, resource in resources_of_type(template, resource_type).items()
        if logical_id.startswith(prefix)
    }
    assert len(matches) == 1, f"expected one {resource_type} under {prefix}, found {sorted(matches)}"
    return next(iter(matches.items()))
