"""The console in the synthesized stack: the administrators' user pool, its app client, the console
routes on the registration API (behind the same CloudFront and WAF), and least-privilege grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from connect_metering import settings
from connect_metering.observability import service_name
from tests.infra.template_helpers import resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_the_user_pool_invites_administrators_and_enforces_its_policies(metering: Template) -> None:
    metering.resource_count_is("AWS::Cognito::UserPool", 1)
    metering.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "AdminCreateUserConfig": Match.object_like(
                {
                    "AllowAdminCreateUserOnly": True,
                    "InviteMessageTemplate": Match.object_like({"EmailMessage": Match.any_value()}),
                }
            ),
            "Policies": {
                "PasswordPolicy": Match.object_like(
                    {
                        "MinimumLength": 12,
                        "RequireLowercase": True,
                        "RequireUppercase": True,
                        "RequireNumbers": True,
                        "RequireSymbols": True,
                        "TemporaryPasswordValidityDays": 7,
                    }
                )
            },
            "MfaConfiguration": "OPTIONAL",
            "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
            "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
            "AccountRecoverySetting": {"RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]},
            "UsernameConfiguration": {"CaseSensitive": False},
            "Schema": Match.array_with([Match.object_like({"Name": "company_alias", "Mutable": False})]),
            "DeletionProtection": "ACTIVE",
        },
    )


def test_password_reset_codes_are_mailed_with_the_reset_page(metering: Template) -> None:
    """ForgotPassword's code goes out in the pool's verification message, naming the console's reset page."""
    metering.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "VerificationMessageTemplate": Match.object_like(
                {"DefaultEmailOption": "CONFIRM_WITH_CODE", "EmailSubject": Match.any_value()}
            ),
        },
    )
    verification = json.dumps(
        next(iter(metering.find_resources("AWS::Cognito::UserPool").values()))["Properties"][
            "VerificationMessageTemplate"
        ]
    )
    assert "/console/reset-password" in verification  # the message joins in the distribution's domain
    assert "{####}" in verification


def test_optional_totp_needs_no_more_iam(metering_json: dict[str, Any]) -> None:
    """TOTP is optional and software-token only (no SMS, so no SNS role); the enrolment, turning off and
    password reset calls are authorized by the user's token or code, so the console's role has no action
    for them; only an administrator resetting another's TOTP needs IAM."""
    (pool,) = resources_of_type(metering_json, "AWS::Cognito::UserPool").values()
    assert pool["Properties"]["MfaConfiguration"] == "OPTIONAL"
    assert pool["Properties"]["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert "SmsConfiguration" not in pool["Properties"]
    actions = {a for s in _policy_statements_of(metering_json, "console") for a in _actions(s)}
    for token_authorized in (
        "cognito-idp:ForgotPassword",
        "cognito-idp:ConfirmForgotPassword",
        "cognito-idp:AssociateSoftwareToken",
        "cognito-idp:VerifySoftwareToken",
        "cognito-idp:SetUserMFAPreference",
    ):
        assert token_authorized not in actions
    # Resetting another administrator's TOTP (a lost device) is the one MFA call IAM authorizes.
    assert "cognito-idp:AdminSetUserMFAPreference" in actions


def test_the_app_client_signs_in_only_on_the_administrators_behalf(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            "GenerateSecret": False,
            "PreventUserExistenceErrors": "ENABLED",
        },
    )


def test_console_routes_are_on_the_registration_api(metering_json: dict[str, Any]) -> None:
    routes = resources_of_type(metering_json, "AWS::ApiGatewayV2::Route")
    keys = {route["Properties"]["RouteKey"]: route["Properties"]["ApiId"] for route in routes.values()}
    for key in ("GET /console", "POST /console", "GET /console/{proxy+}", "POST /console/{proxy+}"):
        assert key in keys
    assert keys["GET /console/{proxy+}"] == keys["POST /register"]


def _policy_statements_of(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    functions = resources_of_type(template, "AWS::Lambda::Function")
    role = next(
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in functions.values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == service_name(function)
    )
    statements: list[dict[str, Any]] = []
    for policy in resources_of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_cognito_grants_name_the_pool_only(metering_json: dict[str, Any]) -> None:
    (pool,) = resources_of_type(metering_json, "AWS::Cognito::UserPool")
    (pool,) = resources_of_type(metering_json, "AWS::Cognito::UserPool")
    for function, expected in (
        (
            "console",
            {
                "AdminInitiateAuth",
                "AdminRespondToAuthChallenge",
                "AdminGetUser",
                "AdminCreateUser",
                "AdminDeleteUser",
                "AdminSetUserMFAPreference",
                "ListUsers",
            },
        ),
        ("register", {"AdminCreateUser", "ListUsers"}),
    ):
        cognito = [
            s
            for s in _policy_statements_of(metering_json, function)
            if _actions(s)[0].startswith("cognito-idp:")
        ]
        assert len(cognito) == 1, function
        assert {a.split(":", 1)[1] for a in _actions(cognito[0])} == expected
        assert cognito[0]["Resource"] == {"Fn::GetAtt": [pool, "Arn"]}


def test_the_console_reads_the_ledger_and_writes_no_meter_data(metering_json: dict[str, Any]) -> None:
    statements = _policy_statements_of(metering_json, "console")
    dynamodb_actions = {a for s in statements for a in _actions(s) if a.startswith("dynamodb:")}
    assert "dynamodb:BatchWriteItem" not in dynamodb_actions
    assert "dynamodb:UpdateItem" not in dynamodb_actions
    assert "dynamodb:Scan" not in dynamodb_actions
    assert any("secretsmanager:GetSecretValue" in _actions(s) for s in statements)


def test_the_register_lambda_knows_the_pool(metering_json: dict[str, Any]) -> None:
    functions = resources_of_type(metering_json, "AWS::Lambda::Function")
    register = next(
        f
        for f in functions.values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == service_name("register")
    )
    assert settings.CONSOLE_USER_POOL_ID in register["Properties"]["Environment"]["Variables"]


def test_console_routes_go_to_the_console_function(metering_json: dict[str, Any]) -> None:
    integrations = [
        resource["Properties"]
        for resource in resources_of_type(metering_json, "AWS::ApiGatewayV2::Integration").values()
        if "ConsoleFunction" in json.dumps(resource["Properties"]["IntegrationUri"])
    ]
    assert len(integrations) == 1
    assert integrations[0]["PayloadFormatVersion"] == "2.0"
