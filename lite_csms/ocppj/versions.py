"""OCPP-J protocol versions and the error codes each one spells its own way."""

from __future__ import annotations

import enum


class Version(enum.Enum):
    OCPP16 = "ocpp1.6"
    OCPP201 = "ocpp2.0.1"
    OCPP21 = "ocpp2.1"

    # Members are compared by identity: hash them so too, in C. Enum's own hash is a Python
    # call, paid several times per message by the per-version caches and tables.
    __hash__ = object.__hash__

    @property
    def subprotocol(self) -> str:
        return self.value

    @property
    def is_2x(self) -> bool:
        return self is not Version.OCPP16


# OCPP 2.1 Part 4: SEND carries only the messages defined to expect no answer. Any other
# action sent as a SEND would go unanswered where the station expects an answer.
SEND_ACTIONS: dict[Version, frozenset[str]] = {
    Version.OCPP21: frozenset({"NotifyPeriodicEventStream"}),
}

# Server preference is irrelevant: OCPP-J says we take the client's first supported proposal.
SUPPORTED_SUBPROTOCOLS = {v.value: v for v in Version}


class ErrorKind(enum.Enum):
    """What went wrong, independent of how a version spells it."""

    FORMAT = "format"
    OCCURRENCE = "occurrence"
    PROPERTY = "property"
    TYPE = "type"
    PROTOCOL = "protocol"
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SUPPORTED = "not_supported"
    INTERNAL = "internal"
    GENERIC = "generic"
    SECURITY = "security"
    RPC_FRAMEWORK = "rpc_framework"
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"


_COMMON = {
    ErrorKind.PROPERTY: "PropertyConstraintViolation",
    ErrorKind.TYPE: "TypeConstraintViolation",
    ErrorKind.PROTOCOL: "ProtocolError",
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.GENERIC: "GenericError",
    ErrorKind.SECURITY: "SecurityError",
}

# 1.6 spells two codes with the spec's own typos, and has no RPC-framework codes:
# the closest 1.6 codes stand in for them.
_V16 = _COMMON | {
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.OCCURRENCE: "OccurenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "FormationViolation",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "ProtocolError",
}

_V2X = _COMMON | {
    ErrorKind.FORMAT: "FormatViolation",
    ErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
}


def error_code(version: Version, kind: ErrorKind) -> str:
    return (_V16 if version is Version.OCPP16 else _V2X)[kind]


def known_error_codes(version: Version) -> frozenset[str]:
    return frozenset((_V16 if version is Version.OCPP16 else _V2X).values())
