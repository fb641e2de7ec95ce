"""Money as integer minor units of an ISO 4217 currency: no float ever holds an amount.

A currency's minor unit is its number of decimals (ISO 4217 "minor unit"): KES, EUR, USD 2;
JPY, UGX, RWF 0; KWD, BHD 3. Amounts are parsed from and written as decimal text.
"""

from __future__ import annotations

import re

# ISO 4217 currencies whose minor unit is not 2 decimals.
_DECIMALS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
_CODE = re.compile(r"[A-Z]{3}")
# ASCII only: \d alone also matches fullwidth and Arabic-Indic digits, which int() reads.
_AMOUNT = re.compile(r"(\d{1,15})(?:\.(\d+))?", re.ASCII)


class MoneyError(ValueError):
    """An amount or currency that cannot be taken; the message names what is wrong."""


def check_currency(code: str) -> str:
    """An ISO 4217 alphabetic code, upper case ("kes" is KES). Raises MoneyError."""
    upper = code.strip().upper()
    if not _CODE.fullmatch(upper):
        raise MoneyError(f"currency must be an ISO 4217 code such as KES or EUR, got {code!r}")
    return upper


def decimals(currency: str) -> int:
    return _DECIMALS.get(currency, 2)


def parse_amount(text: str | int, currency: str) -> int:
    """Decimal text in major units ("25.5") to minor units (2550 for KES). An int is taken as
    minor units already. Raises MoneyError for a negative amount, or more decimals than the
    currency has (no rounding: the owner's price is taken exactly)."""
    if isinstance(text, bool):
        raise MoneyError(f"not an amount: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise MoneyError("an amount must not be negative")
        return text
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise MoneyError(f"not an amount: {text!r} (write 25 or 25.50)")
    whole, fraction = match.group(1), match.group(2) or ""
    places = decimals(currency)
    if len(fraction) > places:
        raise MoneyError(f"{currency} has {places} decimals: {text!r} has more")
    return int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")


def amount_text(minor: int, currency: str) -> str:
    """Minor units as decimal text in major units: 2550 KES is "25.50"."""
    places = decimals(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def format_amount(minor: int, currency: str) -> str:
    """"KES 25.50": the amount as a person reads it."""
    return f"{currency} {amount_text(minor, currency)}"


def wire_amount(minor: int, currency: str) -> float:
    """The amount as the JSON number OCPP's totalCost carries (major units, decimals).

    The one place an amount becomes a float: only on its way out in a message. It is the
    float nearest the decimal text, so it is written back as exactly that text (2550 KES is
    25.5 on the wire)."""
    return float(amount_text(minor, currency))
