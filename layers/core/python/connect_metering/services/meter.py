"""Hourly metering: for each company compute, store (write-ahead), send, settle.

BILLING.md sections 4-7. A worker run over a batch of companies:

1. per company (``meter_company.CompanyStep``): *prepare* reads the company, its subscriptions,
   environments, state and pending records (one query) and expires pending records past the acceptance
   window (their minutes leave B and flow into the next record); then, in steps of at most
   ``STEP_HOURS`` hours, each environment's usage is computed from checkpoints and the stored events
   (``meter_usage``), the records due are *planned* by the domain (usage: Q per environment with carry;
   contract: overage for the primary) and *committed* hour by hour with the state that counts them, the
   step's checkpoints with its last hour. A run's last commit waits for the batch's other companies:
   they are stored together (``MeterStore.commit_together``: as few TransactWriteItems as they fit in,
   each company still atomic and conditioned on its own state's version), before anything is sent; a
   company whose commit fails is left out of the send and redelivered;
2. *send* (``meter_send.SendStep``): every company's pending records, oldest first, share paced calls of
   up to 25 with retries; the outcomes are stored.

A crash anywhere leaves either nothing (before a commit) or stored pending records and checkpoints that
the next run sends unchanged and resumes from: Marketplace answers an identical repeat with the same
MeteringRecordId, so nothing is billed twice, and nothing is lost.

Work is sized by what it holds, not by a count of companies: companies are stepped lightest first
(finals first of all), and a step after the invocation's first starts only while the time left exceeds
the send's reserve plus the longest step so far. A company whose hours are not all metered when the
budget runs out keeps what its steps committed; the next hourly work item (the dispatcher queues every
metered company every hour) continues from its state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from connect_metering.domain.metering import MeterRequest
from connect_metering.services.meter_company import (
    CompanyReader,
    CompanyRun,
    CompanyStep,
    MeterReport,
    MeterStore,
)
from connect_metering.services.meter_send import Answers, Marketplace, SendStep, fill_report
from connect_metering.services.meter_usage import ActivityReader
from connect_metering.settings import BillingPolicy
from connect_metering.unreadable import UnreadableItems

# Hours one step computes and commits. A step's cost is linear in its hours and the environment's events
# (issue 14: 2,000 agents over 24 h took 4.7 s of CPU before the recompute was made linear), so a day
# keeps one step of the heaviest environment a small fraction of the worker's 300 s timeout and makes
# steps that line up with the activity table's day partitions.
STEP_HOURS = 24
# Time kept for the send step when the budget decides whether another step may start: a full batch's
# records at the paced rate (100 companies -> 4 calls at 4 calls/s) plus Marketplace's retries and
# back-off, with room to spare.
SEND_RESERVE_MS = 60_000

# A decorator the steps are wrapped in (the handler passes Powertools' ``tracer.capture_method``); the
# services never import Powertools.
StepDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class MeterDeferred(Exception):
    """The invocation's time budget ran out before this final metering could start: SQS redelivers it."""


class StepBudget:
    """Whether another step fits in the time left: ``remaining_ms`` (Lambda's
    ``get_remaining_time_in_millis``) minus the send's reserve must exceed the longest step so far."""

    def __init__(self, remaining_ms: Callable[[], int] | None, reserve_ms: int) -> None:
        self._remaining = remaining_ms
        self._reserve = reserve_ms
        self._longest = 0
        self.steps = 0

    def allows_step(self) -> bool:
        if self._remaining is None or self.steps == 0:
            return True  # every invocation makes progress
        return self._remaining() - self._reserve > self._longest

    def timed(self, step: Callable[[CompanyRun], None], run: CompanyRun) -> None:
        before = self._remaining() if self._remaining else 0
        try:
            step(run)
        finally:
            self.steps += 1
            if self._remaining is not None:
                self._longest = max(self._longest, before - self._remaining())


def _untraced(method: Callable[..., Any]) -> Callable[..., Any]:
    return method


