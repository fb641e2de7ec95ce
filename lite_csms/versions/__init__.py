"""Version modules: each translates its OCPP version's messages into the one domain model."""

from __future__ import annotations

from lite_csms.ocppj.versions import Version
from lite_csms.versions import station_messages, v16, v201
from lite_csms.versions.context import Handler, StationContext

ROUTES: dict[Version, dict[str, Handler]] = {
    Version.OCPP16: v16.ROUTES,
    Version.OCPP201: v201.ROUTES,
    # 2.1 carries the 2.0.1 feature set and adds its own station messages; its own schemas
    # validate the payloads.
    Version.OCPP21: v201.ROUTES | station_messages.V21_ROUTES,
}

__all__ = ["ROUTES", "Handler", "StationContext"]
