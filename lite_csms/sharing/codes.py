"""One-time sign-in codes for drivers' phones (store jobs).

A code is 6 digits, valid CODE_TTL (10 minutes) and for MAX_ATTEMPTS (5) wrong tries, used
once. Only a salted SHA-256 of it is stored: a 6-digit code would not survive an offline
search whatever the hash, so the expiry and the attempt limit are what protect it, and at
most MAX_CODES_PER_WINDOW codes are issued per phone per CODE_WINDOW, so asking again does
not buy more guesses.

Delivery: the operator configures how a code reaches the phone (an SMS gateway); until one
is set, `deliver` writes the code in the log at WARNING for the operator to pass on, and
the CLI (`lite-csms driver code PHONE`) and the admin API (POST /drivers/codes) issue one and
show it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta

from lite_csms.db.models import OneTimeCode
from lite_csms.sharing import logins

log = logging.getLogger("lite_csms.sharing")

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
CODE_WINDOW = timedelta(minutes=15)
MAX_CODES_PER_WINDOW = 3


class TooManyCodes(Exception):
    """More codes asked for this phone than the window allows; `retry_after` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many codes for this number; try again in {retry_after} s")
        self.retry_after = retry_after


def _digest(salt: str, code: str) -> str:
    return hmac.new(bytes.fromhex(salt), code.encode(), hashlib.sha256).hexdigest()


def issue(phone: str, now: datetime) -> str:
    """A new code for the phone (E.164 after logins.phone); returns the code, which only the
    caller ever sees. Raises LoginError for a malformed number, TooManyCodes over the
    limit. Earlier unused codes of the phone stop working."""
    number = logins.phone(phone)
    recent = list(OneTimeCode.select(OneTimeCode.created_at)
                  .where(OneTimeCode.phone == number,
                         OneTimeCode.created_at > now - CODE_WINDOW)
                  .order_by(OneTimeCode.created_at))
    if len(recent) >= MAX_CODES_PER_WINDOW:
        wait = recent[0].created_at + CODE_WINDOW - now
        raise TooManyCodes(max(1, math.ceil(wait.total_seconds())))
    OneTimeCode.update(used_at=now).where(OneTimeCode.phone == number,
                                          OneTimeCode.used_at.is_null()).execute()
    # Rows past any use (expired, outside the rate window) are of no further use: go.
    OneTimeCode.delete().where(OneTimeCode.phone == number,
                               OneTimeCode.expires_at < now - CODE_WINDOW).execute()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_hex(16)
    OneTimeCode.create(phone=number, code_hash=f"{salt}${_digest(salt, code)}",
                       created_at=now, expires_at=now + CODE_TTL)
    return code


def redeem(phone: str, code: str, now: datetime) -> bool:
    """Whether `code` is the phone's live code; a right code is used up, a wrong one costs
    an attempt. False for a malformed number, an expired or used code, or too many tries."""
    try:
        number = logins.phone(phone)
    except logins.LoginError:
        return False
    live = (OneTimeCode.select()
            .where(OneTimeCode.phone == number, OneTimeCode.used_at.is_null(),
                   OneTimeCode.expires_at > now, OneTimeCode.attempts < MAX_ATTEMPTS)
            .order_by(OneTimeCode.created_at.desc()).first())
    if live is None:
        return False
    salt, _, digest = live.code_hash.partition("$")
    if hmac.compare_digest(_digest(salt, code.strip()), digest):
        live.used_at = now
        live.save()
        return True
    live.attempts += 1
    live.save()
    return False


def deliver(phone: str, code: str) -> None:
    """Send the code to the phone. No SMS gateway is configured yet: the operator reads it
    in the log (one WARNING line) and passes it on."""
    log.warning("sign-in code for %s: %s (no SMS gateway configured: pass it on; valid %d "
                "min)", phone, code, CODE_TTL.seconds // 60)
