"""Codec benchmark: the measurements behind choosing orjson and fastjsonschema.

Compares stdlib `json` with `orjson` on whole OCPP-J frames, and `jsonschema` (validators built
once, format checking off, as the `ocpp` package uses it) with `fastjsonschema` through the
production call `lite_csms.ocppj.schemas.validate`, on the OCA schemas shipped in `ocpp`. Then
times the whole production decode path, `RpcSession.receive`, and the one-time compile costs.

    python tools/bench_codec.py [--min-time 0.2] [--repeat 5]

Needs the `bench` extra (jsonschema).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import jsonschema
import orjson
from bench_common import machine_summary, markdown_table

from lite_csms.ocppj import schemas, timestamps
from lite_csms.ocppj.session import InboundCall, RpcSession
from lite_csms.ocppj.versions import Version

Payload = dict[str, Any]
Op = Callable[[], object]
# Builds an operation ready to be called `n` times; stateful operations need the count.
OpFactory = Callable[[int], Op]

PACKAGE_DIR = {Version.OCPP16: "v16", Version.OCPP201: "v201"}
JSONSCHEMA_CLASS = {Version.OCPP16: jsonschema.Draft4Validator,
                    Version.OCPP201: jsonschema.Draft6Validator}
# Chargers commonly use UUIDs, so ids are the 36-character maximum.
MESSAGE_ID = "c0ffee00-0000-4000-8000-000000000001"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    version: Version
    action: str
    payload: Payload

    @property
    def frame(self) -> list[Any]:
        return [2, MESSAGE_ID, self.action, self.payload]

    @property
    def text(self) -> str:
        return orjson.dumps(self.frame).decode()


# ---- realistic payloads ---------------------------------------------------------------------
def meter_values_16() -> Payload:
    at = "2024-05-01T12:15:00.000Z"
    readings = [
        ("Energy.Active.Import.Register", None, "Outlet", "Wh", "15234.0"),
        ("Power.Active.Import", None, "Outlet", "W", "7360.2"),
        ("Current.Import", "L1", "Outlet", "A", "10.7"),
        ("Current.Import", "L2", "Outlet", "A", "10.6"),
        ("Current.Import", "L3", "Outlet", "A", "10.7"),
        ("Voltage", "L1-N", "Outlet", "V", "229.8"),
        ("Voltage", "L2-N", "Outlet", "V", "230.4"),
        ("Voltage", "L3-N", "Outlet", "V", "231.0"),
        ("SoC", None, "EV", "Percent", "63"),
        ("Temperature", None, "Body", "Celsius", "31.5"),
    ]
    sampled = []
    for measurand, phase, location, unit, value in readings:
        entry = {"value": value, "context": "Sample.Periodic", "format": "Raw",
                 "measurand": measurand, "location": location, "unit": unit}
        if phase is not None:
            entry["phase"] = phase
        sampled.append(entry)
    return {"connectorId": 1, "transactionId": 4711,
            "meterValue": [{"timestamp": at, "sampledValue": sampled}]}


def transaction_event_updated_201() -> Payload:
    at = "2024-05-01T12:15:00.000Z"
    readings = [
        ("Energy.Active.Import.Register", None, "Outlet", "Wh", 15234.0),
        ("Power.Active.Import", None, "Outlet", "W", 7360.2),
        ("Current.Import", "L1", "Outlet", "A", 10.7),
        ("Current.Import", "L2", "Outlet", "A", 10.6),
        ("Current.Import", "L3", "Outlet", "A", 10.7),
        ("Voltage", "L1-N", "Outlet", "V", 229.8),
        ("SoC", None, "EV", "Percent", 63),
    ]
    sampled = []
    for measurand, phase, location, unit, value in readings:
        entry = {"value": value, "context": "Sample.Periodic", "measurand": measurand,
                 "location": location, "unitOfMeasure": {"unit": unit, "multiplier": 0}}
        if phase is not None:
            entry["phase"] = phase
        sampled.append(entry)
    return {
        "eventType": "Updated", "timestamp": at, "triggerReason": "MeterValuePeriodic",
        "seqNo": 17, "offline": False,
        "transactionInfo": {"transactionId": "9f3b2c1e-5a44-4d0b-b3a1-0c2d9e8f7a61",
                            "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": at, "sampledValue": sampled}],
    }


def boot_notification_16() -> Payload:
    return {
        "chargePointVendor": "ExampleVendor", "chargePointModel": "Wallbox-22kW",
        "chargePointSerialNumber": "WB22-000123", "chargeBoxSerialNumber": "CB-000123",
        "firmwareVersion": "1.8.4", "iccid": "89462046062200123456",
        "imsi": "240080012345678", "meterType": "Eastron SDM630", "meterSerialNumber": "SDM-0042",
    }


CASES = [
    Case("1.6 MeterValues (10 sampledValues)", Version.OCPP16, "MeterValues", meter_values_16()),
    Case("2.0.1 TransactionEvent Updated", Version.OCPP201, "TransactionEvent",
         transaction_event_updated_201()),
    Case("1.6 BootNotification", Version.OCPP16, "BootNotification", boot_notification_16()),
    Case("1.6 Heartbeat", Version.OCPP16, "Heartbeat", {}),
]


# ---- timing ---------------------------------------------------------------------------------
def run_n(op: Op, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - started


def calls_per_repeat(make_op: OpFactory, min_time: float) -> int:
    """Grow the count until one repeat takes `min_time`, so timer resolution cannot matter."""
    n = 1
    while True:
        elapsed = run_n(make_op(n), n)
        if elapsed >= min_time:
            return n
        n = max(n * 2, int(n * min_time / max(elapsed, 1e-9) * 1.1))


def best_seconds_per_op(make_op: OpFactory, min_time: float, repeat: int) -> float:
    """Best of `repeat`: the least disturbed run is the closest to the code's own cost."""
    n = calls_per_repeat(make_op, min_time)
    return min(run_n(make_op(n), n) for _ in range(repeat)) / n


