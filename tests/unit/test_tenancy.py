"""Tenancy rules of BILLING.md sections 1 and 4, on values alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connect_metering.domain.tenancy import (
    Company,
    Entitlements,
    Environment,
    InstanceArn,
    PricingModel,
    PricingModelConflict,
    Subscription,
    SubscriptionIdentity,
    TenancyError,
    build,
    check_buyer_instance,
    ensure_pricing_compatible,
    instance_arn_of_agent,
    licence_id,
    license_key,
    primary_subscription,
    same_licence,
    validate_account_id,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
INSTANCE = "arn:aws:connect:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"


def license_arn(suffix: str) -> str:
    return f"arn:aws:license-manager::123456789012:license:l-{suffix}"


def subscription(
    suffix: str, started: datetime | None, ended: datetime | None = None, **extra: object
) -> Subscription:
    return build(
        Subscription,
        company_alias="acme",
        identity={"customer_aws_account_id": "210987654321", "license_arn": license_arn(suffix)},
        pricing=extra.pop("pricing", "usage"),
        started=started,
        ended=ended,
        **extra,
    )


@pytest.mark.parametrize("alias", ["abc", "a12", "acme2026", "a" * 32])
def test_valid_aliases(alias: str) -> None:
    assert build(Company, alias=alias).alias == alias


@pytest.mark.parametrize(
    "alias", ["ab", "a" * 33, "1abc", "Acme", "ac-me", "ac_me", "acmé", " acme", "acme\n", ""]
)
def test_invalid_alias_names_field_and_rule(alias: str) -> None:
    with pytest.raises(TenancyError) as caught:
        build(Company, alias=alias)
    assert caught.value.field == "company_alias"
    assert caught.value.rule == "alias_format"
    assert "3-32 lower-case letters and digits" in str(caught.value)


def test_company_alias_is_immutable() -> None:
    company = build(Company, alias="acme", name="  Acme Ltd ")
    assert company.name == "Acme Ltd"
    with pytest.raises(Exception, match="frozen"):
        company.alias = "other"  # type: ignore[misc]


def test_instance_arn_parts() -> None:
    arn = InstanceArn.parse(INSTANCE)
    assert (arn.partition, arn.region, arn.account_id) == ("aws", "eu-west-2", "123456789012")
    assert arn.instance_id == "aaaaaaaa-bbbb-cccc-dddd-111111111111"
    assert arn.arn == INSTANCE
    assert InstanceArn.parse(INSTANCE.replace(":aws:", ":aws-us-gov:").replace("eu-west-2", "us-gov-west-1"))


@pytest.mark.parametrize(("partition", "region"), [("aws-cn", "cn-north-1"), ("aws-us-gov", "us-gov-west-1")])
def test_a_buyer_instance_of_another_partition_is_refused_naming_it(partition: str, region: str) -> None:
    """Parsed (it is an ARN), but a buyer cannot add it: its events could never reach the seller's bus."""
    other = InstanceArn.parse(INSTANCE.replace(":aws:", f":{partition}:").replace("eu-west-2", region))
    with pytest.raises(TenancyError, match=f"in the {partition} partition") as refused:
        check_buyer_instance(other)
    assert (refused.value.field, refused.value.rule) == ("instance_arn", "instance_arn_partition")
    assert check_buyer_instance(InstanceArn.parse(INSTANCE)).arn == INSTANCE


@pytest.mark.parametrize(
    ("arn", "rule"),
    [
        (
            "arn:aws:s3:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111",
            "instance_arn_format",
        ),
        (
            "arn:nope:connect:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111",
            "instance_arn_partition",
        ),
        (
            "arn:aws:connect:moon-1:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111",
            "instance_arn_region",
        ),
        (
            "arn:aws:connect:eu-west-2:12345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111",
            "instance_arn_account",
        ),
        ("arn:aws:connect:eu-west-2:123456789012:instance/not-a-uuid", "instance_arn_resource"),
        (
            "arn:aws:connect:eu-west-2:123456789012:queue/aaaaaaaa-bbbb-cccc-dddd-111111111111",
            "instance_arn_resource",
        ),
        ("not an arn", "instance_arn_format"),
    ],
)
def test_invalid_instance_arn_names_the_rule(arn: str, rule: str) -> None:
    with pytest.raises(TenancyError) as caught:
        build(Environment, company_alias="acme", name="prod", instance_arn=arn)
    assert caught.value.field == "instance_arn"
    assert caught.value.rule == rule


