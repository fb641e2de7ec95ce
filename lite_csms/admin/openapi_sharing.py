"""The OpenAPI paths and schemas of the sharing routes (admin/sharing_routes.py)."""

from __future__ import annotations

from typing import Any


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_ERROR = _ok("error", {"$ref": "#/components/schemas/Error"})
_OBJECT = {"type": "object"}
_LIST = {"type": "array", "items": _OBJECT}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_AMOUNT = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string",
                                                         "pattern": r"^\d+(\.\d+)?$"}],
           "description": "minor units (integer) or decimal text in major units (\"25.50\")",
           "default": 0}

SCHEMAS: dict[str, Any] = {
    "NewOwner": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "email": {"type": "string"},
        "phone": {"type": "string", "description": "E.164, e.g. +254712345678"},
        "password": {"type": "string", "minLength": 8,
                     "description": "omitted: one is generated and returned once"}},
        "description": "email or phone (or both) is required: the owner's login"},
    "NewDriver": {"type": "object", "properties": {
        "name": {"type": "string"}, "phone": {"type": "string"}, "email": {"type": "string"},
        "password": {"type": "string", "minLength": 8},
        "tokens": {"type": "array", "items": {"type": "string"},
                   "description": "id tokens (RFID) of theirs; registered if new"}}},
    "Tariff": {"type": "object", "properties": {
        "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$",
                     "description": "ISO 4217 (default: the currency setting)"},
        "per_kwh": _AMOUNT, "per_hour": _AMOUNT, "session_fee": _AMOUNT},
        "additionalProperties": False},
}

PATHS: dict[str, Any] = {
    "/owners": {
        "get": {"summary": "every owner: id, name, email, phone, has_password, stations",
                "responses": {"200": _ok("owners", _LIST), "401": _ERROR}},
        "post": {"summary": "add an owner (a person who owns stations and earns what they "
                            "sell); returns it, with a generated password once if none given",
                 "requestBody": _body("NewOwner"),
                 "responses": {"201": _ok("owner", _OBJECT), "400": _ERROR, "401": _ERROR,
                               "422": _ERROR}}},
    "/owners/{id}": {"get": {
        "summary": "one owner and their stations (online, tariff)", "parameters": _ID,
        "responses": {"200": _ok("owner", _OBJECT), "401": _ERROR, "404": _ERROR}}},
    "/owners/{id}/password": {"put": {
        "summary": "set the owner's web password (8 or more characters; scrypt-hashed)",
        "parameters": _ID,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["password"],
            "properties": {"password": {"type": "string", "minLength": 8}}}}}},
        "responses": {"200": _ok("set", _OBJECT), "401": _ERROR, "404": _ERROR,
                      "422": _ERROR}}},
    "/owners/{id}/statements/{month}": {"get": {
        "summary": "the owner's statement for a UTC month: sessions that stopped in it, "
                   "energy_wh, revenue per currency (minor units), each station's data "
                   "bytes (ip layer) and data_cost at data_price_per_mb, and the sessions",
        "parameters": [*_ID, {"name": "month", "in": "path", "required": True,
                              "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}$"}}],
        "responses": {"200": _ok("statement", _OBJECT), "400": _ERROR, "401": _ERROR,
                      "404": _ERROR}}},
    "/stations/{id}/owner": {"put": {
        "summary": "give the station to an owner (null: the operator's); sessions keep the "
                   "owner they began under",
        "parameters": _ID,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["owner"],
            "properties": {"owner": {"type": ["integer", "null"]}}}}}},
        "responses": {"200": _ok("owner set", _OBJECT), "401": _ERROR, "404": _ERROR,
                      "422": _ERROR}}},
    "/stations/{id}/tariff": {
        "get": {"summary": "the station's price (null: none; sessions are unpriced)",
                "parameters": _ID,
                "responses": {"200": _ok("tariff", _OBJECT), "401": _ERROR, "404": _ERROR}},
        "put": {"summary": "set the price: per kWh, per hour, per session, in minor units "
                           "of an ISO 4217 currency; sessions already running keep theirs",
                "parameters": _ID, "requestBody": _body("Tariff"),
                "responses": {"200": _ok("tariff", _OBJECT), "401": _ERROR, "404": _ERROR,
                              "422": _ERROR}},
        "delete": {"summary": "remove the price: later sessions are unpriced",
                   "parameters": _ID,
                   "responses": {"200": _ok("tariff (null)", _OBJECT), "401": _ERROR,
                                 "404": _ERROR}}},
    "/stations/{id}/qr": {"get": {
        "summary": "the URL of the station's driver page for its QR code: "
                   "<public_url>/s/<station>/<connector>; 409 while public_url is not set",
        "parameters": [*_ID, {"name": "connector", "in": "query",
                              "schema": {"type": "integer", "minimum": 1, "default": 1}}],
        "responses": {"200": _ok("url", _OBJECT), "400": _ERROR, "401": _ERROR,
                      "404": _ERROR, "409": _ERROR}}},
    "/drivers": {
        "get": {"summary": "every driver: id, name, phone, email, has_password, tokens",
                "responses": {"200": _ok("drivers", _LIST), "401": _ERROR}},
        "post": {"summary": "add a driver (id tokens, a phone login, a password, or any "
                            "of them)",
                 "requestBody": _body("NewDriver"),
                 "responses": {"201": _ok("driver", _OBJECT), "400": _ERROR, "401": _ERROR,
                               "422": _ERROR}}},
    "/drivers/codes": {"post": {
        "summary": "issue a one-time sign-in code for a phone and return it, for the operator "
                   "to pass on (no SMS gateway yet): 6 digits, 10 minutes, 5 tries; at most "
                   "3 codes per phone per 15 minutes (429)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["phone"],
            "properties": {"phone": {"type": "string"}}}}}},
        "responses": {"201": _ok("code", _OBJECT), "401": _ERROR, "422": _ERROR,
                      "429": _ERROR}}},
    "/drivers/{id}": {"get": {
        "summary": "one driver, their tokens and latest sessions with cost",
        "parameters": _ID,
        "responses": {"200": _ok("driver", _OBJECT), "401": _ERROR, "404": _ERROR}}},
}
