"""Alarms and a dashboard for the people who must trust the bill.

Alarms fire on anything that means a minute may be lost or billed wrongly: an expired record (its minutes
moved on, but AWS never took that hour), a record AWS refused as not subscribed, a DuplicateRecord
(impossible when records are stored before sending), any message in any dead-letter queue, and errors of
the metering and ingest functions. An SNS topic (encrypted, TLS only) receives them for on-call routing.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import METRICS_NAMESPACE

WORKER_SERVICE = "connect-metering-meter-worker"
DISPATCH_SERVICE = "connect-metering-meter-dispatch"
INGEST_SERVICE = "connect-metering-ingest"
PERIOD = cdk.Duration.minutes(5)
# connect_metering.domain.agent_events.QuarantineReason (tests/infra/test_ingestion.py keeps them equal).
QUARANTINE_REASONS = (
    "unparseable",
    "unsupported_type",
    "unknown_instance",
    "account_mismatch",
    "too_large",
    "future_timestamp",
    "too_old",
    "too_many_events",
)
# A few stray events are normal (a customer's test instance); this many in 5 minutes is a broken
# forwarder or a flood, both worth a look while the quarantine counters still show who sends it.
QUARANTINE_ALARM_THRESHOLD = 1_000
# The Sum over 5 minutes of each batch's busiest-sender count: about one sender's volume when it
# dominates the bus. 1,000 events/s is a heartbeat every 2 minutes from 120,000 agents, beyond any one
# customer; a sender past it is flooding. One metric, no per-account dimension (unbounded cardinality).
SENDER_VOLUME_ALARM_THRESHOLD = 300_000
# Older than the grace, an agent event waiting in the queue misses its hour's metering (billed later).
OLDEST_AGENT_EVENT_ALARM_SECONDS = 600


def product_metric(name: str, service: str, statistic: str = "Sum") -> cloudwatch.Metric:
    """A Powertools EMF metric: namespace ConnectMetering, dimension ``service``."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=PERIOD,
    )


class MeteringOperations(Construct):
    """Created first (its topic is where every capability's alarms go); ``watch`` adds the alarms on the
    functions and dead-letter queues once the stack has them all, and the dashboard."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="connect-metering alarms")
        key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name="connect-metering alarms", master_key=key, enforce_ssl=True
        )
        self.alarms: list[cloudwatch.Alarm] = []
        for name, why in (
            ("RecordsExpired", "a record left the acceptance window unaccepted"),
            ("CustomerNotSubscribed", "Marketplace refused a record: the buyer is not subscribed"),
            ("DuplicateRecord", "Marketplace already held a record for an hour the ledger had not sent"),
            ("RecordsUnconfirmed", "a record's answer was lost and it left the window: reconcile with AWS"),
            ("RecordsRefused", "Marketplace refused a record with a call of its own: it stays pending"),
        ):
            self._alarm(name, product_metric(name, WORKER_SERVICE), why)
        # A stored item a reader skipped (connect_metering.unreadable): metering went on without it.
        self._alarm(
            "UnreadableItems",
            cloudwatch.MathExpression(
                expression="FILL(dispatcher, 0) + FILL(worker, 0)",
                using_metrics={
                    "dispatcher": product_metric("UnreadableItems", DISPATCH_SERVICE),
                    "worker": product_metric("UnreadableItems", WORKER_SERVICE),
                },
                period=PERIOD,
            ),
            "a stored item could not be read and was skipped: find its key in the logs",
        )

    def watch(
        self,
        *,
        functions: Sequence[lambda_.IFunction],
        dead_letter_queues: Sequence[sqs.IQueue],
        agent_events_queue: sqs.IQueue | None = None,
    ) -> None:
        if agent_events_queue is not None:
            self._watch_ingest(agent_events_queue)
        for function in functions:
            self._alarm(
                f"{cdk.Names.node_unique_id(function.node)[-40:]}Errors",
                function.metric_errors(period=PERIOD),
                "the function failed an invocation",
            )
        for queue in dead_letter_queues:
            self._alarm(
                f"{cdk.Names.node_unique_id(queue.node)[-40:]}Depth",
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                "a message reached a dead-letter queue",
            )
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name="connect-metering")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Metered minutes and records",
                left=[product_metric(name, WORKER_SERVICE) for name in ("MeteredMinutes", "RecordsAccepted")],
                right=[
                    product_metric(name, WORKER_SERVICE)
                    for name in (
                        "RecordsRetried",
                        "RecordsExpired",
                        "CustomerNotSubscribed",
                        "DuplicateRecord",
                    )
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Agent events",
                left=[
                    product_metric(name, INGEST_SERVICE)
                    for name in ("EventsAccepted", "DuplicateEvents", "LateEvents")
                ],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )

    def _watch_ingest(self, queue: sqs.IQueue) -> None:
        """Floods and backlogs of agent events: the rate of quarantined events (all reasons: one metric
        per reason, summed; alarms cannot SEARCH) and the age of the oldest event waiting."""
        by_reason = {
            f"r{index}": cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name="EventsQuarantined",
                dimensions_map={"Reason": reason, "service": INGEST_SERVICE},
                statistic="Sum",
                period=PERIOD,
            )
            for index, reason in enumerate(QUARANTINE_REASONS)
        }
        self.alarms.append(
            threshold_alarm(
                self,
                "EventsQuarantinedRate",
                cloudwatch.MathExpression(
                    expression=f"SUM([{','.join(by_reason)}])",
                    using_metrics=dict(by_reason),
                    label="EventsQuarantined",
                    period=PERIOD,
                ),
                QUARANTINE_ALARM_THRESHOLD,
                f"more than {QUARANTINE_ALARM_THRESHOLD} agent events quarantined in 5 minutes",
                self.topic,
            )
        )
        self.alarms.append(
            threshold_alarm(
                self,
                "SenderVolume",
                product_metric("MaxEventsPerSender", INGEST_SERVICE),
                SENDER_VOLUME_ALARM_THRESHOLD,
                "one sender account sends more than 1,000 agent events a second",
                self.topic,
            )
        )
        self.alarms.append(
            threshold_alarm(
                self,
                "AgentEventsOldestMessage",
                queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
                OLDEST_AGENT_EVENT_ALARM_SECONDS,
                "agent events wait in the queue longer than the metering grace",
                self.topic,
            )
        )

    def _alarm(self, name: str, metric: cloudwatch.IMetric, why: str) -> None:
        self.alarms.append(alarm_on_any(self, name, metric, why, self.topic))


def alarm_on_any(
    scope: Construct, name: str, metric: cloudwatch.IMetric, why: str, topic: sns.ITopic | None
) -> cloudwatch.Alarm:
    """An alarm as soon as the metric is above 0 in a period (every one of ours means a bill at risk),
    sent to the alarm topic."""
    alarm = cloudwatch.Alarm(
        scope,
        f"{name}Alarm",
        alarm_description=f"connect-metering: {why}",
        metric=metric,
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    if topic is not None:
        alarm.add_alarm_action(actions.SnsAction(topic))
    return alarm


def threshold_alarm(
    scope: Construct, name: str, metric: cloudwatch.IMetric, threshold: float, why: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """An alarm when the metric is above ``threshold`` in a period, sent to the alarm topic."""
    alarm = cloudwatch.Alarm(
        scope,
        f"{name}Alarm",
        alarm_description=f"connect-metering: {why}",
        metric=metric,
        threshold=threshold,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(actions.SnsAction(topic))
    return alarm
