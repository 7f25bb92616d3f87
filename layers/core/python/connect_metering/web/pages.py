"""The registration pages: server-rendered HTML that works without JavaScript and loads nothing external.

Every value that reaches a page goes through ``escape`` (text and attributes alike). The one stylesheet
is inline and allowed by its hash in the Content-Security-Policy, which otherwise allows nothing: no
script, no frame, no external request, forms only to this origin.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape as _escape
from urllib.parse import quote, urlencode

from connect_metering.domain.registration import MAX_LENGTHS, ResolvedCustomer, SignupForm
from connect_metering.domain.tenancy import Environment

STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f8}
main{max-width:40rem;margin:2rem auto;padding:2rem;background:#fff;border:1px solid #d5d9dd;border-radius:6px}
h1{font-size:1.6rem;margin-top:0}label{display:block;font-weight:600;margin-top:1.2rem}
.hint{color:#4b5563;margin:.2rem 0;font-size:.95rem}.error{color:#b3261e;font-weight:600;margin:.2rem 0}
input[type=text],input[type=email]{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:2px solid #6b7280;border-radius:4px}
input[aria-invalid=true]{border-color:#b3261e}input:focus,button:focus,a:focus{outline:3px solid #ffbf47;outline-offset:1px}
button{margin-top:1.6rem;padding:.6rem 1.4rem;font:inherit;font-weight:600;color:#fff;background:#0b6e4f;border:0;border-radius:4px;cursor:pointer}
.summary{border:3px solid #b3261e;padding:.8rem 1rem;margin-bottom:1rem}.summary h2{font-size:1.1rem;margin:0}
code{background:#eef0f2;padding:.1rem .3rem;border-radius:3px;word-break:break-all}.alias{font-size:1.3rem}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
MARKETPLACE_SUBSCRIPTIONS_URL = "https://console.aws.amazon.com/marketplace/home#/subscriptions"
CLOUDFORMATION_CONSOLE_URL = "https://console.aws.amazon.com/cloudformation/home"
# The customer console, on the same API (and host) as these pages (infra/constructs/console.py).
CONSOLE_HOME = "/console/"
# One forwarder per account and region (its bus has a fixed name), so one stack name; the README's
# `aws cloudformation deploy` uses the same.
FORWARDER_STACK_NAME = "connect-metering-forwarder"


def escape(value: object) -> str:
    return _escape(str(value), quote=True)


def security_headers() -> dict[str, str]:
    """Headers of every page: no framing, no caching (pages carry ids and form values), no referrer (the
    sign-up URL carries the registration id), no MIME sniffing, HTTPS only. HSTS is sent whatever the
    request says about its scheme: ``x-forwarded-proto`` is a header anyone can set, and browsers ignore
    HSTS received over plain HTTP, so sending it always costs nothing."""
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    }


def layout(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )


# Sign-up ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    label: str
    hint: str
    kind: str = "text"
    autocomplete: str = "off"
    required: bool = True


FIELDS = (
    FieldSpec(
        "company_alias",
        "Company alias",
        "3 to 32 lower-case letters and digits, starting with a letter. It identifies your company in "
        "invoices and support requests and cannot be changed later.",
    ),
    FieldSpec(
        "company_name",
        "Company name",
        "Your organisation's name as it should appear to us.",
        "text",
        "organization",
    ),
    FieldSpec("contact_email", "Contact email", "Where we send operational notices.", "email", "email"),
    FieldSpec(
        "instance_arn",
        "Amazon Connect instance ARN (optional)",
        "Your first environment, for example arn:aws:connect:us-east-1:111122223333:instance/"
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee. You can add more environments later.",
        required=False,
    ),
)
FORM_ERROR = "form"


def _field(spec: FieldSpec, value: str, error: str | None) -> str:
    described = [f"{spec.name}-hint"] + ([f"{spec.name}-error"] if error else [])
    attributes = {
        "id": spec.name,
        "name": spec.name,
        "type": spec.kind,
        "value": value,
        "maxlength": str(MAX_LENGTHS[spec.name]),
        "autocomplete": spec.autocomplete,
        "spellcheck": "false",
        "aria-describedby": " ".join(described),
    }
    if error:
        attributes["aria-invalid"] = "true"
    rendered = " ".join(f'{name}="{escape(text)}"' for name, text in attributes.items())
    flags = " required" if spec.required else ""
    message = f'<p class="error" id="{spec.name}-error">Error: {escape(error)}</p>' if error else ""
    return (
        f'<label for="{spec.name}">{escape(spec.label)}</label>'
        f'<p class="hint" id="{spec.name}-hint">{escape(spec.hint)}</p>{message}'
        f"<input {rendered}{flags}>"
    )


def _error_summary(errors: Mapping[str, str]) -> str:
    if not errors:
        return ""
    labels = {spec.name: spec.label for spec in FIELDS}
    items = "".join(
        f"<li>{escape(message)}</li>"
        if name == FORM_ERROR
        else f'<li><a href="#{escape(name)}">{escape(labels.get(name, name))}: {escape(message)}</a></li>'
        for name, message in errors.items()
    )
    return (
        '<div class="summary" role="alert" aria-labelledby="summary-title">'
        f'<h2 id="summary-title">There is a problem</h2><ul>{items}</ul></div>'
    )


def _registered_for(buyer: ResolvedCustomer) -> str:
    """Whose subscription this form completes. A cross-site page can auto-submit someone else's token to
    a buyer's browser; saying the account and the product lets the buyer see the form is not theirs."""
    who = (
        f'AWS account <strong id="buyer-account">{escape(buyer.customer_aws_account_id)}</strong>'
        if buyer.customer_aws_account_id
        else f'AWS Marketplace customer <strong id="buyer-account">{escape(buyer.customer_identifier or "")}</strong>'
    )
    return (
        f'<p id="registration-for">This sign-up is for {who} and the product '
        f'<code id="product-code">{escape(buyer.product_code)}</code>. If that is not the AWS account you '
        "subscribed with, stop here: close this page and start again from AWS Marketplace.</p>"
    )


