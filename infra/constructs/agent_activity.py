"""Where accepted agent events live until the meter turns them into billable time, and where rejected
ones are kept for audit (layouts: connect_metering/adapters/activity_table.py, quarantine_table.py)."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from connect_metering.adapters.activity_table import EXPIRES_AT, LATE_EVENTS_INDEX
from infra.constructs.tables import encrypted_table


class AgentActivityStore(Construct):
    """Events per (instance, day) partition, one item per agent-hour, hourly checkpoints beside them.
    The sparse GSI `late-events` lists agent-hours that received events after they were metered."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table, self.key = encrypted_table(
            self, description="connect-metering agent activity", time_to_live_attribute=EXPIRES_AT
        )
        self.table.add_global_secondary_index(
            index_name=LATE_EVENTS_INDEX,
            partition_key=dynamodb.Attribute(name="late_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="late_at", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )


class QuarantineStore(Construct):
    """Rejected events with their reason; DynamoDB TTL removes them after the retention (>= 14 days)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table, self.key = encrypted_table(
            self, description="connect-metering quarantined events", time_to_live_attribute="expires_at"
        )
