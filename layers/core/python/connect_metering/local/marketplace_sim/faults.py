"""Faults and call accounting: outages, revoked licences, dropped records and empty pages (all
deterministic by seed), the 1-second throttle, per-operation counters and the simulator's ids."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from connect_metering.domain.instants import iso_ms, to_ms
from connect_metering.local.marketplace_sim.wire import MarketplaceError, licence_id, require_aware

THROTTLE_WINDOW_SECONDS = 1.0

OutageError = Literal["ThrottlingException", "InternalServiceErrorException", "DisabledApiException"]
OUTAGE_ERRORS: tuple[OutageError, ...] = (
    "ThrottlingException",
    "InternalServiceErrorException",
    "DisabledApiException",
)


@dataclass(frozen=True)
class Outage:
    """Every call of every operation fails with ``error`` while ``start <= clock() < end``."""

    start: datetime
    end: datetime
    error: OutageError

    def __post_init__(self) -> None:
        require_aware(self.start, "Outage.start")
        require_aware(self.end, "Outage.end")
        if self.end <= self.start:
            raise ValueError(f"Outage ends ({self.end}) before it starts ({self.start})")

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def answer(self, operation: str) -> MarketplaceError:
        status = 500 if self.error == "InternalServiceErrorException" else 400
        window = f"{iso_ms(to_ms(self.start))}..{iso_ms(to_ms(self.end))}"
        return MarketplaceError(self.error, f"{operation} unavailable: simulated outage {window}", status)


@dataclass(frozen=True)
class Revocation:
    """From ``at``, the licence is revoked: any BatchMeterUsage call carrying one of its records is
    refused whole with InvalidLicenseException (the licence is matched by its licence id)."""

    license_arn: str
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at, "Revocation.at")

    def revokes(self, license_arn: str, moment: datetime) -> bool:
        return licence_id(self.license_arn) == licence_id(license_arn) and moment >= self.at


@dataclass(frozen=True)
class FaultPlan:
    """Deterministic faults: the same seed and the same calls give the same answers."""

    seed: int = 0
    outages: tuple[Outage, ...] = ()
    unprocessed_rate: float = 0.0
    empty_page_rate: float = 0.0
    revoked: tuple[Revocation, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.unprocessed_rate <= 1.0:
            raise ValueError(f"unprocessed_rate must be in [0, 1], got {self.unprocessed_rate}")
        # At 1.0 every page would be empty and paging would never end.
        if not 0.0 <= self.empty_page_rate < 1.0:
            raise ValueError(f"empty_page_rate must be in [0, 1), got {self.empty_page_rate}")

    def outage(self, moment: datetime, modeled: set[str]) -> Outage | None:
        """The outage in force, if any; only one whose error the operation models answers it."""
        return next(
            (outage for outage in self.outages if outage.covers(moment) and outage.error in modeled),
            None,
        )

    def revocation(self, license_arn: str, moment: datetime) -> Revocation | None:
        return next((revoked for revoked in self.revoked if revoked.revokes(license_arn, moment)), None)


def fraction(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from its inputs (independent of call order)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class OperationCounters:
    calls: int = 0
    throttled: int = 0
    faulted: int = 0
    rejected: int = 0
    succeeded: int = 0
    unprocessed_records: int = 0


class SlidingWindowThrottle:
    """At most ``limit`` admitted calls per operation in any window (t - 1 s, t]."""

    def __init__(self, limit: int, monotonic: Callable[[], float]) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._admitted: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, operation: str) -> bool:
        now = self._monotonic()
        admitted = self._admitted[operation]
        while admitted and admitted[0] <= now - THROTTLE_WINDOW_SECONDS:
            admitted.popleft()
        if len(admitted) >= self._limit:
            return False
        admitted.append(now)
        return True


class DeterministicIds:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._issued: dict[str, int] = defaultdict(int)

    def _digest(self, kind: str) -> bytes:
        self._issued[kind] += 1
        return hashlib.sha256(f"{self._seed}|{kind}|{self._issued[kind]}".encode()).digest()

    def uuid(self, kind: str) -> str:
        return str(uuid.UUID(bytes=self._digest(kind)[:16], version=4))

    def token(self) -> str:
        return base64.urlsafe_b64encode(self._digest("token")).decode().rstrip("=")
