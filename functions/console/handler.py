"""Console Lambda behind the public HTTP API: the buyer's administrators sign in and manage their company.

    GET  /console/                     sign-in form (company_alias, email, password; new_password at first)
    POST /console/                     sign in: 303 to /console/licence with the session cookie
    GET  /console/licence              licence, status and what it means
    GET  /console/environments         environments; POST adds one (name, instance_arn);
    POST /console/environments/remove  removes one (name)
    GET  /console/usage                billed usage this month and last; /console/usage.csv the same as CSV
    GET  /console/users                administrators; POST invites one (email); POST /console/users/remove
    POST /console/sign-out             ends the session
    POST /console/sign-in/code         the TOTP code, when the administrator has two-step sign-in on
    GET  /console/mfa                  two-step sign-in (TOTP): POST /console/mfa/start (password) shows
                                       a new secret, POST /console/mfa/verify (code) turns it on;
                                       POST /console/mfa/off or /console/mfa/replace (password, code)
    POST /console/users/mfa-reset      turns off another administrator's two-step sign-in (email)
    GET  /console/forgot-password      password reset: alias and email; POST has Cognito mail a code
    GET  /console/reset-password       the code and a new password; POST sets it (ConfirmForgotPassword)

Every change (an environment added or removed, an administrator invited or removed, MFA enabled, disabled,
replaced or reset), whatever its outcome, is audited like the admin API's: a log line and an ``AUDIT#<alias>`` item in the tenancy
table, naming the administrator by their Cognito subject (``console:<sub>``), never by email.

Every page but sign-in needs a session (otherwise 303 to /console/), and reads or changes only the
session's company, whatever a URL or a form names. Every POST carries a CSRF token: the session's, or
for the sign-in form a double-submit cookie. Thin: the routes read forms and cookies, ``ConsoleService``
decides; passwords and cookies are never logged.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Form
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.audit_table import DynamoAuditLog
from connect_metering.adapters.cognito_admins import CognitoAdministrators
from connect_metering.adapters.console_store import DynamoConsoleStateStore, DynamoUsageReader
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.audit import AuditEntry
from connect_metering.domain.console import (
    MIN_SIGNING_KEY_BYTES,
    RESET_CODE_SENT,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    ConsoleSession,
    audit_caller,
)
from connect_metering.domain.console_mfa import (
    MFA_CHALLENGE_COOKIE,
    MFA_CHALLENGE_LIFETIME,
    MFA_ENROLMENT_COOKIE,
    MFA_ENROLMENT_LIFETIME,
)
from connect_metering.domain.console_usage import usage_csv_rows
from connect_metering.domain.tenancy import TenancyError
from connect_metering.observability import logger
from connect_metering.services.console import (
    ConsoleRefusal,
    ConsoleService,
    CsrfRefused,
    Mailer,
    MfaCodeNeeded,
    NotSignedIn,
    SignedIn,
    environment_refusal,
)
from connect_metering.services.console_mfa import MfaRefusal
from connect_metering.services.licence import LicenceService
from connect_metering.settings import ConsoleSettings, load_settings
from connect_metering.web.console_account_pages import (
    forgot_password_page,
    mfa_code_page,
    mfa_page,
    reset_password_page,
)
from connect_metering.web.console_pages import (
    console_headers,
    console_problem_page,
    environments_page,
    licence_page,
    sign_in_page,
    usage_page,
    users_page,
)
from connect_metering.web.forms import cookie_value
from connect_metering.web.page_lambda import html, observed, page_resolver, resolve_page_event, see_other

# Neither the resolver nor botocore logs what is typed (passwords, codes): page_resolver.
app = page_resolver()

SIGN_IN, PREFIX = "/console/", "/console"
SIGN_IN_COOKIE = "cm_console_form"
MFA_REPLACED = "Your new device is in use: from your next sign-in, the console asks for its code."
PASSWORD_CHANGED = "Your password is changed. Sign in with it."  # noqa: S105 (a message)
# The offline server delivers invitations to its mailbox; deployed, Cognito mails them and this stays None.
mailer: Mailer | None = None


def now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def console_service() -> ConsoleService:
    settings = load_settings(ConsoleSettings)
    dynamodb = boto3.client("dynamodb")
    secrets_manager: Any = boto3.client("secretsmanager")
    key = secrets_manager.get_secret_value(SecretId=settings.session_secret_arn)["SecretString"].encode()
    if len(key) < MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"the console session secret must be at least {MIN_SIGNING_KEY_BYTES} bytes")
    cognito: Any = boto3.client("cognito-idp")
    return ConsoleService(
        identity=CognitoAdministrators(
            user_pool_id=settings.user_pool_id, client_id=settings.client_id, client=cognito
        ),
        state=DynamoConsoleStateStore(settings.tenancy_table, dynamodb),
        licence=LicenceService(
            tenancy=DynamoTenancyStore(settings.tenancy_table, dynamodb),
            activity=DynamoActivityStore(settings.activity_table, dynamodb),
            clock=lambda: now(),
            silence_timeout_ms=settings.policy.silence_timeout * 1000,
            product_code=settings.product_code,
        ),
        usage=DynamoUsageReader(
            tenancy_table=settings.tenancy_table,
            ledger_table=settings.ledger_table,
            client=dynamodb,
            dimensions=(settings.policy.usage_dimension, settings.policy.overage_dimension),
        ),
        signing_key=key,
        clock=lambda: now(),
        mailer=mailer,
    )


@lru_cache(maxsize=1)
def audit_log() -> DynamoAuditLog:
    return DynamoAuditLog(load_settings(ConsoleSettings).tenancy_table, boto3.client("dynamodb"))


def _audit(session: ConsoleSession, target: str, outcome: str, status: int) -> None:
    """Log and store who changed what, as the admin API does: the log line always; a failed store is
    logged as an error rather than failing a change already made."""
    context = app.current_event.request_context
    entry = AuditEntry(
        company_alias=session.company_alias,
        at=now(),
        request_id=context.request_id or secrets.token_hex(8),
        caller=audit_caller(session),
        route=context.route_key or f"{app.current_event.http_method} {app.current_event.path}",
        target=target,
        outcome=outcome,
        status=status,
    )
    audit_log().keep(entry, logger, "console change")


# Responses ---------------------------------------------------------------------------------------


def _html(status: int, body: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return html(status, body, console_headers(), cookies)


def _see_other(location: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return see_other(location, console_headers(), cookies)


def _cookie(name: str, value: str, max_age: int) -> Cookie:
    # Secure always: the public entry is HTTPS only (the offline server drops it on its plain-HTTP loopback).
    return Cookie(
        name=name,
        value=value,
        path=PREFIX,
        secure=True,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.STRICT_MODE,
    )


def _cookie_of(name: str) -> str | None:
    return cookie_value(app.current_event.cookies, name)


def _session() -> ConsoleSession:
    return console_service().session(_cookie_of(SESSION_COOKIE))


def _posted_session(csrf_token: str | None) -> ConsoleSession:
    session = _session()
    ConsoleService.check_csrf(session, csrf_token)
    return session


# Sign-in -----------------------------------------------------------------------------------------


def _sign_in_form(status: int = 200, **page: Any) -> Response[str]:
    return _signed_out_form(sign_in_page, status, **page)


def _check_form_token(csrf_token: str) -> None:
    """The forms before sign-in (sign-in, password reset): the double-submit cookie must match the field."""
    expected = _cookie_of(SIGN_IN_COOKIE)
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        raise CsrfRefused


def _signed_out_form(
    render: Callable[..., str], status: int = 200, *, cookies: tuple[Cookie, ...] = (), **page: Any
) -> Response[str]:
    """A page before sign-in with a fresh double-submit token (its cookie and its form's hidden field)."""
    token = secrets.token_urlsafe(24)
    return _html(status, render(csrf_token=token, **page), [_cookie(SIGN_IN_COOKIE, token, 3600), *cookies])


def _signed_in(result: SignedIn) -> Response[str]:
    logger.info("console sign-in", extra={"company": result.session.company_alias})
    cookie = _cookie(SESSION_COOKIE, result.cookie, int(SESSION_LIFETIME.total_seconds()))
    ended = [_cookie(SIGN_IN_COOKIE, "", 0), _cookie(MFA_CHALLENGE_COOKIE, "", 0)]
    return _see_other("/console/licence", [cookie, *ended])


@app.get(PREFIX)
def console_root() -> Response[str]:
    return _see_other(SIGN_IN)


@app.get(SIGN_IN)
def sign_in_form() -> Response[str]:
    try:
        _session()
    except NotSignedIn:
        return _sign_in_form()
    return _see_other("/console/licence")


@app.post(SIGN_IN)
def sign_in(
    company_alias: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response[str]:
    _check_form_token(csrf_token)
    result = console_service().sign_in(company_alias, email, password, new_password)
    if isinstance(result, SignedIn):
        return _signed_in(result)
    if isinstance(result, MfaCodeNeeded):
        challenge = _cookie(MFA_CHALLENGE_COOKIE, result.cookie, int(MFA_CHALLENGE_LIFETIME.total_seconds()))
        return _signed_out_form(mfa_code_page, cookies=(challenge,))
    logger.info("console sign-in refused", extra={"new_password_needed": result.new_password_needed})
    return _sign_in_form(
        200 if result.new_password_needed else 401,
        alias=company_alias,
        email=email,
        error=result.message,
        new_password=result.new_password_needed,
    )


@app.post("/console/sign-in/code")
def sign_in_code(code: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response[str]:
    _check_form_token(csrf_token)
    result = console_service().sign_in_with_code(_cookie_of(MFA_CHALLENGE_COOKIE), code)
    if isinstance(result, SignedIn):
        return _signed_in(result)
    logger.info("console sign-in code refused")
    return _sign_in_form(401, error=result.message, cookies=(_cookie(MFA_CHALLENGE_COOKIE, "", 0),))


@app.post("/console/sign-out")
def sign_out(csrf_token: Annotated[str, Form()] = "") -> Response[str]:
    session = _posted_session(csrf_token)
    console_service().sign_out(session)
    logger.info("console sign-out", extra={"company": session.company_alias})
    return _see_other(SIGN_IN, [_cookie(SESSION_COOKIE, "", 0)])


# Password reset by email ----------------------------------------------------------------------------


@app.get("/console/forgot-password")
def forgot_password_form() -> Response[str]:
    return _signed_out_form(forgot_password_page)


@app.post("/console/forgot-password")
def forgot_password(
    company_alias: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response[str]:
    _check_form_token(csrf_token)
    console_service().request_password_reset(company_alias, email)
    logger.info("console password reset asked")  # never who: the answer does not say either
    return _signed_out_form(reset_password_page, alias=company_alias, email=email, notice=RESET_CODE_SENT)


@app.get("/console/reset-password")
def reset_password_form() -> Response[str]:
    return _signed_out_form(reset_password_page)


@app.post("/console/reset-password")
def reset_password(
    company_alias: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response[str]:
    _check_form_token(csrf_token)
    try:
        console_service().reset_password(company_alias, email, code, new_password)
    except ConsoleRefusal as refusal:
        logger.info("console password reset refused", extra={"field": refusal.field})
        return _signed_out_form(
            reset_password_page,
            refusal.status,
            alias=company_alias,
            email=email,
            errors={refusal.field: refusal.message},
        )
    logger.info("console password reset")
    return _sign_in_form(alias=company_alias, email=email, notice=PASSWORD_CHANGED)


# Two-step sign-in (TOTP) -----------------------------------------------------------------------------


def _mfa(session: ConsoleSession, status: int = 200, **page: Any) -> Response[str]:
    cookies = page.pop("cookies", None)
    enabled = console_service().mfa.enabled(session)
    body = mfa_page(alias=session.company_alias, csrf_token=session.csrf_token, enabled=enabled, **page)
    return _html(status, body, cookies)


@app.get("/console/mfa")
def mfa() -> Response[str]:
    session = _session()
    setup = console_service().mfa.in_progress(session, _cookie_of(MFA_ENROLMENT_COOKIE))
    if setup is None:
        return _mfa(session)
    return _mfa(session, secret=setup.secret, uri=setup.uri)


@app.post("/console/mfa/start")
def mfa_start(
    password: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response[str]:
    session = _posted_session(csrf_token)
    try:
        setup = console_service().mfa.start(session, password)
    except MfaRefusal as refusal:
        return _mfa(session, refusal.status, errors={refusal.field: refusal.message})
    cookie = _cookie(MFA_ENROLMENT_COOKIE, setup.cookie, int(MFA_ENROLMENT_LIFETIME.total_seconds()))
    return _mfa(session, secret=setup.secret, uri=setup.uri, cookies=[cookie])


@app.post("/console/mfa/verify")
def mfa_verify(code: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response[str]:
    session = _posted_session(csrf_token)
    enrolment = _cookie_of(MFA_ENROLMENT_COOKIE)
    try:
        replaced = console_service().mfa.finish(session, enrolment, code)
    except MfaRefusal as refusal:
        setup = console_service().mfa.in_progress(session, enrolment)
        shown = {"secret": setup.secret, "uri": setup.uri} if setup else {}
        return _mfa(session, refusal.status, errors={refusal.field: refusal.message}, **shown)
    _audit(
        session,
        f"administrator console:{session.subject}",
        "mfa_replaced" if replaced else "mfa_enabled",
        200,
    )
    notice = (
        MFA_REPLACED
        if replaced
        else "Two-step sign-in is on: from your next sign-in, the console asks for a code."
    )
    return _mfa(session, notice=notice, cookies=[_cookie(MFA_ENROLMENT_COOKIE, "", 0)])


@app.post("/console/mfa/off")
@app.post("/console/mfa/replace")
def mfa_change(
    password: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response[str]:
    """With TOTP on, the password and a current code: turn it off, or begin a new device's key."""
    session = _posted_session(csrf_token)
    new_device = app.current_event.path == "/console/mfa/replace"
    try:
        setup = console_service().mfa.change(session, password, code, new_device=new_device)
    except MfaRefusal as refusal:
        return _mfa(session, refusal.status, errors={refusal.field: refusal.message})
    if setup is not None:
        cookie = _cookie(MFA_ENROLMENT_COOKIE, setup.cookie, int(MFA_ENROLMENT_LIFETIME.total_seconds()))
        return _mfa(session, secret=setup.secret, uri=setup.uri, cookies=[cookie])
    _audit(session, f"administrator console:{session.subject}", "mfa_disabled", 200)
    return _mfa(session, notice="Two-step sign-in is off: your password alone signs you in.")


# Pages -------------------------------------------------------------------------------------------


@app.get("/console/licence")
def licence() -> Response[str]:
    session = _session()
    info = console_service().licence(session)
    return _html(200, licence_page(info, now=now(), csrf_token=session.csrf_token))


def _environments(session: ConsoleSession, status: int = 200, **form: Any) -> Response[str]:
    settings = load_settings(ConsoleSettings)
    page = environments_page(
        console_service().environments(session),
        alias=session.company_alias,
        csrf_token=session.csrf_token,
        template_url=settings.forwarder_template_url,
        seller_bus_arn=settings.agent_events_bus_arn,
        **form,
    )
    return _html(status, page)


@app.get("/console/environments")
def environments() -> Response[str]:
    return _environments(_session())


@app.post("/console/environments")
def add_environment(
    name: Annotated[str, Form()] = "",
    instance_arn: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response[str]:
    session = _posted_session(csrf_token)
    values = {"name": name, "instance_arn": instance_arn}
    try:
        added = console_service().add_environment(session, name, instance_arn)
    except TenancyError as error:
        if console_service().environment_already_added(session, name, instance_arn):
            return _environments(session, notice=f"Environment {name.strip()} is already added.")
        refusal = environment_refusal(error)
        _audit(session, f"environment {name} ({instance_arn})", error.rule, refusal.status)
        return _environments(
            session, refusal.status, values=values, errors={_form_field(refusal.field): refusal.message}
        )
    _audit(session, f"environment {added.name} ({added.instance_arn.arn})", "added", 201)
    return _environments(session, 201, notice=f"Environment {added.name} added.")


def _form_field(field: str) -> str:
    """The form field a domain refusal concerns (the domain names the environment's name ``environment_name``)."""
    return "name" if field in ("name", "environment_name") else "instance_arn"


@app.post("/console/environments/remove")
def remove_environment(
    name: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response[str]:
    session = _posted_session(csrf_token)
    try:
        console_service().remove_environment(session, name)
    except TenancyError as error:
        refusal = environment_refusal(error)
        _audit(session, f"environment {name}", error.rule, refusal.status)
        return _environments(session, refusal.status, errors={"name": refusal.message})
    _audit(session, f"environment {name}", "removed", 200)
    return _environments(session, notice=f"Environment {name} removed.")


@app.get("/console/usage")
def usage() -> Response[str]:
    session = _session()
    this_month, last_month = console_service().usage(session)
    return _html(
        200, usage_page(this_month, last_month, alias=session.company_alias, csrf_token=session.csrf_token)
    )


@app.get("/console/usage.csv")
def usage_csv() -> Response[str]:
    session = _session()
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(usage_csv_rows(console_service().usage(session)))
    headers = {
        **console_headers(),
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="usage-{session.company_alias}.csv"',
    }
    return Response(status_code=200, body=buffer.getvalue(), headers=headers)


def _users(session: ConsoleSession, status: int = 200, **form: Any) -> Response[str]:
    page = users_page(
        console_service().administrators(session),
        alias=session.company_alias,
        me=session.email,
        csrf_token=session.csrf_token,
        **form,
    )
    return _html(status, page)


@app.get("/console/users")
def users() -> Response[str]:
    return _users(_session())


@app.post("/console/users")
def invite(email: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response[str]:
    session = _posted_session(csrf_token)
    try:
        invited = console_service().invite(session, email)
    except ConsoleRefusal as refusal:
        _audit(session, "administrator (not created)", "refused", refusal.status)
        return _users(session, refusal.status, email=email, error=refusal.message)
    _audit(session, f"administrator console:{invited.subject}", "invited", 201)
    return _users(session, 201, notice=f"Invitation sent to {invited.email}.")


@app.post("/console/users/remove")
def remove_user(email: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "") -> Response[str]:
    session = _posted_session(csrf_token)
    try:
        removed = console_service().remove_administrator(session, email)
    except ConsoleRefusal as refusal:
        _audit(session, "administrator (not found or yourself)", "refused", refusal.status)
        return _users(session, refusal.status, error=refusal.message)
    _audit(session, f"administrator console:{removed}", "removed", 200)
    return _users(session, notice=f"{email.strip().lower()} is no longer an administrator.")


@app.post("/console/users/mfa-reset")
def reset_user_mfa(
    email: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response[str]:
    session = _posted_session(csrf_token)
    try:
        subject = console_service().reset_mfa(session, email)
    except ConsoleRefusal as refusal:
        _audit(session, "administrator (not found or yourself)", "mfa_reset_refused", refusal.status)
        return _users(session, refusal.status, error=refusal.message)
    _audit(session, f"administrator console:{subject}", "mfa_reset", 200)
    return _users(session, notice=f"Two-step sign-in is off for {email.strip().lower()}.")


# Refusals ----------------------------------------------------------------------------------------


def on_not_signed_in(_: NotSignedIn) -> Response[str]:
    return _see_other(SIGN_IN)


def on_csrf(_: CsrfRefused) -> Response[str]:
    logger.warning("console form refused", extra={"reason": "csrf"})
    return _html(
        *console_problem_page(
            403, "The form could not be verified", "Reload the page and submit the form again."
        )
    )


def on_invalid_form(_: RequestValidationError) -> Response[str]:
    return _malformed()


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _html(*console_problem_page(404, "Page not found", "There is no page at this address."))


def on_error(error: Exception) -> Response[str]:
    logger.error("console step failed", extra={"error": type(error).__name__})
    return _html(
        *console_problem_page(
            500, "Something went wrong on our side", "Try again in a few minutes. Nothing you did caused it."
        )
    )


app.exception_handler(NotSignedIn)(on_not_signed_in)
app.exception_handler(CsrfRefused)(on_csrf)
app.exception_handler(RequestValidationError)(on_invalid_form)
app.exception_handler(Exception)(on_error)


@observed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    console_service()  # first, outside the resolver: a missing setting or secret fails loudly
    return resolve_page_event(
        app,
        event,
        context,
        reads_form=lambda request: request.http_method == "POST",
        too_large=lambda: _html(
            *console_problem_page(413, "The form is too large", "Go back and shorten what you typed.")
        ),
        malformed=_malformed,
    )


def _malformed() -> Response[str]:
    return _html(*console_problem_page(400, "The request could not be read", "The form data was malformed."))
