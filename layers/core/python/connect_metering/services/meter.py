"""Hourly metering: dispatch companies, and for each one compute, store (write-ahead), send, settle.

BILLING.md sections 4-7. A worker run for a company:

1. reads the company, its subscriptions, environments, state and pending records (one query);
2. expires pending records past the acceptance window (their minutes leave B and flow into the next
   record), then, hour by hour, computes each environment's usage from checkpoints and the stored
   events, plans the records (usage: Q per environment with carry; contract: overage for the primary),
   and commits them with the state that counts them and the new checkpoints, in one transaction;
3. sends every pending record, oldest first, with retries; stores the outcomes.

A crash anywhere leaves either nothing (before the commit) or stored pending records that the next run
sends unchanged: Marketplace answers an identical repeat with the same MeteringRecordId, so nothing is
billed twice, and nothing is lost.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from connect_metering.domain.activity import Checkpoint, HourWindow
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, to_ms
from connect_metering.domain.metering import (
    CompanyMeterState,
    CompanySnapshot,
    IdleEnvironment,
    MeteringRecord,
    MeterRequest,
    RecordStatus,
    active_in_hour,
    is_expired,
    overage_payer,
    plan_overage_record,
    plan_usage_record,
)
from connect_metering.domain.sessions import AgentEventPoint, BillableTimePolicy
from connect_metering.domain.tenancy import Environment, PricingModel, Subscription
from connect_metering.domain.usage import EnvironmentCheckpoint, UsageView, resume
from connect_metering.settings import BillingPolicy
from connect_metering.unreadable import PENDING_RECORDS, UnreadableItems

MS_PER_DAY = 24 * MS_PER_HOUR
# How far back a missing checkpoint is looked for before the environment's history is taken as empty.
MAX_LOOKBACK_DAYS = 62


class CompanyReader(Protocol):
    def load_company(self, alias: str) -> CompanySnapshot | None: ...
    def save_subscription(self, subscription: Subscription, *, metered: bool | None = None) -> None: ...


class ActivityReader(Protocol):
    def read_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> HourWindow: ...


@dataclass
class _Prepared:
    report: MeterReport
    pending: list[MeteringRecord]
    state: CompanyMeterState
    version: int
    subscriptions: list[Subscription]
    to_mark: list[MeteringRecord] = field(default_factory=list)


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
    def settle(self, records: Sequence[MeteringRecord]) -> None: ...
    def mark_in_flight(self, records: Sequence[MeteringRecord]) -> None: ...


class Marketplace(Protocol):
    retried_records: int

    def send(self, records: Sequence[MeteringRecord]) -> list[MeteringRecord]: ...


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

    @property
    def metered_minutes(self) -> int:
        return sum(
            record.quantity for record in self.records_settled if record.status is RecordStatus.ACCEPTED
        )


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
    ) -> None:
        self._companies = companies
        self._activity = activity
        self._store = store
        self._marketplace = marketplace
        self._policy = policy
        self._now_ms = now_ms
        self.unreadable = unreadable or UnreadableItems()

    @property
    def _billable(self) -> BillableTimePolicy:
        return BillableTimePolicy(self._policy.billable_time)

    def run(self, request: MeterRequest) -> MeterReport:
        """One company (tests and tools); the Lambda meters a whole SQS batch with ``run_batch``."""
        outcome = self.run_batch([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(self, requests: Sequence[MeterRequest]) -> list[MeterReport | Exception]:
        """Meter several companies: each is computed and committed on its own; their pending records then
        share BatchMeterUsage calls of up to 25, so calls per hour stay at ceil(records / 25)."""
        now = self._now_ms()
        outcomes: list[MeterReport | Exception] = []
        prepared: list[_Prepared] = []
        for request in requests:
            try:
                prepared.append(self._prepare(request, now))
                outcomes.append(prepared[-1].report)
            except Exception as error:
                outcomes.append(error)
        pending = [record for item in prepared for record in item.pending]
        if not pending:
            return outcomes
        # An attempt whose outcome is never stored (the worker dies after the call) may have been
        # accepted: records are marked in flight before the call (new ones were stored so), so
        # expiry can tell a lost answer from a known refusal.
        self._store.mark_in_flight([record for item in prepared for record in item.to_mark])
        retried_before = self._marketplace.retried_records
        answered = self._marketplace.send(pending)
        retried = self._marketplace.retried_records - retried_before
        settled = [record for record in answered if record.status is not RecordStatus.PENDING]
        refused = {record.key: record for record in answered if record.status is RecordStatus.PENDING}
        settled_by_key = {record.key: record for record in settled}
        unsettled = [
            record.sending()
            for record in pending
            if record.key not in settled_by_key and record.key not in refused
        ]
        if unsettled or refused:
            # Every attempt of these got an answer (throttled, 5xx, unprocessed, refused with a call of
            # its own, stored as its outcome): known not accepted, still pending.
            self._store.mark_in_flight(
                [record.after_known_failure() for record in unsettled] + list(refused.values())
            )
        accepted = [record for record in settled if record.status is RecordStatus.ACCEPTED]
        if accepted:
            self._store.settle(accepted)
        for item in prepared:
            mine = [settled_by_key[r.key] for r in item.pending if r.key in settled_by_key]
            item.report.records_settled = mine
            item.report.records_refused = [refused[r.key] for r in item.pending if r.key in refused]
            item.report.records_retried = retried if item is prepared[0] else 0
            item.report.still_pending = len(item.pending) - len(mine)
            try:
                self._store_refusals(item, mine)
                if item.report.still_pending == 0:
                    self._retire_finished(item.subscriptions, item.state, now)
            except Exception as error:
                outcomes[outcomes.index(item.report)] = error
        return outcomes

    def _prepare(self, request: MeterRequest, now: int) -> _Prepared:
        report = MeterReport(request.company)
        snapshot = self._companies.load_company(request.company)
        if snapshot is None:
            return _Prepared(report, [], CompanyMeterState(), 0, [])
        state = CompanyMeterState.from_json(snapshot.meter_state)
        version = snapshot.meter_version
        loaded = self._pending_records(request.company, snapshot.pending_records)
        pending = [record.recovered() for record in loaded]
        subscriptions = [sub for sub in snapshot.subscriptions if sub.started is not None]
        max_age = self._policy.max_record_age * 1000
        expired = [record.expire() for record in pending if is_expired(record, now, max_age)]
        for record in expired:
            if record.status is RecordStatus.EXPIRED:
                state.count(record, -1)  # never accepted: its minutes flow into the next record
        pending = [record for record in pending if not is_expired(record, now, max_age)]
        report.records_expired = [record for record in expired if record.status is RecordStatus.EXPIRED]
        report.records_unconfirmed = [
            record for record in expired if record.status is not RecordStatus.EXPIRED
        ]
        before = {record.key: record for record in loaded}
        # Marked before the call: records not in flight, and those whose lost answer must now be kept.
        to_mark = [
            record.sending() for record in pending if not record.in_flight or record != before[record.key]
        ]
        pending = [record.sending() for record in pending]
        request = self._bounded(request, now)
        hours = self._hours_to_meter(request, subscriptions, state)
        if hours or expired or request.recompute_from:
            version, new_records = self._meter_hours(
                request, snapshot, subscriptions, state, version, hours, expired
            )
            report.records_stored = new_records
            pending += new_records
        return _Prepared(report, pending, state, version, subscriptions, to_mark)

    def _pending_records(self, company: str, texts: Sequence[str]) -> list[MeteringRecord]:
        records: list[MeteringRecord] = []
        for text in texts:
            try:
                records.append(MeteringRecord.from_json(_json(text)))
            except (KeyError, TypeError, ValueError) as error:
                self.unreadable.skip(PENDING_RECORDS, f"COMPANY#{company} {text[:120]}", error)
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

    # Which hours -----------------------------------------------------------------------------------

    def _hours_to_meter(
        self, request: MeterRequest, subscriptions: Sequence[Subscription], state: CompanyMeterState
    ) -> list[int]:
        last_by_subscription = {}
        for sub in subscriptions:
            if request.kind == "final" and sub.key != request.subscription:
                continue
            end = request.through_ms
            if request.kind == "final":
                end = hour_floor(request.through_ms - 1)
            until = sub.active_until()
            if until is not None:
                end = min(end, hour_floor(to_ms(until) - 1))
            progress = state.progress(sub.key)
            first = progress.through_ms + MS_PER_HOUR if progress.through_ms is not None else None
            start = first if first is not None else hour_floor(to_ms(sub.started))  # type: ignore[arg-type]
            if start <= end:
                last_by_subscription[sub.key] = (start, end)
        if not last_by_subscription:
            return []
        first = min(start for start, _ in last_by_subscription.values())
        last = max(end for _, end in last_by_subscription.values())
        return list(range(first, last + 1, MS_PER_HOUR))

    # Compute and commit ----------------------------------------------------------------------------

    def _meter_hours(
        self,
        request: MeterRequest,
        snapshot: CompanySnapshot,
        subscriptions: list[Subscription],
        state: CompanyMeterState,
        version: int,
        hours: list[int],
        expired: list[MeteringRecord],
    ) -> tuple[int, list[MeteringRecord]]:
        hourly = request.kind == "hourly"
        last_hour = hours[-1] if hours else request.through_ms
        views = {
            environment.name: self._usage_by_hour(
                environment,
                request,
                state,
                subscriptions,
                hours,
                last_hour,
                snapshot.activity_counts.get(environment.name, 0),
            )
            for environment in snapshot.environments
        }
        stored: list[MeteringRecord] = []
        # Hourly runs store the checkpoints (final metering runs before its hour is complete: never).
        checkpoints = (
            [
                Checkpoint(env.instance_arn.arn, boundary, checkpoint)
                for env in snapshot.environments
                for boundary, checkpoint in views[env.name][1].items()
            ]
            if hourly
            else []
        )
        to_settle = list(expired)
        # An environment whose account claim is unproven is computed (its checkpoints keep its usage) but
        # not billed; once verified, its T(s, e, H) is cumulative and B(s, e) still 0, so the first
        # record after verification carries all its earlier minutes (BILLING.md section 5).
        verified = {env.name for env in snapshot.environments if env.is_verified}
        # One transaction per hour: hour H's records are stored with the B that counts them before
        # hour H + 1 is computed from that B (BILLING.md section 9). The last one also points the state
        # at the new checkpoints, which it stores (or which were stored just before it).
        for index, hour in enumerate([*hours] or [None]):
            records = (
                self._plan_hour(
                    request,
                    subscriptions,
                    state,
                    hour,
                    {name: v[0][hour] for name, v in views.items() if name in verified},
                )
                if hour is not None
                else []
            )
            is_last = index == max(len(hours) - 1, 0)
            if is_last and hourly:
                state.checkpoint_through_ms = last_hour + MS_PER_HOUR
            version = self._store.commit(
                request.company,
                version=version,
                state=state,
                new_records=records,
                settled=to_settle,
                checkpoints=checkpoints if is_last else [],
            )
            to_settle = []
            stored += records
        return version, stored

    def _plan_hour(
        self,
        request: MeterRequest,
        subscriptions: list[Subscription],
        state: CompanyMeterState,
        hour: int,
        views: Mapping[str, UsageView],
    ) -> list[MeteringRecord]:
        records: list[MeteringRecord] = []
        due = [
            sub
            for sub in subscriptions
            if (request.kind == "hourly" or sub.key == request.subscription)
            and (state.progress(sub.key).through_ms or 0) < hour
            and hour <= _last_hour(sub, request)
        ]
        for sub in due:
            progress = state.progress(sub.key)
            if sub.pricing is PricingModel.USAGE and active_in_hour(sub, hour):
                totals = {name: view.total_ms(sub.key) for name, view in views.items()}
                record = plan_usage_record(
                    sub,
                    hour_ms=hour,
                    totals_ms=totals,
                    billed=progress.billed,
                    dimension=self._policy.usage_dimension,
                    tag_key=self._policy.allocation_tag_key,
                )
                state.count(record, +1)
                records.append(record)
            progress.through_ms = hour
        payer, licensed = overage_payer(subscriptions, hour)
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

    def _usage_by_hour(
        self,
        environment: Environment,
        request: MeterRequest,
        state: CompanyMeterState,
        subscriptions: list[Subscription],
        hours: list[int],
        last_hour: int,
        events_stored: int,
    ) -> tuple[dict[int, UsageView], dict[int, EnvironmentCheckpoint]]:
        """Usage views for each hour to meter, and the checkpoints at every boundary after the start."""
        arn = environment.instance_arn.arn
        starts = [
            hour for hour in (hours[0] if hours else None, state.checkpoint_through_ms) if hour is not None
        ]
        late = request.recompute_from.get(arn)
        if late is not None:
            starts.append(late)
        start = min(starts) if starts else last_hour
        timeout = self._policy.silence_timeout * 1000
        idle = state.idle.get(environment.name)
        if (
            late is None
            and idle is not None
            and idle.events_seen == events_stored
            and idle.boundary_ms <= start
        ):
            # Nobody logged in and no event stored since: no read, the checkpoint carries forward.
            checkpoint = EnvironmentCheckpoint(
                idle.boundary_ms,
                billed_ms=idle.billed_ms,
                unbilled_ms=idle.unbilled_ms,
                policy=self._billable,
                silence_timeout_ms=timeout,
            )
            points: dict[str, list[AgentEventPoint]] = {}
        else:
            checkpoint, points = self._base(arn, start, last_hour + MS_PER_HOUR)
        views: dict[int, UsageView] = {}
        checkpoints: dict[int, EnvironmentCheckpoint] = {}
        wanted = set(hours)
        hour = checkpoint.boundary_ms
        timeline = AgentTimeline(points)
        while hour <= last_hour:
            view = resume(
                checkpoint,
                timeline.window(hour, hour + MS_PER_HOUR + timeout),
                subscriptions,
                until_ms=hour + MS_PER_HOUR,
                policy=self._billable,
                silence_timeout_ms=timeout,
            )
            if hour in wanted:
                views[hour] = view
            checkpoint = view.checkpoint_at(hour + MS_PER_HOUR)
            checkpoints[hour + MS_PER_HOUR] = checkpoint
            hour += MS_PER_HOUR
        if request.kind == "hourly":
            later = any(
                p.ts_ms >= checkpoint.boundary_ms for agent_points in points.values() for p in agent_points
            )
            if checkpoint.carries or later:
                state.idle.pop(environment.name, None)
            else:
                state.idle[environment.name] = IdleEnvironment(
                    checkpoint.boundary_ms, events_stored, dict(checkpoint.billed_ms), checkpoint.unbilled_ms
                )
        return views, checkpoints

    def _base(
        self, arn: str, start: int, last_hour: int
    ) -> tuple[EnvironmentCheckpoint, dict[str, list[AgentEventPoint]]]:
        """The latest checkpoint at or before ``start`` and every stored event from it through
        ``last_hour``. A missing checkpoint is looked for day by day; a day without any item means the
        agents were all logged out, so an empty checkpoint at the next day is exact."""
        window = self._activity.read_hours(arn, start, last_hour)
        events = list(window.events)
        stored_checkpoint = window.checkpoints.get(start)
        boundary = start
        day = start - start % MS_PER_DAY
        searched_to = start
        for _ in range(MAX_LOOKBACK_DAYS):
            if stored_checkpoint is not None:
                break
            earlier = (
                self._activity.read_hours(arn, day, searched_to - MS_PER_HOUR)
                if searched_to > day
                else HourWindow({}, [])
            )
            events += earlier.events
            if earlier.checkpoints:  # only those that decode and sit at their own hour
                boundary = max(earlier.checkpoints)
                stored_checkpoint = earlier.checkpoints[boundary]
                break
            if not earlier.events and searched_to - day == MS_PER_DAY:
                boundary = searched_to
                break
            searched_to, day = day, day - MS_PER_DAY
            boundary = searched_to
        timeout = self._policy.silence_timeout * 1000
        checkpoint = (
            stored_checkpoint
            if stored_checkpoint is not None
            else EnvironmentCheckpoint.empty(boundary, policy=self._billable, silence_timeout_ms=timeout)
        )
        by_agent: dict[str, list[AgentEventPoint]] = defaultdict(list)
        for stored in events:
            if stored.point.ts_ms >= checkpoint.boundary_ms:
                by_agent[stored.agent_arn].append(stored.point)
        return checkpoint, by_agent

    # Outcomes --------------------------------------------------------------------------------------

    def _store_refusals(self, item: _Prepared, settled: list[MeteringRecord]) -> None:
        refused = [record for record in settled if record.status is not RecordStatus.ACCEPTED]
        if refused:
            # CustomerNotSubscribed is final: its minutes leave B (section 5), with the state.
            for record in refused:
                item.state.count(record, -1)
            item.version = self._store.commit(
                item.report.company, version=item.version, state=item.state, new_records=[], settled=refused
            )

    def _retire_finished(
        self, subscriptions: Sequence[Subscription], state: CompanyMeterState, now: int
    ) -> None:
        """An ended subscription with every hour metered and nothing pending leaves the hourly index."""
        for sub in subscriptions:
            until = sub.active_until()
            if until is None or to_ms(until) > now:
                continue
            progress = state.subscriptions.get(sub.key)
            if progress is not None and (progress.through_ms or 0) >= hour_floor(to_ms(until) - 1):
                self._companies.save_subscription(sub, metered=False)


def _last_hour(subscription: Subscription, request: MeterRequest) -> int:
    end = hour_floor(request.through_ms - 1) if request.kind == "final" else request.through_ms
    until = subscription.active_until()
    return min(end, hour_floor(to_ms(until) - 1)) if until is not None else end


class AgentTimeline:
    """Each agent's events sorted once, so that every hour of a catch-up or a late-event recompute reads
    only its own events: linear in hours, where re-filtering the whole span every hour was quadratic.

    Why a window [H, H + 1 h + silence_timeout] is exact for hour H: the pieces an hour's view counts end
    by H + 1 h, and an event at or after H + 1 h can only add the piece from the agent's ``last`` (before
    H + 1 h) to itself, which needs it within ``silence_timeout`` of ``last``; every later event produces
    pieces after H + 1 h, which the view clips away."""

    def __init__(self, points: Mapping[str, list[AgentEventPoint]]) -> None:
        self._points = {agent: sorted(agent_points) for agent, agent_points in points.items()}
        self._stamps = {
            agent: [p.ts_ms for p in agent_points] for agent, agent_points in self._points.items()
        }

    def window(self, first_ms: int, last_ms: int) -> dict[str, list[AgentEventPoint]]:
        """Every agent's events with ``first_ms <= ts <= last_ms`` (agents without any are left out)."""
        window: dict[str, list[AgentEventPoint]] = {}
        for agent, stamps in self._stamps.items():
            low = bisect.bisect_left(stamps, first_ms)
            high = bisect.bisect_right(stamps, last_ms, lo=low)
            if high > low:
                window[agent] = self._points[agent][low:high]
        return window


def _json(text: str) -> dict[str, Any]:
    import json

    document: dict[str, Any] = json.loads(text)
    return document
