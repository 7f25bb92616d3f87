"""At sign-up, the contact email becomes the company's first console administrator (a Cognito user with
a temporary password, its invitation in the mailbox offline); without a console, sign-up is unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from connect_metering.adapters.cognito_admins import CognitoAdministrators
from connect_metering.local.console_offline import ConsolePool, Mailbox, create_console_pool
from connect_metering.settings import load_settings
from tests.integration.registration.conftest import World
from tests.integration.registration.test_register_handler import register
from tests.registration_support import SIGNUP

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]


@pytest.fixture
def console_pool(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ConsolePool, Mailbox]]:
    pool = create_console_pool(boto3.client("cognito-idp"), boto3.client("secretsmanager"))
    monkeypatch.setenv("CONSOLE_USER_POOL_ID", pool.user_pool_id)
    mailbox = Mailbox()
    monkeypatch.setattr(world.register, "mailer", mailbox)
    load_settings.cache_clear()
    world.register.administrator_invitations.cache_clear()
    yield pool, mailbox
    world.register.administrator_invitations.cache_clear()


def test_the_contact_email_is_invited_once_at_sign_up(
    world: World, console_pool: tuple[ConsolePool, Mailbox]
) -> None:
    pool, mailbox = console_pool
    browser = register(world, "first", "acme")
    admins = CognitoAdministrators(user_pool_id=pool.user_pool_id, client=boto3.client("cognito-idp"))
    listed = admins.list_admins("acme")
    assert [(admin.email, admin.invited) for admin in listed] == [(SIGNUP["contact_email"], True)]
    assert [mail.to for mail in mailbox.mails] == [SIGNUP["contact_email"]]
    assert mailbox.temporary_password(SIGNUP["contact_email"])
    # A company that has an administrator gets no other "first" one (a sign-up submitted twice).
    world.register._invite_first_administrator("acme", "someone.else@acme.example")
    assert len(mailbox.mails) == 1
    assert browser.get("/signup?id=unknown").status == 404


def test_without_a_console_sign_up_invites_nobody(world: World) -> None:
    world.register.administrator_invitations.cache_clear()
    register(world, "second", "globex")
    assert world.register.administrator_invitations() is None
