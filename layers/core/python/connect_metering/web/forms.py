"""Reading browser requests: url-encoded forms with limits, and cookies."""

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


def parse_form(body: str | bytes | None) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` -> first value of each field. Refuses oversized bodies, too
    many fields and undecodable bytes."""
    if body is None:
        return {}
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_FORM_BYTES:
        raise FormTooLarge(f"form body is {len(raw)} bytes; at most {MAX_FORM_BYTES}")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict", encoding="utf-8"
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedForm(type(error).__name__) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def cookie_value(cookies: Iterable[str] | None, name: str) -> str | None:
    """The value of cookie ``name`` from HTTP API v2 ``cookies`` (``name=value`` strings)."""
    for cookie in cookies or ():
        for part in cookie.split(";"):
            key, separator, value = part.strip().partition("=")
            if separator and key == name:
                return value
    return None
