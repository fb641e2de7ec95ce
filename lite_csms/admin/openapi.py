"""The OpenAPI 3.1 description of the admin API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from lite_csms import __version__
from lite_csms.admin import openapi_sharing
from lite_csms.operations.named import NAMES


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


_ERROR = _ok("error", {"$ref": "#/components/schemas/Error"})
_OBJECT = {"type": "object"}
_LIST = {"type": "array", "items": _OBJECT}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

_COMMAND_REQUEST = {
    "type": "object",
    "required": ["operation"],
    "properties": {
        "operation": {"type": "string", "enum": list(NAMES)},
        "args": {
            "type": "object",
            "description": "remote-start: connector, token, allow_unknown_token (send a "
                           "token that is not registered, blocked or expired; otherwise 422 "
                           "unless free_charging allows unknown ones); remote-stop: "
                           "transaction; reset: hard, evse (2.x: one EVSE); "
                           "change-availability: connector, operative; "
                           "unlock: connector; trigger: message, connector; data-transfer: "
                           "vendor_id, message_id, data; get-config: keys; set-config: key, "
                           "value. 2.x keys are Component.Variable. set-limit: connector "
                           "(0: all), limit or periods ([{start: seconds, limit}], the first "
                           "at 0), unit (A|W), kind (Absolute|Recurring|Relative), recurrency "
                           "(Daily|Weekly, Recurring only), start (ISO 8601; Absolute: default "
                           "now; Recurring: required; Relative: none), transaction (a "
                           "TxProfile), duration, stack_level; reserve: connector, token, "
                           "expires_in (the token's group goes with it); "
                           "clear-limit: profile or connector, purpose, "
                           "stack_level; composite-schedule: connector, duration, unit; "
                           "get-charging-profiles (2.x): connector, purpose; "
                           "update-firmware: location, retrieve_at, retries, retry_interval, "
                           "signing_certificate, signature (2.x); get-diagnostics (2.x "
                           "GetLog): location, since, until, log_type; base-report (2.x): "
                           "report; get-report (2.x): variables (Component or "
                           "Component.Variable); transaction-status (2.x): transaction; "
                           "call: action, payload.",
        },
        "queue": {"type": "boolean", "default": False,
                  "description": "if the station is offline, deliver when it reconnects"},
        "ttl": {"type": "integer", "default": 3600, "description": "queue expiry, seconds"},
    },
}

_MONTH = {"name": "month", "in": "query", "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
          "description": "YYYY-MM: the billing cycle that starts in that month (by the "
                         "station's cycle day); default the current cycle"}
_AT = {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"},
       "description": "report as of this instant (default now); later counts are left out"}
_BUDGET_SETTINGS = {
    "type": "object",
    "description": "Each value given overrides the global default for this station; omitted "
                   "ones are left as they are.",
    "properties": {
        "cap": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}],
                "description": "bytes, or \"20MB\", \"500kB\", \"1.5GB\" (decimal), "
                               "\"2MiB\" (binary)"},
        "cycle_day": {"type": "integer", "minimum": 1, "maximum": 28},
        "warn_ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "nat_timeout": {"type": "integer", "minimum": 10, "maximum": 86400},
        "policy": {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["on", "off"]}]},
        "clear": {"type": "boolean", "description": "drop every override first"},
        "release": {"oneOf": [{"type": "array", "items": {"type": "string"}},
                              {"type": "string", "enum": ["all"]}],
                    "description": "hand setting keys an operator set (set-config) back to "
                                   "the budget policy; the answer lists them as released"},
    },
}
_BUDGET_PATHS: dict[str, Any] = {
    "/budget": {"get": {
        "summary": "every station's use of its data cap (ip bytes, the billed layer) in a "
                   "cycle: used, cap, projection, status ok|warning|over, top actions, "
                   "flushed_at (the figures are as of the server's last traffic flush)",
        "parameters": [_MONTH, _AT],
        "responses": {"200": _ok("usage per station", _LIST), "400": _ERROR,
                      "401": _ERROR}}},
    "/stations/{id}/budget": {
        "get": {"summary": "one station's usage (as of flushed_at), effective budget and "
                           "a breakdown",
                "parameters": [*_ID, _MONTH, _AT, {
                    "name": "by", "in": "query", "schema": {
                        "type": "string",
                        "enum": ["action", "layer", "day", "direction", "connection"]}}],
                "responses": {"200": _ok("usage", _OBJECT), "400": _ERROR, "401": _ERROR,
                              "404": _ERROR}},
        "put": {"summary": "set the station's own budget settings; returns the effective "
                           "budget",
                "parameters": _ID,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/BudgetSettings"}}}},
                "responses": {"200": _ok("effective budget", _OBJECT), "400": _ERROR,
                              "401": _ERROR, "404": _ERROR, "422": _ERROR}}},
    "/stations/{id}/budget/explain": {"get": {
        "summary": "what the budget policy changed on the station and why, with its usage: "
                   "changes (each setting sent, skipped or yielded, with the reason and the "
                   "station's answer) and policy (what it would do with each setting now, "
                   "the refusals it remembers and the operator-owned keys)",
        "parameters": [*_ID, _AT],
        "responses": {"200": _ok("explanation", _OBJECT), "400": _ERROR, "401": _ERROR,
                      "404": _ERROR}}},
}

_NUMBER = {"type": ["number", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROGRESS = {
    "type": "object",
    "properties": {
        "transaction": {"type": "integer"}, "station": {"type": "string"},
        "station_tx_id": {"type": ["string", "null"]}, "evse": {"type": "integer"},
        "running": {"type": "boolean"}, "started_at": _TIME, "stopped_at": _TIME,
        "energy_wh": {**_NUMBER, "description": "delivered so far, Wh"},
        "register_wh": {**_NUMBER, "description": "the latest energy register reading, Wh"},
        "reading_at": {**_TIME, "description": "its timestamp, by the station's clock"},
        "age_s": {**_NUMBER, "description": "seconds since reading_at"},
        "power_w": {**_NUMBER, "description": "latest Power.Active.Import, W (null: none "
                                              "sent)"},
        "power_at": _TIME,
        "refresh": {"type": "string", "enum": ["fetched", "rate-limited", "refused", "timeout",
                                               "requested", "offline", "ended",
                                               "not-requested"]},
        "stale": {"type": "boolean"},
        "detail": {"type": ["string", "null"]},
        "command_id": {"type": ["integer", "null"],
                       "description": "the TriggerMessage in the command log"},
        "next_fetch_in_s": {"type": "number",
                            "description": "seconds until a new reading may be fetched"},
        "price": {"type": ["object", "null"],
                  "description": "the price the session was taken at: currency, per_kwh, "
                                 "per_hour, session_fee (minor units), text; null: unpriced"},
        "cost": {"type": ["integer", "null"],
                 "description": "minor units: as of now while running, final once ended"},
        "cost_text": {"type": ["string", "null"], "description": "\"KES 12.35\""},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "lite-csms admin API", "version": __version__},
    "security": [{"apiKey": []}],
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "a key from `lite-csms apikey add`"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "CommandRequest": _COMMAND_REQUEST,
            "BudgetSettings": _BUDGET_SETTINGS,
            "Progress": _PROGRESS,
            **openapi_sharing.SCHEMAS,
        },
    },
    "paths": {
        "/health/live": {"get": {"summary": "the process answers (no API key)", "security": [],
                                 "responses": {"200": _ok("live", _OBJECT)}}},
        "/health/ready": {"get": {
            "security": [],
            "summary": "ready to serve (no API key): the OCPP-J ports are bound and the store "
                       "commits within 2 s; 503 with the reason otherwise",
            "responses": {"200": _ok("ready, with stations_online", _OBJECT),
                          "503": _ok("not ready, with why", _OBJECT)}}},
        "/metrics": {"get": {
            "security": [],
            "summary": "the server's counts in the Prometheus text format (no API key): "
                       "stations online, messages and CALLERRORs by action, handshakes by "
                       "outcome, group-commit latency, bytes by layer, password checks, "
                       "process (docs/OPERATIONS.md)",
            "responses": {"200": {"description": "Prometheus text format 0.0.4", "content": {
                "text/plain": {"schema": {"type": "string"}}}}}}},
        "/stations": {"get": {"summary": "list stations",
                              "responses": {"200": _ok("stations", _LIST), "401": _ERROR}}},
        "/stations/{id}": {"get": {
            "summary": "a station with its connectors, configuration, charging profiles, last "
                       "composite schedules, latest firmware update and diagnostics upload "
                       "(with their status history), device-model reports and the schema "
                       "deviations lenient mode accepted from it (action, kind, field, count, "
                       "first_at, last_at, example; docs/DEVIATIONS.md)",
            "parameters": _ID,
            "responses": {"200": _ok("station", _OBJECT), "401": _ERROR, "404": _ERROR}},
            "patch": {
                "summary": "set what the station's next BootNotification is answered: accepted, "
                           "pending (the CSMS may configure it; it may send only what it is "
                           "asked for) or rejected (it may send nothing else, and is sent "
                           "nothing)",
                "parameters": _ID,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["registration"],
                               "additionalProperties": False, "properties": {
                                   "registration": {"type": "string", "enum": [
                                       "accepted", "pending", "rejected"]}}}}}},
                "responses": {"200": _ok("station", _OBJECT), "401": _ERROR, "404": _ERROR,
                              "422": _ERROR}}},
        "/stations/{id}/variables": {"get": {
            "summary": "a 2.x station's device model as its reports assembled it: each "
                       "variable attribute with value, mutability and characteristics",
            "parameters": _ID,
            "responses": {"200": _ok("reports and variables", _OBJECT), "401": _ERROR,
                          "404": _ERROR}}},
        "/stations/{id}/commands": {
            "get": {"summary": "the station's command history, newest first",
                    "parameters": _ID, "responses": {"200": _ok("commands", _LIST),
                                                     "401": _ERROR}},
            "post": {
                "summary": "send an operation to the station and wait for its answer",
                "parameters": _ID,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CommandRequest"}}}},
                "responses": {
                    "200": _ok("answered (status answered) or refused (status error)",
                               _OBJECT),
                    "202": _ok("queued until the station reconnects", _OBJECT),
                    "401": _ERROR, "404": _ERROR,
                    "409": _ok("station offline and queue not asked for, or its "
                               "registration forbids the operation (rejected; pending: no "
                               "remote start or stop)",
                               {"$ref": "#/components/schemas/Error"}),
                    "422": _ok("a bad operation or argument (named), or a payload that "
                               "would not pass its schema and numeric checks: nothing sent",
                               {"$ref": "#/components/schemas/Error"}),
                    "502": _ok("the station's answer failed the checks (schema, numbers "
                               "the store can hold): the command failed, with its fields and "
                               "an error", _OBJECT),
                    "504": _ok("no answer in time", _OBJECT)}}},
        "/commands/{id}": {"get": {"summary": "one command and its outcome",
                                   "parameters": _ID,
                                   "responses": {"200": _ok("command", _OBJECT),
                                                 "401": _ERROR, "404": _ERROR}}},
        "/tokens": {
            "get": {"summary": "list id tokens", "responses": {"200": _ok("tokens", _LIST),
                                                               "401": _ERROR}},
            "post": {"summary": "add an id token",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "required": ["token"], "properties": {
                             "token": {"type": "string"}, "type": {"type": "string"},
                             "status": {"type": "string"},
                             "expires_at": {"type": "string", "format": "date-time"},
                             "group": {"type": "string"}}}}}},
                     "responses": {"201": _ok("created", _OBJECT), "401": _ERROR,
                                   "422": _ok("invalid, or already registered in any letter "
                                              "case", {"$ref": "#/components/schemas/Error"})}}},
        "/tokens/{token}": {
            "get": {"summary": "one id token, found in any letter case (id tokens are "
                               "case-insensitive)",
                    "parameters": [{"name": "token", "in": "path", "required": True,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": _ok("token", _OBJECT), "401": _ERROR,
                                  "404": _ERROR}},
            "patch": {"summary": "set the token's status (Accepted, Blocked, Expired, Invalid)",
                      "parameters": [{"name": "token", "in": "path", "required": True,
                                      "schema": {"type": "string"}}],
                      "requestBody": {"required": True, "content": {"application/json": {
                          "schema": {"type": "object", "required": ["status"],
                                     "properties": {"status": {"type": "string", "enum": [
                                         "Accepted", "Blocked", "Expired", "Invalid"]}}}}}},
                      "responses": {"200": _ok("token", _OBJECT), "401": _ERROR,
                                    "404": _ERROR, "422": _ERROR}}},
        "/transactions": {"get": {
            "summary": "charging sessions, newest first; energy_wh is never negative, flag is "
                       "REVIEW: <tags> for one to check (review_reason says why)",
            "parameters": [
                {"name": "station", "in": "query", "schema": {"type": "string"}},
                {"name": "active", "in": "query", "schema": {"type": "boolean"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
            "responses": {"200": _ok("transactions", _LIST), "401": _ERROR}}},
        "/transactions/{id}": {"get": {
            "summary": "one session with its meter samples", "parameters": _ID,
            "responses": {"200": _ok("transaction", _OBJECT), "401": _ERROR,
                          "404": _ERROR}}},
        "/transactions/{id}/progress": {"get": {
            "summary": "a session's progress: energy so far, the latest register reading and "
                       "power, and how old they are. With fresh=1 (the default) a running "
                       "session's station is asked for a reading now (TriggerMessage "
                       "MeterValues), at most once per transaction per progress_min_interval "
                       "(60 s; an ask within it gets the stored reading); the answer waits up "
                       "to `wait` seconds for it. refresh says what happened: fetched, "
                       "rate-limited, refused, timeout, requested (wait=0), offline, ended "
                       "or not-requested; "
                       "stale is true unless the reading was fetched now or in the window's "
                       "fetch (or the session has ended)",
            "parameters": [*_ID,
                           {"name": "fresh", "in": "query",
                            "schema": {"type": "string", "enum": ["1", "0", "true", "false"],
                                       "default": "1"}},
                           {"name": "wait", "in": "query",
                            "schema": {"type": "number", "minimum": 0},
                            "description": "seconds to wait for the station's reading "
                                           "(default progress_wait, 5; at most "
                                           "progress_max_wait, 30)"}],
            "responses": {"200": _ok("progress", {"$ref": "#/components/schemas/Progress"}),
                          "400": _ERROR, "401": _ERROR, "404": _ERROR}}},
        **_BUDGET_PATHS,
        **openapi_sharing.PATHS,
    },
}
