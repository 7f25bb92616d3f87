"""The tenancy table: companies, subscriptions, environments, claims, registrations, metering state.

Every table of the back end is made by `encrypted_table` (tables.py). Encryption uses a customer-managed KMS key with yearly rotation rather than the AWS-managed
`aws/dynamodb` key. The table holds who buys what and how much each customer is billed; with our own
key the key policy decides who can decrypt it (grants follow `table.grant_*`), every use is in
CloudTrail under a key we own, and revoking or scheduling the key's deletion crypto-shreds the data
when the product is retired. The cost is $1 a month plus requests, which DynamoDB keeps low by
caching the table key. The key is retained with the table: a retained table whose key was deleted
could never be read again.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

# The names the adapter reads and writes: one definition for the code and the infrastructure.
from connect_metering.adapters.tenancy_keys import (
    ACTIVE_SUBSCRIPTIONS_INDEX,
    TTL_ATTRIBUTE,
)
from connect_metering.adapters.tenancy_keys import (
    INDEX_PARTITION_KEY as ACTIVE_SUBSCRIPTIONS_PARTITION_KEY,
)
from connect_metering.adapters.tenancy_keys import (
    INDEX_SORT_KEY as ACTIVE_SUBSCRIPTIONS_SORT_KEY,
)
from infra.constructs.tables import encrypted_table


class TenancyStore(Construct):
    """Single-table store with a sparse GSI listing the subscriptions the meter must visit."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # Pending registrations and spent registration tokens expire (epoch seconds; issue 5).
        self.table, self.key = encrypted_table(
            self, description="connect-metering tenancy table", time_to_live_attribute=TTL_ATTRIBUTE
        )
        # Sparse: only items that carry `meter_shard` (active subscriptions) are projected, so the
        # hourly dispatcher queries a few shards instead of scanning the table.
        self.table.add_global_secondary_index(
            index_name=ACTIVE_SUBSCRIPTIONS_INDEX,
            partition_key=dynamodb.Attribute(
                name=ACTIVE_SUBSCRIPTIONS_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(
                name=ACTIVE_SUBSCRIPTIONS_SORT_KEY, type=dynamodb.AttributeType.STRING
            ),
            projection_type=dynamodb.ProjectionType.ALL,
        )
