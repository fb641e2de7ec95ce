"""Reservation: connectors held for a token, answered, consumed, cancelled or expired."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from lite_csms.db.models import Reservation, Transaction
from lite_csms.handlers.authorization import find_token, group_of, same_holder

log = logging.getLogger("lite_csms.reservation")


@dataclass(frozen=True, slots=True)
class Held:
    """A new reservation and the token to send with it, spelled as registered."""

    reservation_id: int
    token: str
    # The 2.x idToken type: the registered token's, else Central (the CSMS vouches for it).
    token_type: str
    # The token's group (1.6 parentIdTag, 2.x groupIdToken) and the group's type.
    group: tuple[str, str] | None


def create(station_id: str, evse_id: int, token: str, expires_at: datetime) -> Held:
    """A new reservation for `token` (any letter case of a registered token, or unknown)."""
    known = find_token(token)
    spelled = token if known is None else known.token
    reservation = Reservation.create(station=station_id, evse_id=evse_id, id_token=spelled,
                                     expires_at=expires_at)
    if known is None:
        return Held(reservation.id, spelled, "Central", None)
    return Held(reservation.id, spelled, known.token_type, group_of(known))


def answered(reservation_id: int, status: str | None) -> None:
    """The station's answer to ReserveNow, or None when none came."""
    new = {"Accepted": "accepted", None: "failed"}.get(status, "rejected")
    Reservation.update(status=new).where(Reservation.id == reservation_id).execute()


def cancelled(reservation_id: int) -> None:
    Reservation.update(status="cancelled").where(Reservation.id == reservation_id).execute()


def consume(station_id: str, reservation_id: int, transaction: Transaction,
            token: str | None = None) -> bool:
    """A transaction started on the reservation; False when there was nothing to consume.

    The start's token (`token`, else the transaction's) must be the reserved one in any letter
    case or one of its group; a start that carries no token is taken on the station's word.
    """
    held = Reservation.get_or_none(Reservation.id == reservation_id,
                                   Reservation.station == station_id,
                                   Reservation.status == "accepted")
    if held is None:
        return False
    presented = token if token is not None else transaction.id_token
    if presented is not None and not same_holder(held.id_token, presented):
        log.warning("%s: transaction %s names reservation %d, held for another token; "
                    "the reservation stays", station_id, transaction.id, reservation_id)
        return False
    return Reservation.update(status="used", transaction=transaction).where(
        Reservation.id == reservation_id, Reservation.status == "accepted").execute() > 0


def station_update(station_id: str, reservation_id: int, status: str) -> None:
    """2.x ReservationStatusUpdate: the station says a reservation expired or was removed."""
    new = "expired" if status == "Expired" else "cancelled"
    Reservation.update(status=new).where(
        Reservation.id == reservation_id, Reservation.station == station_id,
        Reservation.status.in_(("accepted", "requested"))).execute()


def expire_due(at: datetime) -> int:
    return Reservation.update(status="expired").where(
        Reservation.status.in_(("accepted", "requested")), Reservation.expires_at <= at,
    ).execute()
