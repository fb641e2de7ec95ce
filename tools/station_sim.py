#!/usr/bin/env python3
"""A charging-station simulator for lite-csms: OCPP 1.6J, 2.0.1 and 2.1 on trio-websocket.

It boots, heartbeats and charges by script, and answers the CSMS's own calls as a real charger
would, from a station-side configuration store the CSMS can change. Framing, validation and call
correlation come from lite_csms.ocppj.session.RpcSession, so every payload the simulator sends
is checked against the OCA schemas before it leaves, and every answer the CSMS gives is checked
on the way in.

This file is the command line and the simulator's public face; the code lives in the
`stationsim` folder next to it, one module per role (its __init__.py lists them). tools/ is
not a package: load this file by path (importlib.util.spec_from_file_location) to build a
`ChargingStation` and drive it directly, as the tests and the traffic simulator do; the names
they use are re-exported here. tools/README.md describes the command line.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PACKAGE = "stationsim"


def _load_package() -> types.ModuleType:
    """tools/ is not on the import path when this file is run as a script or loaded by path:
    load the stationsim folder next to it as a package, so its modules import each other."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    folder = Path(__file__).resolve().with_name(PACKAGE)
    spec = importlib.util.spec_from_file_location(
        PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: the package's modules import each other through sys.modules.
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


_load_package()

# Re-exported: users of `import station_sim as sim` (tests, traffic_sim.py) keep these names.
from stationsim import responders, state  # noqa: E402
from stationsim.answers import AnsweringStation, Handler  # noqa: E402
from stationsim.cli import (  # noqa: E402
    build_parser,
    main,
    make_station,
    parse_args,
    run_until_signalled,
)
from stationsim.connection import ConnectedStation  # noqa: E402
from stationsim.link import CONNECTION_CLOSED, Answer, FollowUp, Link, RpcLink  # noqa: E402
from stationsim.scenarios import (  # noqa: E402
    SCENARIOS,
    scenario_boot,
    scenario_charge,
    scenario_heartbeat,
)
from stationsim.state import *  # noqa: E402, F403
from stationsim.station import ChargingStation  # noqa: E402
from stationsim.transport import (  # noqa: E402
    CONNECT_TIMEOUT,
    DISCONNECT_TIMEOUT,
    LITE_SUBPROTOCOLS,
    ConnectFailed,
    LiteTransport,
    Message,
    Transport,
    TransportClosed,
    Undecodable,
    WebSocketTransport,
    basic_auth_headers,
    decode_json,
    encode_json,
    lite_offer,
    open_link,
    open_websocket,
    station_url,
)
from stationsim.v2 import StationV2  # noqa: E402
from stationsim.v16 import StationV16  # noqa: E402

from lite_csms.ocppj.framing import Payload  # noqa: E402

__all__ = [
    "CONNECTION_CLOSED", "CONNECT_TIMEOUT", "DISCONNECT_TIMEOUT", "LITE_SUBPROTOCOLS",
    "SCENARIOS",
    "Answer", "AnsweringStation", "ChargingStation", "ConnectFailed", "ConnectedStation",
    "FollowUp", "Handler", "Link", "LiteTransport", "Message", "Payload", "RpcLink",
    "StationV2", "StationV16", "Transport", "TransportClosed", "Undecodable",
    "WebSocketTransport", "basic_auth_headers", "build_parser", "decode_json", "encode_json",
    "lite_offer", "main", "make_station", "open_link", "open_websocket",
    "parse_args", "responders", "run_until_signalled", "scenario_boot", "scenario_charge",
    "scenario_heartbeat", "state", "station_url",
]

if __name__ == "__main__":
    sys.exit(main())
