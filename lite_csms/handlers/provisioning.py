"""Provisioning: registration, boot, presence."""

from __future__ import annotations

from datetime import datetime

from lite_csms.db.models import Station
from lite_csms.domain import BootInfo

REGISTRATION_TO_BOOT_STATUS = {"accepted": "Accepted", "pending": "Pending", "rejected": "Rejected"}


def record_boot(station_id: str, protocol: str, info: BootInfo, at: datetime) -> str:
    """Store what the station says of itself; return its BootNotification status."""
    station = Station.get_by_id(station_id)
    station.vendor = info.vendor
    station.model = info.model
    station.serial_number = info.serial_number
    station.firmware_version = info.firmware_version
    station.iccid = info.iccid
    station.imsi = info.imsi
    station.protocol = protocol
    station.last_boot_at = at
    station.last_seen_at = at
    station.save()
    return REGISTRATION_TO_BOOT_STATUS.get(station.registration, "Rejected")


def registration(station_id: str) -> str | None:
    station = Station.get_or_none(Station.id == station_id)
    return None if station is None else station.registration


def auto_register(station_id: str, password_hash: str | None) -> None:
    """Keep an unknown station as pending, trusting the password it first presented."""
    Station.insert(id=station_id, registration="pending", password_hash=password_hash).on_conflict(
        "ignore"
    ).execute()


def mark_connected(station_id: str, protocol: str, at: datetime) -> None:
    Station.update(online=True, protocol=protocol, last_seen_at=at).where(
        Station.id == station_id
    ).execute()


def mark_disconnected(station_id: str, last_seen: datetime) -> None:
    Station.update(online=False, last_seen_at=last_seen).where(Station.id == station_id).execute()


def record_last_seen(seen: dict[str, datetime]) -> None:
    for station_id, at in seen.items():
        Station.update(last_seen_at=at).where(Station.id == station_id).execute()


def mark_all_offline() -> int:
    """At start-up no station can be connected yet, whatever the last run left behind."""
    return Station.update(online=False).where(Station.online == True).execute()  # noqa: E712
