"""`lite-csms remote …` and `config …`: operate a charger through the admin HTTP API.

The CLI finds the API from the same settings as the server (admin_host, admin_port) and
authenticates with api_key (LITE_CSMS_API_KEY).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from lite_csms.cli import remote_management
from lite_csms.cli.output import CliError, api_error
from lite_csms.cli.remote_management import count
from lite_csms.config import Settings


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    shared = argparse.ArgumentParser(add_help=False, parents=[common])
    shared.add_argument("station_id")
    shared.add_argument("--queue", action="store_true",
                        help="if the station is offline, deliver when it reconnects")
    shared.add_argument("--ttl", type=count, default=3600, help="queue expiry in seconds")
    shared.add_argument("--json", action="store_true",
                        help="print the whole API answer (command id, status, result) as JSON")
    remote = sub.add_parser("remote", help="operate a charger (through the admin API)")
    cmds = remote.add_subparsers(dest="remote_command", required=True)
    start = cmds.add_parser("start", parents=[shared], help="start charging for a token")
    start.add_argument("--connector", type=count, default=1)
    start.add_argument("--token", required=True)
    start.add_argument("--allow-unknown-token", action="store_true",
                       help="send it even if the token is not registered, blocked or expired")
    cmds.add_parser("stop", parents=[shared], help="stop a transaction").add_argument(
        "--transaction", type=count, required=True)
    reset = cmds.add_parser("reset", parents=[shared], help="reboot the charger")
    reset.add_argument("--hard", action="store_true")
    reset.add_argument("--evse", type=count, help="2.x: reset only this EVSE")
    availability = cmds.add_parser("availability", parents=[shared],
                                   help="make a connector (0: all) operative or not")
    availability.add_argument("--connector", type=count, default=0)
    availability.add_argument("--inoperative", action="store_true")
    cmds.add_parser("unlock", parents=[shared], help="unlock a stuck cable").add_argument(
        "--connector", type=count, default=1)
    cmds.add_parser("clear-cache", parents=[shared], help="clear the authorization cache")
    trigger = cmds.add_parser("trigger", parents=[shared], help="ask for a message now")
    trigger.add_argument("--message", required=True)
    trigger.add_argument("--connector", type=count)
    reserve = cmds.add_parser("reserve", parents=[shared], help="hold a connector for a token")
    reserve.add_argument("--connector", type=count, default=0, help="0: any connector")
    reserve.add_argument("--token", required=True)
    reserve.add_argument("--expires-in", type=count, default=3600, help="seconds")
    cmds.add_parser("cancel-reservation", parents=[shared], help="release a reservation"
                    ).add_argument("--reservation", type=count, required=True)
    cmds.add_parser("send-local-list", parents=[shared],
                    help="push the token table as the station's local list").add_argument(
        "--differential", action="store_true", help="only tokens changed since the last list")
    cmds.add_parser("local-list-version", parents=[shared],
                    help="ask which local list version the station holds")
    remote_management.add_parsers(cmds, shared)
    raw = cmds.add_parser("call", parents=[shared],
                          help="send any CSMS-initiated OCPP message (schema-checked)")
    raw.add_argument("action", help="e.g. GetLocalListVersion, UpdateFirmware")
    raw.add_argument("payload", nargs="?", default="{}", help="the payload as JSON")
    config = sub.add_parser("config", help="read or change a charger's configuration")
    config_cmds = config.add_subparsers(dest="config_command", required=True)
    config_cmds.add_parser("get", parents=[shared], help="read keys (2.x: Component.Variable)"
                           ).add_argument("keys", nargs="*")
    setter = config_cmds.add_parser("set", parents=[shared], help="change one key")
    setter.add_argument("key")
    setter.add_argument("value")


def _operation(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.command == "config":
        if args.config_command == "get":
            return "get-config", {"keys": args.keys}
        return "set-config", {"key": args.key, "value": args.value}
    match args.remote_command:
        case "start":
            extra = {"allow_unknown_token": True} if args.allow_unknown_token else {}
            return "remote-start", {"connector": args.connector, "token": args.token, **extra}
        case "stop":
            return "remote-stop", {"transaction": args.transaction}
        case "reset":
            evse = {} if args.evse is None else {"evse": args.evse}
            return "reset", {"hard": args.hard, **evse}
        case "availability":
            return "change-availability", {"connector": args.connector,
                                           "operative": not args.inoperative}
        case "unlock":
            return "unlock", {"connector": args.connector}
        case "clear-cache":
            return "clear-cache", {}
        case "trigger":
            extra = {} if args.connector is None else {"connector": args.connector}
            return "trigger", {"message": args.message, **extra}
        case "reserve":
            return "reserve", {"connector": args.connector, "token": args.token,
                               "expires_in": args.expires_in}
        case "cancel-reservation":
            return "cancel-reservation", {"reservation": args.reservation}
        case "send-local-list":
            return "send-local-list", {"full": not args.differential}
        case "local-list-version":
            return "get-local-list-version", {}
        case "call":
            try:
                payload = json.loads(args.payload, parse_constant=_not_json,
                                     parse_float=_finite)
            except ValueError as exc:
                raise CliError(f"the payload is not valid JSON: {exc}") from None
            return "call", {"action": args.action, "payload": payload}
    found = remote_management.operation(args)
    if found is None:
        raise CliError(f"unknown command {args.remote_command}")
    return found


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def api_url(settings: Settings, path: str) -> str:
    host = settings.admin_host if settings.admin_host not in ("0.0.0.0", "::", "") else (
        "127.0.0.1")
    return f"http://{host}:{settings.admin_port}{path}"


def call_api(settings: Settings, method: str, path: str, body: dict[str, Any] | None
             ) -> tuple[int, Any]:
    if not settings.api_key:
        raise CliError("no API key: set LITE_CSMS_API_KEY or api_key in the config "
                       "(create one with `lite-csms apikey add NAME`)")
    # Here, not at the top: `lite-csms serve` builds this parser too, and urllib with
    # http.client and email is about 1 MB of its idle RSS (docs/PERFORMANCE.md).
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        api_url(settings, path), method=method,
        data=None if body is None else json.dumps(body, allow_nan=False).encode(),
        headers={"Authorization": f"Bearer {settings.api_key}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not str(answer.get("error", "")).strip():
            # An answer with no reason (a failure inside the API): say at least what happened.
            text = raw.decode("utf-8", "replace").strip().splitlines()
            reason = (text[0][:200] if text else "") or str(exc.reason or "").strip()
            answer = {"error": f"the admin API answered HTTP {exc.code}"
                               + (f" ({reason})" if reason else "")
                               + ("; the server's log says why" if exc.code >= 500 else "")}
        return exc.code, answer
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the admin API at {api_url(settings, '')}: "
                       f"{getattr(exc, 'reason', exc)}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    operation, op_args = _operation(args)
    body = {"operation": operation, "args": op_args, "queue": args.queue, "ttl": args.ttl}
    status, answer = call_api(settings, "POST", f"/stations/{args.station_id}/commands", body)
    if "error" in answer:
        raise api_error(status, str(answer["error"]), args.station_id)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0 if answer["status"] in ("queued", "answered") else 1
    if answer["status"] == "queued":
        print(f"command {answer['command_id']} queued: {answer['action']} is sent when "
              f"{args.station_id} reconnects")
        return 0
    if answer["status"] == "answered":
        print(f"{answer['action']}: {json.dumps(answer['result'])}")
        return 0
    print(f"{answer['action']}: {answer['status']} {answer.get('error_code') or ''} "
          f"{answer.get('error_description') or ''}".rstrip())
    return 1
