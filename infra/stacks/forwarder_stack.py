"""The customer's forwarder, shipped as a plain CloudFormation template the customer deploys.

No assets and a synthesizer that adds no bootstrap-version rule or parameter: the template in
cdk.out works as is in any account and region, with or without CDK bootstrap.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.config import InfraSettings
from infra.constructs.forwarder import AgentEventForwarder


class TemplateOnlySynthesizer(cdk.StackSynthesizer):
    """Writes the template and a manifest entry with no bootstrap roles, rule or parameter.

    `cdk deploy` then uses the caller's own credentials, and any construct that needs an asset
    fails the synth instead of turning into an upload the customer cannot do.
    BootstraplessSynthesizer was the first candidate, but in aws-cdk-lib 2.275 it still names the
    bootstrap deploy role in the manifest, so `cdk deploy` would need a bootstrapped account.
    """

    # jsii calls these with the asset struct positionally; `*args: Any` also satisfies the
    # keyword-only signatures of the Python bindings for mypy.
    def add_file_asset(self, *args: Any, **kwargs: Any) -> cdk.FileAssetLocation:
        raise ValueError("the forwarder template must have no assets (a file asset was added)")

    def add_docker_image_asset(self, *args: Any, **kwargs: Any) -> cdk.DockerImageAssetLocation:
        raise ValueError("the forwarder template must have no assets (a Docker image asset was added)")

    def synthesize(self, session: cdk.ISynthesisSession) -> None:
        self._synthesize_template(session)
        self._emit_artifact(session)


class ForwarderStack(cdk.Stack):
    """Environment-agnostic: it deploys into whichever account and region the customer uses."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: InfraSettings, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            synthesizer=TemplateOnlySynthesizer(),
            # No AWS::CDK::Metadata resource (and its region condition) in a customer's template.
            analytics_reporting=False,
            description="connect-metering forwarder: Amazon Connect agent events to the seller's bus",
            **kwargs,
        )
        self.forwarder = AgentEventForwarder(self, "Forwarder", bus_name=settings.forwarder_bus_name)
        cdk.CfnOutput(self, "ForwarderBusArn", value=self.forwarder.bus.event_bus_arn)
        cdk.CfnOutput(self, "PipeArn", value=self.forwarder.pipe.attr_arn)
        cdk.CfnOutput(
            self,
            "PipeDeadLetterQueueUrl",
            value=self.forwarder.pipe_dead_letter_queue.queue_url,
            description="Agent event batches the pipe gave up on (shard and sequence numbers)",
        )
        cdk.CfnOutput(
            self,
            "ForwardDeadLetterQueueUrl",
            value=self.forwarder.forward_dead_letter_queue.queue_url,
            description="Agent events the seller's bus did not accept",
        )
