"""The driver page's address for a station's connector: what its QR code holds."""

from __future__ import annotations

from urllib.parse import quote

# The web page serves a station's driver page here (its connector 1, 2, ...).
DRIVER_PATH = "/s/{station}/{connector}"


class NoPublicUrl(ValueError):
    """The `public_url` setting is empty: no address can be printed."""


def driver_page_url(public_url: str, station_id: str, connector: int = 1) -> str:
    """<public_url>/s/<station>/<connector>, the station id percent-encoded. Raises
    NoPublicUrl when public_url is empty, ValueError for a connector below 1."""
    if not public_url:
        raise NoPublicUrl("set public_url (the web page's address as drivers reach it) "
                          "first: lite-csms.toml or LITE_CSMS_PUBLIC_URL")
    if connector < 1:
        raise ValueError("a connector is 1 or more")
    path = DRIVER_PATH.format(station=quote(station_id, safe=""), connector=connector)
    return public_url.rstrip("/") + path
