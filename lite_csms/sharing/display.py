"""OCPP 2.0.1 / 2.1 functional block I (tariff and cost): what reaches the charger's display.

- I01 (show tariff to the driver): the station's tariff as `personalMessage` in the
  idTokenInfo of an Accepted AuthorizeResponse, and of the TransactionEventResponse to a
  Started carrying an id token (the session's own price: the one it was taken at).
- I02 (running cost): `totalCost` in the TransactionEventResponse to an Updated, and
  CostUpdated when new meter values change it (operations/cost_updates.py, rate-limited).
- I03 (final cost): `totalCost` in the TransactionEventResponse to an Ended.

totalCost is a decimal number in major units ("in the currency configured with the
Configuration Variable Currency"); money.wire_amount makes it from minor units. A session
without a price gets no totalCost (2.1: "absence does not imply that the transaction was
free"); one priced at zero gets 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.db.models import Transaction
from lite_csms.sharing import pricing
from lite_csms.sharing.money import wire_amount

# MessageContentType.content: 512 characters in 2.0.1 (1024 in 2.1).
MESSAGE_MAX = 512


def tariff_message(price: pricing.Price | None) -> dict[str, Any] | None:
    """A MessageContentType for the price ("Price: KES 25.00/kWh + KES 50.00 per session");
    None without a price."""
    if price is None:
        return None
    return {"format": "UTF8", "content": f"Price: {pricing.describe(price)}"[:MESSAGE_MAX]}


def with_tariff(id_token_info: dict[str, Any], price: pricing.Price | None
                ) -> dict[str, Any]:
    """idTokenInfo with the tariff as personalMessage when the token is Accepted."""
    message = tariff_message(price)
    if message is None or id_token_info.get("status") != "Accepted":
        return id_token_info
    return {**id_token_info, "personalMessage": message}


def total_cost(tx: Transaction, event_type: str, at: datetime) -> int | None:
    """The cost a TransactionEventResponse reports (minor units): the final cost for Ended,
    the cost as of the event for Updated, None for Started or a session without a price."""
    if event_type == "Ended" or (event_type == "Updated" and tx.stopped_at is not None):
        return tx.cost if tx.price_currency is not None else None
    if event_type == "Updated":
        return pricing.running_cost(tx, at)
    return None


def wire_total(tx: Transaction, minor: int) -> float:
    """totalCost on the wire for the session's currency."""
    return wire_amount(minor, tx.price_currency or "EUR")
