"""A 2.x station's device model, assembled from the NotifyReport parts of its reports.

A report is asked for (GetBaseReport, GetReport), answered, then arrives in parts numbered
by seqNo, the last one with tbc false. Each part is taken once: a retransmitted part (same
requestId and seqNo) changes nothing. Actual values of station-wide variables also go into
the station's settings under Component.Variable, the key `config get` reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee as pw

from lite_csms.db.models import DeviceReport, DeviceReportPart, DeviceVariable
from lite_csms.handlers import settings

Payload = dict[str, Any]


def requested(station_id: str, request_id: int, kind: str, at: datetime) -> DeviceReport:
    report, _ = DeviceReport.get_or_create(
        station=station_id, request_id=request_id,
        defaults={"kind": kind, "requested_at": at})
    return report


def answered(station_id: str, request_id: int, answer: Payload | None) -> None:
    report = DeviceReport.get_or_none(DeviceReport.station == station_id,
                                      DeviceReport.request_id == request_id)
    if report is None or report.status == "complete":
        return
    status = "NoAnswer" if answer is None else answer["status"]
    # Parts that beat the answer here already moved the status on; keep theirs.
    if report.status == "requested" or status != "Accepted":
        report.status = status
        report.save()


def _variable_row(station_id: str, report_id: int, item: Payload, attribute: Payload,
                  at: datetime) -> Payload:
    component, variable = item["component"], item["variable"]
    evse = component.get("evse", {})
    traits = item.get("variableCharacteristics", {})
    return {
        "station": station_id, "component": component["name"],
        "component_instance": component.get("instance", ""),
        "evse_id": evse.get("id", 0), "connector_id": evse.get("connectorId", 0),
        "variable": variable["name"], "variable_instance": variable.get("instance", ""),
        "attribute_type": attribute.get("type", "Actual"), "value": attribute.get("value"),
        "mutability": attribute.get("mutability", "ReadWrite"),
        "data_type": traits.get("dataType"), "unit": traits.get("unit"),
        "min_limit": traits.get("minLimit"), "max_limit": traits.get("maxLimit"),
        "values_list": traits.get("valuesList"), "report": report_id, "updated_at": at,
    }


def _setting(row: Payload) -> tuple[str, str | None, bool] | None:
    # A setting key is Component.Variable: only variables with no EVSE or instance fit one.
    if (row["attribute_type"] != "Actual" or row["evse_id"] or row["component_instance"]
            or row["variable_instance"] or row["mutability"] == "WriteOnly"):
        return None
    return (f"{row['component']}.{row['variable']}", row["value"],
            row["mutability"] == "ReadOnly")


def notify_report(station_id: str, payload: Payload, at: datetime) -> bool:
    """Take one NotifyReport part; False when it is a retransmission already taken."""
    report = requested(station_id, payload["requestId"], "unrequested", at)
    try:
        with DeviceVariable._meta.database.atomic():
            DeviceReportPart.create(report=report, seq_no=payload["seqNo"])
    except pw.IntegrityError:
        return False
    rows = [_variable_row(station_id, report.id, item, attribute, at)
            for item in payload.get("reportData", [])
            for attribute in item["variableAttribute"]]
    if rows:
        keys = [DeviceVariable.station, DeviceVariable.component,
                DeviceVariable.component_instance, DeviceVariable.evse_id,
                DeviceVariable.connector_id, DeviceVariable.variable,
                DeviceVariable.variable_instance, DeviceVariable.attribute_type]
        kept = [f for f in DeviceVariable._meta.sorted_fields
                if f.name not in {k.name for k in keys} and f.name != "id"]
        for start in range(0, len(rows), 50):
            # Batches of 50 stay well under SQLite's limit on bound parameters.
            (DeviceVariable.insert_many(rows[start:start + 50])
             .on_conflict(conflict_target=keys, preserve=kept).execute())
        settings.store(station_id, [s for row in rows if (s := _setting(row))], at)
    report.parts_received += 1
    if report.status == "requested":
        report.status = "Accepted"
    if not payload.get("tbc", False):
        # The part with tbc false is the last; parts may still be missing if seqNos skip.
        report.status, report.complete_at = "complete", at
    report.save()
    return True


def reports(station_id: str) -> list[Payload]:
    query = (DeviceReport.select().where(DeviceReport.station == station_id)
             .order_by(DeviceReport.id.desc()).limit(20))
    return [{"request_id": r.request_id, "kind": r.kind, "status": r.status,
             "parts_received": r.parts_received, "requested_at": r.requested_at,
             "complete_at": r.complete_at} for r in query]


def variables(station_id: str) -> list[Payload]:
    query = (DeviceVariable.select().where(DeviceVariable.station == station_id)
             .order_by(DeviceVariable.component, DeviceVariable.component_instance,
                       DeviceVariable.evse_id, DeviceVariable.connector_id,
                       DeviceVariable.variable, DeviceVariable.variable_instance,
                       DeviceVariable.attribute_type))
    return [{"component": v.component, "component_instance": v.component_instance or None,
             "evse": v.evse_id or None, "connector": v.connector_id or None,
             "variable": v.variable, "variable_instance": v.variable_instance or None,
             "attribute": v.attribute_type, "value": v.value, "mutability": v.mutability,
             "data_type": v.data_type, "unit": v.unit, "min": v.min_limit,
             "max": v.max_limit, "values_list": v.values_list,
             "updated_at": v.updated_at} for v in query]
