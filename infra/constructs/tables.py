"""One recipe for every DynamoDB table of the back end: on demand, point-in-time recovery, deletion
protection, retained, and encrypted with a customer-managed key (rotation on) that is retained with it.
See tenancy_store.py for why a customer-managed key."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

STRING = dynamodb.AttributeType.STRING


def encrypted_table(
    scope: Construct, *, description: str, time_to_live_attribute: str | None = None
) -> tuple[dynamodb.Table, kms.Key]:
    key = kms.Key(
        scope,
        "TableKey",
        description=description,
        enable_key_rotation=True,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    table = dynamodb.Table(
        scope,
        "Table",
        partition_key=dynamodb.Attribute(name="pk", type=STRING),
        sort_key=dynamodb.Attribute(name="sk", type=STRING),
        # Traffic follows agent activity and the hourly meter run: spiky, never provisioned.
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        deletion_protection=True,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        time_to_live_attribute=time_to_live_attribute,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    return table, key
