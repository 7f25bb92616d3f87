"""The error and the input checks shared by the incremental usage core (BILLING.md sections 3 to 5).

Used by ``agent_carry``, ``attribution``, ``usage`` and ``quantity``; every message names the field and
the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.domain.sessions import SessionInputError


class UsageInputError(SessionInputError):
    """Input that breaks a rule of the incremental core; the message names the field and the rule."""


def is_int(value: object) -> bool:
    return type(value) is int


def require_int(value: object, name: str, *, minimum: int | None = None) -> int:
    if type(value) is not int:
        raise UsageInputError(f"{name}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageInputError(f"{name}: must be >= {minimum}, got {value}")
    return value


def require_hour(value: object, name: str) -> int:
    if type(value) is not int or value % MS_PER_HOUR != 0:
        raise UsageInputError(f"{name}: must be the epoch ms of a whole UTC hour, got {value!r}")
    return value


def require_bool(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise UsageInputError(f"{name}: must be a bool, got {value!r}")
    return value


def require_mapping(value: object, name: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise UsageInputError(f"{name}: must be an object, got {type(value).__name__}")
    return value
