"""The per-company step of a meter run: prepare (read the company's state and pending records), then, in
steps of at most ``step_hours`` hours, compute usage from the activity, plan the records due (the
domain decides them) and commit them write-ahead with the state that counts them and the checkpoints.

BILLING.md sections 4-7 and 9. Every commit is one transaction conditioned on the state's version; a
step's last commit also stores its checkpoints and moves ``checkpoint_through_ms`` to the step's end,
so a run stopped between steps (its time budget spent, or a crash) leaves committed records and
checkpoints that the next run resumes from: it starts at ``checkpoint_through_ms``, recomputes nothing
before it and plans no hour twice (each subscription's ``through_ms`` moved with its records).

The run's very last commit is kept (``CompanyRun.last_commit``) and stored with the other runs' of the
batch (``commit_last``), before the send: in a steady hour that is a company's only commit, and sharing
transactions takes it from one request per company to one per up to 25 companies (issue 14).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from connect_metering.domain.activity import Checkpoint
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, to_ms
from connect_metering.domain.metering import (
    CompanyMeterState,
    CompanySnapshot,
    MeterCommit,
    MeteringRecord,
    MeterRequest,
    RecordStatus,
    active_in_hour,
    is_expired,
    overage_payer,
    plan_overage_record,
    plan_usage_record,
)
from connect_metering.domain.sessions import BillableTimePolicy
from connect_metering.domain.tenancy import PricingModel, Subscription
from connect_metering.domain.usage import UsageView
from connect_metering.services.meter_usage import MS_PER_DAY, ActivityReader, Carry, StepSpan, UsageCalculator
from connect_metering.settings import BillingPolicy
from connect_metering.unreadable import PENDING_RECORDS, UnreadableItems


class CompanyReader(Protocol):
    def load_company(self, alias: str) -> CompanySnapshot | None: ...
    def save_subscription(self, subscription: Subscription, *, metered: bool | None = None) -> None: ...


class MeterStore(Protocol):
    def commit(
        self,
        company: str,
        *,
        version: int,
        state: CompanyMeterState,
        new_records: Sequence[MeteringRecord],
        settled: Sequence[MeteringRecord] = (),
        checkpoints: Sequence[Checkpoint] = (),
    ) -> int: ...
    def commit_together(self, commits: Sequence[MeterCommit]) -> list[int | Exception]: ...
    def settle(self, records: Sequence[MeteringRecord]) -> None: ...
    def mark_in_flight(self, records: Sequence[MeteringRecord]) -> None: ...


@dataclass
class MeterReport:
    company: str
    records_stored: list[MeteringRecord] = field(default_factory=list)
    records_settled: list[MeteringRecord] = field(default_factory=list)
    records_expired: list[MeteringRecord] = field(default_factory=list)
    still_pending: int = 0
    records_retried: int = 0
    records_unconfirmed: list[MeteringRecord] = field(default_factory=list)
    # Refused by a call of their own (``result`` Error:<code>): still pending, alarmed.
    records_refused: list[MeteringRecord] = field(default_factory=list)
    # Steps committed by this run, and whether hours are left for the next run (the time budget ran out).
    steps: int = 0
    hours_left: int = 0

    @property
    def metered_minutes(self) -> int:
        return sum(
            record.quantity for record in self.records_settled if record.status is RecordStatus.ACCEPTED
        )


@dataclass(eq=False)  # compared by identity: two runs are never "equal"
class CompanyRun:
    """One company's run in progress: what was read, what is due, and what the steps committed."""

    request: MeterRequest
    report: MeterReport
    snapshot: CompanySnapshot | None = None
    pending: list[MeteringRecord] = field(default_factory=list)
    state: CompanyMeterState = field(default_factory=CompanyMeterState)
    version: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    to_mark: list[MeteringRecord] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    expired: list[MeteringRecord] = field(default_factory=list)
    done: bool = True
    carried: dict[str, Carry] = field(default_factory=dict)  # between steps, by instance ARN
    # The run's last commit, stored with the other runs' before the send (``CompanyStep.commit_last``).
    last_commit: MeterCommit | None = None

    @property
    def last_hour(self) -> int:
        return self.hours[-1] if self.hours else self.request.through_ms

    def span_start(self) -> int:
        """The first boundary this run must compute from (before late events are added per environment)."""
        starts = [hour for hour in [*self.hours[:1], self.state.checkpoint_through_ms] if hour is not None]
        return min(starts) if starts else self.last_hour

    def estimated_hours(self) -> int:
        """The work estimate the worker orders companies by: hours to compute (each over every event of
        the company's environments in that hour)."""
        if self.done:
            return 0
        starts = [self.span_start(), *self.request.recompute_from.values()]
        return max(0, (self.last_hour - min(starts)) // MS_PER_HOUR + 1)


class CompanyStep:
    def __init__(
        self,
        *,
        companies: CompanyReader,
        activity: ActivityReader,
        store: MeterStore,
        policy: BillingPolicy,
        unreadable: UnreadableItems,
        step_hours: int,
    ) -> None:
        self._companies = companies
        self._store = store
        self._policy = policy
        self._unreadable = unreadable
        self._step_hours = step_hours
        self._usage = UsageCalculator(
            activity, BillableTimePolicy(policy.billable_time), policy.silence_timeout * 1000
        )

    # Prepare ---------------------------------------------------------------------------------------

    def prepare(self, request: MeterRequest, now: int) -> CompanyRun:
        """Read the company: state, pending records (expired ones taken out), the hours due."""
        run = CompanyRun(request, MeterReport(request.company))
        snapshot = self._companies.load_company(request.company)
        if snapshot is None:
            return run
        run.snapshot = snapshot
        run.state = CompanyMeterState.from_json(snapshot.meter_state)
        run.version = snapshot.meter_version
        loaded = self._pending_records(request.company, snapshot.pending_records)
        run.subscriptions = [sub for sub in snapshot.subscriptions if sub.started is not None]
        self._take_expired(run, [record.recovered() for record in loaded], loaded, now)
        run.request = self._bounded(request, now)
        run.hours = self._hours_to_meter(run.request, run.subscriptions, run.state)
        run.done = not (run.hours or run.expired or run.request.recompute_from)
        return run

    def _take_expired(
        self, run: CompanyRun, pending: list[MeteringRecord], loaded: list[MeteringRecord], now: int
    ) -> None:
        max_age = self._policy.max_record_age * 1000
        expired = [record.expire() for record in pending if is_expired(record, now, max_age)]
        for record in expired:
            if record.status is RecordStatus.EXPIRED:
                run.state.count(record, -1)  # never accepted: its minutes flow into the next record
        pending = [record for record in pending if not is_expired(record, now, max_age)]
        run.expired = expired
        run.report.records_expired = [record for record in expired if record.status is RecordStatus.EXPIRED]
        run.report.records_unconfirmed = [
            record for record in expired if record.status is not RecordStatus.EXPIRED
        ]
        before = {record.key: record for record in loaded}
        # Marked before the call: records not in flight, and those whose lost answer must now be kept.
        run.to_mark = [
            record.sending() for record in pending if not record.in_flight or record != before[record.key]
        ]
        run.pending = [record.sending() for record in pending]

    def _pending_records(self, company: str, texts: Sequence[str]) -> list[MeteringRecord]:
        records: list[MeteringRecord] = []
        for text in texts:
            try:
                records.append(MeteringRecord.from_json(_json(text)))
            except (KeyError, TypeError, ValueError) as error:
                self._unreadable.skip(PENDING_RECORDS, f"COMPANY#{company} {text[:120]}", error)
        return records

    def _bounded(self, request: MeterRequest, now: int) -> MeterRequest:
        """Recompute no earlier than now - max_event_age: an event older than that at its arrival is
        quarantined (BILLING.md section 2 rule 5), so the hours before cannot have changed. Without this
        bound a marker dated in year 999 would recompute a thousand years of checkpoints."""
        oldest = hour_floor(now - self._policy.max_event_age * 1000)
        if all(hour >= oldest for hour in request.recompute_from.values()):
            return request
        return replace(
            request, recompute_from={arn: max(hour, oldest) for arn, hour in request.recompute_from.items()}
        )

    def _hours_to_meter(
        self, request: MeterRequest, subscriptions: Sequence[Subscription], state: CompanyMeterState
    ) -> list[int]:
        spans = [
            span
            for sub in subscriptions
            if request.kind != "final" or sub.key == request.subscription
            if (span := _due_span(sub, request, state)) is not None
        ]
        if not spans:
            return []
        first = min(start for start, _ in spans)
        last = max(end for _, end in spans)
        return list(range(first, last + 1, MS_PER_HOUR))

    # One step: usage, plan, commit -----------------------------------------------------------------

    def step(self, run: CompanyRun) -> None:
        """Meter the next at most ``step_hours`` hours of the run, and commit them. Final metering runs
        in one step: it stores no checkpoints, so a later step could not resume from them."""
        snapshot = run.snapshot
        if snapshot is None or run.done:
            return
        span = self._next_span(run)
        usage = {
            env.name: self._usage.environment_usage(
                env,
                span,
                run.request.recompute_from.get(env.instance_arn.arn),
                run.state,
                run.subscriptions,
                snapshot.activity_counts.get(env.name, 0),
                run.carried,
            )
            for env in snapshot.environments
        }
        checkpoints = (
            [
                Checkpoint(env.instance_arn.arn, boundary, checkpoint)
                for env in snapshot.environments
                for boundary, checkpoint in usage[env.name].checkpoints.items()
            ]
            if span.hourly
            else []
        )
        # An environment whose account claim is unproven is computed (its checkpoints keep its usage) but
        # not billed; once verified, its T(s, e, H) is cumulative and B(s, e) still 0, so the first
        # record after verification carries all its earlier minutes (BILLING.md section 5).
        verified = {env.name for env in snapshot.environments if env.is_verified}
        views = {name: env_usage.views for name, env_usage in usage.items() if name in verified}
        self._commit_hours(run, span, views, checkpoints)
        # The recompute asked for is done through this step; the state's checkpoint carries the rest.
        run.request = replace(run.request, recompute_from={})
        run.hours = [hour for hour in run.hours if hour > span.last_hour_ms]
        run.expired = []
        run.report.steps += 1
        run.done = span.final_step

    def _next_span(self, run: CompanyRun) -> StepSpan:
        hourly = run.request.kind == "hourly"
        start = min([run.span_start(), *run.request.recompute_from.values()])
        last = run.last_hour
        if hourly:
            last = min(last, _step_end(start, self._step_hours))
        hours = [hour for hour in run.hours if hour <= last]
        return StepSpan(run.span_start(), last, hours, hourly, final_step=last == run.last_hour)

    def _commit_hours(
        self,
        run: CompanyRun,
        span: StepSpan,
        views: Mapping[str, Mapping[int, UsageView]],
        checkpoints: list[Checkpoint],
    ) -> None:
        """One transaction per hour: hour H's records are stored with the B that counts them before
        hour H + 1 is planned from that B (BILLING.md section 9). The step's last one also points the
        state at the new checkpoints, which it stores (or which were stored just before it)."""
        to_settle = list(run.expired)
        hours: list[int | None] = [*span.hours] or [None]
        for index, hour in enumerate(hours):
            records = (
                self._plan_hour(run, hour, {name: by_hour[hour] for name, by_hour in views.items()})
                if hour is not None
                else []
            )
            is_last = index == len(hours) - 1
            if is_last and span.hourly:
                run.state.checkpoint_through_ms = span.last_hour_ms + MS_PER_HOUR
            work = MeterCommit(
                run.request.company,
                run.version,
                run.state,
                records,
                to_settle,
                checkpoints if is_last else [],
            )
            if is_last and span.final_step:
                # Nothing of this run is written after it before the send; it keeps the state as it is now.
                run.last_commit = replace(work, state=CompanyMeterState.from_json(run.state.to_json()))
            else:
                run.version = self._store.commit(
                    work.company,
                    version=work.version,
                    state=work.state,
                    new_records=work.new_records,
                    settled=work.settled,
                    checkpoints=work.checkpoints,
                )
            to_settle = []
            run.report.records_stored += records
            run.pending += records

    def _plan_hour(self, run: CompanyRun, hour: int, views: Mapping[str, UsageView]) -> list[MeteringRecord]:
        """The records due at ``hour``, as the domain plans them, counted in the state."""
        request, state = run.request, run.state
        due = [
            sub
            for sub in run.subscriptions
            if (request.kind == "hourly" or sub.key == request.subscription)
            and (state.progress(sub.key).through_ms or 0) < hour
            and hour <= _last_hour(sub, request)
        ]
        records = [record for sub in due if (record := self._usage_record(sub, state, hour, views))]
        payer, licensed = overage_payer(run.subscriptions, hour)
        if payer is not None and payer.key in {sub.key for sub in due}:
            agents = set().union(*(view.agents_by_hour.get(hour, frozenset()) for view in views.values()))
            records.append(
                plan_overage_record(
                    payer,
                    hour_ms=hour,
                    agents=len(agents),
                    licensed=licensed,
                    dimension=self._policy.overage_dimension,
                )
            )
        if request.kind == "final":
            state.progress(request.subscription or "").final = True
        return records

    def _usage_record(
        self, sub: Subscription, state: CompanyMeterState, hour: int, views: Mapping[str, UsageView]
    ) -> MeteringRecord | None:
        progress = state.progress(sub.key)
        record = None
        if sub.pricing is PricingModel.USAGE and active_in_hour(sub, hour):
            record = plan_usage_record(
                sub,
                hour_ms=hour,
                totals_ms={name: view.total_ms(sub.key) for name, view in views.items()},
                billed=progress.billed,
                dimension=self._policy.usage_dimension,
                tag_key=self._policy.allocation_tag_key,
            )
            state.count(record, +1)
        progress.through_ms = hour
        return record

    def commit_last(self, runs: Sequence[CompanyRun]) -> list[Exception | None]:
        """Store the runs' last commits together, before anything is sent (write-ahead): the store
        packs them into as few transactions as fit, each company's still atomic and conditioned on its
        version. Per run, in order: None, or why its commit failed (its records are then not sent)."""
        waiting = [run for run in runs if run.last_commit is not None]
        works = [run.last_commit for run in waiting if run.last_commit is not None]
        outcomes = self._store.commit_together(works) if works else []
        failed: dict[int, Exception] = {}
        for run, outcome in zip(waiting, outcomes, strict=True):
            run.last_commit = None
            if isinstance(outcome, Exception):
                failed[id(run)] = outcome
            else:
                run.version = outcome
        return [failed.get(id(run)) for run in runs]

    # After the send --------------------------------------------------------------------------------

    def store_refusals(self, run: CompanyRun, settled: list[MeteringRecord]) -> None:
        refused = [record for record in settled if record.status is not RecordStatus.ACCEPTED]
        if refused:
            # CustomerNotSubscribed is final: its minutes leave B (section 5), with the state.
            for record in refused:
                run.state.count(record, -1)
            run.version = self._store.commit(
                run.report.company, version=run.version, state=run.state, new_records=[], settled=refused
            )

    def retire_finished(self, run: CompanyRun, now: int) -> None:
        """An ended subscription with every hour metered and nothing pending leaves the hourly index."""
        for sub in run.subscriptions:
            until = sub.active_until()
            if until is None or to_ms(until) > now:
                continue
            progress = run.state.subscriptions.get(sub.key)
            if progress is not None and (progress.through_ms or 0) >= hour_floor(to_ms(until) - 1):
                self._companies.save_subscription(sub, metered=False)


def _step_end(start: int, step_hours: int) -> int:
    """The last hour of a step from ``start``: at most ``step_hours`` hours, ending at 22:00 UTC when the
    step reaches it, so that the hour read after it (the silence timeout's reach) is still in the day's
    partition and the next step's reads begin with a new day: each day is queried once."""
    latest = start + (step_hours - 1) * MS_PER_HOUR
    aligned = latest - (latest + 2 * MS_PER_HOUR) % MS_PER_DAY
    return aligned if aligned >= start else latest


def _due_span(sub: Subscription, request: MeterRequest, state: CompanyMeterState) -> tuple[int, int] | None:
    """The first and last hour the subscription still needs a record for, if any."""
    end = _last_hour(sub, request)
    progress = state.progress(sub.key)
    if progress.through_ms is not None:
        start = progress.through_ms + MS_PER_HOUR
    else:
        start = hour_floor(to_ms(sub.started))  # type: ignore[arg-type]
    return (start, end) if start <= end else None


def _last_hour(subscription: Subscription, request: MeterRequest) -> int:
    end = hour_floor(request.through_ms - 1) if request.kind == "final" else request.through_ms
    until = subscription.active_until()
    return min(end, hour_floor(to_ms(until) - 1)) if until is not None else end


def _json(text: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    return document
