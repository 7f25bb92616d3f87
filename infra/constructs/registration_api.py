"""The public registration endpoint: CloudFront with a WAF web ACL (per-client rate limit) in front of an
HTTP API (throttled, access-logged) in front of the register Lambda.

AWS Marketplace sends the buyer's browser to ``POST /register`` (the product's fulfilment URL) with the
registration token as a form field; the sign-up pages live on the same API. It is public by nature (an
anonymous browser arrives from Marketplace), so it is protected by what the Lambda checks (a token only
Marketplace can issue, an opaque single-use registration id bound to the browser, a CSRF token) and by
stage throttling that bounds what abuse can cost. Access logs record the route and status, never the
query string (it carries the registration id) or the body (it carries the token).

Why CloudFront and not a REST API with a regional web ACL: HTTP APIs cannot be associated with WAF, and
of the two ways to get one, CloudFront keeps the HTTP API, its payload v2 events (the handler, the local
server and every test speak it) and its paths at the root (a REST API's execute-api URL starts with the
stage name, which breaks the pages' root-relative links and the cookie path). The web ACL costs the same
either way; CloudFront's requests at sign-up volumes are within its free tier, and HTTP API requests cost
less than REST API ones. The stage throttle stays as the ceiling on what the whole endpoint can cost.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from connect_metering import settings
from infra.constructs.ingestion import allow_table_access
from infra.constructs.lambda_runtime import LOG_RETENTION, LambdaRuntime, MeteringFunction
from infra.nag import acknowledge

# Sign-ups are people filling a form: a few per minute at most. 10 requests/s sustained with bursts of
# 20 serves a launch-day rush and caps what a flood can cost.
RATE_LIMIT = 10
BURST_LIMIT = 20
# Per client IP, per 5-minute window, at the web ACL. A sign-up is 3 requests (POST /register, GET and
# POST /signup) plus a few refused attempts; 100 lets an office behind one NAT sign up a dozen
# subscriptions in five minutes, while one client can then cause at most 100 ResolveCustomer calls per
# 5 minutes (0.33/s), far below the stage's 10/s, so it can no longer lock every other buyer out.
# 100 is also AWS WAF's long-standing minimum for a 5-minute window.
CLIENT_REQUESTS_PER_5_MINUTES = 100
RATE_WINDOW_SECONDS = 300
FUNCTION_TIMEOUT = cdk.Duration.seconds(15)
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTime",
        "sourceIp": "$context.identity.sourceIp",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
        "userAgent": "$context.identity.userAgent",
    },
    separators=(",", ":"),
)
TRANSACTION_ACTIONS = ["dynamodb:ConditionCheckItem"]


def throttled_stage(
    scope: Construct, api: apigwv2.HttpApi, *, rate_limit: int, burst_limit: int
) -> tuple[apigwv2.HttpStage, logs.LogGroup]:
    """The API's ``$default`` stage: auto-deployed, throttled, access logs in a retained log group."""
    log_group = logs.LogGroup(
        scope, "AccessLogs", retention=LOG_RETENTION, removal_policy=cdk.RemovalPolicy.RETAIN
    )
    stage = apigwv2.HttpStage(
        scope,
        "Stage",
        http_api=api,
        stage_name="$default",
        auto_deploy=True,
        throttle=apigwv2.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
    )
    cfn_stage = stage.node.default_child
    assert isinstance(cfn_stage, apigwv2.CfnStage)
    cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
        destination_arn=log_group.log_group_arn, format=ACCESS_LOG_FORMAT
    )
    return stage, log_group


class RegistrationApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        tenancy_table: dynamodb.ITable,
        product_code: str,
        meter_queue: sqs.IQueue,
        agent_events_bus_arn: str,
        forwarder_template_url: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {
            settings.TENANCY_TABLE: tenancy_table.table_name,
            settings.PRODUCT_CODE: product_code,
            settings.AGENT_EVENTS_BUS_ARN: agent_events_bus_arn,
            # Required: sign-up applies kept lifecycle events, and an end asks for final metering.
            settings.METER_QUEUE_URL: meter_queue.queue_url,
        }
        if forwarder_template_url:
            environment[settings.FORWARDER_TEMPLATE_URL] = forwarder_template_url
        self.handler = MeteringFunction(
            self,
            "Register",
            runtime=runtime,
            name="register",
            description="AWS Marketplace registration: token -> pending registration -> company",
            timeout=FUNCTION_TIMEOUT,
            # The API's rate limit, held back from the account's pool: buyers can always register.
            reserved_concurrent_executions=RATE_LIMIT,
            environment=environment,
        )
        function = self.handler.function
        allow_table_access(
            function,
            tenancy_table,
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:Query",
                *TRANSACTION_ACTIONS,
            ],
            writes=True,
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["aws-marketplace:ResolveCustomer", "aws-marketplace:GetEntitlements"],
                resources=["*"],
            )
        )
        acknowledge(
            self.handler.role,
            "AwsSolutions-IAM5[Resource::*]",
            "aws-marketplace:ResolveCustomer and GetEntitlements support no resource-level permissions (the "
            "Service Authorization Reference lists no resource type for them), so their resource must be *; "
            "X-Ray tracing adds its two actions on * as well.",
        )
        meter_queue.grant_send_messages(function)

        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="connect-metering: AWS Marketplace registration and sign-up pages",
            create_default_stage=False,
        )
        integration = integrations.HttpLambdaIntegration("RegisterIntegration", function)
        self.api.add_routes(path="/register", methods=[apigwv2.HttpMethod.POST], integration=integration)
        self.api.add_routes(
            path="/signup", methods=[apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST], integration=integration
        )
        self.stage, self.access_logs = throttled_stage(
            self, self.api, rate_limit=RATE_LIMIT, burst_limit=BURST_LIMIT
        )
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "Public by design: AWS Marketplace sends the buyer's anonymous browser here. Each request is "
            "authorised by what only the buyer holds (a Marketplace registration token resolved at once, "
            "then an opaque single-use registration id bound to the browser by a cookie, plus a CSRF "
            "token), and the stage is throttled.",
        )
        self.web_acl = per_client_rate_limit(self, "RateLimit", limit=CLIENT_REQUESTS_PER_5_MINUTES)
        self.distribution = cloudfront.Distribution(
            self,
            "Edge",
            comment="connect-metering: registration (WAF rate limit per client)",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.HttpOrigin(
                    cdk.Fn.select(2, cdk.Fn.split("/", self.api.api_endpoint)),
                    protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                ),
                # POST /register and POST /signup; every page is personal (no-store), so nothing is cached.
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                # Cookies, query string and headers reach the Lambda; the Host must be the API's own.
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            web_acl_id=self.web_acl.attr_arn,
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "Buyers come from AWS Marketplace in any country; there is no country to refuse.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR3",
            "Every request CloudFront forwards reaches the HTTP API, whose access log records it (route, "
            "status, client); requests the web ACL blocks are counted in its CloudWatch metrics and sampled. "
            "A second access log would need an S3 bucket with ACLs for the same lines.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The distribution uses its default *.cloudfront.net certificate (no custom domain), with which "
            "CloudFront cannot pin a minimum viewer TLS version; with a custom domain set TLSv1.2_2021.",
        )
        # The URL on the Marketplace listing: the protected entry, never the execute-api one.
        self.registration_url = f"https://{self.distribution.distribution_domain_name}/register"


def per_client_rate_limit(scope: Construct, construct_id: str, *, limit: int) -> wafv2.CfnWebACL:
    """A CloudFront-scope web ACL (created in us-east-1, where this stack lives) that blocks a client IP
    for as long as it sends more than ``limit`` requests in a 5-minute window, and allows the rest."""

    def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
        return wafv2.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
        )

    return wafv2.CfnWebACL(
        scope,
        construct_id,
        scope="CLOUDFRONT",
        description="connect-metering registration: requests per client IP",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=visibility("RegistrationWebAcl"),
        rules=[
            wafv2.CfnWebACL.RuleProperty(
                name="RequestsPerClientIp",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=limit, evaluation_window_sec=RATE_WINDOW_SECONDS
                    )
                ),
                visibility_config=visibility("RegistrationRequestsPerClientIp"),
            )
        ],
    )
