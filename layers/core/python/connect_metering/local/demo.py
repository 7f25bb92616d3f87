"""`connect-metering demo`: the largest real end-to-end path of the product, on embedded AWS.

Buyers arrive from AWS Marketplace with registration tokens; the product resolves each token through a
real boto3 client (answered by the Marketplace simulator), records the company, its subscription and its
Connect environments in the DynamoDB tenancy store (moto), is refused where a tenancy rule says so, lists
the subscriptions due for an hour through the active-subscriptions index, and sends that hour's records
with BatchMeterUsage. Everything printed comes from those calls.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import (
    Company,
    Environment,
    Subscription,
    SubscriptionIdentity,
    TenancyError,
    build,
)
from connect_metering.local.cli import writable_dir
from connect_metering.local.embedded import EmbeddedAws

PRODUCT_CODE = "connectmeter0demo1"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class DemoBuyer:
    alias: str
    name: str
    account_id: str
    license_suffix: str | None
    pricing: str
    instances: tuple[tuple[str, str], ...]

    @property
    def license_arn(self) -> str | None:
        if self.license_suffix is None:
            return None
        return f"arn:aws:license-manager::123456789012:license:l-{self.license_suffix}"


BUYERS = (
    DemoBuyer(
        "acme",
        "Acme Contact Centers",
        "210987654321",
        "acme0001",
        "usage",
        (
            (
                "prod-us",
                "arn:aws:connect:us-east-1:210987654321:instance/aaaaaaaa-0000-4000-8000-000000000001",
            ),
            (
                "prod-eu",
                "arn:aws:connect:eu-west-2:310987654321:instance/aaaaaaaa-0000-4000-8000-000000000002",
            ),
        ),
    ),
    DemoBuyer(
        "globex",
        "Globex Support",
        "410987654321",
        "globex01",
        "contract",
        (
            (
                "main",
                "arn:aws:connect:ap-southeast-2:410987654321:instance/bbbbbbbb-0000-4000-8000-000000000001",
            ),
        ),
    ),
    DemoBuyer(
        "initech",
        "Initech (legacy listing)",
        "510987654321",
        None,
        "usage",
        (("desk", "arn:aws:connect:us-west-2:510987654321:instance/cccccccc-0000-4000-8000-000000000001"),),
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=writable_dir, default=Path("out/demo"), help="output folder")


def run(arguments: argparse.Namespace) -> int:
    run_demo(arguments.out, sys.stdout)
    return 0


def run_demo(out_dir: Path, stream: TextIO) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    say = stream.write
    with EmbeddedAws(product_code=PRODUCT_CODE, start=START) as aws:
        say(
            f"Embedded AWS at virtual time {iso(aws.clock.now())}: DynamoDB (moto), Marketplace simulator\n\n"
        )
        say("1. Buyers register from AWS Marketplace (ResolveCustomer on each registration token)\n")
        for buyer in BUYERS:
            identity = _register(aws, buyer)
            say(f"   {buyer.alias:<8} resolved -> {_describe(identity)}; environments: ")
            say(", ".join(name for name, _ in buyer.instances) + "\n")

        say("\n2. Tenancy rules refuse what would let one company affect another's bill\n")
        refusals: dict[str, Callable[[], object]] = {
            "alias taken": lambda: aws.tenancy.create_company(Company(alias="acme", name="Impostor")),
            "account of another company": lambda: _add_environment(
                aws, "globex", "stolen", BUYERS[0].instances[0][1].replace("0001", "0009")
            ),
            "mixed pricing models": lambda: aws.tenancy.add_subscription(
                build(
                    Subscription,
                    company_alias="acme",
                    identity={
                        "customer_aws_account_id": "210987654321",
                        "license_arn": "arn:aws:license-manager::123456789012:license:l-acme0002",
                    },
                    pricing="contract",
                )
            ),
            "malformed instance ARN": lambda: _add_environment(
                aws, "acme", "bad", "arn:aws:connect:us-east-1:1:x"
            ),
            "malformed alias": lambda: aws.tenancy.create_company(build(Company, alias="9lives")),
        }
        refused: dict[str, str] = {}
        for label, attempt in refusals.items():
            try:
                attempt()
            except TenancyError as error:
                refused[label] = f"{error.rule}: {error}"
                say(f"   {label:<28} refused ({refused[label]})\n")
            else:
                raise AssertionError(f"tenancy rule not enforced: {label}")

        hour = START + timedelta(hours=1)
        aws.clock.advance_to(hour + timedelta(hours=1, minutes=10))
        say(
            f"\n3. At {iso(aws.clock.now())} the subscriptions due for hour {iso(hour)} come from the index\n"
        )
        due = list(
            aws.tenancy.list_metered_subscriptions(active_from=hour, active_before=hour + timedelta(hours=1))
        )
        for subscription in due:
            say(
                f"   {subscription.company_alias:<8} {subscription.pricing.value:<8} {_describe(subscription.identity)}\n"
            )

        say("\n4. BatchMeterUsage sends the hour's records (quantities 0: usage capture is the next issue)\n")
        records = [
            {
                "Timestamp": hour,
                "Dimension": "overage_agents" if sub.pricing.value == "contract" else "agent_minutes",
                "Quantity": 0,
                **sub.identity.usage_record_identity(),
            }
            for sub in due
        ]
        first = _meter(aws, records)
        again = _meter(aws, records)
        for result in first:
            say(f"   {result['status']:<22} record id {result['id']}\n")
        same_ids = [result["id"] for result in first] == [result["id"] for result in again]
        say(f"   resent unchanged: every record answered Success with the same id: {same_ids}\n")

        summary: dict[str, object] = {
            "virtual_time": iso(aws.clock.now()),
            "companies": {
                buyer.alias: [env.name for env in aws.tenancy.list_environments(buyer.alias)]
                for buyer in BUYERS
            },
            "refused": refused,
            "records": first,
            "idempotent_resend": same_ids,
            "ledger_entries": len(aws.marketplace.ledger.entries),
            "aws_requests": dict(sorted(aws.requests.counts.items())),
        }
        say("\n5. AWS requests made (counted with a botocore hook): ")
        say(", ".join(f"{name} {count}" for name, count in sorted(aws.requests.counts.items())) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"\nSummary written to {out_dir / 'summary.json'}\n")
    return summary


def _register(aws: EmbeddedAws, buyer: DemoBuyer) -> SubscriptionIdentity:
    marketplace = aws.marketplace
    legacy_id = None if buyer.license_arn else f"{buyer.alias.upper()}CUSTOMER01"
    marketplace.add_subscription(
        customer_aws_account_id=buyer.account_id if buyer.license_arn else None,
        license_arn=buyer.license_arn,
        customer_identifier=legacy_id,
        started=aws.clock.now(),
    )
    token = marketplace.issue_token(
        customer_aws_account_id=buyer.account_id if buyer.license_arn else None,
        license_arn=buyer.license_arn,
        customer_identifier=legacy_id,
    )
    resolved = aws.metering.resolve_customer(RegistrationToken=token)
    identity = build(
        SubscriptionIdentity,
        customer_aws_account_id=resolved.get("CustomerAWSAccountId") or None,
        license_arn=resolved.get("LicenseArn") or None,
        customer_identifier=resolved.get("CustomerIdentifier") or None,
        product_code=resolved.get("ProductCode"),
    )
    aws.tenancy.create_company(build(Company, alias=buyer.alias, name=buyer.name))
    pending = build(Subscription, company_alias=buyer.alias, identity=identity, pricing=buyer.pricing)
    aws.tenancy.add_subscription(pending)
    aws.tenancy.save_subscription(pending.model_copy(update={"started": aws.clock.now()}))
    for name, arn in buyer.instances:
        _add_environment(aws, buyer.alias, name, arn)
    return identity


def _add_environment(aws: EmbeddedAws, alias: str, name: str, arn: str) -> None:
    aws.tenancy.add_environment(build(Environment, company_alias=alias, name=name, instance_arn=arn))


def _meter(aws: EmbeddedAws, records: Sequence[Mapping[str, object]]) -> list[dict[str, str]]:
    """Legacy (CustomerIdentifier) records travel with the ProductCode; current-identity records must
    not carry it, so the two kinds go in separate calls."""
    legacy = [record for record in records if "CustomerIdentifier" in record]
    current = [record for record in records if "CustomerIdentifier" not in record]
    results: list[dict[str, str]] = []
    for batch, extra in ((current, {}), (legacy, {"ProductCode": PRODUCT_CODE})):
        if batch:
            response = aws.metering.batch_meter_usage(UsageRecords=batch, **extra)  # type: ignore[arg-type]
            results += [
                {"status": result["Status"], "id": result.get("MeteringRecordId", "")}
                for result in response["Results"]
            ]
    return results


def _describe(identity: SubscriptionIdentity) -> str:
    if identity.license_arn:
        return f"account {identity.customer_aws_account_id}, licence {identity.license_arn.rsplit(':', 1)[1]}"
    return f"legacy customer {identity.customer_identifier} of {identity.product_code}"