def signup_page(
    *,
    registration_id: str,
    csrf_token: str,
    buyer: ResolvedCustomer,
    form: SignupForm | None = None,
    contract: bool = False,
    free_trial: bool = False,
) -> str:
    values = form.values if form else {}
    errors = form.errors if form else {}
    plan = "contract" if contract else "pay-as-you-go"
    trial = " Your free trial starts when AWS Marketplace confirms the subscription." if free_trial else ""
    fields = "".join(_field(spec, values.get(spec.name, ""), errors.get(spec.name)) for spec in FIELDS)
    body = (
        "<h1>Create your company account</h1>"
        f"<p>Your AWS Marketplace subscription ({plan}) is confirmed. Tell us who you are to finish.{trial}</p>"
        f"{_registered_for(buyer)}"
        f"{_error_summary(errors)}"
        '<form method="post" action="/signup" novalidate>'
        f'<input type="hidden" name="registration" value="{escape(registration_id)}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'
        f'{fields}<button type="submit">Create company</button></form>'
    )
    title = "Error: create your company account" if errors else "Create your company account"
    return layout(title, body)


# Success ------------------------------------------------------------------------------------------

_HEADINGS = {
    "created": "Your company is registered",
    "returning": "You are already registered",
    "attached": "Your new subscription was added to your company",
}


def success_page(
    *,
    alias: str,
    company_name: str,
    landing: str,
    agent_events_bus_arn: str = "",
    forwarder_template_url: str = "",
    environments: Sequence[Environment] = (),
    console_url: str = "",
) -> str:
    """``console_url``: the customer console's address when the seller runs one (its first
    administrator, the contact email, is invited by mail at sign-up)."""
    bus = (
        f"<code>{escape(agent_events_bus_arn)}</code>"
        if agent_events_bus_arn
        else "the event bus ARN we send you"
    )
    template = (
        f' (<a href="{escape(forwarder_template_url)}">download the template</a>)'
        if forwarder_template_url
        else ""
    )
    name = f" ({escape(company_name)})" if company_name else ""
    body = (
        f"<h1>{escape(_HEADINGS.get(landing, _HEADINGS['created']))}</h1>"
        f'<p>Company alias: <strong class="alias" id="company-alias">{escape(alias)}</strong>{name}</p>'
        "<p>Keep this alias: it identifies your company in invoices and support requests.</p>"
        "<h2>Next steps</h2><ol>"
        "<li><strong>Deploy the forwarder template</strong>"
        f"{template} in each AWS account that holds an Amazon Connect instance. Give it your instance's "
        "agent event stream (parameter <code>AgentEventStreamArn</code>) and, as "
        f"<code>SellerEventBusArn</code>, {bus}; as <code>VerificationCode</code>, "
        f"{_where_codes_are(environments, console_url)}: its first agent event proves the account is "
        "yours, and its minutes are billed from then on (including those before).</li>"
        f"{_environment_list(environments, template_url=forwarder_template_url, seller_bus_arn=agent_events_bus_arn)}"
        f"{_console_steps(console_url)}"
        "<li>Agents' logged-in minutes are billed through AWS Marketplace from the hour your "
        "subscription is active; nothing else is needed.</li></ol>"
    )
    return layout(_HEADINGS.get(landing, _HEADINGS["created"]), body)