def stateless(op: Op) -> OpFactory:
    return lambda _n: op


@dataclass(frozen=True, slots=True)
class Timing:
    seconds_per_op: float

    @property
    def micros(self) -> float:
        return self.seconds_per_op * 1e6

    @property
    def ops_per_second(self) -> float:
        return 1.0 / self.seconds_per_op


# ---- the things measured ----------------------------------------------------------------------
def schema_bytes(version: Version, action: str) -> bytes:
    # Request schemas only: a CSMS validates inbound CALL payloads on every message.
    suffix = ".json" if version is Version.OCPP16 else "Request.json"
    folder = importlib.resources.files("ocpp") / PACKAGE_DIR[version] / "schemas"
    return (folder / f"{action}{suffix}").read_bytes()


def jsonschema_validator(version: Version, action: str) -> jsonschema.protocols.Validator:
    # No format_checker: the `ocpp` package validates without one.
    return JSONSCHEMA_CLASS[version](json.loads(schema_bytes(version, action)))


def fastjsonschema_without_formats(version: Version, action: str) -> Callable[[Any], Any]:
    """Like production but with format checks off, to compare like with like with jsonschema."""
    schema = orjson.loads(schema_bytes(version, action))
    schema.pop("$id", None)
    return fastjsonschema.compile(schema, use_formats=False)


def fastjsonschema_as_production(version: Version, action: str) -> Callable[[Any], Any]:
    """The same compile call as lite_csms/ocppj/schemas.py, to time it on its own."""
    schema = orjson.loads(schema_bytes(version, action))
    schema.pop("$id", None)
    return fastjsonschema.compile(schema, formats={"date-time": timestamps.is_valid})


def production_validate(case: Case) -> Op:
    def op() -> object:
        return schemas.validate(case.version, case.action, case.payload, response=False)
    return op


