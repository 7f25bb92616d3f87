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
