"""The public edge of registration and the admin API's narrow permission: CloudFront with a WAF web ACL
(rate limit per client IP) in front of the registration HTTP API, the protected URL as the fulfilment
URL output, and a managed policy that can invoke POST /seat-check and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.constructs.registration_api import CLIENT_REQUESTS_PER_5_MINUTES
from tests.infra.template_helpers import only_resource, resource_with_prefix

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_a_cloudfront_web_acl_blocks_clients_over_the_rate_limit(metering_json: dict[str, Any]) -> None:
    _, web_acl = only_resource(metering_json, "AWS::WAFv2::WebACL")
    properties = web_acl["Properties"]
    assert properties["Scope"] == "CLOUDFRONT"  # only valid in us-east-1, where MeteringStack lives
    assert properties["DefaultAction"] == {"Allow": {}}
    [rule] = properties["Rules"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"] == {
        "RateBasedStatement": {"AggregateKeyType": "IP", "Limit": 100, "EvaluationWindowSec": 300}
    }
    assert CLIENT_REQUESTS_PER_5_MINUTES == 100


def test_the_distribution_is_protected_by_the_web_acl_and_fronts_the_registration_api(
    metering_json: dict[str, Any],
) -> None:
    web_acl_id, _ = only_resource(metering_json, "AWS::WAFv2::WebACL")
    _, distribution = only_resource(metering_json, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    assert config["WebACLId"] == {"Fn::GetAtt": [web_acl_id, "Arn"]}
    [origin] = config["Origins"]
    api_id, _ = resource_with_prefix(metering_json, "AWS::ApiGatewayV2::Api", "RegistrationApi")
    assert api_id in json.dumps(origin["DomainName"])
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    assert "POST" in behaviour["AllowedMethods"]


def test_the_fulfilment_url_is_the_protected_entry(metering_json: dict[str, Any]) -> None:
    distribution_id, _ = only_resource(metering_json, "AWS::CloudFront::Distribution")
    value = metering_json["Outputs"]["RegistrationUrl"]["Value"]
    assert value == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}, "/register"]]
    }
    assert "execute-api" not in json.dumps(value)


def test_the_seat_check_policy_invokes_only_post_seat_check(metering_json: dict[str, Any]) -> None:
    policy_id, policy = resource_with_prefix(metering_json, "AWS::IAM::ManagedPolicy", "AdminSeatCheckInvoke")
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    resource = statement["Resource"]
    assert not isinstance(resource, list)  # one ARN, not a list that could grow
    parts = resource["Fn::Join"][1]
    admin_api_id, _ = resource_with_prefix(metering_json, "AWS::ApiGatewayV2::Api", "AdminApi")
    assert {"Ref": admin_api_id} in parts
    assert parts[-1].endswith("/$default/POST/seat-check")
    assert "*" not in json.dumps(resource)
    assert metering_json["Outputs"]["SeatCheckPolicyArn"]["Value"] == {"Ref": policy_id}
