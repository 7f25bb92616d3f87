"""The ingest Lambda: the agent-events queue -> accepted events (activity table) or quarantine.

Batching: connect_metering/ingest_batching.py (shared with the bench, which measures these batches):
up to 10,000 records, 300 s, or Lambda's 6 MB payload, whichever comes first. The handler stores a
batch with one write per agent-hour, so a batch holding several events of each agent is what keeps
writes (and write units) per event low; 300 s is well inside the 10 minutes of grace before an hour
is metered. Partial batch failures are reported, so one failed write makes SQS redeliver that record
only; after 5 receives it goes to the queue's dead-letter queue.

Concurrency: the event source mapping takes at most MAX_CONCURRENCY batches at once. Without a cap,
a backlog (after an outage of the forwarders' bus, say) would scale the poller to hundreds of
functions, take the account's unreserved concurrency from the meter worker and registration, and
their throttled SQS batches would count as receives towards the dead-letter queue. 50 concurrent
batches of thousands of events each drain far more than the steady load (a heartbeat per agent
every 2 minutes is about 830 events/s for 100,000 agents). No reserved concurrency: nothing needs
capacity held back for ingest, and a late event is still billed (BILLING.md section 5).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from connect_metering import settings
from connect_metering.ingest_batching import BATCH_SIZE, BATCHING_WINDOW_SECONDS
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction

MAX_CONCURRENCY = 50
QUARANTINE_RETENTION_DAYS = 30


class AgentEventIngestion(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        queue: sqs.IQueue,
        tenancy_table: dynamodb.ITable,
        activity_table: dynamodb.ITable,
        quarantine_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = MeteringFunction(
            self,
            "Ingest",
            runtime=runtime,
            name="ingest",
            description="Agent events -> accepted (stored once) or quarantined with a reason",
            timeout=cdk.Duration.seconds(60),
            environment={
                settings.TENANCY_TABLE: tenancy_table.table_name,
                settings.ACTIVITY_TABLE: activity_table.table_name,
                settings.QUARANTINE_TABLE: quarantine_table.table_name,
                settings.QUARANTINE_RETENTION_DAYS: str(QUARANTINE_RETENTION_DAYS),
            },
        )
        function = self.handler.function
        function.add_event_source(
            sources.SqsEventSource(
                queue,
                batch_size=BATCH_SIZE,
                max_batching_window=cdk.Duration.seconds(BATCHING_WINDOW_SECONDS),
                report_batch_item_failures=True,
                max_concurrency=MAX_CONCURRENCY,
            )
        )
        # Least privilege: exactly the item operations the handler makes, on exactly these tables,
        # and the table keys only for what DynamoDB does on the caller's behalf (no wildcards).
        # Query and UpdateItem: verifying an account claim (services/verification.py) updates the claim
        # and the company's environments in that account in one transaction.
        allow_table_access(
            function,
            tenancy_table,
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            writes=True,
        )
        allow_table_access(function, activity_table, ["dynamodb:UpdateItem"], writes=True)
        allow_table_access(
            function, quarantine_table, ["dynamodb:PutItem", "dynamodb:UpdateItem"], writes=True
        )


def allow_table_access(
    grantee: iam.IGrantable, table: dynamodb.ITable, actions: list[str], *, writes: bool
) -> None:
    iam.Grant.add_to_principal(grantee=grantee, actions=actions, resource_arns=[table.table_arn])
    if table.encryption_key is not None:
        key_actions = ["kms:Decrypt", "kms:DescribeKey"]
        if writes:
            key_actions += ["kms:Encrypt", "kms:GenerateDataKey"]
        iam.Grant.add_to_principal(
            grantee=grantee, actions=key_actions, resource_arns=[table.encryption_key.key_arn]
        )
