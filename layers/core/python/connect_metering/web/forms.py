"""Reading browser requests: the limits a url-encoded form body must keep, and cookies.

The resolver parses the form itself (Powertools' ``Form`` parameters), with ``parse_qs`` and no limits, and
decodes bytes that are not UTF-8 into replacement characters. ``check_form_body`` runs before it and
refuses what it would accept silently."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

# A sign-up form is well under 2 KB; anything near this limit is not a browser filling our form.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20
BROWSER_COOKIE = "cm_signup"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class FormTooLarge(ValueError):
    pass


class MalformedForm(ValueError):
    pass


def check_form_body(body: bytes) -> None:
    """Refuse an ``application/x-www-form-urlencoded`` body over ``MAX_FORM_BYTES`` (``FormTooLarge``), with
    more than ``MAX_FORM_FIELDS`` fields, or whose bytes or %-escapes are not UTF-8 (``MalformedForm``)."""
    if len(body) > MAX_FORM_BYTES:
        raise FormTooLarge(f"form body is {len(body)} bytes; at most {MAX_FORM_BYTES}")
    try:
        # Parsed strictly only to be refused early; the fields are read by the resolver.
        parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
            encoding="utf-8",
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedForm(type(error).__name__) from None


def check_event_form_body(body: str | None, is_base64_encoded: bool | None) -> None:
    """``check_form_body`` on an HTTP API event's body (base64 when ``is_base64_encoded``); a body that is
    not base64 when it says it is raises ``MalformedForm`` too."""
    try:
        raw = base64.b64decode(body or "", validate=True) if is_base64_encoded else (body or "").encode()
    except binascii.Error:
        raise MalformedForm("not base64") from None
    check_form_body(raw)


def as_form(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body declared a url-encoded form, whatever its content-type said: the form
    routes read every body as a form, as they always did, so a JSON body is no second way in."""
    headers = {
        name: value for name, value in (event.get("headers") or {}).items() if name.lower() != "content-type"
    }
    return {**event, "headers": {**headers, "content-type": FORM_CONTENT_TYPE}}


def cookie_value(cookies: Iterable[str] | None, name: str) -> str | None:
    """The value of cookie ``name`` from HTTP API v2 ``cookies`` (``name=value`` strings)."""
    for cookie in cookies or ():
        for part in cookie.split(";"):
            key, separator, value = part.strip().partition("=")
            if separator and key == name:
                return value
    return None
