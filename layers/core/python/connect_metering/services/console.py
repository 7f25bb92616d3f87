"""The customer console's use cases: sign-in, sessions, and the company's licence, environments, usage
and administrators, always those of the signed-in session's company.

Nothing here takes a company alias from a request once signed in: every read and change is given the
``ConsoleSession`` and uses its ``company_alias``. Environments are added and removed through the admin
API's ``LicenceService``, so the console has exactly its validation and its one-account-one-company rules.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from connect_metering.domain.console import (
    LOCKED_OUT,
    NO_FAILURES,
    WRONG_CREDENTIALS,
    WRONG_RESET_CODE,
    Administrator,
    AdministratorExists,
    Authenticated,
    ConsoleSession,
    FailedSignIns,
    NewPasswordRequired,
    PasswordRejected,
    UnknownAdministrator,
    WrongCredentials,
    WrongMfaCode,
    WrongResetCode,
    account_plausible,
    credentials_plausible,
    csrf_matches,
    invitation_email_error,
    new_session,
    normal_alias,
    normal_email,
    normal_mfa_code,
    password_policy_problem,
    read_session,
    reset_code_plausible,
    sign_in_name,
    sign_session,
)
from connect_metering.domain.console_mfa import (
    MFA_CHALLENGE_LIFETIME,
    WRONG_MFA_CODE,
    MfaChallenge,
    MfaRequired,
    mfa_code_plausible,
    read_challenge,
    sign_challenge,
)
from connect_metering.domain.console_usage import MonthUsage, month_of, month_usage, previous_month
from connect_metering.domain.licence import LicenceInfo
from connect_metering.domain.metering import MeteringRecord
from connect_metering.domain.tenancy import Environment, TenancyError
from connect_metering.services.console_mfa import MfaEnrolments
from connect_metering.services.licence import LicenceService

NO_SUCH_ADMINISTRATOR = "No administrator of your company has this email."
OWN_MFA_RESET = "To turn off or replace your own two-step sign-in, use the two-step sign-in page."


class IdentityProvider(Protocol):
    """The administrators' directory (Amazon Cognito deployed, moto's offline)."""

    def authenticate(
        self, username: str, password: str
    ) -> Authenticated | NewPasswordRequired | MfaRequired: ...

    def respond_to_mfa(self, username: str, challenge_session: str, code: str) -> Authenticated:
        """Raises ``WrongMfaCode``."""
        ...

    def mfa_enabled(self, username: str) -> bool: ...

    def start_software_token(self, username: str, password: str) -> tuple[str, str]:
        """(access token, TOTP secret); raises ``WrongCredentials`` or ``MfaAlreadyOn``."""
        ...

    def enable_software_token(self, access_token: str, code: str) -> None:
        """Raises ``WrongMfaCode``."""
        ...

    def sign_in_with_code(self, username: str, password: str, code: str) -> str:
        """The access token of a sign-in with password and TOTP code; raises ``WrongCredentials``,
        ``WrongMfaCode`` or ``MfaNotOn``."""
        ...

    def associate_software_token(self, access_token: str) -> str: ...

    def disable_software_token(self, access_token: str) -> None: ...

    def reset_mfa(self, username: str) -> str:
        """Turns the administrator's TOTP off; returns its subject. Raises ``UnknownAdministrator``."""
        ...

    def set_new_password(self, username: str, password: str, new_password: str) -> Authenticated: ...

    def create_admin(
        self, username: str, *, company_alias: str, email: str, temporary_password: str, send_invitation: bool
    ) -> str:
        """Creates the administrator; returns its subject (the identity provider's immutable id)."""
        ...

    def delete_admin(self, username: str) -> str:
        """Deletes the administrator; returns the subject it had."""
        ...

    def list_admins(self, company_alias: str) -> list[Administrator]: ...

    def forgot_password(self, username: str) -> str | None:
        """Has a reset code mailed to the user, if there is one who may reset; returns the code only where
        the provider hands it back instead of mailing it (offline)."""
        ...

    def confirm_forgot_password(self, username: str, code: str, new_password: str) -> None:
        """Raises ``WrongResetCode`` or ``PasswordRejected``."""
        ...


class ConsoleStateStore(Protocol):
    """Server-side sessions (sign-out deletes them) and failed sign-in counts."""

    def save_session(self, session: ConsoleSession) -> None: ...

    def session_exists(self, session: ConsoleSession) -> bool: ...

    def delete_session(self, session: ConsoleSession) -> None: ...

    def revoke_sessions(self, username: str, at: datetime) -> None: ...

    def failed_sign_ins(self, username: str) -> FailedSignIns: ...

    def record_failed_sign_in(self, username: str, failures: FailedSignIns) -> None: ...

    def clear_failed_sign_ins(self, username: str) -> None: ...


