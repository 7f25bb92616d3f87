"""TOTP MFA of console administrators (optional, as the user pool allows it): pure rules and the two
short-lived signed documents the browser carries between two requests.

- ``MfaChallenge``: a password accepted for an administrator who has MFA on; the identity provider's
  challenge session waits for the code (Cognito keeps it 3 minutes). Signed, so the code step cannot be
  pointed at another administrator or company than the password step named.
- ``MfaEnrolment``: an enrolment begun in one console session (the password asked again): the access
  token the identity provider's AssociateSoftwareToken and VerifySoftwareToken need. Signed and bound to
  the session id: no other session can finish it. A replacement (``replacing``) begins with the password
  and a current code instead, and the old authenticator stays in use until the new one's code is verified. It travels in an ``HttpOnly`` cookie of the console's
  path and lives 10 minutes; the token is the administrator's own, for their own user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from connect_metering.domain.console import ConsoleSession, signed_document, verified_document
from connect_metering.domain.instants import from_ms, to_ms

MFA_CHALLENGE_COOKIE = "cm_console_mfa"
MFA_ENROLMENT_COOKIE = "cm_console_mfa_setup"
MFA_CHALLENGE_LIFETIME = timedelta(minutes=3)
MFA_ENROLMENT_LIFETIME = timedelta(minutes=10)
MFA_CODE_PATTERN = re.compile(r"[0-9]{6}")
TOTP_ISSUER = "connect-metering"
WRONG_MFA_CODE = "The code is not right, or it took too long. Sign in again."
MFA_RETRY = "The code is not right. Enter the code your app shows now."
MFA_ALREADY_ON = "Two-step sign-in is already on for you."
MFA_RESTART = "The set-up took too long or was already finished. Start again."
MFA_NOT_ON = "Two-step sign-in is not on for you."
MFA_CURRENT_CODE = "The code is not right. Enter the code your app shows now for this console."


def mfa_code_plausible(code: str) -> bool:
    return MFA_CODE_PATTERN.fullmatch(code) is not None


@dataclass(frozen=True, slots=True)
class MfaRequired:
    """The password was right and the administrator has TOTP on: the identity provider waits for a code."""

    challenge_session: str


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    company_alias: str
    email: str
    challenge_session: str
    expires: datetime


def sign_challenge(challenge: MfaChallenge, key: bytes) -> str:
    return signed_document(
        {
            "kind": "mfa-challenge",
            "alias": challenge.company_alias,
            "email": challenge.email,
            "challenge": challenge.challenge_session,
            "exp": to_ms(challenge.expires),
        },
        key,
    )


def read_challenge(text: str | None, key: bytes, now: datetime) -> MfaChallenge | None:
    document = verified_document(text, key)
    if document is None or document.get("kind") != "mfa-challenge":
        return None
    try:
        challenge = MfaChallenge(
            company_alias=str(document["alias"]),
            email=str(document["email"]),
            challenge_session=str(document["challenge"]),
            expires=from_ms(int(str(document["exp"]))),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return challenge if now < challenge.expires else None


@dataclass(frozen=True, slots=True)
class MfaEnrolment:
    session_id: str
    access_token: str
    secret: str
    expires: datetime
    # A new authenticator for an administrator who has one: the old one stays in use until the new one's
    # first code is verified.
    replacing: bool = False


def sign_enrolment(enrolment: MfaEnrolment, key: bytes) -> str:
    return signed_document(
        {
            "kind": "mfa-enrolment",
            "sid": enrolment.session_id,
            "token": enrolment.access_token,
            "secret": enrolment.secret,
            "exp": to_ms(enrolment.expires),
            "replacing": enrolment.replacing,
        },
        key,
    )


def read_enrolment(
    text: str | None, key: bytes, session: ConsoleSession, now: datetime
) -> MfaEnrolment | None:
    """The enrolment a cookie carries if it is this session's and not expired."""
    document = verified_document(text, key)
    if document is None or document.get("kind") != "mfa-enrolment":
        return None
    try:
        enrolment = MfaEnrolment(
            session_id=str(document["sid"]),
            access_token=str(document["token"]),
            secret=str(document["secret"]),
            expires=from_ms(int(str(document["exp"]))),
            replacing=document.get("replacing") is True,
        )
    except (KeyError, TypeError, ValueError):
        return None
    if enrolment.session_id != session.session_id or now >= enrolment.expires:
        return None
    return enrolment


def otpauth_uri(secret: str, company_alias: str, email: str) -> str:
    """The ``otpauth://totp/`` URI an authenticator app takes (Key Uri Format): the issuer, the account
    as ``alias/email``, and Cognito's parameters (SHA-1, 6 digits, 30 seconds, its defaults)."""
    label = quote(f"{TOTP_ISSUER}:{company_alias}/{email}", safe="")
    query = urlencode(
        {"secret": secret, "issuer": TOTP_ISSUER, "algorithm": "SHA1", "digits": 6, "period": 30}
    )
    return f"otpauth://totp/{label}?{query}"
