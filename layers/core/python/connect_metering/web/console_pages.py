"""The customer console's pages: server-rendered HTML, no JavaScript, nothing external, like the sign-up pages.

Every value that reaches a page goes through ``escape``. The stylesheet is inline and allowed by its hash;
the usage chart is inline SVG drawn with attributes only (no style attribute, which the policy refuses).
Every form that changes something carries the session's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from connect_metering.domain.console import Administrator
from connect_metering.domain.console_usage import COMPANY_WIDE, MonthUsage
from connect_metering.domain.instants import from_ms
from connect_metering.domain.licence import LicenceInfo, LicenceStatus
from connect_metering.domain.tenancy import UNVERIFIED_CLAIM_LIFETIME, Environment, PricingModel
from connect_metering.web.pages import STYLE, escape, forwarder_quick_create_url, security_headers

CONSOLE_STYLE = (
    STYLE
    + """
main{max-width:60rem}nav ul{list-style:none;padding:0;margin:0 0 1.5rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
nav a[aria-current=page]{font-weight:700}nav form{display:inline}nav button,.inline button{margin:0;padding:.3rem .8rem}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d5d9dd}
td.number,th.number{text-align:right}.warning{border:3px solid #8a5a00;padding:.8rem 1rem;margin:1rem 0;background:#fff8e6}
.notice{border:3px solid #0b6e4f;padding:.8rem 1rem;margin:1rem 0}input[type=password]{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:2px solid #6b7280;border-radius:4px}
dl{display:grid;grid-template-columns:max-content auto;gap:.3rem 1rem}dt{font-weight:600}dd{margin:0}
svg{max-width:100%;height:auto}.inline{display:inline}
"""
)
CONSOLE_STYLE_HASH = base64.b64encode(hashlib.sha256(CONSOLE_STYLE.encode()).digest()).decode()
CONSOLE_CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{CONSOLE_STYLE_HASH}'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
EXPIRY_WARNING = timedelta(days=30)
PAGES = (
    ("/console/licence", "Licence"),
    ("/console/environments", "Environments"),
    ("/console/usage", "Usage"),
    ("/console/users", "Administrators"),
    ("/console/mfa", "Two-step sign-in"),
)
STATUS_MEANINGS = {
    LicenceStatus.ACTIVE: "Your subscription is active: agents' minutes are billed through AWS Marketplace.",
    LicenceStatus.OVER_LICENSED: (
        "More agents are logged in than your contract licenses. Nobody is locked out: the agents above the "
        "licence are billed as overage through AWS Marketplace. Raise the licensed agents in AWS Marketplace "
        "to avoid overage."
    ),
    LicenceStatus.PENDING: (
        "AWS Marketplace has not activated the subscription yet (it usually does within minutes). Nothing is "
        "billed until it does."
    ),
    LicenceStatus.EXPIRED: (
        "Your contract has passed its expiration date. Agents can still log in and nothing is deleted; renew "
        "the contract in AWS Marketplace."
    ),
    LicenceStatus.ENDED: (
        "Your subscription has ended: nothing is billed any more. Your company and environments are kept; "
        "subscribe again in AWS Marketplace to resume."
    ),
}


def console_headers() -> dict[str, str]:
    """The sign-up pages' security headers, with the console's stylesheet hash in the policy."""
    return {**security_headers(), "Content-Security-Policy": CONSOLE_CONTENT_SECURITY_POLICY}


def console_layout(title: str, body: str, *, current: str = "", csrf_token: str = "", alias: str = "") -> str:
    navigation = _navigation(current, csrf_token, alias) if csrf_token else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
        f"<style>{CONSOLE_STYLE}</style></head><body><main>{navigation}{body}</main></body></html>"
    )


def _navigation(current: str, csrf_token: str, alias: str) -> str:
    links = "".join(
        f'<li><a href="{href}"{" aria-current=page" if href == current else ""}>{escape(text)}</a></li>'
        for href, text in PAGES
    )
    return (
        f'<nav aria-label="Console"><ul><li>Company <strong id="session-company">{escape(alias)}</strong></li>'
        f'{links}<li><form method="post" action="/console/sign-out">{_csrf(csrf_token)}'
        '<button type="submit" id="sign-out">Sign out</button></form></li></ul></nav>'
    )


def _csrf(csrf_token: str) -> str:
    return f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'


def _errors(errors: Mapping[str, str]) -> str:
    if not errors:
        return ""
    items = "".join(
        f'<li><a href="#{escape(name)}">{escape(message)}</a></li>' for name, message in errors.items()
    )
    return (
        '<div class="summary" role="alert" aria-labelledby="summary-title">'
        f'<h2 id="summary-title">There is a problem</h2><ul>{items}</ul></div>'
    )


def _input(
    name: str,
    label: str,
    *,
    kind: str = "text",
    value: str = "",
    error: str | None = None,
    hint: str = "",
    autocomplete: str = "off",
) -> str:
    described = " ".join(
        part for part in (f"{name}-hint" if hint else "", f"{name}-error" if error else "") if part
    )
    attributes = f'id="{name}" name="{name}" type="{kind}" value="{escape(value)}" autocomplete="{autocomplete}" spellcheck="false"'
    if described:
        attributes += f' aria-describedby="{described}"'
    if error:
        attributes += ' aria-invalid="true"'
    return (
        f'<label for="{name}">{escape(label)}</label>'
        + (f'<p class="hint" id="{name}-hint">{escape(hint)}</p>' if hint else "")
        + (f'<p class="error" id="{name}-error">Error: {escape(error)}</p>' if error else "")
        + f"<input {attributes} required>"
    )


# Sign-in ------------------------------------------------------------------------------------------


def sign_in_page(
    *,
    csrf_token: str,
    alias: str = "",
    email: str = "",
    error: str = "",
    new_password: bool = False,
    notice: str = "",
) -> str:
    """The sign-in form; ``csrf_token`` is the double-submit token its cookie also holds."""
    fields = (
        _input(
            "company_alias",
            "Company alias",
            value=alias,
            hint="The alias your company chose at sign-up.",
            autocomplete="organization",
        )
        + _input("email", "Email", kind="email", value=email, autocomplete="username")
        + _input(
            "password",
            "Temporary password" if new_password else "Password",
            kind="password",
            autocomplete="current-password",
            hint="The temporary password from your invitation." if new_password else "",
        )
    )
    if new_password:
        fields += _input(
            "new_password",
            "New password",
            kind="password",
            autocomplete="new-password",
            hint="At least 12 characters, with upper and lower case letters, digits and symbols.",
        )
    alert = (
        f'<div class="summary" role="alert"><p id="sign-in-error">{escape(error)}</p></div>' if error else ""
    )
    note = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
    body = (
        "<h1>Sign in to your console</h1>"
        f"{note}{alert}"
        f'<form method="post" action="/console/" novalidate>{_csrf(csrf_token)}'
        f'{fields}<button type="submit" id="sign-in">Sign in</button></form>'
        '<p><a href="/console/forgot-password" id="forgot-password">Forgot your password?</a></p>'
    )
    return console_layout("Error: sign in" if error else "Sign in", body)


# Licence ------------------------------------------------------------------------------------------


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "none"


def _licence_warnings(info: LicenceInfo, now: datetime) -> str:
    warnings: list[str] = []
    expires = info.renews_or_expires
    if (
        info.pricing is PricingModel.CONTRACT
        and expires is not None
        and now < expires <= now + EXPIRY_WARNING
    ):
        warnings.append(
            f"Your contract expires on {_day(expires)}. Renew it in AWS Marketplace; nobody is locked out meanwhile."
        )
    if info.status is LicenceStatus.OVER_LICENSED:
        warnings.append(
            f"{info.active_agents} agents are logged in and your contract licenses {info.licensed_agents}: the "
            "agents above the licence are billed as overage. Nobody is locked out."
        )
    return "".join(f'<div class="warning" role="alert"><p>{escape(text)}</p></div>' for text in warnings)


def licence_page(info: LicenceInfo, *, now: datetime, csrf_token: str) -> str:
    identity = (
        [("AWS customer account", info.customer_aws_account_id or ""), ("Licence", info.license_arn or "")]
        if info.customer_aws_account_id
        else [("Customer identifier", _legacy_identifier(info)), ("Product code", info.product_code or "")]
    )
    pricing = {
        PricingModel.CONTRACT: "contract (licensed agents, overage billed)",
        PricingModel.USAGE: "pay-as-you-go (per agent minute)",
    }
    rows = [
        ("Company", f"{info.company_name} ({info.company_alias})"),
        *identity,
        ("Product", info.product_code or ""),
        ("Pricing model", pricing.get(info.pricing, "none yet") if info.pricing else "none yet"),
        ("Licensed agents", "not applicable" if info.licensed_agents is None else str(info.licensed_agents)),
        ("Active agents now", str(info.active_agents)),
        ("Renewal or expiration", _day(info.renews_or_expires)),
        ("Status", info.status.value),
    ]
    listing = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in rows)
    body = (
        "<h1>Licence</h1>"
        f"{_licence_warnings(info, now)}"
        f'<dl id="licence">{listing}</dl>'
        f'<p id="status-meaning"><strong>{escape(info.status.value)}</strong>: {escape(STATUS_MEANINGS[info.status])}</p>'
    )
    return console_layout(
        "Licence", body, current="/console/licence", csrf_token=csrf_token, alias=info.company_alias
    )


def _legacy_identifier(info: LicenceInfo) -> str:
    shown = [s for s in info.subscriptions if s.customer_aws_account_id is None]
    return shown[0].key if shown else ""


# Environments -------------------------------------------------------------------------------------


def _environment_row(
    environment: Environment, *, csrf_token: str, template_url: str, seller_bus_arn: str
) -> str:
    verification = environment.verification
    if environment.is_verified or verification is None:
        state = "verified"
        forwarder = ""
    else:
        expires = verification.claimed_at + UNVERIFIED_CLAIM_LIFETIME
        state = f"awaiting verification (claim held until {_day(expires)})"
        forwarder = f"<code>{escape(verification.code)}</code>"
        if template_url and seller_bus_arn:
            url = forwarder_quick_create_url(
                region=environment.instance_arn.region,
                template_url=template_url,
                seller_bus_arn=seller_bus_arn,
                verification_code=verification.code,
            )
            forwarder += f' <a class="quick-create" href="{escape(url)}" rel="noopener noreferrer">deploy the forwarder</a>'
    remove = (
        '<form class="inline" method="post" action="/console/environments/remove">'
        f'{_csrf(csrf_token)}<input type="hidden" name="name" value="{escape(environment.name)}">'
        f'<button type="submit" aria-label="Remove {escape(environment.name)}">Remove</button></form>'
    )
    return (
        f'<tr class="environment" data-verified="{str(environment.is_verified).lower()}">'
        f"<td>{escape(environment.name)}</td><td><code>{escape(environment.instance_arn.arn)}</code></td>"
        f"<td>{escape(state)}</td><td>{forwarder}</td><td>{remove}</td></tr>"
    )


def environments_page(
    environments: Sequence[Environment],
    *,
    alias: str,
    csrf_token: str,
    template_url: str = "",
    seller_bus_arn: str = "",
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    notice: str = "",
) -> str:
    values, errors = values or {}, errors or {}
    rows = "".join(
        _environment_row(e, csrf_token=csrf_token, template_url=template_url, seller_bus_arn=seller_bus_arn)
        for e in environments
    )
    table = (
        '<table id="environments"><thead><tr><th scope="col">Name</th><th scope="col">Instance ARN</th>'
        '<th scope="col">State</th><th scope="col">Verification code, forwarder</th><th scope="col">Change</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        if environments
        else "<p>No environments yet: add your first Amazon Connect instance below.</p>"
    )
    bus = f"<code>{escape(seller_bus_arn)}</code>" if seller_bus_arn else "the event bus ARN we sent you"
    body = (
        "<h1>Environments</h1>"
        + (f'<p class="notice" role="status">{escape(notice)}</p>' if notice else "")
        + f"{_errors(errors)}{table}"
        + "<p>An environment is billed once its AWS account is verified: deploy the forwarder in that account "
        f"with <code>SellerEventBusArn</code> {bus} and the environment's <code>VerificationCode</code>.</p>"
        + '<h2>Add an environment</h2><form method="post" action="/console/environments" novalidate>'
        + _csrf(csrf_token)
        + _input(
            "name",
            "Name",
            value=values.get("name", ""),
            error=errors.get("name"),
            hint="Up to 64 letters, digits, dots, dashes and underscores, for example prod-eu.",
        )
        + _input(
            "instance_arn",
            "Amazon Connect instance ARN",
            value=values.get("instance_arn", ""),
            error=errors.get("instance_arn"),
            hint="arn:aws:connect:REGION:ACCOUNT:instance/ID",
        )
        + '<button type="submit" id="add-environment">Add environment</button></form>'
    )
    title = "Error: environments" if errors else "Environments"
    return console_layout(title, body, current="/console/environments", csrf_token=csrf_token, alias=alias)


# Usage --------------------------------------------------------------------------------------------

UNITS = {"agent_minutes": "agent-minutes", "overage_agents": "overage agent-hours"}


def _unit(dimension: str) -> str:
    return UNITS.get(dimension, dimension)


def _chart(usage: MonthUsage, dimension: str) -> str:
    days = usage.per_day(dimension)
    if not days:
        return ""
    width, height, bar = 640, 160, 640 // 31
    highest = max(days.values()) or 1
    bars = []
    for day, quantity in days.items():
        index = int(day[-2:]) - 1
        tall = max(1, round(quantity * (height - 20) / highest)) if quantity else 0
        bars.append(
            f'<rect x="{index * bar}" y="{height - tall}" width="{bar - 2}" height="{tall}" fill="#0b6e4f">'
            f"<title>{escape(day)}: {quantity} {escape(_unit(dimension))}</title></rect>"
        )
    label = f"{_unit(dimension)} per day, {usage.month.label}"
    return (
        f'<svg role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"<title>{escape(label)}</title>{''.join(bars)}</svg>"
    )


def _month_section(usage: MonthUsage, heading: str, section_id: str) -> str:
    totals = (
        "".join(
            f"<li>{usage.total(dimension)} {escape(_unit(dimension))}</li>" for dimension in usage.dimensions
        )
        or "<li>nothing billed</li>"
    )
    charts = "".join(_chart(usage, dimension) for dimension in usage.dimensions)
    rows = "".join(
        f"<tr><td>{escape(row.day)}</td><td>{escape(row.environment)}</td><td>{escape(_unit(row.dimension))}</td>"
        f'<td class="number">{row.quantity}</td></tr>'
        for row in usage.rows
    )
    table = (
        f"<table><caption>{escape(usage.month.label)}, per day and environment</caption><thead><tr>"
        '<th scope="col">Day (UTC)</th><th scope="col">Environment</th><th scope="col">Unit</th>'
        f'<th scope="col" class="number">Quantity</th></tr></thead><tbody>{rows}</tbody></table>'
        if rows
        else ""
    )
    unmetered = (
        f'<p class="unmetered">Not metered yet: from {escape(from_ms(usage.unmetered_from_ms).strftime("%Y-%m-%d %H:00"))} '
        "UTC on. Each hour is billed some minutes after it ends.</p>"
        if usage.unmetered_from_ms is not None
        else ""
    )
    return (
        f'<section id="{section_id}" aria-labelledby="{section_id}-title">'
        f'<h2 id="{section_id}-title">{escape(heading)}: {escape(usage.month.label)}</h2>'
        f'<ul class="totals">{totals}</ul>{unmetered}{charts}{table}</section>'
    )


def usage_page(this_month: MonthUsage, last_month: MonthUsage, *, alias: str, csrf_token: str) -> str:
    body = (
        "<h1>Usage</h1>"
        "<p>What AWS Marketplace bills you: agent-minutes (pay-as-you-go) or overage agent-hours (contract), "
        f"per UTC day and environment. {escape(COMPANY_WIDE)} is usage billed to the company as a whole.</p>"
        '<p><a href="/console/usage.csv" id="usage-csv" download>Download as CSV</a></p>'
        + _month_section(this_month, "This month", "this-month")
        + _month_section(last_month, "Last month", "last-month")
    )
    return console_layout("Usage", body, current="/console/usage", csrf_token=csrf_token, alias=alias)


# Administrators -----------------------------------------------------------------------------------


def users_page(
    administrators: Sequence[Administrator],
    *,
    alias: str,
    me: str,
    csrf_token: str,
    email: str = "",
    error: str = "",
    notice: str = "",
) -> str:
    rows = "".join(
        f'<tr class="administrator"><td>{escape(admin.email)}</td>'
        f"<td>{'invited, not signed in yet' if admin.invited else 'active'}</td><td>"
        + (
            "you"
            if admin.email == me
            else '<form class="inline" method="post" action="/console/users/remove">'
            f'{_csrf(csrf_token)}<input type="hidden" name="email" value="{escape(admin.email)}">'
            f'<button type="submit" aria-label="Remove {escape(admin.email)}">Remove</button></form> '
            '<form class="inline" method="post" action="/console/users/mfa-reset">'
            f'{_csrf(csrf_token)}<input type="hidden" name="email" value="{escape(admin.email)}">'
            f'<button type="submit" aria-label="Turn off two-step sign-in of {escape(admin.email)}">'
            "Turn off two-step sign-in</button></form>"
        )
        + "</td></tr>"
        for admin in administrators
    )
    body = (
        "<h1>Administrators</h1>"
        + (f'<p class="notice" role="status">{escape(notice)}</p>' if notice else "")
        + _errors({"email": error} if error else {})
        + '<table id="administrators"><thead><tr><th scope="col">Email</th><th scope="col">State</th>'
        f'<th scope="col">Change</th></tr></thead><tbody>{rows}</tbody></table>'
        + '<h2>Invite an administrator</h2><form method="post" action="/console/users" novalidate>'
        + _csrf(csrf_token)
        + _input(
            "email",
            "Email",
            kind="email",
            value=email,
            error=error or None,
            hint="They receive a temporary password by email.",
        )
        + '<button type="submit" id="invite">Invite</button></form>'
    )
    title = "Error: administrators" if error else "Administrators"
    return console_layout(title, body, current="/console/users", csrf_token=csrf_token, alias=alias)


def console_problem_page(status: int, title: str, text: str) -> tuple[int, str]:
    body = (
        f'<h1>{escape(title)}</h1><p>{escape(text)}</p><p><a href="/console/">Go to the sign-in page</a></p>'
    )
    return status, console_layout(title, body)
