"""Customer side: Amazon Connect agent event stream -> EventBridge Pipe -> local bus -> seller's bus.

The pipe puts each agent event on a bus in the customer's account with the fixed envelope (`source`
`connect-metering.forwarder`, `detail-type` `Amazon Connect Agent Event`, `detail` = the agent event
unchanged), and a rule on that bus forwards them to the seller's bus, cross-account and
cross-region. The envelope's `account` is then the customer's account, set by EventBridge.

Each event's `resources` carries the environment's verification code (parameter `VerificationCode`,
shown at sign-up), as `arn:aws:connect-metering:::verification/<code>`: Pipes accepts only ARN-shaped
resources, and the forward rule passes `resources` on unchanged. The first such event from the account
proves the environment's claim on it, and the environment is billed from then on.

Why an enrichment and not the input template `<$.data>`. Pipes does decode and parse JSON Kinesis
`data` for filters and templates ("implicit body data parsing"), but its documentation says that a
template made of the body field alone, `<$.body>` for SQS or `<$.data>` for Kinesis, strips the
quotes inside a JSON payload (`{"key": "value"}` reaches the target as `"{key: value}"`); the
documented way around is to wrap it, `{"data": <$.data>}`, which would change `detail`, a fixed
interface. An event bus target needs `Detail` to be a JSON object, so `<$.data>` would fail every
delivery. A ten-line enrichment, inlined in the template (no asset, no bootstrap), returns the
parsed agent event itself, and Pipes makes each returned item one PutEvents entry with it as
`detail`: the same JSON value the agent event stream carried.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from constructs import Construct

from infra.config import AGENT_EVENT_DETAIL_TYPE, FORWARDER_EVENT_SOURCE, REPO_ROOT
from infra.constructs.queues import dead_letter_queue
from infra.nag import acknowledge

DECODER_SOURCE = REPO_ROOT / "infra" / "inline" / "agent_event_decoder.py"
AGENT_EVENT_TYPES = ("LOGIN", "LOGOUT", "STATE_CHANGE", "HEART_BEAT")
# Must stay equal to connect_metering.domain.tenancy.VERIFICATION_RESOURCE_PREFIX (a test checks).
VERIFICATION_RESOURCE_PREFIX = "arn:aws:connect-metering:::verification/"

# Ten is the most an event bus target takes per call (PutEvents' 10 entries), so one batch is one
# enrichment invocation and one PutEvents call.
BATCH_SIZE = 10
# Waiting up to 5 s to fill a batch cuts decoder invocations up to tenfold on quiet streams; the
# seller meters an hour ten minutes after it ends, so seconds of latency cost nothing.
MAX_BATCHING_WINDOW_SECONDS = 5
# A record matters for billing until it would leave the stream anyway: late usage is billed in the
# next metered hour (BILLING.md section 5). 24 h is also Kinesis' default retention.
MAX_RECORD_AGE_SECONDS = 24 * 3600
# Retry as long as EventBridge itself does for a target (185 attempts) so a regional outage does
# not drop billable events; bisecting isolates a bad record so it alone ends in the DLQ.
MAX_RETRY_ATTEMPTS = 185
# The decoder logs only its failures; a month is enough to look into one with the customer.
DECODER_LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class AgentEventForwarder(Construct):
    """Everything the customer deploys: parameters, pipe, decoder, local bus and forward rule."""

    def __init__(self, scope: Construct, construct_id: str, *, bus_name: str) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        # Parameters live on the stack so their names stay exactly these in the handed-out template.
        self.stream_arn = cdk.CfnParameter(
            stack,
            "AgentEventStreamArn",
            type="String",
            description="ARN of the Kinesis data stream your Amazon Connect instance sends agent events to",
            allowed_pattern=r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[A-Za-z0-9_.-]+$",
        ).value_as_string
        self.stream_key_arn = cdk.CfnParameter(
            stack,
            "AgentEventStreamKeyArn",
            type="String",
            default="",
            description="ARN of the customer-managed KMS key of that stream, if it has one (else empty)",
            allowed_pattern=r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$",
        ).value_as_string
        self.seller_bus_arn = cdk.CfnParameter(
            stack,
            "SellerEventBusArn",
            type="String",
            description="ARN of the seller's agent-events event bus (given to you at sign-up)",
            allowed_pattern=r"^arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[A-Za-z0-9._-]+$",
        ).value_as_string

        self.verification_code = cdk.CfnParameter(
            stack,
            "VerificationCode",
            type="String",
            description="Your environment's verification code (given to you at sign-up and by the seller)",
            allowed_pattern=r"^[A-Za-z0-9_-]{22,64}$",
            no_echo=True,
        ).value_as_string

        self.bus = events.EventBus(self, "Bus", event_bus_name=bus_name)
        self.pipe_dead_letter_queue = dead_letter_queue(self, "PipeDeadLetterQueue")
        self.forward_dead_letter_queue = dead_letter_queue(self, "ForwardDeadLetterQueue")
        for queue, owner in (
            (self.pipe_dead_letter_queue, "the pipe's Kinesis source (DeadLetterConfig)"),
            (self.forward_dead_letter_queue, "the forward rule's target (DeadLetterConfig)"),
        ):
            acknowledge(
                queue,
                "AwsSolutions-SQS3",
                f"This queue is the dead-letter queue of {owner}; cdk-nag only recognises DLQs "
                "named by another queue's redrive policy.",
            )

        self.decoder = self._decoder_function()
        self.pipe_role = self._pipe_role()
        self.pipe = self._pipe()
        self.forward_role, self.forward_rule = self._forward_rule()

    def _decoder_function(self) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            "DecoderLogs",
            retention=DECODER_LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "DecoderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="connect-metering forwarder: decodes agent events for the pipe",
        )
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            "Decoder",
            description="connect-metering forwarder: Kinesis record -> agent event JSON",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_inline(_inline_source(DECODER_SOURCE)),
            role=role,
            log_group=log_group,
            memory_size=128,
            timeout=cdk.Duration.seconds(10),
        )

    def _pipe_role(self) -> iam.Role:
        account = cdk.Stack.of(self).account
        role = iam.Role(
            self,
            "PipeRole",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description="connect-metering forwarder pipe: read the agent event stream, put on the local bus",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAgentEventStream",
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                resources=[self.stream_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeDecoder",
                actions=["lambda:InvokeFunction"],
                resources=[self.decoder.function_arn],
            )
        )
        self.bus.grant_put_events_to(role)
        self.pipe_dead_letter_queue.grant_send_messages(role)

        # Only when the stream is encrypted with a customer-managed key (the aws/kinesis key needs
        # no grant): decrypting its records, through Kinesis only.
        has_stream_key = cdk.CfnCondition(
            self,
            "StreamHasCustomerManagedKey",
            expression=cdk.Fn.condition_not(cdk.Fn.condition_equals(self.stream_key_arn, "")),
        )
        stream_key_policy = iam.CfnPolicy(
            self,
            "StreamKeyPolicy",
            policy_name="DecryptAgentEventStream",
            roles=[role.role_name],
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": self.stream_key_arn,
                        "Condition": {
                            "StringEquals": {"kms:ViaService": f"kinesis.{cdk.Aws.REGION}.amazonaws.com"}
                        },
                    }
                ],
            },
        )
        stream_key_policy.cfn_options.condition = has_stream_key
        self.has_stream_key = has_stream_key
        self.stream_key_policy = stream_key_policy
        return role

    def _pipe(self) -> pipes.CfnPipe:
        only_agent_events = {"data": {"EventType": list(AGENT_EVENT_TYPES)}}
        pipe = pipes.CfnPipe(
            self,
            "Pipe",
            description="Amazon Connect agent events -> connect-metering forwarder bus",
            role_arn=self.pipe_role.role_arn,
            desired_state="RUNNING",
            source=self.stream_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                # Only agent events leave the account, even if the stream also carries other
                # records (a shared stream with contact records would otherwise leak them).
                filter_criteria=pipes.CfnPipe.FilterCriteriaProperty(
                    filters=[pipes.CfnPipe.FilterProperty(pattern=json.dumps(only_agent_events))]
                ),
                kinesis_stream_parameters=pipes.CfnPipe.PipeSourceKinesisStreamParametersProperty(
                    starting_position="LATEST",
                    batch_size=BATCH_SIZE,
                    maximum_batching_window_in_seconds=MAX_BATCHING_WINDOW_SECONDS,
                    maximum_record_age_in_seconds=MAX_RECORD_AGE_SECONDS,
                    maximum_retry_attempts=MAX_RETRY_ATTEMPTS,
                    on_partial_batch_item_failure="AUTOMATIC_BISECT",
                    # One poller per shard keeps each agent's events in stream order.
                    parallelization_factor=1,
                    dead_letter_config=pipes.CfnPipe.DeadLetterConfigProperty(
                        arn=self.pipe_dead_letter_queue.queue_arn
                    ),
                ),
            ),
            enrichment=self.decoder.function_arn,
            target=self.bus.event_bus_arn,
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                event_bridge_event_bus_parameters=pipes.CfnPipe.PipeTargetEventBridgeEventBusParametersProperty(
                    source=FORWARDER_EVENT_SOURCE,
                    detail_type=AGENT_EVENT_DETAIL_TYPE,
                    resources=[f"{VERIFICATION_RESOURCE_PREFIX}{self.verification_code}"],
                )
            ),
        )
        # The role's policy must exist before Pipes validates access to source and target.
        pipe.node.add_dependency(self.pipe_role)
        self._wait_for_stream_key_policy(pipe)
        return pipe

    def _wait_for_stream_key_policy(self, pipe: pipes.CfnPipe) -> None:
        """Create the pipe only after the kms:Decrypt grant, when the stream has a customer-managed key.

        Without the grant in place the pipe's first reads of an encrypted stream fail. A plain
        DependsOn cannot name the policy: it exists only under a condition, and CloudFormation rejects
        a template whose DependsOn names a resource its condition left out ("Unresolved resource
        dependencies"), nor does it accept Fn::If inside DependsOn. A Ref does order creation, and a
        Ref inside Fn::If is allowed and vanishes with the false branch, so the pipe's metadata refers
        to the policy exactly when there is one: CloudFormation then creates the policy first.
        """
        pipe.add_metadata(
            "WaitsForStreamKeyPolicy",
            cdk.Fn.condition_if(self.has_stream_key.logical_id, self.stream_key_policy.ref, ""),
        )

    def _forward_rule(self) -> tuple[iam.Role, events.Rule]:
        account = cdk.Stack.of(self).account
        role = iam.Role(
            self,
            "ForwardRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            description="connect-metering forwarder: put agent events on the seller's bus",
        )
        seller_bus = events.EventBus.from_event_bus_arn(self, "SellerBus", self.seller_bus_arn)
        # The target grants the role events:PutEvents on exactly the seller's bus ARN, nothing more.
        rule = events.Rule(
            self,
            "ForwardToSeller",
            event_bus=self.bus,
            description="Agent events -> the seller's connect-metering bus",
            event_pattern=events.EventPattern(
                source=[FORWARDER_EVENT_SOURCE], detail_type=[AGENT_EVENT_DETAIL_TYPE]
            ),
            targets=[
                targets.EventBus(seller_bus, role=role, dead_letter_queue=self.forward_dead_letter_queue)
            ],
        )
        return role, rule


def _inline_source(path: Path) -> str:
    source = path.read_text(encoding="utf-8")
    # CloudFormation's ZipFile limit; past it the function would need an asset, which the
    # customer template must not have.
    if len(source) > 4096:
        raise ValueError(f"{path} is {len(source)} characters; inline code is limited to 4096")
    return source
