"""Logins of owners and drivers: an email address or an E.164 phone number."""

from __future__ import annotations

import re

_PHONE = re.compile(r"\+[1-9]\d{6,14}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
MIN_PASSWORD = 8


class LoginError(ValueError):
    """A login, phone or password that cannot be taken; the message says why."""


def phone(text: str) -> str:
    """E.164: "+254 712-345 678" is "+254712345678". Raises LoginError for anything else
    (a number without its country code is ambiguous)."""
    compact = re.sub(r"[\s\-().]", "", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _PHONE.fullmatch(compact):
        raise LoginError(f"a phone number in international form is needed, such as "
                         f"+254712345678; got {text!r}")
    return compact


def email(text: str) -> str:
    """Trimmed and lower-cased; raises LoginError when it does not look like an address."""
    found = text.strip().lower()
    if len(found) > 254 or not _EMAIL.fullmatch(found):
        raise LoginError(f"not an email address: {text!r}")
    return found


def split(login: str) -> tuple[str, str]:
    """("email", address) or ("phone", number) for what a person typed to sign in."""
    return ("email", email(login)) if "@" in login else ("phone", phone(login))


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise LoginError(f"a password needs at least {MIN_PASSWORD} characters")
    return password
