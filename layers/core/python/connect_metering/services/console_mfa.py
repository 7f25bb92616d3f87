"""Enrolling a console administrator in TOTP MFA (optional): the password asked again, a new secret from
the identity provider shown as text and as an ``otpauth://`` URI, and the first code from the app to
turn it on. Turning it off, or replacing the authenticator (a new secret, verified by its first code
before it takes the old one's place), asks for the password and a current code. The enrolment between the two steps is a signed document bound to the console session
(``domain.console_mfa.MfaEnrolment``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connect_metering.domain.console import (
    LOCKED_OUT,
    MAX_PASSWORD_LENGTH,
    ConsoleSession,
    FailedSignIns,
    MfaAlreadyOn,
    MfaNotOn,
    WrongCredentials,
    WrongMfaCode,
    normal_mfa_code,
    sign_in_name,
)
from connect_metering.domain.console_mfa import (
    MFA_ALREADY_ON,
    MFA_CURRENT_CODE,
    MFA_ENROLMENT_LIFETIME,
    MFA_NOT_ON,
    MFA_RESTART,
    MFA_RETRY,
    MfaEnrolment,
    mfa_code_plausible,
    otpauth_uri,
    read_enrolment,
    sign_enrolment,
)

if TYPE_CHECKING:
    from connect_metering.services.console import ConsoleStateStore, IdentityProvider

WRONG_PASSWORD = "The password is not right."  # noqa: S105 (a message)


class MfaRefusal(Exception):
    def __init__(self, field: str, message: str, status: int) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class MfaSetup:
    """A secret waiting for its first code; ``cookie`` is the signed enrolment."""

    secret: str
    uri: str
    cookie: str


class MfaEnrolments:
    def __init__(
        self,
        *,
        identity: IdentityProvider,
        state: ConsoleStateStore,
        signing_key: bytes,
        clock: Callable[[], datetime],
    ) -> None:
        self._identity = identity
        self._state = state
        self._key = signing_key
        self._clock = clock

    def enabled(self, session: ConsoleSession) -> bool:
        return self._identity.mfa_enabled(sign_in_name(session.company_alias, session.email))

    def start(self, session: ConsoleSession, password: str) -> MfaSetup:
        """Checks the password again (a wrong one counts as a failed sign-in) and associates a new secret."""
        username = sign_in_name(session.company_alias, session.email)
        failures = self._not_locked(username)
        try:
            if not 0 < len(password) <= MAX_PASSWORD_LENGTH:
                raise WrongCredentials
            token, secret = self._identity.start_software_token(username, password)
        except WrongCredentials:
            self._state.record_failed_sign_in(username, failures.after_failure(self._clock()))
            raise MfaRefusal("password", WRONG_PASSWORD, 401) from None
        except MfaAlreadyOn:
            raise MfaRefusal("password", MFA_ALREADY_ON, 409) from None
        return self._setup(session, token, secret, replacing=False)

    def change(
        self, session: ConsoleSession, password: str, code: str, *, new_device: bool
    ) -> MfaSetup | None:
        """With the password and a current code: a new device's secret to verify (the old one works until
        then) when ``new_device``; otherwise TOTP off, and the password alone signs in again."""
        token = self._signed_in_again(session, password, code)
        if new_device:
            return self._setup(session, token, self._identity.associate_software_token(token), replacing=True)
        self._identity.disable_software_token(token)
        return None

    def _not_locked(self, username: str) -> FailedSignIns:
        failures = self._state.failed_sign_ins(username)
        if failures.locked(self._clock()):
            raise MfaRefusal("password", LOCKED_OUT, 429)
        return failures

    def _signed_in_again(self, session: ConsoleSession, password: str, code: str) -> str:
        """The access token of a sign-in with password and code; a wrong one counts as a failed sign-in."""
        username = sign_in_name(session.company_alias, session.email)
        failures = self._not_locked(username)
        code = normal_mfa_code(code)
        try:
            if not 0 < len(password) <= MAX_PASSWORD_LENGTH:
                raise WrongCredentials
            if not mfa_code_plausible(code):
                raise WrongMfaCode
            return self._identity.sign_in_with_code(username, password, code)
        except WrongCredentials:
            self._state.record_failed_sign_in(username, failures.after_failure(self._clock()))
            raise MfaRefusal("password", WRONG_PASSWORD, 401) from None
        except WrongMfaCode:
            self._state.record_failed_sign_in(username, failures.after_failure(self._clock()))
            raise MfaRefusal("code", MFA_CURRENT_CODE, 401) from None
        except MfaNotOn:
            raise MfaRefusal("password", MFA_NOT_ON, 409) from None

    def _setup(self, session: ConsoleSession, token: str, secret: str, *, replacing: bool) -> MfaSetup:
        expires = self._clock() + MFA_ENROLMENT_LIFETIME
        enrolment = MfaEnrolment(session.session_id, token, secret, expires, replacing=replacing)
        return MfaSetup(
            secret,
            otpauth_uri(secret, session.company_alias, session.email),
            sign_enrolment(enrolment, self._key),
        )

    def in_progress(self, session: ConsoleSession, cookie: str | None) -> MfaSetup | None:
        """The set-up this session began and has not finished, if still valid (to show it again)."""
        enrolment = read_enrolment(cookie, self._key, session, self._clock())
        if enrolment is None or cookie is None:
            return None
        return MfaSetup(
            enrolment.secret, otpauth_uri(enrolment.secret, session.company_alias, session.email), cookie
        )

    def finish(self, session: ConsoleSession, cookie: str | None, code: str) -> bool:
        """Turns TOTP on with the first code of the app (a wrong code may be tried again); True when it
        replaced an authenticator."""
        enrolment = read_enrolment(cookie, self._key, session, self._clock())
        if enrolment is None:
            raise MfaRefusal("code", MFA_RESTART, 409)
        code = normal_mfa_code(code)
        try:
            if not mfa_code_plausible(code):
                raise WrongMfaCode
            self._identity.enable_software_token(enrolment.access_token, code)
        except WrongMfaCode:
            raise MfaRefusal("code", MFA_RETRY, 422) from None
        return enrolment.replacing