def stdlib_dumps(value: object) -> str:
    # Compact separators, as the `ocpp` package sends: the default spaces cost bytes on the wire.
    return json.dumps(value, separators=(",", ":"))


def orjson_dumps(value: object) -> str:
    # Decoded to str as in framing.dumps: trio-websocket sends str as a text frame.
    return orjson.dumps(value).decode()


def receive_factory(case: Case) -> OpFactory:
    """A fresh session and n distinct message ids: a repeated id would be ignored as a duplicate
    without being validated, and time the wrong path."""
    def make(n: int) -> Op:
        session = RpcSession(case.version)
        texts: Iterator[str] = iter([
            orjson.dumps([2, f"{i:08d}-0000-4000-8000-000000000000", case.action, case.payload])
            .decode()
            for i in range(n)
        ])
        return lambda: session.receive(next(texts), 0.0)
    return make


def check_cases_are_valid(validators: dict[str, jsonschema.protocols.Validator]) -> None:
    """Only the success path is timed, so every payload must pass every validator."""
    for case in CASES:
        validators[case.name].validate(case.payload)
        violation = schemas.validate(case.version, case.action, case.payload, response=False)
        assert violation is None, (case.name, violation)
        events = RpcSession(case.version).receive(case.text, 0.0)
        assert len(events) == 1 and isinstance(events[0], InboundCall), (case.name, events)
        broken = dict(case.payload, unexpectedField=1)
        assert not validators[case.name].is_valid(broken), case.name
        assert schemas.validate(case.version, case.action, broken, response=False), case.name


# ---- tables -----------------------------------------------------------------------------------
def speedup(slow: Timing, fast: Timing) -> str:
    return f"{slow.seconds_per_op / fast.seconds_per_op:.1f}x"


def time_op(op: Op, args: argparse.Namespace) -> Timing:
    return Timing(best_seconds_per_op(stateless(op), args.min_time, args.repeat))


def json_table(args: argparse.Namespace) -> str:
    rows = []
    for case in CASES:
        text, frame = case.text, case.frame
        pairs = {
            "loads": (lambda t=text: json.loads(t), lambda t=text: orjson.loads(t)),
            "dumps": (lambda f=frame: stdlib_dumps(f), lambda f=frame: orjson_dumps(f)),
            "loads+dumps": (lambda t=text: stdlib_dumps(json.loads(t)),
                            lambda t=text: orjson_dumps(orjson.loads(t))),
        }
        for operation, (stdlib_op, orjson_op) in pairs.items():
            slow, fast = time_op(stdlib_op, args), time_op(orjson_op, args)
            rows.append([case.name, f"{len(text)} B", operation, slow.micros, slow.ops_per_second,
                         fast.micros, fast.ops_per_second, speedup(slow, fast)])
    headers = ["frame", "size", "operation", "json µs/op", "json ops/s", "orjson µs/op",
               "orjson ops/s", "speedup"]
    return markdown_table(headers, rows, label_columns=3)


def schema_table(args: argparse.Namespace,
                 validators: dict[str, jsonschema.protocols.Validator]) -> str:
    rows = []
    for case in CASES:
        reference = validators[case.name]
        unformatted = fastjsonschema_without_formats(case.version, case.action)
        slow = time_op(lambda v=reference, p=case.payload: v.validate(p), args)
        production = time_op(production_validate(case), args)
        like_for_like = time_op(lambda f=unformatted, p=case.payload: f(p), args)
        rows.append([case.name, type(reference).__name__, slow.micros, slow.ops_per_second,
                     production.micros, production.ops_per_second, speedup(slow, production),
                     like_for_like.micros, speedup(slow, like_for_like)])
    headers = ["payload", "jsonschema class", "jsonschema µs/op", "jsonschema ops/s",
               "fastjsonschema (schemas.validate) µs/op", "fastjsonschema ops/s", "speedup",
               "fastjsonschema formats off µs/op", "speedup formats off"]
    return markdown_table(headers, rows, label_columns=2)


