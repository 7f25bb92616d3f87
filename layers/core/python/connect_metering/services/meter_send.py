"""The send step of a meter run: every company's pending records share paced BatchMeterUsage calls of up
to 25 (``adapters/marketplace_meter.py`` behind the ``Marketplace`` port), then the outcomes are stored.

BILLING.md section 6. Records are marked in flight before the call (an attempt whose answer is never
stored may have been accepted: expiry must tell a lost answer from a known refusal); after it, accepted
records are settled, known failures marked as such, and final refusals leave B with the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from connect_metering.domain.metering import MeteringRecord, RecordStatus
from connect_metering.services.meter_company import CompanyRun, MeterStore


class Marketplace(Protocol):
    retried_records: int

    def send(self, records: Sequence[MeteringRecord]) -> list[MeteringRecord]: ...


@dataclass(frozen=True)
class Answers:
    """What Marketplace answered for the records of one send, by record key."""

    settled: dict[str, MeteringRecord]  # accepted or refused for good
    refused: dict[str, MeteringRecord]  # refused by a call of their own: still pending
    retried: int


class SendStep:
    def __init__(self, store: MeterStore, marketplace: Marketplace) -> None:
        self._store = store
        self._marketplace = marketplace

    def send(self, runs: Sequence[CompanyRun]) -> Answers | None:
        """Send every run's pending records in shared calls and store what is known of each; None when
        nothing was pending."""
        pending = [record for run in runs for record in run.pending]
        if not pending:
            return None
        self._store.mark_in_flight([record for run in runs for record in run.to_mark])
        retried_before = self._marketplace.retried_records
        answered = self._marketplace.send(pending)
        answers = Answers(
            settled={record.key: record for record in answered if record.status is not RecordStatus.PENDING},
            refused={record.key: record for record in answered if record.status is RecordStatus.PENDING},
            retried=self._marketplace.retried_records - retried_before,
        )
        self._store_outcomes(pending, answers)
        return answers

    def _store_outcomes(self, pending: list[MeteringRecord], answers: Answers) -> None:
        unsettled = [
            record.sending()
            for record in pending
            if record.key not in answers.settled and record.key not in answers.refused
        ]
        if unsettled or answers.refused:
            # Every attempt of these got an answer (throttled, 5xx, unprocessed, refused with a call of
            # its own, stored as its outcome): known not accepted, still pending.
            self._store.mark_in_flight(
                [record.after_known_failure() for record in unsettled] + list(answers.refused.values())
            )
        accepted = [record for record in answers.settled.values() if record.status is RecordStatus.ACCEPTED]
        if accepted:
            self._store.settle(accepted)


def fill_report(run: CompanyRun, answers: Answers, *, retried: int) -> list[MeteringRecord]:
    """The run's report from the answers, found by the run's own record keys; its settled records."""
    mine = [answers.settled[record.key] for record in run.pending if record.key in answers.settled]
    run.report.records_settled = mine
    run.report.records_refused = [
        answers.refused[record.key] for record in run.pending if record.key in answers.refused
    ]
    run.report.records_retried = retried
    run.report.still_pending = len(run.pending) - len(mine)
    return mine
