"""Operations by name, with their arguments as JSON: what the API and the CLI ask for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lite_csms.ocppj.versions import SEND_ACTIONS, Version
from lite_csms.operations import catalogue as ops
from lite_csms.operations import management
from lite_csms.operations.args import bool_arg as _bool
from lite_csms.operations.args import int_arg as _int
from lite_csms.operations.args import optional_int
from lite_csms.operations.args import str_arg as _str
from lite_csms.operations.catalogue import OperationError, Request
from lite_csms.versions import ROUTES

# Sent in both directions (1.6 and 2.x DataTransfer): the CSMS may initiate it too.
_BOTH_WAYS = frozenset({"DataTransfer"})


def station_to_csms(version: Version) -> frozenset[str]:
    """The actions only a station initiates in `version` (those the CSMS routes), which the
    CSMS must never send."""
    # 2.1 SEND-only station messages are not routed as CALLs, and are never ours to send.
    extra = SEND_ACTIONS.get(version, frozenset())
    return (frozenset(ROUTES[version]) | extra) - _BOTH_WAYS


# Looks up (our transaction id) -> the station's own transaction id, for 2.x stops.
StationTxLookup = Callable[[int], str | None]


def build(version: Version, name: str, args: dict[str, Any], lookup: StationTxLookup,
          request_id: int) -> Request:
    """The CALL for operation `name`; request_id is a fresh number for the ids it needs
    (remoteStartId, requestId, a new charging profile's id)."""
    if name == "remote-start":
        return ops.remote_start(version, _int(args, "connector", 1), _str(args, "token"),
                                request_id)
    if name == "remote-stop":
        tx = _int(args, "transaction")
        return ops.remote_stop(version, tx, lookup(tx))
    if name == "reset":
        return ops.reset(version, _bool(args, "hard", False), optional_int(args, "evse"))
    if name == "change-availability":
        return ops.change_availability(version, _int(args, "connector", 0),
                                       _bool(args, "operative", True))
    if name == "unlock":
        return ops.unlock(version, _int(args, "connector", 1))
    if name == "clear-cache":
        return ops.clear_cache(version)
    if name == "trigger":
        connector = args.get("connector")
        return ops.trigger(version, _str(args, "message"),
                           None if connector is None else _int(args, "connector"))
    if name == "data-transfer":
        return ops.data_transfer(version, _str(args, "vendor_id"), args.get("message_id"),
                                 args.get("data"))
    if name == "get-config":
        keys = args.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise OperationError("keys must be a list of strings")
        return ops.get_config(version, keys)
    if name == "set-config":
        return ops.set_config(version, _str(args, "key"), _str(args, "value"))
    if name == "reserve":
        # The API creates the reservation first and passes its id and the token's type.
        group = args.get("group")
        return ops.reserve(version, _int(args, "connector", 0), _str(args, "token"),
                           _str(args, "token_type"), args["expires_at"],
                           _int(args, "reservation_id"), None if group is None else tuple(group))
    if name == "cancel-reservation":
        return ops.cancel_reservation(version, _int(args, "reservation"))
    if name == "send-local-list":
        # The API plans the list (it needs the token table) and passes it in.
        return ops.send_local_list(version, args["planned"])
    if name == "get-local-list-version":
        return ops.get_local_list_version(version)
    if name == "call":
        # Any CSMS-initiated message of the station's version, checked against its schema
        # before it is sent: the way to operations that have no named shortcut yet.
        payload = args.get("payload", {})
        if not isinstance(payload, dict):
            raise OperationError("payload must be an object")
        action = _str(args, "action")
        if action in station_to_csms(version):
            raise OperationError(f"{action} is sent by a charging station to the CSMS, not "
                                 f"by the CSMS: `call` sends only CSMS-initiated messages")
        return Request(action, payload)
    if name in management.NAMES:
        return management.build(version, name, args, lookup, request_id)
    raise OperationError(f"unknown operation {name!r}")


NAMES = ("remote-start", "remote-stop", "reset", "change-availability", "unlock",
         "clear-cache", "trigger", "data-transfer", "get-config", "set-config", "reserve",
         "cancel-reservation", "send-local-list", "get-local-list-version",
         *management.NAMES, "call")