def _where_codes_are(environments: Sequence[Environment], console_url: str) -> str:
    if any(
        environment.verification is not None and not environment.is_verified for environment in environments
    ):
        return "the environment's code below"
    if console_url:
        return "the code the console shows for each environment you add"
    return "the code we send you for each environment"


def _console_steps(console_url: str) -> str:
    if not console_url:
        return (
            "<li><strong>Add your environments</strong>: reply to our welcome email with the ARN of each "
            "Amazon Connect instance to bill (any account, any region). An AWS account belongs to one "
            "company only.</li>"
        )
    link = f'<a href="{escape(console_url)}" id="console-link">your console</a>'
    return (
        f"<li><strong>Sign in to {link}</strong> with your company alias and the contact email: an "
        "invitation with a temporary password has been mailed to that address (the first sign-in asks "
        "for a new password).</li>"
        "<li><strong>Add your environments</strong> in the console: the ARN of each Amazon Connect "
        "instance to bill (any account, any region). An AWS account belongs to one company only. The "
        "console also shows your usage, records and administrators.</li>"
    )


def forwarder_quick_create_url(
    *, region: str, template_url: str, seller_bus_arn: str, verification_code: str
) -> str:
    """The CloudFormation console's quick-create page for the forwarder, in the instance's region (a pipe
    reads a stream of its own region), its stack name and the two parameters we know filled in; the buyer
    adds only the stream ARN. Every value is percent-encoded whole, so none can add a parameter or end
    the fragment; the caller still HTML-escapes the URL for the attribute. The code rides in the fragment,
    which the browser never sends to the console's server."""
    fragment = urlencode(
        {
            "templateURL": template_url,
            "stackName": FORWARDER_STACK_NAME,
            "param_SellerEventBusArn": seller_bus_arn,
            "param_VerificationCode": verification_code,
        },
        quote_via=quote,
        safe="",
    )
    return f"{CLOUDFORMATION_CONSOLE_URL}?region={quote(region, safe='')}#/stacks/quickcreate?{fragment}"


def _awaiting_verification(environment: Environment, template_url: str, seller_bus_arn: str) -> str:
    if environment.verification is None or environment.is_verified:
        return ""
    code = environment.verification.code
    text = f", <code>VerificationCode</code> <code>{escape(code)}</code>"
    if not (template_url and seller_bus_arn):
        return text
    region = environment.instance_arn.region
    url = forwarder_quick_create_url(
        region=region, template_url=template_url, seller_bus_arn=seller_bus_arn, verification_code=code
    )
    return (
        f'{text}: <a class="quick-create" href="{escape(url)}" rel="noopener noreferrer">deploy the '
        f"forwarder in {escape(region)}</a> (CloudFormation, the code and our bus filled in; add your "
        "stream's <code>AgentEventStreamArn</code>)"
    )


def _environment_list(
    environments: Sequence[Environment], *, template_url: str = "", seller_bus_arn: str = ""
) -> str:
    if not environments:
        return ""
    rows = "".join(
        f'<li class="environment" data-verified="{str(environment.is_verified).lower()}">'
        f"<code>{escape(environment.instance_arn.arn)}</code>: "
        f"{'verified' if environment.is_verified else 'awaiting verification'}"
        + _awaiting_verification(environment, template_url, seller_bus_arn)
        + "</li>"
        for environment in environments
    )
    return f'<li>Your environments:<ul id="environments">{rows}</ul></li>'


# Problems -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemPage:
    status: int
    title: str
    happened: str
    todo: str


