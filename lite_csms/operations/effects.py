"""What an answer teaches us: configuration values reported or accepted by the charger."""

from __future__ import annotations

from typing import Any

from lite_csms.operations.catalogue import Request

Setting = tuple[str, str | None, bool]


def _variable_key(entry: dict[str, Any]) -> str:
    return f"{entry['component']['name']}.{entry['variable']['name']}"


def settings_learned(request: Request, answer: dict[str, Any]) -> list[Setting]:
    """The (key, value, readonly) facts an answered request establishes."""
    action, payload = request.action, request.payload
    if action == "GetConfiguration":
        return [(k["key"], k.get("value"), k["readonly"])
                for k in answer.get("configurationKey", [])]
    if action == "ChangeConfiguration" and answer.get("status") in ("Accepted", "RebootRequired"):
        return [(payload["key"], payload["value"], False)]
    if action == "GetVariables":
        return [(_variable_key(r), r.get("attributeValue"), False)
                for r in answer.get("getVariableResult", [])
                if r.get("attributeStatus") == "Accepted"]
    if action == "SetVariables":
        sent = {_variable_key(d): d["attributeValue"] for d in payload["setVariableData"]}
        return [(key, sent[key], False) for r in answer.get("setVariableResult", [])
                if r.get("attributeStatus") in ("Accepted", "RebootRequired")
                and (key := _variable_key(r)) in sent]
    return []
