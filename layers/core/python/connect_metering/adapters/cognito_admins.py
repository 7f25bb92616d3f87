"""The console's administrators in an Amazon Cognito user pool (``cognito-idp``, client injected).

User names are ``<company alias>/<email>`` (``domain.console.sign_in_name``) and each user carries the
company in ``custom:company_alias``; a sign-in under another alias names a user that does not exist,
which Cognito answers as it answers a wrong password. Sign-in is ``ADMIN_USER_PASSWORD_AUTH`` (the
console's Lambda signs in on the administrator's behalf; the app client has no secret and allows no
other flow), the first one answered with the ``NEW_PASSWORD_REQUIRED`` challenge, and an administrator
with TOTP on answered with ``SOFTWARE_TOKEN_MFA`` (the code goes to AdminRespondToAuthChallenge).
Password reset is Cognito's ForgotPassword / ConfirmForgotPassword; TOTP enrolment is
AssociateSoftwareToken, VerifySoftwareToken and SetUserMFAPreference with the administrator's own access
token (those three are authorized by the token, not by IAM); turning TOTP off or replacing it takes a new
access token from the password and a current code. Another administrator's TOTP is reset with
AdminSetUserMFAPreference (IAM).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from connect_metering.domain.console import (
    WEAK_PASSWORD,
    Administrator,
    AdministratorExists,
    Authenticated,
    MfaAlreadyOn,
    MfaNotOn,
    NewPasswordRequired,
    PasswordRejected,
    UnknownAdministrator,
    WrongCredentials,
    WrongMfaCode,
    WrongResetCode,
)
from connect_metering.domain.console_mfa import MfaRequired

COMPANY_ATTRIBUTE = "custom:company_alias"
NEW_PASSWORD_CHALLENGE = "NEW_PASSWORD_REQUIRED"  # noqa: S105 (a challenge name, not a password)
MFA_CHALLENGE = "SOFTWARE_TOKEN_MFA"
# A TOTP code refused (wrong, reused, or its challenge session expired or unknown: moto answers an unknown
# session with ResourceNotFoundException, Cognito with NotAuthorizedException).
WRONG_MFA_ERRORS = frozenset(
    {
        "CodeMismatchException",
        "ExpiredCodeException",
        "NotAuthorizedException",
        "ResourceNotFoundException",
        "EnableSoftwareTokenMFAException",
        "InvalidParameterException",
    }
)
# What Cognito answers for a wrong password, an unknown or disabled user, or a user it has locked out.
WRONG_CREDENTIAL_ERRORS = frozenset(
    {"NotAuthorizedException", "UserNotFoundException", "PasswordResetRequiredException"}
)
PASSWORD_POLICY_ERRORS = frozenset({"InvalidPasswordException", "InvalidParameterException"})
# ForgotPassword errors that say something about the user (unknown, not allowed to reset yet, no verified
# email) or about how often it is asked: all answered as a code sent, so the page is no oracle.
RESET_QUIET_ERRORS = frozenset(
    {
        "UserNotFoundException",
        "NotAuthorizedException",
        "InvalidParameterException",
        "LimitExceededException",
        "CodeDeliveryFailureException",
    }
)
# ConfirmForgotPassword's refusals of the code (or of the user it names). moto answers an unknown user
# with ResourceNotFoundException; Cognito (user existence errors prevented) with CodeMismatchException.
WRONG_CODE_ERRORS = frozenset(
    {
        "CodeMismatchException",
        "ExpiredCodeException",
        "UserNotFoundException",
        "NotAuthorizedException",
        "TooManyFailedAttemptsException",
        "LimitExceededException",
        "ResourceNotFoundException",
    }
)
# moto (offline only) hands ForgotPassword's code back in this response header instead of mailing it;
# Amazon Cognito mails it and sends no such header.
OFFLINE_RESET_CODE_HEADER = "x-moto-forgot-password-confirmation-code"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _attributes(listed: list[dict[str, str]]) -> dict[str, str]:
    return {attribute["Name"]: attribute["Value"] for attribute in listed}


class CognitoAdministrators:
    def __init__(self, *, user_pool_id: str, client: Any, client_id: str = "") -> None:
        """``client_id``: the app client signing in (not needed to manage users)."""
        self._pool = user_pool_id
        self._app_client = client_id
        self._client = client

    def _initiate(self, username: str, password: str) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self._client.admin_initiate_auth(
                UserPoolId=self._pool,
                ClientId=self._app_client,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except ClientError as error:
            if _code(error) in WRONG_CREDENTIAL_ERRORS:
                raise WrongCredentials from None
            raise
        return answer

    def authenticate(self, username: str, password: str) -> Authenticated | NewPasswordRequired | MfaRequired:
        answer = self._initiate(username, password)
        challenge = answer.get("ChallengeName")
        if challenge == NEW_PASSWORD_CHALLENGE:
            return NewPasswordRequired()
        if challenge == MFA_CHALLENGE:
            return MfaRequired(challenge_session=str(answer["Session"]))
        if "AuthenticationResult" not in answer:
            # A challenge this pool does not set (SMS, custom): not signed in.
            raise WrongCredentials
        return self._who(username)

    def respond_to_mfa(self, username: str, challenge_session: str, code: str) -> Authenticated:
        self._answer_mfa(username, challenge_session, code)
        return self._who(username)

    def _answer_mfa(self, username: str, challenge_session: str, code: str) -> dict[str, Any]:
        """The TOTP code for a SOFTWARE_TOKEN_MFA challenge; Cognito's tokens (raises ``WrongMfaCode``)."""
        try:
            answer = self._client.admin_respond_to_auth_challenge(
                UserPoolId=self._pool,
                ClientId=self._app_client,
                ChallengeName=MFA_CHALLENGE,
                Session=challenge_session,
                ChallengeResponses={"USERNAME": username, "SOFTWARE_TOKEN_MFA_CODE": code},
            )
        except ClientError as error:
            if _code(error) in WRONG_MFA_ERRORS | WRONG_CREDENTIAL_ERRORS:
                raise WrongMfaCode from None
            raise
        result: dict[str, Any] = answer.get("AuthenticationResult") or {}
        if not result.get("AccessToken"):
            raise WrongMfaCode
        return result

    def mfa_enabled(self, username: str) -> bool:
        user = self._client.admin_get_user(UserPoolId=self._pool, Username=username)
        return MFA_CHALLENGE in (user.get("UserMFASettingList") or [])

    def start_software_token(self, username: str, password: str) -> tuple[str, str]:
        """Signs in again with the password (raises ``WrongCredentials``, or ``MfaAlreadyOn`` when Cognito
        asks for a TOTP code) and associates a new TOTP secret; returns (access token, secret)."""
        answer = self._initiate(username, password)
        if answer.get("ChallengeName") == MFA_CHALLENGE:
            raise MfaAlreadyOn
        token = str(answer.get("AuthenticationResult", {}).get("AccessToken", ""))
        if not token:
            raise WrongCredentials
        return token, self.associate_software_token(token)

    def associate_software_token(self, access_token: str) -> str:
        """A new TOTP secret for the token's user; it replaces the one in use only once verified."""
        return str(self._client.associate_software_token(AccessToken=access_token)["SecretCode"])

    def sign_in_with_code(self, username: str, password: str, code: str) -> str:
        """Signs in again with the password and the current TOTP code of an administrator who has TOTP on;
        returns the access token. Raises ``WrongCredentials``, ``WrongMfaCode``, or ``MfaNotOn`` when the
        password alone signs in."""
        answer = self._initiate(username, password)
        if answer.get("ChallengeName") != MFA_CHALLENGE:
            if "AuthenticationResult" in answer:
                raise MfaNotOn
            raise WrongCredentials
        return str(self._answer_mfa(username, str(answer["Session"]), code)["AccessToken"])

    def disable_software_token(self, access_token: str) -> None:
        """The token's user signs in with the password alone again (SetUserMFAPreference, by the token)."""
        self._client.set_user_mfa_preference(
            AccessToken=access_token, SoftwareTokenMfaSettings={"Enabled": False, "PreferredMfa": False}
        )

    def reset_mfa(self, username: str) -> str:
        """Turns another administrator's TOTP off (AdminSetUserMFAPreference, by IAM): they sign in with
        the password alone and may enrol a new device. Returns their subject (for the audit trail)."""
        try:
            subject = self._who(username).subject
            self._client.admin_set_user_mfa_preference(
                UserPoolId=self._pool,
                Username=username,
                SoftwareTokenMfaSettings={"Enabled": False, "PreferredMfa": False},
            )
        except ClientError as error:
            if _code(error) == "UserNotFoundException":
                raise UnknownAdministrator from None
            raise
        return subject

    def enable_software_token(self, access_token: str, code: str) -> None:
        """Verifies the first code of the associated secret, then makes TOTP the administrator's MFA."""
        try:
            verified = self._client.verify_software_token(
                AccessToken=access_token, UserCode=code, FriendlyDeviceName="console"
            )
            if verified.get("Status") != "SUCCESS":
                raise WrongMfaCode
            self._client.set_user_mfa_preference(
                AccessToken=access_token,
                SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True},
            )
        except ClientError as error:
            if _code(error) in WRONG_MFA_ERRORS:
                raise WrongMfaCode from None
            raise

    def set_new_password(self, username: str, password: str, new_password: str) -> Authenticated:
        try:
            started = self._client.admin_initiate_auth(
                UserPoolId=self._pool,
                ClientId=self._app_client,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
            if started.get("ChallengeName") != NEW_PASSWORD_CHALLENGE:
                raise WrongCredentials
            self._client.admin_respond_to_auth_challenge(
                UserPoolId=self._pool,
                ClientId=self._app_client,
                ChallengeName=NEW_PASSWORD_CHALLENGE,
                Session=started["Session"],
                ChallengeResponses={"USERNAME": username, "NEW_PASSWORD": new_password},
            )
        except ClientError as error:
            if _code(error) in WRONG_CREDENTIAL_ERRORS:
                raise WrongCredentials from None
            if _code(error) in PASSWORD_POLICY_ERRORS:
                raise PasswordRejected(WEAK_PASSWORD) from None
            raise
        return self._who(username)

    def forgot_password(self, username: str) -> str | None:
        """Cognito mails the user a reset code (if there is such a user who may reset). Returns the code
        only where the identity provider hands it back rather than mailing it: moto, offline."""
        try:
            answer = self._client.forgot_password(ClientId=self._app_client, Username=username)
        except ClientError as error:
            if _code(error) in RESET_QUIET_ERRORS:
                return None
            raise
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return str(headers.get(OFFLINE_RESET_CODE_HEADER) or "") or None

    def confirm_forgot_password(self, username: str, code: str, new_password: str) -> None:
        try:
            self._client.confirm_forgot_password(
                ClientId=self._app_client, Username=username, ConfirmationCode=code, Password=new_password
            )
        except ClientError as error:
            if _code(error) in WRONG_CODE_ERRORS:
                raise WrongResetCode from None
            if _code(error) in PASSWORD_POLICY_ERRORS:
                raise PasswordRejected(WEAK_PASSWORD) from None
            raise

    def _who(self, username: str) -> Authenticated:
        user = self._client.admin_get_user(UserPoolId=self._pool, Username=username)
        attributes = _attributes(user.get("UserAttributes", []))
        return Authenticated(
            company_alias=attributes.get(COMPANY_ATTRIBUTE, ""),
            email=attributes.get("email", ""),
            subject=attributes.get("sub", ""),
        )

    def create_admin(
        self, username: str, *, company_alias: str, email: str, temporary_password: str, send_invitation: bool
    ) -> str:
        """Creates the user; returns its subject (``sub``), the name the audit trail gives it."""
        request: dict[str, Any] = {
            "UserPoolId": self._pool,
            "Username": username,
            "TemporaryPassword": temporary_password,
            "UserAttributes": [
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
                {"Name": COMPANY_ATTRIBUTE, "Value": company_alias},
            ],
        }
        if send_invitation:
            request["DesiredDeliveryMediums"] = ["EMAIL"]
        else:
            request["MessageAction"] = "SUPPRESS"
        try:
            created = self._client.admin_create_user(**request)
        except ClientError as error:
            if _code(error) == "UsernameExistsException":
                raise AdministratorExists from None
            raise
        return _attributes(created.get("User", {}).get("Attributes", [])).get("sub", "")

    def delete_admin(self, username: str) -> str:
        """Deletes the user; returns the subject it had (for the audit trail)."""
        try:
            subject = self._who(username).subject
            self._client.admin_delete_user(UserPoolId=self._pool, Username=username)
        except ClientError as error:
            if _code(error) == "UserNotFoundException":
                raise UnknownAdministrator from None
            raise
        return subject

    def list_admins(self, company_alias: str) -> list[Administrator]:
        admins: list[Administrator] = []
        prefix = f"{company_alias}/"
        request: dict[str, Any] = {"UserPoolId": self._pool, "Filter": f'username ^= "{prefix}"'}
        while True:
            page = self._client.list_users(**request)
            for user in page.get("Users", []):
                attributes = _attributes(user.get("Attributes", []))
                # The prefix filter is Cognito's; the attribute check is ours, so a user only ever lists here
                # under the company both its name and its attribute give.
                if attributes.get(COMPANY_ATTRIBUTE) == company_alias and str(user["Username"]).startswith(
                    prefix
                ):
                    admins.append(
                        Administrator(
                            company_alias=company_alias,
                            email=attributes.get("email", ""),
                            status=str(user.get("UserStatus", "")),
                            created=user.get("UserCreateDate"),
                        )
                    )
            token = page.get("PaginationToken")
            if not token:
                return admins
            request["PaginationToken"] = token
