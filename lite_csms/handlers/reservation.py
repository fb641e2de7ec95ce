"""Reservation: connectors held for a token, answered, consumed, cancelled or expired."""

from __future__ import annotations

from datetime import datetime

from lite_csms.db.models import IdToken, Reservation, Transaction


def create(station_id: str, evse_id: int, token: str, expires_at: datetime) -> tuple[int, str]:
    """A new reservation; returns its id and the token type a 2.x station should be sent."""
    reservation = Reservation.create(station=station_id, evse_id=evse_id, id_token=token,
                                     expires_at=expires_at)
    known = IdToken.get_or_none(IdToken.token == token)
    return reservation.id, known.token_type if known is not None else "Central"


def answered(reservation_id: int, status: str | None) -> None:
    """The station's answer to ReserveNow, or None when none came."""
    new = {"Accepted": "accepted", None: "failed"}.get(status, "rejected")
    Reservation.update(status=new).where(Reservation.id == reservation_id).execute()


def cancelled(reservation_id: int) -> None:
    Reservation.update(status="cancelled").where(Reservation.id == reservation_id).execute()


def consume(station_id: str, reservation_id: int, transaction: Transaction) -> bool:
    """A transaction started on the reservation; False when there was nothing to consume."""
    return Reservation.update(status="used", transaction=transaction).where(
        Reservation.id == reservation_id, Reservation.station == station_id,
        Reservation.status == "accepted",
    ).execute() > 0


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
