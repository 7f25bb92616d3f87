"""The console's account pages: password reset by email and TOTP MFA (enrolment, and the sign-in's code
step). Server-rendered like every console page (``console_pages``): nothing external, every value escaped,
every form with a CSRF token; the MFA secret is shown as text and as an ``otpauth://`` URI, never sent
to a QR code service.
"""

from __future__ import annotations

from connect_metering.domain.console import PASSWORD_RULES
from connect_metering.web.console_pages import _csrf, _errors, _input, console_layout
from connect_metering.web.pages import escape

TOTP_ISSUER = "connect-metering"


def _notice(notice: str) -> str:
    return f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""


def forgot_password_page(*, csrf_token: str, alias: str = "", email: str = "") -> str:
    """Asks for the company alias and email; ``csrf_token`` is the double-submit token of its cookie."""
    body = (
        "<h1>Reset your password</h1>"
        "<p>Enter your company alias and your email: we send a code to that email if it is an administrator "
        "of that company.</p>"
        f'<form method="post" action="/console/forgot-password" novalidate>{_csrf(csrf_token)}'
        + _input("company_alias", "Company alias", value=alias, autocomplete="organization")
        + _input("email", "Email", kind="email", value=email, autocomplete="username")
        + '<button type="submit" id="send-code">Send me a code</button></form>'
        '<p><a href="/console/reset-password">I already have a code</a> · '
        '<a href="/console/">Back to sign-in</a></p>'
    )
    return console_layout("Reset your password", body)


def reset_password_page(
    *,
    csrf_token: str,
    alias: str = "",
    email: str = "",
    errors: dict[str, str] | None = None,
    notice: str = "",
) -> str:
    """The emailed code and a new password (Cognito's ConfirmForgotPassword)."""
    errors = errors or {}
    body = (
        "<h1>Choose a new password</h1>"
        + _notice(notice)
        + _errors(errors)
        + f'<form method="post" action="/console/reset-password" novalidate>{_csrf(csrf_token)}'
        + _input("company_alias", "Company alias", value=alias, autocomplete="organization")
        + _input("email", "Email", kind="email", value=email, autocomplete="username")
        + _input(
            "code",
            "Code from the email",
            error=errors.get("code"),
            autocomplete="one-time-code",
        )
        + _input(
            "new_password",
            "New password",
            kind="password",
            error=errors.get("new_password"),
            hint=f"{PASSWORD_RULES[0].upper()}{PASSWORD_RULES[1:]}.",
            autocomplete="new-password",
        )
        + '<button type="submit" id="reset-password">Set the new password</button></form>'
        '<p><a href="/console/forgot-password">Send me a new code</a> · '
        '<a href="/console/">Back to sign-in</a></p>'
    )
    return console_layout("Error: choose a new password" if errors else "Choose a new password", body)


# TOTP MFA -----------------------------------------------------------------------------------------


def mfa_code_page(*, csrf_token: str, error: str = "") -> str:
    """The sign-in's second step: the code of the administrator's authenticator app."""
    body = (
        "<h1>Enter your code</h1>"
        + _errors({"code": error} if error else {})
        + "<p>Two-step sign-in is on for you: enter the 6-digit code your authenticator app shows now.</p>"
        + f'<form method="post" action="/console/sign-in/code" novalidate>{_csrf(csrf_token)}'
        + _input(
            "code",
            "Code",
            error=error or None,
            hint="6 digits, for example 123456.",
            autocomplete="one-time-code",
        )
        + '<button type="submit" id="submit-code">Sign in</button></form>'
        '<p><a href="/console/">Start again</a></p>'
    )
    return console_layout("Error: enter your code" if error else "Enter your code", body)


def _password(errors: dict[str, str]) -> str:
    return _input(
        "password", "Password", kind="password", error=errors.get("password"), autocomplete="current-password"
    )


def _code(errors: dict[str, str], label: str) -> str:
    return _input("code", label, error=errors.get("code"), hint="6 digits.", autocomplete="one-time-code")


def _new_key_steps(csrf_token: str, secret: str, uri: str, errors: dict[str, str], *, replacing: bool) -> str:
    button = "Use the new key" if replacing else "Turn on two-step sign-in"
    return (
        "<h2>Add the key to your authenticator app</h2>"
        "<p>Type this key into your app (time-based, 6 digits, 30 seconds), or open the link on a device "
        "whose app takes <code>otpauth://</code> links.</p>"
        f'<p>Key: <code id="mfa-secret">{escape(secret)}</code></p>'
        f'<p><a id="mfa-uri" href="{escape(uri)}">{escape(uri)}</a></p>'
        f'<form method="post" action="/console/mfa/verify" novalidate>{_csrf(csrf_token)}'
        + _code(errors, "Code the app shows")
        + f'<button type="submit" id="verify-mfa">{button}</button></form>'
    )


def _change_steps(csrf_token: str, errors: dict[str, str]) -> str:
    """Turning it off or replacing the authenticator: the password and a code of the app in use."""
    return (
        "<h2>Turn it off or use another device</h2><p>Enter your password and the code your app shows now. "
        "A new device gets a new key; the old one works until the new one's first code is accepted. If you "
        "lost your device, another administrator of your company can turn it off for you.</p>"
        f'<form method="post" action="/console/mfa/off" novalidate>{_csrf(csrf_token)}'
        + _password(errors)
        + _code(errors, "Code your app shows now")
        + '<button type="submit" id="replace-mfa" formaction="/console/mfa/replace">Set up a new device'
        "</button> "
        '<button type="submit" id="turn-off-mfa">Turn off two-step sign-in</button></form>'
    )


def mfa_page(
    *,
    alias: str,
    csrf_token: str,
    enabled: bool,
    secret: str = "",
    uri: str = "",
    errors: dict[str, str] | None = None,
    notice: str = "",
) -> str:
    """Two-step sign-in: its state; the password to begin; then the secret and the first code."""
    errors = errors or {}
    if secret:
        state = (
            '<p id="mfa-state">Two-step sign-in is <strong>on</strong>: a new key is being set up; the old '
            "one works until the new one's first code is accepted.</p>"
            if enabled
            else '<p id="mfa-state">Two-step sign-in is <strong>being set up</strong>.</p>'
        )
        steps = _new_key_steps(csrf_token, secret, uri, errors, replacing=enabled)
    elif enabled:
        state = '<p id="mfa-state">Two-step sign-in is <strong>on</strong>: each sign-in asks for a code from your app.</p>'
        steps = _change_steps(csrf_token, errors)
    else:
        state = '<p id="mfa-state">Two-step sign-in is <strong>off</strong>: only your password protects your sign-in.</p>'
        steps = (
            "<h2>Turn it on</h2><p>You need an authenticator app (time-based codes). Enter your password to "
            "begin.</p>"
            f'<form method="post" action="/console/mfa/start" novalidate>{_csrf(csrf_token)}'
            + _password(errors)
            + '<button type="submit" id="start-mfa">Set up two-step sign-in</button></form>'
        )
    body = "<h1>Two-step sign-in</h1>" + _notice(notice) + (_errors(errors) if errors else "") + state + steps
    title = "Error: two-step sign-in" if errors else "Two-step sign-in"
    return console_layout(title, body, current="/console/mfa", csrf_token=csrf_token, alias=alias)
