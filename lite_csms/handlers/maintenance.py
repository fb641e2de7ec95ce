"""Firmware updates and diagnostics/log uploads: the request, the answer, the progress.

2.x status reports name their request (requestId). 1.6 ones do not, so they go to the most
recent open request of their kind: a 1.6 station works on one firmware update and one
diagnostics upload at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lite_csms.db.models import MaintenanceRequest, MaintenanceStatus

FIRMWARE = "firmware"
DIAGNOSTICS = "diagnostics"

FINAL_STATUSES = {
    FIRMWARE: frozenset({"Installed", "DownloadFailed", "InstallationFailed",
                         "InstallVerificationFailed", "InvalidSignature"}),
    DIAGNOSTICS: frozenset({"Uploaded", "UploadFailed", "UploadFailure", "BadMessage",
                            "NotSupportedOperation", "PermissionDenied", "AcceptedCanceled"}),
}


def requested(station_id: str, kind: str, request_id: int | None, command_id: int,
              location: str, at: datetime) -> None:
    """Kept before the CALL goes out: the station's first report can beat its answer here."""
    if request_id is None:
        # A 1.6 station runs one request of each kind at a time: a new one supersedes the
        # last, whose reports could not be told apart from the new one's anyway.
        (MaintenanceRequest.update(open=False)
         .where(MaintenanceRequest.station == station_id, MaintenanceRequest.kind == kind,
                MaintenanceRequest.open).execute())
    MaintenanceRequest.create(station=station_id, kind=kind, request_id=request_id,
                              command=command_id, location=location, requested_at=at,
                              status_at=at)


def answered(command_id: int, answer: dict[str, Any] | None, at: datetime) -> None:
    """The station's answer: 1.6 UpdateFirmware has no status (an answer is acceptance), 1.6
    GetDiagnostics names the file or, with nothing to upload, nothing."""
    found = MaintenanceRequest.get_or_none(MaintenanceRequest.command == command_id)
    if found is None:
        return
    if answer is None:
        status = "NoAnswer"
    elif "status" in answer:
        status = answer["status"]
    elif found.kind == DIAGNOSTICS and "fileName" not in answer:
        status = "NothingToUpload"
    else:
        status = "Accepted"
    found.file_name = answer.get("fileName", answer.get("filename")) if answer else None
    if found.status == "requested":
        # A report that arrived first says more than the answer does: keep it.
        found.status, found.status_at = status, at
    if status not in ("Accepted", "AcceptedCanceled"):
        found.open = False
    found.save()


def progress(station_id: str, kind: str, request_id: int | None, status: str,
             at: datetime) -> bool:
    """A status report; False when it belongs to no request we made (triggered, Idle)."""
    query = MaintenanceRequest.select().where(MaintenanceRequest.station == station_id,
                                              MaintenanceRequest.kind == kind)
    if request_id is not None:
        query = query.where(MaintenanceRequest.request_id == request_id)
    elif status == "Idle":
        return False
    else:
        query = query.where(MaintenanceRequest.open)
    found = query.order_by(MaintenanceRequest.requested_at.desc(),
                           MaintenanceRequest.id.desc()).first()
    if found is None:
        return False
    MaintenanceStatus.create(request=found, status=status, received_at=at)
    found.status, found.status_at = status, at
    found.open = status not in FINAL_STATUSES[kind]
    found.save()
    return True


def latest(station_id: str, kind: str) -> dict[str, Any] | None:
    found = (MaintenanceRequest.select()
             .where(MaintenanceRequest.station == station_id, MaintenanceRequest.kind == kind)
             .order_by(MaintenanceRequest.requested_at.desc(), MaintenanceRequest.id.desc())
             .first())
    if found is None:
        return None
    history = found.statuses.order_by(MaintenanceStatus.id)
    return {"request_id": found.request_id, "command": found.command_id,
            "location": found.location, "status": found.status, "file_name": found.file_name,
            "open": found.open, "requested_at": found.requested_at,
            "status_at": found.status_at,
            "history": [{"status": s.status, "at": s.received_at} for s in history]}