class UsageReader(Protocol):
    def records(self, company_alias: str, first_hour_ms: int, end_hour_ms: int) -> list[MeteringRecord]:
        """The ledger's records of the company's subscriptions for the hours in [first, end)."""
        ...

    def metered_through(self, company_alias: str) -> dict[str, int | None]: ...


@dataclass(frozen=True, slots=True)
class Invitation:
    email: str
    company_alias: str
    temporary_password: str
    sign_in_path: str = "/console/"


@dataclass(frozen=True, slots=True)
class PasswordReset:
    email: str
    company_alias: str
    code: str
    reset_path: str = "/console/reset-password"


class Mailer(Protocol):
    """Sends what the product itself mails. Deployed, Cognito mails invitations and reset codes and there
    is no mailer; offline, the mailbox stands in for Cognito's mail."""

    def send_invitation(self, invitation: Invitation) -> None: ...

    def send_password_reset(self, reset: PasswordReset) -> None: ...


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: ConsoleSession
    cookie: str


@dataclass(frozen=True, slots=True)
class MfaCodeNeeded:
    """The password was right; the administrator's TOTP code is next. ``cookie``: the signed challenge."""

    cookie: str


@dataclass(frozen=True, slots=True)
class SignInRefused:
    message: str
    new_password_needed: bool = False


class NotSignedIn(Exception):
    """No session, or an expired, forged or signed-out one."""


class CsrfRefused(Exception):
    """A form without the session's CSRF token."""


class ConsoleRefusal(Exception):
    """A change the console refuses, with the field it concerns and a message for the page."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


TEMPORARY_PASSWORD_LENGTH = 16
_SYMBOLS = "!#%+-=?@^_"


def temporary_password() -> str:
    """A random password meeting any Cognito policy: upper and lower case, digits and symbols."""
    alphabet = string.ascii_letters + string.digits + _SYMBOLS
    body = [secrets.choice(alphabet) for _ in range(TEMPORARY_PASSWORD_LENGTH - 4)]
    body += [
        secrets.choice(kind)
        for kind in (string.ascii_uppercase, string.ascii_lowercase, string.digits, _SYMBOLS)
    ]
    secrets.SystemRandom().shuffle(body)
    return "".join(body)


class AdministratorInvitations:
    """Inviting administrators: Cognito creates the user with a temporary password and, deployed, mails
    the invitation itself; offline (``serve``), the product's mailer delivers it to the local mailbox."""

    def __init__(self, identity: IdentityProvider, mailer: Mailer | None = None) -> None:
        self._identity = identity
        self._mailer = mailer

    def administrators(self, company_alias: str) -> list[Administrator]:
        return sorted(self._identity.list_admins(company_alias), key=lambda admin: admin.email)

    def invite_first_admin(self, company_alias: str, email: str) -> Administrator | None:
        """At sign-up: the contact email becomes the company's first administrator, unless it has some."""
        if self.administrators(company_alias):
            return None
        return self.invite(company_alias, email)

    def invite(self, company_alias: str, email: str) -> Administrator:
        email = normal_email(email)
        problem = invitation_email_error(email)
        if problem:
            raise ConsoleRefusal("email", problem)
        password = temporary_password()
        try:
            subject = self._identity.create_admin(
                sign_in_name(company_alias, email),
                company_alias=company_alias,
                email=email,
                temporary_password=password,
                send_invitation=self._mailer is None,
            )
        except AdministratorExists:
            raise ConsoleRefusal(
                "email", "This email is already an administrator of your company.", 409
            ) from None
        if self._mailer is not None:
            self._mailer.send_invitation(
                Invitation(email=email, company_alias=company_alias, temporary_password=password)
            )
        return Administrator(
            company_alias=company_alias, email=email, status="FORCE_CHANGE_PASSWORD", subject=subject
        )


