"""Settings that carry a station's password: their value never reaches the store.

A 1.6 AuthorizationKey or a 2.x SecurityCtrlr.BasicAuthPassword sent to a station is its
HTTP Basic password (OCPP 1.6 Security Whitepaper, OCPP 2.0.1 A01). The command log keeps
such a request with the value replaced, and no configuration value is learned from it.
"""

from __future__ import annotations

from typing import Any

SECRET_KEYS = frozenset({"AuthorizationKey", "SecurityCtrlr.BasicAuthPassword"})
REDACTED = "(redacted)"


def redacted(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with every secret value replaced by REDACTED; the same object when it
    carries none (so `redacted(a, p) is not p` tells a secret request)."""
    if action == "ChangeConfiguration" and payload.get("key") in SECRET_KEYS:
        return {**payload, "value": REDACTED}
    if action != "SetVariables" or not isinstance(payload.get("setVariableData"), list):
        return payload
    entries, changed = [], False
    for entry in payload["setVariableData"]:
        try:
            key = f"{entry['component']['name']}.{entry['variable']['name']}"
        except (KeyError, TypeError):
            key = ""
        if key in SECRET_KEYS:
            entry, changed = {**entry, "attributeValue": REDACTED}, True
        entries.append(entry)
    return {**payload, "setVariableData": entries} if changed else payload


def writes_secret(action: str, payload: dict[str, Any]) -> bool:
    return redacted(action, payload) is not payload
