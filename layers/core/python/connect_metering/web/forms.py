"""Reading browser requests: the limits a url-encoded form body must keep, and cookies.

The resolver parses the form itself (Powertools' ``Form`` parameters), with ``parse_qs`` and no limits, and
decodes bytes that are not UTF-8 into replacement characters. ``check_form_body`` runs before it and
refuses what it would accept silently."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

# A sign-up form is well under 2 KB; anything near this limit is not a browser filling our form.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 20
BROWSER_COOKIE = "cm_signup"


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


def cookie_value(cookies: Iterable[str] | None, name: str) -> str | None:
    """The value of cookie ``name`` from HTTP API v2 ``cookies`` (``name=value`` strings)."""
    for cookie in cookies or ():
        for part in cookie.split(";"):
            key, separator, value = part.strip().partition("=")
            if separator and key == name:
                return value
    return None