_AGAIN = (
    f'Go back to <a href="{MARKETPLACE_SUBSCRIPTIONS_URL}">your AWS Marketplace subscriptions</a>, open this '
    "product and choose <strong>Set up your account</strong> again: you get a new link."
)
PROBLEM_PAGES: dict[str, ProblemPage] = {
    "invalid_token": ProblemPage(
        400,
        "This registration link is not valid",
        "AWS Marketplace did not recognise the registration token this page received.",
        _AGAIN,
    ),
    "expired_token": ProblemPage(
        410,
        "This registration link has expired",
        "The registration token from AWS Marketplace has expired.",
        _AGAIN,
    ),
    "token_reused": ProblemPage(
        409,
        "This registration link was already used",
        "Each registration link from AWS Marketplace works once, and this one has been used. If you have "
        "just registered, your company is set up.",
        _AGAIN,
    ),
    "marketplace_unavailable": ProblemPage(
        503,
        "AWS Marketplace is not answering right now",
        "We could not confirm your subscription with AWS Marketplace. Nothing was lost and nothing was "
        "registered.",
        "Try again in a minute: reload this page and confirm resending the form, or "
        + _AGAIN[0].lower()
        + _AGAIN[1:],
    ),
    "account_owned": ProblemPage(
        409,
        "Your AWS account belongs to another company",
        "The AWS account that bought this subscription already belongs to another company registered with "
        "us. Each AWS account belongs to exactly one company, so the subscription was not registered.",
        "Contact us so we can sort it out with you.",
    ),
    "pricing_conflict": ProblemPage(
        409,
        "This subscription cannot join your company",
        "Your company is billed under one pricing model (pay-as-you-go or contract) and this subscription "
        "uses the other one. A company's subscriptions share one pricing model.",
        "Contact us: we can register it separately.",
    ),
    "subscription_taken": ProblemPage(
        409,
        "This subscription is already registered",
        "Another sign-up registered this AWS Marketplace subscription a moment ago.",
        "If that was you, your company is set up. Otherwise contact us.",
    ),
    "registration_unknown": ProblemPage(
        404,
        "We do not know this sign-up link",
        "This sign-up link is not one we issued, or it has been removed.",
        _AGAIN,
    ),
    "registration_expired": ProblemPage(
        410,
        "This sign-up link has expired",
        "Sign-up links are valid for 30 minutes and this one has expired. If you completed sign-up, your "
        "company is registered.",
        _AGAIN,
    ),
    "wrong_browser": ProblemPage(
        403,
        "Open this page in the browser you came from",
        "This sign-up link only works in the browser that came from AWS Marketplace, with cookies enabled.",
        "Use that browser, or " + _AGAIN[0].lower() + _AGAIN[1:],
    ),
    "attempts_exhausted": ProblemPage(
        429,
        "Too many sign-up attempts",
        "This sign-up link was refused too many times (an alias or an instance that could not be used), "
        "so it no longer works.",
        _AGAIN,
    ),
    "csrf": ProblemPage(
        403,
        "The form could not be verified",
        "The form did not carry its security token, so it was not accepted.",
        "Go back, reload the sign-up page and submit it again.",
    ),
    "too_large": ProblemPage(
        413,
        "The form is too large",
        "The form sent more data than a sign-up needs.",
        "Go back and shorten what you typed.",
    ),
    "bad_request": ProblemPage(
        400, "The request could not be read", "The form data was malformed.", "Go back and try again."
    ),
    "not_found": ProblemPage(404, "Page not found", "There is no page at this address.", _AGAIN),
    "internal": ProblemPage(
        500,
        "Something went wrong on our side",
        "We could not complete this step. Nothing you did caused it.",
        "Try again in a few minutes. If it keeps happening, contact us.",
    ),
}


def problem_page(name: str) -> tuple[int, str]:
    page = PROBLEM_PAGES[name]
    # `happened` and `todo` are fixed texts of this module (they hold markup); nothing from a request.
    body = (
        f"<h1>{escape(page.title)}</h1><p>{page.happened}</p><p><strong>What to do:</strong> {page.todo}</p>"
    )
    return page.status, layout(page.title, body)


def link_list(links: Sequence[tuple[str, str]]) -> str:
    return (
        "<ul>"
        + "".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in links)
        + "</ul>"
    )