class ConsoleService:
    def __init__(
        self,
        *,
        identity: IdentityProvider,
        state: ConsoleStateStore,
        licence: LicenceService,
        usage: UsageReader,
        signing_key: bytes,
        clock: Callable[[], datetime],
        mailer: Mailer | None = None,
    ) -> None:
        self._identity = identity
        self._state = state
        self._licence = licence
        self._usage = usage
        self._key = signing_key
        self._clock = clock
        self._invitations = AdministratorInvitations(identity, mailer)
        self._mailer = mailer
        self.mfa = MfaEnrolments(identity=identity, state=state, signing_key=signing_key, clock=clock)

    # Sign-in and sessions ------------------------------------------------------------------------

    def sign_in(
        self, company_alias: str, email: str, password: str, new_password: str = ""
    ) -> SignedIn | SignInRefused | MfaCodeNeeded:
        alias, email = normal_alias(company_alias), normal_email(email)
        if not credentials_plausible(alias, email, password):
            return SignInRefused(WRONG_CREDENTIALS)
        username = sign_in_name(alias, email)
        now = self._clock()
        failures = self._state.failed_sign_ins(username)
        if failures.locked(now):
            return SignInRefused(LOCKED_OUT)
        try:
            answer = self._authenticate(username, password, new_password)
        except WrongCredentials:
            self._state.record_failed_sign_in(username, failures.after_failure(now))
            return SignInRefused(WRONG_CREDENTIALS)
        except PasswordRejected as rejected:
            return SignInRefused(str(rejected), new_password_needed=True)
        if isinstance(answer, NewPasswordRequired):
            return SignInRefused(
                "Choose a new password to finish your first sign-in.", new_password_needed=True
            )
        if isinstance(answer, MfaRequired):
            challenge = MfaChallenge(alias, email, answer.challenge_session, now + MFA_CHALLENGE_LIFETIME)
            return MfaCodeNeeded(sign_challenge(challenge, self._key))
        return self._signed_in(answer, alias, email, failures, now)

    def sign_in_with_code(self, challenge_cookie: str | None, code: str) -> SignedIn | SignInRefused:
        """The TOTP code step of a sign-in whose password was right; the challenge names who and which
        company (signed: the form cannot change them). A wrong code counts as a failed sign-in."""
        now, code = self._clock(), normal_mfa_code(code)
        challenge = read_challenge(challenge_cookie, self._key, now)
        if challenge is None:
            return SignInRefused(WRONG_MFA_CODE)
        username = sign_in_name(challenge.company_alias, challenge.email)
        failures = self._state.failed_sign_ins(username)
        if failures.locked(now):
            return SignInRefused(LOCKED_OUT)
        try:
            if not mfa_code_plausible(code):
                raise WrongMfaCode
            answer = self._identity.respond_to_mfa(username, challenge.challenge_session, code)
        except WrongMfaCode:
            self._state.record_failed_sign_in(username, failures.after_failure(now))
            return SignInRefused(WRONG_MFA_CODE)
        return self._signed_in(answer, challenge.company_alias, challenge.email, failures, now)

    def _signed_in(
        self, answer: Authenticated, alias: str, email: str, failures: FailedSignIns, now: datetime
    ) -> SignedIn | SignInRefused:
        username = sign_in_name(alias, email)
        if answer.company_alias != alias:
            # The user name carries the alias, so this means a user made outside the console: refused alike.
            self._state.record_failed_sign_in(username, failures.after_failure(now))
            return SignInRefused(WRONG_CREDENTIALS)
        if failures != NO_FAILURES:
            self._state.clear_failed_sign_ins(username)
        session = new_session(company_alias=alias, email=email, subject=answer.subject, now=now)
        self._state.save_session(session)
        return SignedIn(session, sign_session(session, self._key))

    def _authenticate(
        self, username: str, password: str, new_password: str
    ) -> Authenticated | NewPasswordRequired | MfaRequired:
        answer = self._identity.authenticate(username, password)
        if isinstance(answer, NewPasswordRequired) and new_password:
            if new_password == password:
                raise PasswordRejected("The new password must differ from the temporary one.")
            # The pool's policy checked first, as a reset does: the same words, and one that says what
            # is wrong (the identity provider only answers that a password breaks its policy).
            if (problem := password_policy_problem(new_password)) is not None:
                raise PasswordRejected(problem)
            return self._identity.set_new_password(username, password, new_password)
        return answer

    def session(self, cookie: str | None) -> ConsoleSession:
        session = read_session(cookie, self._key, self._clock())
        if session is None or not self._state.session_exists(session):
            raise NotSignedIn
        return session

    @staticmethod
    def check_csrf(session: ConsoleSession, submitted: str | None) -> None:
        if not csrf_matches(session, submitted):
            raise CsrfRefused

    def sign_out(self, session: ConsoleSession) -> None:
        self._state.delete_session(session)

    # Password reset by email (Cognito's ForgotPassword) ---------------------------------------------

    def request_password_reset(self, company_alias: str, email: str) -> None:
        """Asks for a reset code. Whatever the alias and email, the caller learns nothing: the answer is
        the same whether they name an administrator, another company's or nobody."""
        alias, email = normal_alias(company_alias), normal_email(email)
        if not account_plausible(alias, email):
            return
        code = self._identity.forgot_password(sign_in_name(alias, email))
        if code is not None and self._mailer is not None:
            self._mailer.send_password_reset(PasswordReset(email=email, company_alias=alias, code=code))

    def reset_password(self, company_alias: str, email: str, code: str, new_password: str) -> None:
        """Sets the new password if the code is the one mailed to this administrator of this company;
        then the administrator's earlier sessions end and failed sign-ins are forgotten."""
        alias, email, code = normal_alias(company_alias), normal_email(email), code.strip()
        if not (account_plausible(alias, email) and reset_code_plausible(code)):
            raise ConsoleRefusal("code", WRONG_RESET_CODE, 401)
        problem = password_policy_problem(new_password)
        if problem:
            raise ConsoleRefusal("new_password", problem)
        username = sign_in_name(alias, email)
        try:
            self._identity.confirm_forgot_password(username, code, new_password)
        except WrongResetCode:
            raise ConsoleRefusal("code", WRONG_RESET_CODE, 401) from None
        except PasswordRejected as rejected:
            raise ConsoleRefusal("new_password", str(rejected)) from None
        # Sessions begun before the reset end (a millisecond back: one begun at this instant is after it).
        self._state.revoke_sessions(username, self._clock() - timedelta(milliseconds=1))
        self._state.clear_failed_sign_ins(username)

    # The company's data: always the session's company --------------------------------------------

    def licence(self, session: ConsoleSession) -> LicenceInfo:
        return self._licence.licence(session.company_alias)

    def environments(self, session: ConsoleSession) -> list[Environment]:
        return self._licence.environments(session.company_alias)

    def add_environment(self, session: ConsoleSession, name: str, instance_arn: str) -> Environment:
        return self._licence.add_environment(session.company_alias, name.strip(), instance_arn.strip())

    def environment_already_added(self, session: ConsoleSession, name: str, instance_arn: str) -> bool:
        """Whether the company already has this very environment (the same name and instance): the form
        sent again (a reload, a second click) after it was added."""
        name, instance_arn = name.strip(), instance_arn.strip()
        return any(
            environment.name == name and environment.instance_arn.arn == instance_arn
            for environment in self._licence.environments(session.company_alias)
        )

    def remove_environment(self, session: ConsoleSession, name: str) -> None:
        self._licence.remove_environment(session.company_alias, name)

    def usage(self, session: ConsoleSession) -> tuple[MonthUsage, MonthUsage]:
        """This month's and last month's usage of the session's company."""
        now = self._clock()
        this_month = month_of(now)
        last_month = previous_month(this_month)
        through = self._usage.metered_through(session.company_alias)
        records = self._usage.records(session.company_alias, last_month.first_ms, this_month.end_ms)
        mine = [record for record in records if record.company == session.company_alias]
        return (
            month_usage(mine, this_month, now=now, metered_through_ms=through),
            month_usage(mine, last_month, now=now, metered_through_ms=through),
        )

    # Administrators ------------------------------------------------------------------------------

    def administrators(self, session: ConsoleSession) -> list[Administrator]:
        return self._invitations.administrators(session.company_alias)

    def invite(self, session: ConsoleSession, email: str) -> Administrator:
        return self._invitations.invite(session.company_alias, email)

    def remove_administrator(self, session: ConsoleSession, email: str) -> str:
        """Removes an administrator of the session's company; returns the subject it had."""
        email = normal_email(email)
        if email == session.email:
            raise ConsoleRefusal("email", "You cannot remove yourself; ask another administrator.", 409)
        username = sign_in_name(session.company_alias, email)
        try:
            subject = self._identity.delete_admin(username)
        except UnknownAdministrator:
            raise ConsoleRefusal("email", NO_SUCH_ADMINISTRATOR, 404) from None
        # Signed-in sessions of the removed administrator end now, not when their cookies expire.
        self._state.revoke_sessions(username, self._clock())
        return subject

    def reset_mfa(self, session: ConsoleSession, email: str) -> str:
        """Turns off the TOTP of another administrator of the session's company (a lost device); returns
        their subject. One's own goes through the two-step sign-in page, which asks for password and code."""
        email = normal_email(email)
        if email == session.email:
            raise ConsoleRefusal("email", OWN_MFA_RESET, 409)
        if not account_plausible(session.company_alias, email):
            raise ConsoleRefusal("email", NO_SUCH_ADMINISTRATOR, 404)
        try:
            return self._identity.reset_mfa(sign_in_name(session.company_alias, email))
        except UnknownAdministrator:
            raise ConsoleRefusal("email", NO_SUCH_ADMINISTRATOR, 404) from None


def environment_refusal(error: TenancyError) -> ConsoleRefusal:
    """The admin API's refusal of an environment change, as the console shows it."""
    status = 404 if error.rule in {"company_exists", "environment_exists"} else 422
    if error.rule in {"one_account_one_company", "instance_unique", "environment_name_unique"}:
        status = 409
    return ConsoleRefusal(error.field, error.message, status)
