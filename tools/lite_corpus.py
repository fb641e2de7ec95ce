"""A handful of typical OCPP messages per version, as a station and our CSMS send them.

Used by tools/lite_tables.py only to decide which property names and actions get the one-byte
numbers 0..23 the first time a table is generated (numbering is frozen after that), and by
tools/lite_vectors.py and the lite tests as realistic examples. The dictionary trainer
(codecs/README.md) uses the station simulator instead.
"""

from __future__ import annotations

from typing import Any

Message = tuple[str, bool, dict[str, Any]]  # (action, is_response, payload)

AT = "2026-05-01T12:15:00Z"
TX_UUID = "9f3b2c1e-5a44-4d0b-b3a1-0c2d9e8f7a61"


def _sampled_16() -> list[dict[str, Any]]:
    rows = [("Energy.Active.Import.Register", None, "Wh", "15234"),
            ("Power.Active.Import", None, "W", "7360"),
            ("Current.Import", "L1", "A", "10.7"), ("Voltage", "L1-N", "V", "229.8"),
            ("SoC", None, "Percent", "63")]
    out = []
    for measurand, phase, unit, value in rows:
        entry = {"value": value, "context": "Sample.Periodic", "measurand": measurand,
                 "location": "Outlet" if measurand != "SoC" else "EV", "unit": unit}
        if phase:
            entry["phase"] = phase
        out.append(entry)
    return out


def _sampled_2x() -> list[dict[str, Any]]:
    rows = [("Energy.Active.Import.Register", None, "Wh", 15234.0),
            ("Power.Active.Import", None, "W", 7360.2),
            ("Current.Import", "L1", "A", 10.7), ("Voltage", "L1-N", "V", 229.8)]
    out = []
    for measurand, phase, unit, value in rows:
        entry: dict[str, Any] = {"value": value, "context": "Sample.Periodic",
                                 "measurand": measurand, "location": "Outlet",
                                 "unitOfMeasure": {"unit": unit}}
        if phase:
            entry["phase"] = phase
        out.append(entry)
    return out


V16: list[Message] = [
    ("BootNotification", False, {
        "chargePointVendor": "ExampleVendor", "chargePointModel": "Wallbox-22kW",
        "chargePointSerialNumber": "WB22-000123", "firmwareVersion": "1.8.4",
        "iccid": "89462046062200123456", "imsi": "240080012345678"}),
    ("BootNotification", True, {"status": "Accepted", "currentTime": AT, "interval": 300}),
    ("Heartbeat", False, {}),
    ("Heartbeat", True, {"currentTime": AT}),
    ("StatusNotification", False, {"connectorId": 1, "errorCode": "NoError",
                                   "status": "Charging", "timestamp": AT}),
    ("StatusNotification", True, {}),
    ("Authorize", False, {"idTag": "04A2B3C4D5E6F7"}),
    ("Authorize", True, {"idTagInfo": {"status": "Accepted"}}),
    ("StartTransaction", False, {"connectorId": 1, "idTag": "04A2B3C4D5E6F7",
                                 "meterStart": 15000, "timestamp": AT}),
    ("StartTransaction", True, {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}}),
    ("MeterValues", False, {"connectorId": 1, "transactionId": 4711,
                            "meterValue": [{"timestamp": AT, "sampledValue": _sampled_16()}]}),
    ("MeterValues", True, {}),
    ("StopTransaction", False, {"transactionId": 4711, "idTag": "04A2B3C4D5E6F7",
                                "meterStop": 25234, "timestamp": AT, "reason": "Local"}),
    ("StopTransaction", True, {"idTagInfo": {"status": "Accepted"}}),
    ("ChangeConfiguration", False, {"key": "HeartbeatInterval", "value": "600"}),
    ("ChangeConfiguration", True, {"status": "Accepted"}),
]

V2X: list[Message] = [
    ("BootNotification", False, {
        "reason": "PowerUp",
        "chargingStation": {"model": "Wallbox-22kW", "vendorName": "ExampleVendor",
                            "serialNumber": "WB22-000123", "firmwareVersion": "1.8.4",
                            "modem": {"iccid": "89462046062200123456",
                                      "imsi": "240080012345678"}}}),
    ("BootNotification", True, {"status": "Accepted", "currentTime": AT, "interval": 300}),
    ("Heartbeat", False, {}),
    ("Heartbeat", True, {"currentTime": AT}),
    ("StatusNotification", False, {"timestamp": AT, "connectorStatus": "Occupied",
                                   "evseId": 1, "connectorId": 1}),
    ("StatusNotification", True, {}),
    ("Authorize", False, {"idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}}),
    ("Authorize", True, {"idTokenInfo": {"status": "Accepted"}}),
    ("TransactionEvent", False, {
        "eventType": "Started", "timestamp": AT, "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": TX_UUID, "chargingState": "Charging"},
        "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": AT, "sampledValue": _sampled_2x()[:1]}]}),
    ("TransactionEvent", False, {
        "eventType": "Updated", "timestamp": AT, "triggerReason": "MeterValuePeriodic",
        "seqNo": 17, "transactionInfo": {"transactionId": TX_UUID, "chargingState": "Charging"},
        "meterValue": [{"timestamp": AT, "sampledValue": _sampled_2x()}]}),
    ("TransactionEvent", False, {
        "eventType": "Ended", "timestamp": AT, "triggerReason": "EVCommunicationLost",
        "seqNo": 18,
        "transactionInfo": {"transactionId": TX_UUID, "stoppedReason": "EVDisconnected"},
        "meterValue": [{"timestamp": AT, "sampledValue": _sampled_2x()[:1]}]}),
    ("TransactionEvent", True, {"idTokenInfo": {"status": "Accepted"}}),
    ("TransactionEvent", True, {}),
    ("MeterValues", False, {"evseId": 1, "meterValue": [
        {"timestamp": AT, "sampledValue": _sampled_2x()}]}),
    ("MeterValues", True, {}),
    ("NotifyEvent", False, {"generatedAt": AT, "seqNo": 0, "tbc": False, "eventData": [
        {"eventId": 1, "timestamp": AT, "trigger": "Delta", "actualValue": "Occupied",
         "eventNotificationType": "HardWiredNotification",
         "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "AvailabilityState"}}]}),
    ("NotifyEvent", True, {}),
    ("SetVariables", False, {"setVariableData": [
        {"attributeValue": "600", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]}),
    ("SetVariables", True, {"setVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}}]}),
]

CORPUS: dict[str, list[Message]] = {"ocpp1.6": V16, "ocpp2.0.1": V2X, "ocpp2.1": V2X}
