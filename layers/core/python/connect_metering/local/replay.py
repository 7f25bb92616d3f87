"""`connect-metering replay`: agent events through the product, on a virtual clock.

    connect-metering replay --registry R.json --events E.jsonl --until ISO --out DIR [--faults F.json]
                            [--format jsonl|kinesis-get-records|kinesis-base64-lines|firehose|eventbridge-archive]
                            [--engine handlers|core]

This module is the driver (clock, schedule, batching, tally); the engine (``replay_engine``) is either the
real handlers on embedded AWS (``handlers``, the reference) or the same services on in-memory stores
(``core``, ``core_engine``), and both give the same records and summary.

``--events`` is a recorded stream in any of those shapes, or a folder of them (``recordings``). The
registry is loaded as if registration and activation had happened; each line of E.jsonl is delivered
to the ingest handler, in file order, in the batches the deployed event source mapping hands over
(``ingest_batching``: at most 10,000 records, the 300 s window, the 6 MB payload); the clock is the running maximum of arrival
times, and every metering action due at an instant (hour H at H + 1 h + grace, through the dispatcher
and the meter workers; a subscription's end, as a License Deprovisioned event to the subscription
lifecycle handler, whose final-metering request the worker serves at once) runs as soon as the clock
reaches it, before the line that moved the clock is ingested. Formats: README.md, section Replay.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from connect_metering.adapters.marketplace_meter import SendResult
from connect_metering.domain.instants import (
    MS_PER_HOUR,
    from_ms,
    hour_floor,
    iso_ms,
    parse_iso_ms,
    to_ms,
)
from connect_metering.domain.tenancy import (
    Company,
    Entitlements,
    Environment,
    EnvironmentVerification,
    PricingModel,
    Subscription,
    SubscriptionIdentity,
    TenancyError,
    build,
)
from connect_metering.local import replay_console
from connect_metering.local.output_files import OutputError, prepare_folder
from connect_metering.local.recordings import AUTO, FORMATS
from connect_metering.local.replay_engine import ENGINES, ReplayEngine, engine_for
from connect_metering.local.replay_input import (
    BadInput,
    Delivery,
    FaultsFile,
    Registry,
    RegistrySubscription,
    load_faults,
    load_registry,
    marketplace_change,
    read_events,
    subscription_identity,
)
from connect_metering.local.replay_output import UNATTRIBUTED, ReplayRun, Tally, summarize, write_outputs
from connect_metering.local.traffic import DeployedBatches
from connect_metering.services.ingest import Outcome

# The input side, as callers of the command name it.
__all__ = [
    "EXIT_BAD_INPUT",
    "BadInput",
    "Delivery",
    "FaultsFile",
    "Registry",
    "Replay",
    "add_arguments",
    "load_faults",
    "load_registry",
    "read_events",
    "run",
]

EXIT_BAD_INPUT = 2
# The run -------------------------------------------------------------------------------------------


@dataclass(order=True)
class Action:
    at_ms: int
    order: int
    kind: str = field(compare=False)
    subscription: Subscription | None = field(default=None, compare=False)


class Replay:
    def __init__(self, registry: Registry, faults: FaultsFile, out: Path, engine: str = "handlers") -> None:
        self.registry = registry
        self.faults = faults
        self.out = out
        self.engine_name = engine
        self.results: list[SendResult] = []
        self.tally = Tally()
        self._sequence = 0
        self._messages = 0  # SQS message ids handed out so far (each batch's are unique in the run)
        self._earliest_event = sys.maxsize

    def run(self, deliveries: Iterator[Delivery], until_ms: int) -> dict[str, Any]:
        first = next(deliveries, None)
        if first is not None:
            deliveries = itertools.chain([first], deliveries)
        starts = [
            to_ms(sub.started)
            for company in self.registry.companies
            for sub in company.subscriptions
            if sub.started
        ]
        # Subscriptions activated by a line of E.jsonl (started null) need the hours from the first line.
        if first is not None and first.arrival_ms is not None:
            starts.append(first.arrival_ms)
        first_start = min(starts, default=until_ms)
        engine: ReplayEngine = engine_for(
            self.engine_name, self.registry, self.faults, first_start, self.results.append
        )
        with engine:
            self.engine = engine
            summary = self._replay(deliveries, first_start, until_ms)
        write_outputs(self.out, self.results, summary)
        return summary

    def _replay(self, deliveries: Iterator[Delivery], first_start: int, until_ms: int) -> dict[str, Any]:
        """Lines in file order on the virtual clock, each due metering action before the line that
        reaches its instant; then the clock moves to ``until`` and the summary is read."""
        clock_source = self.engine.clock
        loaded = self._load_registry()
        actions = self._schedule(loaded, first_start, until_ms)
        clock = first_start
        gathering: DeployedBatches[tuple[str, Any]] = DeployedBatches()  # (body, decoded JSON)
        max_age = self.registry.policy.max_event_age * 1000
        earliest = self._earliest_event
        for delivery in deliveries:
            if delivery.unreadable is not None:
                self.tally.note_unreadable(delivery)
                continue
            arrival = delivery.arrival_ms
            if arrival is not None and arrival > clock:
                if actions and actions[0].at_ms <= arrival:
                    self._ingest(gathering.take())
                    self._run_due(actions, arrival)
                clock = arrival
                clock_source.advance_to_ms(clock)
            if (event_ms := delivery.event_ms) is not None:
                # The summary reads stored events from here on: an event older than max_event_age at
                # its arrival is never accepted (BILLING.md section 2 rule 5), so a line dated in
                # year 999 must not make the summary read a thousand years of days.
                arrived = clock if delivery.raw else arrival
                oldest = event_ms if arrived is None else arrived - max_age
                if (event_ms if event_ms > oldest else oldest) < earliest:
                    earliest = event_ms if event_ms > oldest else oldest
            if delivery.lifecycle:
                self._ingest(gathering.take())
                self._notify(delivery)
                continue
            delivered = (delivery.body, delivery.document) if not delivery.raw else delivery.delivered(clock)
            for batch in gathering.add(delivered, delivered[0], clock):
                self._ingest(batch)
        self._earliest_event = earliest
        self._ingest(gathering.take())
        self._run_due(actions, until_ms)
        clock_source.advance_to(_moment(max(clock, until_ms)))
        return summarize(
            ReplayRun(self.engine.stored(), self.registry, self.tally, self.results, self._earliest_event),
            until_ms,
        )

    def _load_registry(self) -> list[tuple[RegistrySubscription, Subscription]]:
        tenancy = self.engine.tenancy
        loaded: list[tuple[RegistrySubscription, Subscription]] = []
        for index, entry in enumerate(self.registry.companies):
            where = f"companies[{index}]"
            try:
                tenancy.create_company(build(Company, alias=entry.alias, name=entry.name))
                for env in entry.environments:
                    tenancy.add_environment(
                        build(
                            Environment,
                            company_alias=entry.alias,
                            name=env.name,
                            instance_arn=env.instance_arn,
                            verification=(
                                EnvironmentVerification(
                                    code=env.verification_code, claimed_at=self.engine.clock.now()
                                )
                                if env.verification_code is not None
                                else None
                            ),
                        )
                    )
                for number, sub in enumerate(entry.subscriptions):
                    where = f"companies[{index}].subscriptions[{number}]"
                    subscription = self._subscription(entry.alias, sub)
                    tenancy.add_subscription(subscription.model_copy(update={"started": None}))
                    if subscription.started is not None:
                        tenancy.save_subscription(subscription)
                    self._register_buyer(subscription, sub)
                    loaded.append((sub, subscription))
            except TenancyError as error:
                raise BadInput(f"registry: {where}: {error}") from None
        return loaded

    def _subscription(self, alias: str, sub: RegistrySubscription) -> Subscription:
        licensed = (sub.entitlements or {}).get(self.registry.policy.entitlement_dimension)
        return build(
            Subscription,
            company_alias=alias,
            identity=build(SubscriptionIdentity, **subscription_identity(sub, self.registry.product_code)),
            pricing=PricingModel(sub.pricing),
            started=sub.started,
            entitlements=Entitlements(licensed_agents=licensed, expires=sub.expires),
        )

    def _register_buyer(self, subscription: Subscription, sub: RegistrySubscription) -> None:
        identity = subscription.identity
        self.engine.marketplace.add_subscription(
            customer_aws_account_id=identity.customer_aws_account_id,
            license_arn=identity.license_arn,
            customer_identifier=identity.customer_identifier,
            started=sub.started,
        )
        licensed = subscription.entitlements.licensed_agents
        if licensed is not None:
            self.engine.marketplace.set_entitlement(
                license_arn=identity.license_arn,
                customer_aws_account_id=identity.customer_aws_account_id,
                customer_identifier=identity.customer_identifier,
                dimension=self.registry.policy.entitlement_dimension,
                value=licensed,
                expiration=sub.expires,
            )

    def _schedule(
        self, loaded: list[tuple[RegistrySubscription, Subscription]], first_ms: int, until_ms: int
    ) -> list[Action]:
        grace = self.registry.policy.grace * 1000
        actions: list[Action] = []
        hour = hour_floor(first_ms)
        while hour + MS_PER_HOUR + grace <= until_ms:
            actions.append(Action(hour + MS_PER_HOUR + grace, self._next(), "hourly"))
            hour += MS_PER_HOUR
        for entry, subscription in loaded:
            if entry.ended is not None and to_ms(entry.ended) <= until_ms:
                actions.append(Action(to_ms(entry.ended), self._next(), "ended", subscription))
        heapq.heapify(actions)
        return actions

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _run_due(self, actions: list[Action], now_ms: int) -> None:
        while actions and actions[0].at_ms <= now_ms:
            action = heapq.heappop(actions)
            self.engine.clock.advance_to(_moment(action.at_ms))
            if action.kind == "hourly":
                self.engine.dispatch(action.at_ms)
            elif action.subscription is not None:
                self._end(action.subscription, action.at_ms)
            self.engine.work()

    def _end(self, subscription: Subscription, at_ms: int) -> None:
        """License Deprovisioned at ``at_ms``, delivered to the subscription lifecycle handler."""
        identity = subscription.identity
        self.engine.marketplace.end_subscription(
            license_arn=identity.license_arn,
            customer_identifier=identity.customer_identifier,
            ended=_moment(at_ms),
        )
        envelope = {
            "version": "0",
            "id": f"deprovisioned-{self._next()}",
            "detail-type": "License Deprovisioned - Manufacturer",
            "source": "aws.agreement-marketplace",
            "account": "123456789012",
            "time": iso_ms(at_ms),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "product": {"code": self.registry.product_code},
                "license": {"arn": identity.license_arn} if identity.license_arn else {},
                "acceptor": {"accountId": identity.customer_aws_account_id},
                "customerIdentifier": identity.customer_identifier,
            },
        }
        if identity.license_arn is None:
            message = {
                "action": "unsubscribe-pending",
                "customer-identifier": identity.customer_identifier,
                "product-code": self.registry.product_code,
            }
            body = json.dumps(
                {"Type": "Notification", "Message": json.dumps(message), "Timestamp": iso_ms(at_ms)}
            )
        else:
            body = json.dumps(envelope)
        refused, _ = self.engine.notify(body, "message-0")
        if refused:
            raise RuntimeError(f"the lifecycle handler failed the end of {subscription.key}")

    def _notify(self, delivery: Delivery) -> None:
        """A Marketplace notification line: AWS's own view (the simulator's licence) follows it, then the
        subscription lifecycle handler gets it, and any final metering it queues runs at once."""
        self._mirror_to_marketplace(delivery)
        refused, results = self.engine.notify(delivery.body, f"message-{self._next() * 1000}")
        if refused:
            self.tally.lifecycle["failed"] += 1
            print(
                f"replay: {delivery.where or f'item {delivery.line}'}: the lifecycle handler refused the notification",
                file=sys.stderr,
            )
        for result in results:
            self.tally.lifecycle[f"{result.effect.value}:{result.outcome.value}"] += 1
        self.engine.work()

    def _mirror_to_marketplace(self, delivery: Delivery) -> None:
        """Marketplace activates or ends a licence when it sends the notification: a subscription the
        registry left unstarted (or unended) starts (ends) at the line's arrival in the simulator too."""
        if delivery.arrival_ms is None:
            return
        change = marketplace_change(delivery.body)
        if change is None:
            return
        kind, license_arn, customer_identifier = change
        moment = _moment(delivery.arrival_ms)
        try:
            if kind == "start":
                self.engine.marketplace.start_subscription(
                    license_arn=license_arn, customer_identifier=customer_identifier, started=moment
                )
            else:
                self.engine.marketplace.end_subscription(
                    license_arn=license_arn, customer_identifier=customer_identifier, ended=moment
                )
        except KeyError:
            return  # a buyer the registry does not know: Marketplace has nothing to change

    def _ingest(self, batch: list[tuple[str, Any]]) -> None:
        if not batch:
            return
        bodies, documents = (list(column) for column in zip(*batch, strict=True))
        tally = self.tally
        first_message, self._messages = self._messages, self._messages + len(batch)
        results = self.engine.ingest(bodies, first_message, documents)
        # Ingest shares one result among the equal ones (an agent's events of a batch, mostly): each is
        # tallied once with its count, in the order of its first line, as the lines would be one by one.
        # (``results`` holds every one, so no two of them share an id meanwhile.)
        distinct = dict(zip(map(id, results), results, strict=True))
        for key, count in Counter(map(id, results)).items():
            result = distinct[key]
            company = result.company or UNATTRIBUTED
            if result.reason is not None:
                tally.quarantined[company][result.reason.value] += count
            elif result.outcome is Outcome.DUPLICATE:
                tally.duplicates[company] += count
            else:
                tally.accepted[company] += count
                if result.late:
                    tally.late[company] += count

    # Output ----------------------------------------------------------------------------------------


