"""One embedded world per test for the console: moto (tables, Cognito, Secrets Manager), two companies
with environments, the console handler with a mailbox for its invitations, and a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from connect_metering.adapters.activity_table import create_activity_table
from connect_metering.adapters.cognito_admins import CognitoAdministrators
from connect_metering.adapters.meter_store import create_ledger_table
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import create_tenancy_table
from connect_metering.domain.tenancy import Company, Environment, InstanceArn
from connect_metering.local.console_offline import ConsolePool, Mailbox, create_console_pool
from connect_metering.local.embedded import VirtualClock
from connect_metering.services.console import AdministratorInvitations
from connect_metering.settings import load_settings
from functions.console import handler as console_handler
from tests.registration_support import Browser, Page

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TENANCY, ACTIVITY, LEDGER = "tenancy-test", "activity-test", "ledger-test"
BUS_ARN = "arn:aws:events:us-east-1:123456789012:event-bus/connect-metering-agent-events"
PASSWORD = "Chosen-Passw0rd!"
ARN_A = "arn:aws:connect:us-east-1:111111111111:instance/aaaaaaaa-0000-0000-0000-000000000001"
ARN_B = "arn:aws:connect:eu-west-2:222222222222:instance/bbbbbbbb-0000-0000-0000-000000000002"


@dataclass
class ConsoleWorld:
    clock: VirtualClock
    dynamodb: DynamoDBClient
    cognito: Any
    pool: ConsolePool
    store: DynamoTenancyStore
    mailbox: Mailbox
    invitations: AdministratorInvitations

    def browser(self) -> Browser:
        return Browser(console_handler.lambda_handler)

    def admin(self, alias: str, email: str) -> str:
        """Invite an administrator; returns the temporary password from the mailbox."""
        self.invitations.invite(alias, email)
        return self.mailbox.temporary_password(email)

    def signed_in(self, alias: str, email: str) -> tuple[Browser, str]:
        """A browser signed in as a confirmed administrator of ``alias``; and its CSRF token."""
        temporary = self.admin(alias, email)
        browser = self.browser()
        page = sign_in(browser, alias, email, temporary, new_password=PASSWORD)
        assert page.status == 303 and page.location == "/console/licence", page.body[:500]
        return browser, csrf_of(browser.get("/console/licence"))


def csrf_of(page: Page) -> str:
    return page.field("csrf_token")


def sign_in(browser: Browser, alias: str, email: str, password: str, *, new_password: str = "") -> Page:
    form_page = browser.get("/console/")
    form = {"company_alias": alias, "email": email, "password": password, "csrf_token": csrf_of(form_page)}
    if new_password:
        form["new_password"] = new_password
    return browser.post("/console/", form)


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch, aws: None) -> Iterator[ConsoleWorld]:
    boto3.setup_default_session(region_name="us-east-1")
    clock = VirtualClock(T0)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_tenancy_table(dynamodb, TENANCY)
    create_activity_table(dynamodb, ACTIVITY)
    create_ledger_table(dynamodb, LEDGER)
    cognito = boto3.client("cognito-idp", region_name="us-east-1")
    pool = create_console_pool(cognito, boto3.client("secretsmanager", region_name="us-east-1"))
    store = DynamoTenancyStore(TENANCY, dynamodb)
    for alias, arn in (("acme", ARN_A), ("globex", ARN_B)):
        store.create_company(Company(alias=alias, name=f"{alias.title()} Inc"))
        store.add_environment(
            Environment(company_alias=alias, name=f"{alias}-prod", instance_arn=InstanceArn.parse(arn))
        )
    for name, value in {
        "TENANCY_TABLE": TENANCY,
        "ACTIVITY_TABLE": ACTIVITY,
        "LEDGER_TABLE": LEDGER,
        "AGENT_EVENTS_BUS_ARN": BUS_ARN,
        "POWERTOOLS_METRICS_DISABLED": "true",
        **pool.environment(),
    }.items():
        monkeypatch.setenv(name, value)
    mailbox = Mailbox()
    monkeypatch.setattr(console_handler, "now", clock.now)
    monkeypatch.setattr(console_handler, "mailer", mailbox)
    load_settings.cache_clear()
    console_handler.console_service.cache_clear()
    console_handler.audit_log.cache_clear()
    yield ConsoleWorld(
        clock=clock,
        dynamodb=dynamodb,
        cognito=cognito,
        pool=pool,
        store=store,
        mailbox=mailbox,
        invitations=AdministratorInvitations(
            CognitoAdministrators(user_pool_id=pool.user_pool_id, client=cognito), mailbox
        ),
    )
    load_settings.cache_clear()
    console_handler.console_service.cache_clear()
    console_handler.audit_log.cache_clear()
    boto3.DEFAULT_SESSION = None