def decode_path_table(args: argparse.Namespace,
                      validators: dict[str, jsonschema.protocols.Validator]) -> str:
    rows = []
    for case in CASES:
        reference = validators[case.name]

        def stdlib_decode(t: str = case.text, v: Any = reference) -> object:
            # The least a stdlib stack must do: parse, then validate the payload.
            return v.validate(json.loads(t)[3])

        slow = time_op(stdlib_decode, args)
        fast = Timing(best_seconds_per_op(receive_factory(case), args.min_time, args.repeat))
        rows.append([case.name, slow.micros, slow.ops_per_second, fast.micros,
                     fast.ops_per_second, speedup(slow, fast)])
    headers = ["CALL frame", "json.loads + jsonschema µs/op", "ops/s",
               "RpcSession.receive µs/op", "ops/s", "speedup"]
    return markdown_table(headers, rows)


def seconds_once(op: Op) -> float:
    started = time.perf_counter()
    op()
    return time.perf_counter() - started


def cold_production_validate_ms() -> dict[str, float]:
    """The first schemas.validate of each action compiles its schema; a process pays this once,
    so it is timed once, before anything else has warmed the cache."""
    return {case.name: seconds_once(production_validate(case)) * 1e3 for case in CASES}


def best_ms(op: Op, repeat: int) -> float:
    return min(seconds_once(op) for _ in range(repeat)) * 1e3


def all_request_actions() -> list[tuple[Version, str]]:
    return [(version, action) for version in PACKAGE_DIR
            for action in sorted(schemas.known_actions(version))]


def compile_table(args: argparse.Namespace, cold_ms: dict[str, float]) -> str:
    rows = []
    for case in CASES:
        def jsonschema_first_use(c: Case = case) -> object:
            # jsonschema builds lazily, so its setup cost shows up in the first validation.
            return jsonschema_validator(c.version, c.action).validate(c.payload)

        def fastjsonschema_compile(c: Case = case) -> object:
            return fastjsonschema_as_production(c.version, c.action)

        rows.append([case.name, best_ms(jsonschema_first_use, args.repeat),
                     best_ms(fastjsonschema_compile, args.repeat), cold_ms[case.name]])
    actions = all_request_actions()

    def build_all_jsonschema() -> object:
        return [jsonschema_validator(v, a) for v, a in actions]

    def compile_all_fastjsonschema() -> object:
        return [fastjsonschema_as_production(v, a) for v, a in actions]

    rows.append([f"all {len(actions)} request schemas of 1.6 + 2.0.1 (jsonschema: build only)",
                 best_ms(build_all_jsonschema, args.repeat),
                 best_ms(compile_all_fastjsonschema, min(args.repeat, 3)), "n/a"])
    headers = ["schema", "jsonschema build + first validate ms", "fastjsonschema.compile ms",
               "first schemas.validate in a fresh process ms"]
    return markdown_table(headers, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds each timed repeat lasts at least (default 0.2)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed repeats; the best is reported (default 5)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cold_ms = cold_production_validate_ms()
    validators = {case.name: jsonschema_validator(case.version, case.action) for case in CASES}
    check_cases_are_valid(validators)
    print("## Codec benchmark\n")
    print(machine_summary(["orjson", "fastjsonschema", "jsonschema", "ocpp"]))
    print(f"- timing: time.perf_counter, best of {args.repeat} repeats of at least "
          f"{args.min_time:g} s each\n")
    print("### JSON: stdlib json vs orjson on whole OCPP-J CALL frames\n")
    print(json_table(args) + "\n")
    print("### Schema validation of the CALL payload\n")
    print(schema_table(args, validators) + "\n")
    print("### Whole inbound decode path\n")
    print(decode_path_table(args, validators) + "\n")
    print("### One-time schema compile cost\n")
    print(compile_table(args, cold_ms))


if __name__ == "__main__":
    main()
