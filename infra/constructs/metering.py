"""Hourly metering: schedule (minute 10) -> dispatcher -> meter queue -> workers -> BatchMeterUsage.

At most WORKER_CONCURRENCY (2) workers run at once, each pacing its own calls at 4 calls/s, so the
whole product stays under Marketplace's 10 calls/s quota. The cap is the event source mapping's
maximum concurrency, not reserved concurrency alone: an SQS event source ignores reserved
concurrency, so its throttled batches would go back to the queue, count as receives and could reach
the dead-letter queue (final-metering items included); with maximum concurrency the poller simply
takes no more batches than that. Reserved concurrency stays, equal to the cap, for what it does do:
it keeps two executions' worth of the account's concurrency for billing whatever else runs, and it
caps invocations from outside the queue (an operator's test) as well. Every queue has a dead-letter
queue; the ledger table is the durable write-ahead record of every UsageRecord sent.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from connect_metering import settings
from infra.constructs.ingestion import allow_table_access
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction
from infra.constructs.queues import dead_letter_queue, secure_queue
from infra.constructs.tables import encrypted_table
from infra.nag import acknowledge

WORKER_TIMEOUT = cdk.Duration.seconds(300)
# Maximum concurrency of the worker's event source, and its reserved concurrency (see above); times
# the per-worker pace (functions/meter_worker/handler.py CALLS_PER_SECOND) it must stay below 10.
WORKER_CONCURRENCY = 2
DISPATCHER_CONCURRENCY = 1
WORKER_BATCH_SIZE = 100
# A work item is retried a few times (a concurrent run, a crash), then kept for an operator; the next
# hourly run resends whatever it left pending anyway.
MAX_RECEIVE_COUNT = 3
# Minute 10 of every hour: the grace after the hour (BILLING.md section 6).
SCHEDULE = events.Schedule.cron(minute="10")
TRANSACTION_ACTIONS = ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"]


class HourlyMetering(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        tenancy_table: dynamodb.ITable,
        activity_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        ledger = Construct(self, "Ledger")
        self.ledger_table, self.ledger_key = encrypted_table(ledger, description="connect-metering ledger")
        self.dead_letter_queue = dead_letter_queue(self, "MeterWorkDeadLetterQueue")
        self.queue = secure_queue(
            self,
            "MeterWorkQueue",
            visibility_timeout=cdk.Duration.seconds(6 * WORKER_TIMEOUT.to_seconds()),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue
            ),
        )
        tables = {
            settings.TENANCY_TABLE: tenancy_table.table_name,
            settings.ACTIVITY_TABLE: activity_table.table_name,
        }
        self.dispatcher = MeteringFunction(
            self,
            "Dispatcher",
            runtime=runtime,
            name="meter_dispatch",
            description="Hourly: one work item per company to meter",
            timeout=cdk.Duration.seconds(120),
            # Held back from the account's pool so an ingest flood can never delay the hourly run; one
            # run an hour needs one (a rare overlapping retry waits for the schedule's retry).
            reserved_concurrent_executions=DISPATCHER_CONCURRENCY,
            environment={**tables, settings.METER_QUEUE_URL: self.queue.queue_url},
        )
        self.worker = MeteringFunction(
            self,
            "Worker",
            runtime=runtime,
            name="meter_worker",
            description="Meters a company: write-ahead ledger, BatchMeterUsage, outcomes",
            timeout=WORKER_TIMEOUT,
            reserved_concurrent_executions=WORKER_CONCURRENCY,
            environment={**tables, settings.LEDGER_TABLE: self.ledger_table.table_name},
        )
        self.schedule_dead_letter_queue = dead_letter_queue(self, "ScheduleDeadLetterQueue")
        self.schedule = events.Rule(
            self,
            "HourlySchedule",
            description="Meter every hour at minute 10",
            schedule=SCHEDULE,
            targets=[
                targets.LambdaFunction(
                    self.dispatcher.function,
                    retry_attempts=3,
                    max_event_age=cdk.Duration.minutes(45),
                    dead_letter_queue=self.schedule_dead_letter_queue,
                )
            ],
        )
        # Up to 100 companies per invocation share BatchMeterUsage calls of 25 records, so calls per
        # hour stay at ceil(records / 25); the dispatcher enqueues them all at once, so batches fill.
        self.worker.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=WORKER_BATCH_SIZE,
                max_batching_window=cdk.Duration.seconds(10),
                report_batch_item_failures=True,
                max_concurrency=WORKER_CONCURRENCY,
            )
        )
        self._grant(tenancy_table, activity_table)
        for queue in (self.dead_letter_queue, self.schedule_dead_letter_queue):
            acknowledge(
                queue,
                "AwsSolutions-SQS3",
                "This queue is itself a dead-letter queue; it has no dead-letter queue of its own.",
            )

    def _grant(self, tenancy_table: dynamodb.ITable, activity_table: dynamodb.ITable) -> None:
        dispatcher = self.dispatcher.function
        allow_table_access(dispatcher, tenancy_table, ["dynamodb:Query", "dynamodb:GetItem"], writes=False)
        _allow_index(dispatcher, tenancy_table, "active-subscriptions")
        # UpdateItem: a late marker is cleared once its recompute is queued (progress per item).
        allow_table_access(dispatcher, activity_table, ["dynamodb:Query", "dynamodb:UpdateItem"], writes=True)
        _allow_index(dispatcher, activity_table, "late-events")
        self.queue.grant_send_messages(dispatcher)

        worker = self.worker.function
        allow_table_access(
            worker,
            tenancy_table,
            ["dynamodb:Query", "dynamodb:BatchWriteItem", *TRANSACTION_ACTIONS],
            writes=True,
        )
        allow_table_access(
            worker,
            activity_table,
            ["dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem"],
            writes=True,
        )
        allow_table_access(
            worker,
            self.ledger_table,
            ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:BatchWriteItem", *TRANSACTION_ACTIONS],
            writes=True,
        )
        worker.add_to_role_policy(
            iam.PolicyStatement(actions=["aws-marketplace:BatchMeterUsage"], resources=["*"])
        )
        acknowledge(
            self.worker.role,
            "AwsSolutions-IAM5[Resource::*]",
            "aws-marketplace:BatchMeterUsage has no resource-level permissions; X-Ray needs * as well.",
        )


def _allow_index(grantee: iam.IGrantable, table: dynamodb.ITable, index: str) -> None:
    iam.Grant.add_to_principal(
        grantee=grantee, actions=["dynamodb:Query"], resource_arns=[f"{table.table_arn}/index/{index}"]
    )
