"""The console offline: its Cognito user pool and session secret on embedded AWS (moto), and the mailbox
that stands in for email (``serve``'s ``/dev/mailbox``). Local runtime only: never shipped in a Lambda asset.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connect_metering.services.console import Invitation, PasswordReset

USER_POOL_NAME = "connect-metering-console"
SESSION_SECRET_NAME = "connect-metering/console-session-key"  # noqa: S105 (a name, not a secret)
# As infra/constructs/console.py configures the deployed pool.
PASSWORD_POLICY = {
    "MinimumLength": 12,
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "TemporaryPasswordValidityDays": 7,
}


@dataclass(frozen=True)
class ConsolePool:
    user_pool_id: str
    client_id: str
    session_secret_arn: str

    def environment(self) -> dict[str, str]:
        return {
            "CONSOLE_USER_POOL_ID": self.user_pool_id,
            "CONSOLE_CLIENT_ID": self.client_id,
            "CONSOLE_SESSION_SECRET_ARN": self.session_secret_arn,
            # moto takes any TOTP code unless told to check them (against the one secret it hands out):
            # checked, as Cognito does, so an authenticator app given that secret signs in offline.
            "MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP": "true",
        }


def create_console_pool(cognito: Any, secrets_manager: Any) -> ConsolePool:
    """The user pool, its app client (admin password sign-in only, no secret) and the cookie signing key."""
    pool = cognito.create_user_pool(
        PoolName=USER_POOL_NAME,
        Policies={"PasswordPolicy": PASSWORD_POLICY},
        Schema=[{"Name": "company_alias", "AttributeDataType": "String", "Mutable": False}],
        UsernameConfiguration={"CaseSensitive": False},
        AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        # As deployed: reset codes by email only, TOTP MFA optional.
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
    )["UserPool"]
    cognito.set_user_pool_mfa_config(
        UserPoolId=pool["Id"],
        SoftwareTokenMfaConfiguration={"Enabled": True},
        MfaConfiguration="OPTIONAL",
    )
    client = cognito.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName="console",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        PreventUserExistenceErrors="ENABLED",
    )["UserPoolClient"]
    secret = secrets_manager.create_secret(Name=SESSION_SECRET_NAME, SecretString=secrets.token_urlsafe(48))
    return ConsolePool(pool["Id"], client["ClientId"], secret["ARN"])


@dataclass(frozen=True)
class Mail:
    sent: datetime
    to: str
    subject: str
    body: str


@dataclass
class Mailbox:
    """Every email the product would send, kept in memory (the console's mailer offline)."""

    mails: list[Mail] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_invitation(self, invitation: Invitation) -> None:
        body = (
            f"You are an administrator of {invitation.company_alias}'s console. Sign in at "
            f"{invitation.sign_in_path} with company alias {invitation.company_alias}, email "
            f"{invitation.email} and the temporary password {invitation.temporary_password} ; you will "
            "choose your own password at the first sign-in."
        )
        with self._lock:
            self.mails.append(Mail(datetime.now(UTC), invitation.email, "Your console invitation", body))

    def send_password_reset(self, reset: PasswordReset) -> None:
        """The reset code Cognito would mail, exactly as the identity provider (moto) issued it: the code
        this mail shows is the one the reset page's confirmation accepts."""
        body = (
            f"Someone asked to reset the password of {reset.email}, administrator of {reset.company_alias}. "
            f"Your code is {reset.code} ; enter it at {reset.reset_path} with company alias "
            f"{reset.company_alias}, this email and a new password. If it was not you, ignore this email."
        )
        with self._lock:
            self.mails.append(Mail(datetime.now(UTC), reset.email, "Your password reset code", body))

    def reset_code(self, email: str) -> str:
        """The code of the latest password reset mail to ``email`` (tests)."""
        for mail in reversed(self.mails):
            if mail.to == email and mail.subject == "Your password reset code":
                return mail.body.split("Your code is ", 1)[1].split(" ", 1)[0]
        raise LookupError(f"no password reset mail to {email}")

    def temporary_password(self, email: str) -> str:
        """The temporary password of the latest invitation to ``email`` (tests)."""
        for mail in reversed(self.mails):
            if mail.to == email and mail.subject == "Your console invitation":
                return mail.body.split("temporary password ", 1)[1].split(" ", 1)[0]
        raise LookupError(f"no invitation to {email}")
