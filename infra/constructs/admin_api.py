"""The admin API: environments, licence information and the seat check, IAM-authenticated on every route.

Callers sign requests with SigV4 (``connect-metering admin`` does) and need ``execute-api:Invoke`` on
this API: the seller's operators, and the seller's own app for the seat check at agent login (the
``SeatCheckPolicyArn`` output is a managed policy granting that one route).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from connect_metering import settings
from infra.constructs.ingestion import allow_table_access
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction
from infra.constructs.registration_api import throttled_stage

# The seat check runs at each agent login of every customer: sized for logins, not for operators.
RATE_LIMIT = 50
BURST_LIMIT = 100
ROUTES = (
    ("/companies/{alias}/environments", (apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST)),
    ("/companies/{alias}/environments/{name}", (apigwv2.HttpMethod.DELETE,)),
    ("/companies/{alias}/license", (apigwv2.HttpMethod.GET,)),
    ("/seat-check", (apigwv2.HttpMethod.POST,)),
)

# What ``LicenceService`` does to the tables, for the admin API and the console (which changes environments
# and reads the licence through the same service). Adding and removing an environment are transactions:
# Put/Delete plus a ConditionCheck; active agents are read from the activity table.
LICENCE_SERVICE_TENANCY_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)
LICENCE_SERVICE_ACTIVITY_ACTIONS = ("dynamodb:Query",)


def grant_licence_service(
    function: lambda_.IFunction, tenancy_table: dynamodb.ITable, activity_table: dynamodb.ITable
) -> None:
    allow_table_access(function, tenancy_table, list(LICENCE_SERVICE_TENANCY_ACTIONS), writes=True)
    allow_table_access(function, activity_table, list(LICENCE_SERVICE_ACTIVITY_ACTIONS), writes=False)


class AdminApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        tenancy_table: dynamodb.ITable,
        activity_table: dynamodb.ITable,
        product_code: str,
        agent_events_bus_arn: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = MeteringFunction(
            self,
            "Admin",
            runtime=runtime,
            name="admin",
            description="Environments, licence information and seat check (IAM-authenticated)",
            timeout=cdk.Duration.seconds(15),
            environment={
                settings.TENANCY_TABLE: tenancy_table.table_name,
                settings.ACTIVITY_TABLE: activity_table.table_name,
                settings.PRODUCT_CODE: product_code,
                # Shown with each environment as its forwarder's SellerEventBusArn parameter.
                settings.AGENT_EVENTS_BUS_ARN: agent_events_bus_arn,
            },
        )
        function = self.handler.function
        grant_licence_service(function, tenancy_table, activity_table)

        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="connect-metering: admin (environments, licence, seat check)",
            create_default_stage=False,
            default_authorizer=authorizers.HttpIamAuthorizer(),
        )
        integration = integrations.HttpLambdaIntegration("AdminIntegration", function)
        for path, methods in ROUTES:
            self.api.add_routes(path=path, methods=list(methods), integration=integration)
        self.stage, self.access_logs = throttled_stage(
            self, self.api, rate_limit=RATE_LIMIT, burst_limit=BURST_LIMIT
        )
        # For the seller's own application (its role or user): the seat check and nothing else, so the
        # app that asks "may this agent log in?" cannot list or change any company's environments.
        self.seat_check_policy = iam.ManagedPolicy(
            self,
            "SeatCheckInvoke",
            description="connect-metering admin API: POST /seat-check only",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[self.api.arn_for_execute_api("POST", "/seat-check", self.stage.stage_name)],
                )
            ],
        )
