"""Seller-side ingress of forwarded agent events: custom bus -> rule -> SQS (+ DLQs).

Bus resource policy. Customers in thousands of accounts must be able to PutEvents to this bus. A
bus policy is limited to 10,240 characters (EventBridge quota "Event bus policy size"), and a
per-account statement costs about 250, so per-account grants stop at a few dozen customers and
every onboarding would be a deployment. Instead one statement allows `events:PutEvents` from any
principal, but only when the IAM condition keys `events:source` equals `connect-metering.forwarder`
and `events:detail-type` equals `Amazon Connect Agent Event` (both are EventBridge condition keys
evaluated on PutEvents entries, see "Using IAM policy conditions in Amazon EventBridge"). Nothing
else can be put on the bus. Opening it is safe for billing because attribution never trusts the
sender: it uses the envelope `account`, which EventBridge sets and the sender cannot forge, checked
against `AWSAccountId` and the registered `InstanceARN` (BILLING.md section 2); events from
accounts with no registered environment are quarantined, counted and never billed.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from connect_metering.ingest_batching import BATCHING_WINDOW_SECONDS
from infra.config import AGENT_EVENT_DETAIL_TYPE, FORWARDER_EVENT_SOURCE
from infra.constructs.queues import dead_letter_queue, secure_queue
from infra.nag import acknowledge

# The ingest Lambda attached later may run up to 60 s; AWS advises a visibility timeout of six
# times the function timeout plus the batching window (a message is in flight while its batch
# gathers) so retries by the event source mapping never overlap a running batch.
MAX_CONSUMER_TIMEOUT = cdk.Duration.seconds(60)
VISIBILITY_TIMEOUT = cdk.Duration.seconds(6 * MAX_CONSUMER_TIMEOUT.to_seconds() + BATCHING_WINDOW_SECONDS)
# Five receives: the consumer reports partial batch failures, so a message only comes back for its
# own failure; five rides out throttling and deployments, then a poison message leaves the queue.
MAX_RECEIVE_COUNT = 5
# Agent events matter until their hour is metered (grace 10 min, acceptance window 6 h); four days
# covers a long consumer outage with room to spare.
QUEUE_RETENTION = cdk.Duration.days(4)


class AgentEventsIngress(Construct):
    """The bus customers' forwarders put agent events on, and the queue the ingest Lambda reads."""

    def __init__(self, scope: Construct, construct_id: str, *, bus_name: str) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=bus_name)
        self.bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AnyAccountMayPutForwardedAgentEvents",
                effect=iam.Effect.ALLOW,
                principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
                conditions={
                    "StringEquals": {
                        "events:source": [FORWARDER_EVENT_SOURCE],
                        "events:detail-type": [AGENT_EVENT_DETAIL_TYPE],
                    }
                },
            )
        )

        self.dead_letter_queue = dead_letter_queue(self, "DeadLetterQueue")
        self.queue = secure_queue(
            self,
            "Queue",
            visibility_timeout=VISIBILITY_TIMEOUT,
            retention_period=QUEUE_RETENTION,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        # Events EventBridge could not deliver to the queue (policy, throttling past 24 h) land here
        # instead of being dropped.
        self.rule_dead_letter_queue = dead_letter_queue(self, "RuleDeadLetterQueue")
        self.rule = events.Rule(
            self,
            "ForwardedAgentEvents",
            event_bus=self.bus,
            description="Forwarded Amazon Connect agent events -> ingest queue",
            event_pattern=events.EventPattern(
                source=[FORWARDER_EVENT_SOURCE], detail_type=[AGENT_EVENT_DETAIL_TYPE]
            ),
            targets=[
                targets.SqsQueue(
                    self.queue,
                    dead_letter_queue=self.rule_dead_letter_queue,
                    retry_attempts=185,
                    max_event_age=cdk.Duration.hours(24),
                )
            ],
        )
        acknowledge(
            self.rule_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is the EventBridge rule target's dead-letter queue (DeadLetterConfig of the "
            "rule target), which cdk-nag cannot see because no queue redrive policy points at it.",
        )
