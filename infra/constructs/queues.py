"""The one way this app makes an SQS queue: encrypted at rest, TLS only."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# The longest SQS allows: operators get two weeks to inspect and redrive a dead letter.
DEAD_LETTER_RETENTION = cdk.Duration.days(14)


def secure_queue(
    scope: Construct,
    construct_id: str,
    *,
    visibility_timeout: cdk.Duration | None = None,
    retention_period: cdk.Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    """A queue with SQS-managed SSE and a policy denying non-TLS requests.

    SSE-SQS rather than a KMS key: EventBridge and Pipes deliver to it without key-policy grants,
    and queued events are transient (the durable copy is the DynamoDB table).
    """
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        visibility_timeout=visibility_timeout,
        retention_period=retention_period,
        dead_letter_queue=dead_letter_queue,
    )


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    """A dead-letter queue: same protections, maximum retention."""
    return secure_queue(scope, construct_id, retention_period=DEAD_LETTER_RETENTION)