def _moment(epoch_ms: int) -> datetime:
    return from_ms(epoch_ms)


# CLI -------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry", type=Path, required=True, help="companies, subscriptions, environments (JSON)"
    )
    parser.add_argument(
        "--events",
        type=Path,
        required=True,
        help="a recorded stream: a file or a folder of files read in name order (see --format)",
    )
    parser.add_argument(
        "--format",
        choices=(AUTO, *FORMATS),
        default=AUTO,
        help="how --events was recorded (default: detected per file; gzip is always recognised)",
    )
    parser.add_argument("--until", required=True, help="ISO-8601 instant the clock moves to at the end")
    parser.add_argument("--out", type=Path, required=True, help="output folder (records.jsonl, summary.json)")
    parser.add_argument("--faults", type=Path, default=None, help="fault injection (JSON)")
    replay_console.add_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="handlers",
        help="handlers: the Lambda handlers on embedded AWS (the reference); core: the same services on "
        "in-memory stores, fast enough for a month",
    )


def run(arguments: argparse.Namespace) -> int:
    try:
        registry = load_registry(arguments.registry)
        pricing = replay_console.resolve_pricing(arguments, registry, arguments.registry)
        faults = load_faults(arguments.faults)
        try:
            until_ms = parse_iso_ms(arguments.until, field="--until")
        except ValueError as error:
            raise BadInput(str(error)) from None
        deliveries = read_events(arguments.events, arguments.format)
        watch = replay_console.InputWatch.for_events(arguments.events, until_ms)
        # Only once every input is known good: a refused run leaves no new folder behind.
        prepare_folder(arguments.out)
        summary = Replay(registry, faults, arguments.out, arguments.engine).run(
            watch.follow(deliveries), until_ms
        )
        _say_unreadable(summary)
        replay_console.present(summary, arguments, registry=registry, pricing=pricing, watch=watch)
    except (BadInput, OutputError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _say_unreadable(summary: dict[str, Any]) -> None:
    unreadable = summary["unreadable_input"]
    if unreadable["count"]:
        first = unreadable["first"][0]
        print(
            f"replay: {unreadable['count']} unreadable input item(s) quarantined unparseable, the first "
            f"at {first['at']}: {first['reason']} (all listed in summary.json unreadable_input)",
            file=sys.stderr,
        )