def test_agent_arn_belongs_to_its_instance() -> None:
    assert instance_arn_of_agent(f"{INSTANCE}/agent/abc-123") == INSTANCE
    assert instance_arn_of_agent(INSTANCE) is None
    assert instance_arn_of_agent(f"{INSTANCE}/agent/") is None


def test_environment_account_comes_from_its_arn() -> None:
    environment = build(Environment, company_alias="acme", name="prod-eu", instance_arn=INSTANCE)
    assert environment.account_id == "123456789012"
    with pytest.raises(TenancyError) as caught:
        build(Environment, company_alias="acme", name="bad name!", instance_arn=INSTANCE)
    assert caught.value.rule == "environment_name_format"


def test_identity_current_and_legacy() -> None:
    current = SubscriptionIdentity(customer_aws_account_id="210987654321", license_arn=license_arn("abc"))
    assert current.usage_record_identity() == {
        "CustomerAWSAccountId": "210987654321",
        "LicenseArn": license_arn("abc"),
    }
    legacy = SubscriptionIdentity(customer_identifier="X01EXAMPLEX", product_code="prod1")
    assert legacy.is_legacy
    assert legacy.usage_record_identity() == {"CustomerIdentifier": "X01EXAMPLEX"}
    assert current.key != legacy.key


@pytest.mark.parametrize(
    ("identity", "rule"),
    [
        ({}, "identity_required"),
        ({"license_arn": license_arn("abc")}, "identity_complete"),
        ({"customer_aws_account_id": "210987654321"}, "identity_complete"),
        ({"customer_aws_account_id": "2109", "license_arn": license_arn("abc")}, "account_id_format"),
        ({"customer_aws_account_id": "210987654321", "license_arn": "arn:aws:s3:::x"}, "license_arn_format"),
    ],
)
def test_incomplete_identity_is_refused(identity: dict[str, str], rule: str) -> None:
    with pytest.raises(TenancyError) as caught:
        build(Subscription, company_alias="acme", identity=identity, pricing="usage")
    assert caught.value.rule == rule


def test_active_interval_is_half_open() -> None:
    sub = subscription("a", T0, T0 + timedelta(hours=2))
    assert not sub.is_active_at(T0 - timedelta(milliseconds=1))
    assert sub.is_active_at(T0)
    assert sub.is_active_at(T0 + timedelta(hours=2, milliseconds=-1))
    assert not sub.is_active_at(T0 + timedelta(hours=2))
    assert not subscription("p", None).is_active_at(T0)


def test_expired_contract_is_not_active() -> None:
    expires = T0 + timedelta(days=30)
    contract = subscription(
        "c", T0, pricing="contract", entitlements=Entitlements(licensed_agents=10, expires=expires)
    )
    assert contract.is_active_at(expires - timedelta(milliseconds=1))
    assert not contract.is_active_at(expires)
    assert contract.active_until() == expires


def test_subscription_cannot_end_before_it_starts() -> None:
    with pytest.raises(TenancyError) as caught:
        subscription("a", T0, T0 - timedelta(seconds=1))
    assert caught.value.rule == "ended_after_started"


def test_one_pricing_model_per_company() -> None:
    existing = [subscription("a", T0)]
    ensure_pricing_compatible(existing, PricingModel.USAGE)
    with pytest.raises(PricingModelConflict) as caught:
        ensure_pricing_compatible(existing, PricingModel.CONTRACT)
    assert caught.value.rule == "one_pricing_model_per_company"


def test_primary_is_the_oldest_active_subscription() -> None:
    older = subscription("b", T0, T0 + timedelta(hours=5))
    newer = subscription("a", T0 + timedelta(hours=1))
    subs = [newer, older]
    assert primary_subscription(subs, T0 + timedelta(minutes=30)) == older
    assert primary_subscription(subs, T0 + timedelta(hours=2)) == older
    # the older one ends: usage follows the remaining active subscription
    assert primary_subscription(subs, T0 + timedelta(hours=5)) == newer
    assert primary_subscription(subs, T0 - timedelta(seconds=1)) is None


def test_primary_tie_on_started_takes_the_smaller_identity() -> None:
    first = subscription("aaa", T0)
    second = subscription("bbb", T0)
    assert primary_subscription([second, first], T0) == first
    legacy_a = build(
        Subscription,
        company_alias="acme",
        identity={"customer_identifier": "A1"},
        pricing="usage",
        started=T0,
    )
    legacy_b = build(
        Subscription,
        company_alias="acme",
        identity={"customer_identifier": "B1"},
        pricing="usage",
        started=T0,
    )
    assert primary_subscription([legacy_b, legacy_a], T0) == legacy_a