class MeterWorker:
    def __init__(
        self,
        *,
        companies: CompanyReader,
        activity: ActivityReader,
        store: MeterStore,
        marketplace: Marketplace,
        policy: BillingPolicy,
        now_ms: Callable[[], int],
        unreadable: UnreadableItems | None = None,
        trace_step: StepDecorator | None = None,
        step_hours: int = STEP_HOURS,
    ) -> None:
        self._companies = companies  # the same objects the steps use (tests substitute their methods)
        self._marketplace = marketplace
        self._now_ms = now_ms
        self.unreadable = unreadable or UnreadableItems()
        company = CompanyStep(
            companies=companies,
            activity=activity,
            store=store,
            policy=policy,
            unreadable=self.unreadable,
            step_hours=step_hours,
        )
        self._company = company
        sender = SendStep(store, marketplace)
        traced = trace_step or _untraced
        self._prepare: Callable[[MeterRequest, int], CompanyRun] = traced(company.prepare)
        self._step: Callable[[CompanyRun], None] = traced(company.step)
        self._commit_last: Callable[[Sequence[CompanyRun]], list[Exception | None]] = traced(
            company.commit_last
        )
        self._send: Callable[[Sequence[CompanyRun]], Answers | None] = traced(sender.send)
        self._settle: Callable[[CompanyRun, Answers, int, bool], None] = traced(self._settle_company)

    def run(self, request: MeterRequest) -> MeterReport:
        """One company (tests and tools); the Lambda meters a whole SQS batch with ``run_batch``."""
        outcome = self.run_batch([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(
        self, requests: Sequence[MeterRequest], *, remaining_ms: Callable[[], int] | None = None
    ) -> list[MeterReport | Exception]:
        """Meter several companies: each is computed and committed on its own, in steps within the time
        budget; their pending records then share BatchMeterUsage calls of up to 25, so calls per hour
        stay at ceil(records / 25). Outcomes are in the order of ``requests``."""
        now = self._now_ms()
        outcomes: list[MeterReport | Exception] = []
        runs: dict[int, CompanyRun] = {}  # by position in ``requests``: a run is found by its key
        for position, request in enumerate(requests):
            try:
                runs[position] = self._prepare(request, now)
                outcomes.append(runs[position].report)
            except Exception as error:
                outcomes.append(error)
        self._step_all(runs, outcomes, StepBudget(remaining_ms, SEND_RESERVE_MS))
        for position, failure in zip(list(runs), self._commit_last(list(runs.values())), strict=True):
            if failure is not None:
                outcomes[position] = failure  # redelivered; its records were not stored, so not sent
                del runs[position]
        answers = self._send(list(runs.values()))
        if answers is None:
            return outcomes
        first = next(iter(runs), None)
        for position, run in runs.items():
            try:
                self._settle(run, answers, now, position == first)
            except Exception as error:
                outcomes[position] = error
        return outcomes

    def _step_all(
        self, runs: dict[int, CompanyRun], outcomes: list[MeterReport | Exception], budget: StepBudget
    ) -> None:
        """Step the companies lightest first, round after round, while the budget allows. A company
        whose step fails is left out of the send (its committed records are sent by its rerun)."""
        while True:
            waiting = sorted(
                (position for position, run in runs.items() if not run.done),
                key=lambda position: (
                    runs[position].request.kind != "final",
                    runs[position].estimated_hours(),
                ),
            )
            if not waiting or not budget.allows_step():
                break
            for position in waiting:
                if not budget.allows_step():
                    break
                try:
                    budget.timed(self._step, runs[position])
                except Exception as error:
                    outcomes[position] = error
                    del runs[position]
        for position, run in runs.items():
            run.report.hours_left = run.estimated_hours()
            if not run.done and run.request.kind == "final":
                outcomes[position] = MeterDeferred(f"{run.request.company}: final metering deferred")
        for position in [p for p, outcome in enumerate(outcomes) if isinstance(outcome, MeterDeferred)]:
            runs.pop(position, None)

    def _settle_company(self, run: CompanyRun, answers: Answers, now: int, first: bool) -> None:
        mine = fill_report(run, answers, retried=answers.retried if first else 0)
        self._company.store_refusals(run, mine)
        if run.report.still_pending == 0:
            self._company.retire_finished(run, now)


__all__ = [
    "STEP_HOURS",
    "ActivityReader",
    "CompanyReader",
    "Marketplace",
    "MeterDeferred",
    "MeterReport",
    "MeterStore",
    "MeterWorker",
]
