"""The customer console: a Cognito user pool of the buyers' administrators, the session signing key, and the
console Lambda on the registration API (so behind the same CloudFront distribution and WAF web ACL).

The pool: no self sign-up (administrators are invited: the first one at sign-up by the register Lambda,
the others by an administrator), user names ``<company alias>/<email>`` (case-insensitive) with the
immutable ``custom:company_alias``, a 12-character password policy with every character class, Cognito's
threat protection enforced (Plus plan: compromised credentials, adaptive authentication; Cognito also
locks a user out after repeated wrong passwords, and the console counts failures itself), optional TOTP
MFA, and account recovery by email only. Invitations are Cognito's own emails with the temporary password,
and so are password reset codes (ForgotPassword), in the pool's verification message. ForgotPassword,
ConfirmForgotPassword and the TOTP calls (AssociateSoftwareToken, VerifySoftwareToken,
SetUserMFAPreference: enrolling, replacing, turning off one's own) are authorized by the user's code or
access token, not by IAM: the console's role gains no action for them. Resetting another administrator's
TOTP is AdminSetUserMFAPreference, on this pool only; the Lambda names the user under the session's company.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from connect_metering import settings
from infra.constructs.admin_api import grant_licence_service
from infra.constructs.ingestion import allow_table_access
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction
from infra.nag import acknowledge

# Pages are people clicking: the console's share of the registration API's throttle is ample.
RESERVED_CONCURRENCY = 10
SIGNING_KEY_LENGTH = 64
# What the console calls (sign-in, first password, administrators, resetting another administrator's
# TOTP); nothing else of the pool.
CONSOLE_COGNITO_ACTIONS = [
    "cognito-idp:AdminInitiateAuth",
    "cognito-idp:AdminRespondToAuthChallenge",
    "cognito-idp:AdminGetUser",
    "cognito-idp:AdminCreateUser",
    "cognito-idp:AdminDeleteUser",
    "cognito-idp:AdminSetUserMFAPreference",
    "cognito-idp:ListUsers",
]
# The register Lambda invites the first administrator (and checks there is none yet).
REGISTER_COGNITO_ACTIONS = ["cognito-idp:AdminCreateUser", "cognito-idp:ListUsers"]
CONSOLE_PATHS = ("/console", "/console/{proxy+}")


class CustomerConsole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        api: apigwv2.HttpApi,
        registration_function: lambda_.Function,
        console_url: str,
        tenancy_table: dynamodb.ITable,
        activity_table: dynamodb.ITable,
        ledger_table: dynamodb.ITable,
        product_code: str,
        agent_events_bus_arn: str,
        forwarder_template_url: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = self._user_pool(console_url)
        self.client = self.user_pool.add_client(
            "Console",
            auth_flows=cognito.AuthFlow(admin_user_password=True),
            generate_secret=False,
            prevent_user_existence_errors=True,
            access_token_validity=cdk.Duration.minutes(60),
            id_token_validity=cdk.Duration.minutes(60),
            refresh_token_validity=cdk.Duration.hours(8),
        )
        # A key of our own (not the account's aws/secretsmanager key): only the console's role may decrypt
        # the cookie signing key, and its use is in CloudTrail under this key.
        self.signing_key_encryption = kms.Key(
            self,
            "SessionSigningKeyEncryption",
            enable_key_rotation=True,
            description="connect-metering console: encrypts the session cookie signing key",
            # Nothing outlives the stack under this key (the secret goes with it; sessions are 8 hours):
            # scheduled for deletion with the stack rather than retained at a dollar a month.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.signing_key = secretsmanager.Secret(
            self,
            "SessionSigningKey",
            description="connect-metering console: HMAC key of the session cookies",
            encryption_key=self.signing_key_encryption,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=SIGNING_KEY_LENGTH, exclude_punctuation=True
            ),
        )
        acknowledge(
            self.signing_key,
            "AwsSolutions-SMG4",
            "Rotating the cookie signing key signs every administrator out (sessions last 8 hours at most); "
            "rotate it by hand when needed (a new version, then a console deploy or cold start).",
        )
        environment = {
            settings.TENANCY_TABLE: tenancy_table.table_name,
            settings.ACTIVITY_TABLE: activity_table.table_name,
            settings.LEDGER_TABLE: ledger_table.table_name,
            settings.PRODUCT_CODE: product_code,
            settings.AGENT_EVENTS_BUS_ARN: agent_events_bus_arn,
            settings.CONSOLE_USER_POOL_ID: self.user_pool.user_pool_id,
            settings.CONSOLE_CLIENT_ID: self.client.user_pool_client_id,
            settings.CONSOLE_SESSION_SECRET_ARN: self.signing_key.secret_arn,
        }
        if forwarder_template_url:
            environment[settings.FORWARDER_TEMPLATE_URL] = forwarder_template_url
        self.handler = MeteringFunction(
            self,
            "Console",
            runtime=runtime,
            name="console",
            description="The customer console: sign-in, licence, environments, usage, administrators",
            timeout=cdk.Duration.seconds(15),
            reserved_concurrent_executions=RESERVED_CONCURRENCY,
            environment=environment,
        )
        self._grant(self.handler.function, tenancy_table, activity_table, ledger_table)
        integration = integrations.HttpLambdaIntegration("ConsoleIntegration", self.handler.function)
        for path in CONSOLE_PATHS:
            api.add_routes(
                path=path, methods=[apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST], integration=integration
            )
        registration_function.add_environment(settings.CONSOLE_USER_POOL_ID, self.user_pool.user_pool_id)
        registration_function.add_to_role_policy(
            iam.PolicyStatement(actions=REGISTER_COGNITO_ACTIONS, resources=[self.user_pool.user_pool_arn])
        )

    def _user_pool(self, console_url: str) -> cognito.UserPool:
        pool = cognito.UserPool(
            self,
            "Administrators",
            self_sign_up_enabled=False,
            sign_in_case_sensitive=False,
            custom_attributes={
                "company_alias": cognito.StringAttribute(min_len=3, max_len=32, mutable=False)
            },
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=cdk.Duration.days(7),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="Your connect-metering console invitation",
                email_body=(
                    "You are invited as an administrator of your company's console. Your user name is "
                    "{username} (your company alias, a slash, your email); sign in at "
                    f"{console_url} with the company alias, your email and the temporary password "
                    "{####} , then choose your own password."
                ),
            ),
            # The password reset code (ForgotPassword) is mailed with this message.
            user_verification=cognito.UserVerificationConfig(
                email_style=cognito.VerificationEmailStyle.CODE,
                email_subject="Your connect-metering console code",
                email_body=(
                    "Your code to reset your console password is {####} . Enter it at "
                    f"{console_url}reset-password with your company alias, your email and a new password. "
                    "If you did not ask for it, ignore this email."
                ),
            ),
            deletion_protection=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge(
            pool,
            "AwsSolutions-COG2",
            "TOTP MFA is optional, as the issue asks: administrators of small buyers sign in rarely and "
            "threat protection (adaptive authentication) is enforced on every sign-in.",
        )
        return pool

    def _grant(
        self,
        function: lambda_.Function,
        tenancy_table: dynamodb.ITable,
        activity_table: dynamodb.ITable,
        ledger_table: dynamodb.ITable,
    ) -> None:
        # The admin API's environment transactions and licence reads; the same actions cover the console's
        # session and sign-in items (Get, Put, Delete) and its audit items (Put).
        grant_licence_service(function, tenancy_table, activity_table)
        allow_table_access(function, ledger_table, ["dynamodb:Query"], writes=False)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=CONSOLE_COGNITO_ACTIONS, resources=[self.user_pool.user_pool_arn])
        )
        self.signing_key.grant_read(function)
