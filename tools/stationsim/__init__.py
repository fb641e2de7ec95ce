"""The station simulator behind tools/station_sim.py, by role.

- transport.py: the connection and its encoding (OCPP-J JSON on a WebSocket); the only
  module that touches trio_websocket.
- link.py: OCPP-J calls over any transport (RpcLink), and the station's `Answer`.
- state.py: configuration, connectors, transactions, readings, the clock, the report.
- station.py: behaviour every version shares (boot, heartbeats, statuses, charging, reboots).
- answers.py: answering the CSMS's calls, shared by every version.
- connection.py: a whole run on real connections, reconnecting after a Reset.
- v16.py, v2.py: each version's messages and its answers to the CSMS; responders.py holds
  the profiles and reports those answers draw on.
- scenarios.py: what a station does after it boots; cli.py: the command line.
"""
