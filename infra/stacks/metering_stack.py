"""The seller's back end in the seller's account (us-east-1, where Marketplace metering lives)."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.config import InfraSettings
from infra.constructs.admin_api import AdminApi
from infra.constructs.agent_activity import AgentActivityStore, QuarantineStore
from infra.constructs.agent_events import AgentEventsIngress
from infra.constructs.console import CustomerConsole
from infra.constructs.ingestion import AgentEventIngestion
from infra.constructs.lambda_runtime import LambdaRuntime
from infra.constructs.metering import HourlyMetering
from infra.constructs.operations import MeteringOperations
from infra.constructs.registration_api import RegistrationApi
from infra.constructs.subscription_lifecycle import SubscriptionLifecycle, sns_topic_arns_from_context
from infra.constructs.tenancy_store import TenancyStore


class MeteringStack(cdk.Stack):
    """Composes the seller-side capabilities; functions are added with `MeteringFunction(runtime=...)`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, settings: InfraSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tenancy = TenancyStore(self, "Tenancy")
        self.agent_events = AgentEventsIngress(self, "AgentEvents", bus_name=settings.agent_events_bus_name)
        self.runtime = LambdaRuntime(
            self,
            "Runtime",
            powertools_layer_version=settings.powertools_layer_version,
            log_level=settings.log_level,
        )
        self.activity = AgentActivityStore(self, "Activity")
        self.quarantine = QuarantineStore(self, "Quarantine")
        self.ingestion = AgentEventIngestion(
            self,
            "Ingestion",
            runtime=self.runtime,
            queue=self.agent_events.queue,
            tenancy_table=self.tenancy.table,
            activity_table=self.activity.table,
            quarantine_table=self.quarantine.table,
        )

        self.metering = HourlyMetering(
            self,
            "Metering",
            runtime=self.runtime,
            tenancy_table=self.tenancy.table,
            activity_table=self.activity.table,
        )
        self.meter_queue = self.metering.queue
        self.operations = MeteringOperations(self, "Operations")

        cdk.CfnOutput(
            self,
            "AgentEventsBusArn",
            value=self.agent_events.bus.event_bus_arn,
            description="Give this to customers: the SellerEventBusArn parameter of the forwarder",
        )
        cdk.CfnOutput(self, "TenancyTableName", value=self.tenancy.table.table_name)
        cdk.CfnOutput(self, "AgentEventsQueueUrl", value=self.agent_events.queue.queue_url)

        # --- registration and subscription lifecycle (issue 5) ---
        self.lifecycle = SubscriptionLifecycle(
            self,
            "Lifecycle",
            runtime=self.runtime,
            tenancy_table=self.tenancy.table,
            product_code=settings.product_code,
            meter_queue=self.meter_queue,
            sns_topic_arns=sns_topic_arns_from_context(self),
            alarm_topic=self.operations.topic,
        )
        self.registration = RegistrationApi(
            self,
            "Registration",
            runtime=self.runtime,
            tenancy_table=self.tenancy.table,
            product_code=settings.product_code,
            meter_queue=self.meter_queue,
            agent_events_bus_arn=self.agent_events.bus.event_bus_arn,
            forwarder_template_url=settings.forwarder_template_url,
        )
        self.admin = AdminApi(
            self,
            "Admin",
            runtime=self.runtime,
            tenancy_table=self.tenancy.table,
            activity_table=self.activity.table,
            product_code=settings.product_code,
            agent_events_bus_arn=self.agent_events.bus.event_bus_arn,
        )
        self.console = CustomerConsole(
            self,
            "Console",
            runtime=self.runtime,
            api=self.registration.api,
            registration_function=self.registration.handler.function,
            console_url=f"https://{self.registration.distribution.distribution_domain_name}/console/",
            tenancy_table=self.tenancy.table,
            activity_table=self.activity.table,
            ledger_table=self.metering.ledger_table,
            product_code=settings.product_code,
            agent_events_bus_arn=self.agent_events.bus.event_bus_arn,
            forwarder_template_url=settings.forwarder_template_url,
        )
        cdk.CfnOutput(
            self,
            "ConsoleUrl",
            value=f"https://{self.registration.distribution.distribution_domain_name}/console/",
            description="The customer console (administrators sign in with their company alias)",
        )
        cdk.CfnOutput(
            self,
            "RegistrationUrl",
            value=self.registration.registration_url,
            description="The SaaS fulfilment URL to set on the AWS Marketplace listing (CloudFront + WAF)",
        )
        cdk.CfnOutput(
            self,
            "AdminApiUrl",
            value=self.admin.api.api_endpoint,
            description="connect-metering admin --endpoint (IAM-authenticated)",
        )
        cdk.CfnOutput(
            self,
            "SeatCheckPolicyArn",
            value=self.admin.seat_check_policy.managed_policy_arn,
            description="Attach to the seller app's role: execute-api:Invoke on POST /seat-check only",
        )
        cdk.CfnOutput(self, "LifecycleQueueUrl", value=self.lifecycle.queue.queue_url)

        self.operations.watch(
            functions=[
                self.ingestion.handler.function,
                self.metering.dispatcher.function,
                self.metering.worker.function,
                self.lifecycle.handler.function,
                self.registration.handler.function,
                self.admin.handler.function,
                self.console.handler.function,
            ],
            dead_letter_queues=[
                self.agent_events.dead_letter_queue,
                self.agent_events.rule_dead_letter_queue,
                self.metering.dead_letter_queue,
                self.metering.schedule_dead_letter_queue,
            ],
            agent_events_queue=self.agent_events.queue,
        )