def test_naive_instants_are_refused() -> None:
    with pytest.raises(TenancyError) as caught:
        subscription("a", datetime(2026, 1, 1))
    assert caught.value.rule == "utc_instant"


# Every spelling AWS writes for one licence (BILLING.md section 1): ResolveCustomer's global ARN with either
# separator, the regional ARN botocore's LicenseArn pattern admits, and the aws.agreement-marketplace form.
LICENCE_SPELLINGS = [
    "arn:aws:license-manager::123456789012:license/l-0a1b2c3d4e5f",
    "arn:aws:license-manager::123456789012:license:l-0a1b2c3d4e5f",
    "arn:aws:license-manager:us-east-1:123456789012:license:l-0a1b2c3d4e5f",
    "arn:aws:license-manager:us-east-1:123456789012:license/l-0a1b2c3d4e5f",
    "aws:license-manager:us-east-1:123456789012:l-0a1b2c3d4e5f",
    " arn:aws:license-manager::123456789012:license/l-0a1b2c3d4e5f ",
]


@pytest.mark.parametrize("spelling", LICENCE_SPELLINGS)
def test_every_licence_spelling_has_the_same_licence_id_and_key(spelling: str) -> None:
    assert licence_id(spelling) == "l-0a1b2c3d4e5f"
    assert license_key(spelling) == "license#l-0a1b2c3d4e5f"
    assert same_licence(spelling, LICENCE_SPELLINGS[0])


@pytest.mark.parametrize("spelling", LICENCE_SPELLINGS)
def test_identity_accepts_every_spelling_and_keeps_the_arn_as_given(spelling: str) -> None:
    identity = SubscriptionIdentity(customer_aws_account_id="210987654321", license_arn=spelling)
    assert identity.key == "license#l-0a1b2c3d4e5f"
    # the UsageRecord carries the ARN as ResolveCustomer gave it (only surrounding blanks dropped)
    assert identity.usage_record_identity()["LicenseArn"] == spelling.strip()


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:s3:::bucket/l-0a1b",
        "arn:aws:license-manager::123456789012:grant/g-0a1b",
        "arn:aws:license-manager::123456789012:license/",
        "arn:aws:license-manager::1234:license/l-0a1b",
        "license-manager:us-east-1:123456789012:l-0a1b",
        "l-0a1b",
        "",
        None,
        42,
    ],
)
def test_anything_else_is_not_a_licence_and_the_error_names_the_field(value: object) -> None:
    with pytest.raises(TenancyError) as caught:
        licence_id(value, field="detail.license.arn")
    assert (caught.value.field, caught.value.rule) == ("detail.license.arn", "license_arn_format")
    assert repr(value) in caught.value.message


def test_two_licences_are_told_apart() -> None:
    assert not same_licence(
        "arn:aws:license-manager::123456789012:license/l-0a1b",
        "aws:license-manager:us-east-1:123456789012:l-0a1c",
    )


def test_legacy_identity_fields_are_trimmed() -> None:
    legacy = SubscriptionIdentity(customer_identifier=" X01EXAMPLEX", product_code="prod1 ")
    assert (legacy.customer_identifier, legacy.product_code) == ("X01EXAMPLEX", "prod1")
    assert legacy.key == "customer#prod1#X01EXAMPLEX"


NON_ASCII_DIGITS = (
    "\uff11",
    "\u0663",
    "\u07c2",
)  # fullwidth, Arabic-Indic, NKo: all match \d on a str pattern


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_identifiers_accept_ascii_digits_only(digit: str) -> None:
    uuid = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    with pytest.raises(TenancyError) as account:
        validate_account_id("21098765432" + digit)
    assert account.value.field == "aws_account_id"
    with pytest.raises(TenancyError) as arn_account:
        InstanceArn.parse(f"arn:aws:connect:us-east-1:21098765432{digit}:instance/{uuid}")
    assert (arn_account.value.field, arn_account.value.rule) == ("instance_arn", "instance_arn_account")
    with pytest.raises(TenancyError) as region:
        InstanceArn.parse(f"arn:aws:connect:us-east-{digit}:210987654321:instance/{uuid}")
    assert (region.value.field, region.value.rule) == ("instance_arn", "instance_arn_region")
    with pytest.raises(TenancyError) as licence:
        licence_id(f"arn:aws:license-manager::21098765432{digit}:license/l-abc")
    assert licence.value.field == "license_arn"
