"""The customer console's sessions and sign-in rules: pure, the caller passes ``now`` and the signing key.

A session belongs to one company: every console page reads and changes only the data of the session's
company alias, never an alias from a URL or a form. The browser holds it as a signed cookie
(``<payload>.<HMAC-SHA256>``, both base64url): the payload names the session id, the company, the
administrator and the expiry; the server also keeps the session id (sign-out deletes it, so a copied
cookie dies with the sign-out), and refuses an expired session whatever the cookie says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from connect_metering.domain.instants import from_ms, to_ms
from connect_metering.domain.registration import EMAIL_PATTERN
from connect_metering.domain.tenancy import ALIAS_PATTERN

SESSION_COOKIE = "cm_console"
SESSION_LIFETIME = timedelta(hours=8)
# Failed sign-ins of one administrator (alias + email) before sign-in is refused for LOCKOUT_PERIOD;
# counted by the product itself, whatever the identity provider also does.
MAX_FAILED_SIGN_INS = 5
LOCKOUT_PERIOD = timedelta(minutes=15)
MIN_SIGNING_KEY_BYTES = 32
MAX_EMAIL_LENGTH = 254
MAX_PASSWORD_LENGTH = 256
# Both the wrong password and the wrong company alias get this message: the form is no oracle for who
# administers which company.
WRONG_CREDENTIALS = "The company alias, email or password is not right."
LOCKED_OUT = "Too many failed sign-ins. Wait 15 minutes and try again."
# The user pool's password policy (infra/constructs/console.py, local/console_offline.py), in words.
MIN_PASSWORD_LENGTH = 12
PASSWORD_RULES = "at least 12 characters with upper and lower case letters, digits and symbols"  # noqa: S105
WEAK_PASSWORD = f"Choose a stronger password: {PASSWORD_RULES}."
PASSWORD_TOO_LONG = f"Choose a shorter password: at most {MAX_PASSWORD_LENGTH} characters."
# Password reset: one answer whoever asks, so the form tells nobody who administers which company.
RESET_CODE_SENT = (
    "If this email is an administrator of this company, a code is on its way to it. Enter it below with "
    "a new password; the code expires within an hour."
)
WRONG_RESET_CODE = "The code is not right or has expired. Ask for a new code and try again."
MAX_RESET_CODE_LENGTH = 2048  # Cognito's bound on ConfirmationCode
# The special characters Cognito counts as symbols in a password policy.
_POLICY_SYMBOLS = frozenset("^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ")


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    session_id: str
    company_alias: str
    email: str
    subject: str
    expires: datetime
    csrf_token: str

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires

    @property
    def started(self) -> datetime:
        return self.expires - SESSION_LIFETIME


def new_session(*, company_alias: str, email: str, subject: str, now: datetime) -> ConsoleSession:
    return ConsoleSession(
        session_id=secrets.token_urlsafe(24),
        company_alias=company_alias,
        email=email,
        subject=subject,
        expires=now + SESSION_LIFETIME,
        csrf_token=secrets.token_urlsafe(24),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str, key: bytes) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def signed_document(document: dict[str, object], key: bytes) -> str:
    """``<payload>.<HMAC-SHA256>``, both base64url: what the console's cookies carry."""
    payload = _b64(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(payload, key)}"


def verified_document(text: str | None, key: bytes) -> dict[str, object] | None:
    """The document ``signed_document`` made with this key, or None: absent, forged, altered or malformed."""
    if not text or text.count(".") != 1:
        return None
    payload, mac = text.split(".")
    if not hmac.compare_digest(mac, _mac(payload, key)):
        return None
    try:
        document = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        return None
    return document if isinstance(document, dict) else None


def sign_session(session: ConsoleSession, key: bytes) -> str:
    document: dict[str, object] = {
        "id": session.session_id,
        "alias": session.company_alias,
        "email": session.email,
        "sub": session.subject,
        "exp": to_ms(session.expires),
        "csrf": session.csrf_token,
    }
    return signed_document(document, key)


