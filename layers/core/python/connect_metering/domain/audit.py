"""Audit records of the admin API's changes: who (the IAM principal), what (route and target), and how
it ended. Pure: the instant and the caller are given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import ALIAS_PATTERN

# Path values are whatever the caller typed; an audit key must stay small and not be steerable.
MAX_TARGET_LENGTH = 300
UNKNOWN_COMPANY = "-"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    company_alias: str
    at: datetime
    request_id: str
    caller: str
    route: str
    target: str
    outcome: str
    status: int

    @property
    def partition(self) -> str:
        """``AUDIT#<alias>``; a malformed alias is audited under one shared key rather than its own."""
        alias = self.company_alias if ALIAS_PATTERN.fullmatch(self.company_alias) else UNKNOWN_COMPANY
        return f"AUDIT#{alias}"

    @property
    def sort_key(self) -> str:
        """Time first, so a company's changes read back in order; the request id keeps them apart."""
        return f"{iso(self.at)}#{self.request_id}"

    def fields(self) -> dict[str, str | int]:
        """What the log line and the stored item say (never a request body)."""
        return {
            "company": self.company_alias[:MAX_TARGET_LENGTH],
            "at": iso(self.at),
            "request_id": self.request_id,
            "caller": self.caller,
            "route": self.route[:MAX_TARGET_LENGTH],
            "target": self.target[:MAX_TARGET_LENGTH],
            "outcome": self.outcome,
            "status": self.status,
        }
