"""Subscription lifecycle: AWS Marketplace notifications -> one queue -> the lifecycle Lambda.

Two sources feed the same queue: a rule on the account's *default* bus for ``aws.agreement-marketplace``
(License Updated / Deprovisioned, Purchase Agreement Created / Amended / Ended, as Manufacturer and as
Proposer) and, for listings that still use them, the product's legacy Marketplace SNS topics (given as
context ``marketplace_sns_topic_arns``; Marketplace owns them, the subscription is created here). The
Lambda reports partial batch failures; a message that keeps failing lands in the dead-letter queue, and
a delivery EventBridge or SNS could not make lands in the delivery dead-letter queue. Both alarm: a lost
activation or end is a wrong bill. So does a notification parked for more than an hour for a subscription
no company holds yet: an hourly schedule invokes the same Lambda, which counts those
(``LifecycleEventsParkedTooLong``) with a key-range query of the tenancy table's parked partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from connect_metering import settings
from infra.constructs.ingestion import allow_table_access
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction
from infra.constructs.operations import alarm_on_any, product_metric
from infra.constructs.queues import dead_letter_queue, secure_queue
from infra.nag import acknowledge

MARKETPLACE_EVENT_SOURCE = "aws.agreement-marketplace"
# Same list as connect_metering.domain.lifecycle.DETAIL_TYPES (a unit test keeps them equal).
MARKETPLACE_DETAIL_TYPES = tuple(
    f"{name} - {role}"
    for name in (
        "License Updated",
        "License Deprovisioned",
        "Purchase Agreement Created",
        "Purchase Agreement Amended",
        "Purchase Agreement Ended",
    )
    for role in ("Manufacturer", "Proposer")
)
FUNCTION_TIMEOUT = cdk.Duration.seconds(60)
# Lifecycle events are few (a handful per subscription); small batches keep a retry cheap.
BATCH_SIZE = 10
# A handful of events per subscription: a few concurrent batches absorb a burst (a price change
# amending every agreement at once) while keeping GetEntitlements calls low. The cap is on the event
# source, where it holds messages in the queue; reserved concurrency would throttle batches instead,
# and throttled batches count as receives towards the dead-letter queue.
MAX_CONCURRENCY = 5
MAX_RECEIVE_COUNT = 5
# Marketplace retries SNS deliveries itself; ours are kept the longest SQS allows for an outage.
QUEUE_RETENTION = cdk.Duration.days(14)
ALARM_PERIOD = cdk.Duration.minutes(5)
# Minute 40: away from the metering run at minute 10; the count is published every hour, 0 included.
PARKED_CHECK_SCHEDULE = events.Schedule.cron(minute="40")
PARKED_METRIC = "LifecycleEventsParkedTooLong"
LIFECYCLE_SERVICE = "connect-metering-lifecycle"


def sns_topic_arns_from_context(scope: Construct) -> tuple[str, ...]:
    """Context ``marketplace_sns_topic_arns`` (a list, or a comma-separated string: ``-c`` passes strings)
    and/or ``marketplace_sns_topic_arn`` (one topic)."""
    items: list[object] = []
    for key in ("marketplace_sns_topic_arns", "marketplace_sns_topic_arn"):
        value = scope.node.try_get_context(key)
        if value is not None:
            items += value.split(",") if isinstance(value, str) else list(value)
    arns = tuple(str(item).strip() for item in items if str(item).strip())
    for arn in arns:
        if not arn.startswith("arn:") or ":sns:" not in arn:
            raise ValueError(f"marketplace_sns_topic_arns: {arn!r} is not an SNS topic ARN")
    return arns


class SubscriptionLifecycle(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        tenancy_table: dynamodb.ITable,
        product_code: str,
        meter_queue: sqs.IQueue,
        sns_topic_arns: Sequence[str] = (),
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(self, "DeadLetterQueue")
        self.queue = secure_queue(
            self,
            "Queue",
            visibility_timeout=cdk.Duration.seconds(6 * FUNCTION_TIMEOUT.to_seconds()),
            retention_period=QUEUE_RETENTION,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        # Deliveries EventBridge or SNS gave up on (after their own retries) are kept here, not dropped.
        self.delivery_dead_letter_queue = dead_letter_queue(self, "DeliveryDeadLetterQueue")
        acknowledge(
            self.delivery_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the EventBridge rule target and of the SNS "
            "subscriptions, which cdk-nag cannot see because no queue redrive policy points at it.",
        )
        self.rule = events.Rule(
            self,
            "MarketplaceEvents",
            event_bus=events.EventBus.from_event_bus_name(self, "DefaultBus", "default"),
            description="AWS Marketplace agreement and licence events -> subscription lifecycle queue",
            event_pattern=events.EventPattern(
                source=[MARKETPLACE_EVENT_SOURCE], detail_type=list(MARKETPLACE_DETAIL_TYPES)
            ),
            targets=[
                targets.SqsQueue(
                    self.queue,
                    dead_letter_queue=self.delivery_dead_letter_queue,
                    retry_attempts=185,
                    max_event_age=cdk.Duration.hours(24),
                )
            ],
        )
        self.topics = [
            sns.Topic.from_topic_arn(self, f"MarketplaceTopic{index}", arn)
            for index, arn in enumerate(sns_topic_arns)
        ]
        for topic in self.topics:
            # Not raw: the SNS envelope carries the Timestamp the legacy message itself lacks.
            topic.add_subscription(
                subscriptions.SqsSubscription(
                    self.queue, raw_message_delivery=False, dead_letter_queue=self.delivery_dead_letter_queue
                )
            )

        environment = {
            settings.TENANCY_TABLE: tenancy_table.table_name,
            settings.PRODUCT_CODE: product_code,
            # Required: a subscription that ends has its last hours metered through this queue.
            settings.METER_QUEUE_URL: meter_queue.queue_url,
        }
        self.handler = MeteringFunction(
            self,
            "Lifecycle",
            runtime=runtime,
            name="lifecycle",
            description="Marketplace notifications -> subscription activation, end, entitlements",
            timeout=FUNCTION_TIMEOUT,
            # Exactly what its event source may invoke at once (never less: SQS would be throttled).
            reserved_concurrent_executions=MAX_CONCURRENCY,
            environment=environment,
        )
        function = self.handler.function
        function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=MAX_CONCURRENCY,
            )
        )
        allow_table_access(
            function,
            tenancy_table,
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
            ],
            writes=True,
        )
        self.parked_check_dead_letter_queue = dead_letter_queue(self, "ParkedCheckDeadLetterQueue")
        acknowledge(
            self.parked_check_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter queue (of the hourly parked-events check's rule target).",
        )
        self.parked_check = events.Rule(
            self,
            "ParkedCheckSchedule",
            description="Count Marketplace notifications parked for more than an hour without a company",
            schedule=PARKED_CHECK_SCHEDULE,
            targets=[
                targets.LambdaFunction(
                    function,
                    retry_attempts=3,
                    max_event_age=cdk.Duration.minutes(45),
                    dead_letter_queue=self.parked_check_dead_letter_queue,
                )
            ],
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["aws-marketplace:GetEntitlements"], resources=["*"])
        )
        acknowledge(
            self.handler.role,
            "AwsSolutions-IAM5[Resource::*]",
            "aws-marketplace:GetEntitlements supports no resource-level permissions (the Service "
            "Authorization Reference lists no resource type for it), so its resource must be *; X-Ray "
            "tracing adds its two actions on * as well.",
        )
        meter_queue.grant_send_messages(function)

        self.alarms = [
            alarm_on_any(
                self,
                "DeadLetters",
                self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=ALARM_PERIOD, statistic="Maximum"
                ),
                "a Marketplace notification could not be applied (dead-letter queue)",
                alarm_topic,
            ),
            alarm_on_any(
                self,
                "UndeliveredEvents",
                self.delivery_dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=ALARM_PERIOD, statistic="Maximum"
                ),
                "a Marketplace notification never reached the lifecycle queue",
                alarm_topic,
            ),
            alarm_on_any(
                self,
                "ParkedTooLong",
                product_metric(PARKED_METRIC, LIFECYCLE_SERVICE, statistic="Maximum").with_(
                    period=cdk.Duration.hours(1)
                ),
                "a Marketplace notification waited more than an hour for a company: a subscription nobody "
                "signed up for, or an identity no subscription matches, is not billed",
                alarm_topic,
            ),
            alarm_on_any(
                self,
                "ParkedCheckUndelivered",
                self.parked_check_dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=ALARM_PERIOD, statistic="Maximum"
                ),
                "the hourly check for parked Marketplace notifications could not run",
                alarm_topic,
            ),
        ]