def read_session(cookie: str | None, key: bytes, now: datetime) -> ConsoleSession | None:
    """The session a cookie carries, or None: absent, forged, altered, malformed or expired."""
    document = verified_document(cookie, key)
    if document is None or "kind" in document:  # another of the console's signed documents
        return None
    try:
        session = ConsoleSession(
            session_id=str(document["id"]),
            company_alias=str(document["alias"]),
            email=str(document["email"]),
            subject=str(document["sub"]),
            expires=from_ms(int(str(document["exp"]))),
            csrf_token=str(document["csrf"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return None if session.is_expired(now) else session


def audit_caller(session: ConsoleSession) -> str:
    """Who made a console change, as the audit trail names them: the identity provider's subject (an
    opaque id), never the email, so the trail holds no more personal data than the admin API's."""
    return f"console:{session.subject}"


def csrf_matches(session: ConsoleSession, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(submitted.encode(), session.csrf_token.encode())


# Sign-in input ------------------------------------------------------------------------------------


def normal_email(email: str) -> str:
    return email.strip().lower()


def normal_alias(alias: str) -> str:
    """Aliases are lower case (``ALIAS_PATTERN``): one typed with capitals (a phone's first letter)
    still names its company."""
    return alias.strip().lower()


def normal_mfa_code(code: str) -> str:
    """A one-time code as typed: authenticator apps show it in groups (``123 456``)."""
    return "".join(code.split())


def credentials_plausible(alias: str, email: str, password: str) -> bool:
    """Whether a sign-in is worth asking the identity provider about: a malformed alias or email can
    match nobody (and is answered with the same message as a wrong password)."""
    return (
        ALIAS_PATTERN.fullmatch(alias) is not None
        and len(email) <= MAX_EMAIL_LENGTH
        and EMAIL_PATTERN.fullmatch(email) is not None
        and 0 < len(password) <= MAX_PASSWORD_LENGTH
    )


def account_plausible(alias: str, email: str) -> bool:
    """Whether an alias and email can name an administrator at all (malformed ones name nobody)."""
    return (
        ALIAS_PATTERN.fullmatch(alias) is not None
        and len(email) <= MAX_EMAIL_LENGTH
        and EMAIL_PATTERN.fullmatch(email) is not None
    )


def reset_code_plausible(code: str) -> bool:
    return 0 < len(code) <= MAX_RESET_CODE_LENGTH and not any(character.isspace() for character in code)


def password_policy_problem(password: str) -> str | None:
    """The user pool's policy checked before asking the identity provider (which checks it again): the
    same words whichever refuses."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return PASSWORD_TOO_LONG
    if len(password) < MIN_PASSWORD_LENGTH:
        return WEAK_PASSWORD
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(c in _POLICY_SYMBOLS for c in password),
    )
    return None if all(classes) else WEAK_PASSWORD


def invitation_email_error(email: str) -> str | None:
    if len(email) > MAX_EMAIL_LENGTH or EMAIL_PATTERN.fullmatch(email) is None:
        return "Enter an email address such as ops@example.com."
    return None


def sign_in_name(alias: str, email: str) -> str:
    """The identity provider's user name of an administrator: one per company and email, so the same
    person may administer two companies, and a sign-in under another alias finds no such user."""
    return f"{alias}/{normal_email(email)}"


# Lockout ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedSignIns:
    """Consecutive failed sign-ins of one administrator; a quiet LOCKOUT_PERIOD since the last one
    forgets them, and sign-in is refused while MAX_FAILED_SIGN_INS of them are remembered."""

    count: int
    last_failure: datetime | None

    def forgotten(self, now: datetime) -> bool:
        return self.last_failure is None or now - self.last_failure >= LOCKOUT_PERIOD

    def locked(self, now: datetime) -> bool:
        return self.count >= MAX_FAILED_SIGN_INS and not self.forgotten(now)

    def after_failure(self, now: datetime) -> FailedSignIns:
        return FailedSignIns(1 if self.forgotten(now) else self.count + 1, now)


NO_FAILURES = FailedSignIns(0, None)


# Administrators and what the identity provider answers ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Administrator:
    company_alias: str
    email: str
    status: str  # the identity provider's: FORCE_CHANGE_PASSWORD (invited), CONFIRMED...
    created: datetime | None = None
    subject: str = ""  # the identity provider's immutable id (``sub``): what the audit trail names

    @property
    def invited(self) -> bool:
        return self.status == "FORCE_CHANGE_PASSWORD"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A password the identity provider accepted, with the company the administrator belongs to."""

    company_alias: str
    email: str
    subject: str


@dataclass(frozen=True, slots=True)
class NewPasswordRequired:
    """The password was right and is temporary: the administrator must choose a new one."""


class WrongCredentials(Exception):
    """No such administrator, a wrong password or a disabled user: one answer for all of them."""


class PasswordRejected(Exception):
    """The identity provider refused a new password (its policy); the message says why."""


class WrongMfaCode(Exception):
    """A TOTP code refused: wrong or reused, or its challenge or enrolment no longer valid."""


class MfaAlreadyOn(Exception):
    """TOTP is already the administrator's second factor."""


class MfaNotOn(Exception):
    """The password was right but the administrator has no TOTP to turn off or replace."""


class WrongResetCode(Exception):
    """A password reset code that is wrong, used or expired, or that names no administrator."""


class AdministratorExists(Exception):
    """This email already administers this company."""


class UnknownAdministrator(Exception):
    """No administrator of this company has this email."""
