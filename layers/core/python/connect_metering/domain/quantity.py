"""The hourly quantity of a subscription and its allocations to environments (BILLING.md sections 5, 9).

Pure: no boto3, no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from connect_metering.domain.instants import MS_PER_MINUTE
from connect_metering.domain.usage_inputs import UsageInputError, require_int, require_mapping

DEFAULT_ALLOCATION_TAG_KEY: Final = "environment"


def hour_quantity(total_ms: int, already_billed_minutes: int) -> int:
    """Q(s, e, H) = max(0, floor(T / 60 s) - B): whole minutes not billed yet; fractions carry over."""
    total = require_int(total_ms, "total_ms", minimum=0)
    billed = require_int(already_billed_minutes, "already_billed_minutes", minimum=0)
    return max(0, total // MS_PER_MINUTE - billed)


def usage_allocations(
    quantities_by_environment: Mapping[str, int], *, tag_key: str = DEFAULT_ALLOCATION_TAG_KEY
) -> tuple[int, list[dict[str, Any]]]:
    """The record's ``Quantity`` (sum of Q over environments) and its ``UsageAllocations``.

    One allocation per environment with Q > 0, tagged ``[{"Key": tag_key, "Value": <environment name>}]``,
    in environment-name order; no allocations when the quantity is 0 (BILLING.md sections 5 and 9).
    """
    if not isinstance(tag_key, str) or not tag_key:
        raise UsageInputError(f"tag_key: must be a non-empty string, got {tag_key!r}")
    total = 0
    allocations: list[dict[str, Any]] = []
    for name, quantity in sorted(
        require_mapping(quantities_by_environment, "quantities_by_environment").items()
    ):
        if not isinstance(name, str) or not name:
            raise UsageInputError(
                f"quantities_by_environment: environment name must be a non-empty string, got {name!r}"
            )
        require_int(quantity, f"quantities_by_environment[{name!r}]", minimum=0)
        if quantity > 0:
            total += quantity
            allocations.append(
                {"AllocatedUsageQuantity": quantity, "Tags": [{"Key": tag_key, "Value": name}]}
            )
    return total, allocations
