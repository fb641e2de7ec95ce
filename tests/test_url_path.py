"""Kind 8: a URL pasted with a trailing slash still reaches the station it names."""

from __future__ import annotations

import pytest
from trio_websocket import open_websocket_url

from tests import rawws
from tests.conftest import CsmsInProcess
from tests.test_server import BOOT_16, BOOT_201, query, register, rpc


@pytest.mark.parametrize(("protocol", "boot"), [("ocpp1.6", BOOT_16), ("ocpp2.0.1", BOOT_201)])
@pytest.mark.parametrize("path", ["/ocpp/CS-1/", "/ocpp//CS-1", "/ocpp/CS-1/?via=paste"])
async def test_trailing_or_doubled_slash_names_the_station(
        csms: CsmsInProcess, protocol: str, boot: dict, path: str) -> None:
    await register(csms, "CS-1")
    url = f"ws://127.0.0.1:{csms.port}{path}"
    async with open_websocket_url(url, subprotocols=[protocol]) as ws:
        answer = await rpc(ws, [2, "b", "BootNotification", boot])
        assert answer[2]["status"] == "Accepted"
    assert query(csms, "SELECT id, protocol FROM station") == [("CS-1", protocol)]


async def test_a_base_url_without_an_id_is_still_refused(csms: CsmsInProcess) -> None:
    # No station "ocpp" is registered: "/ocpp/" is a bare base URL.
    for path in ("/ocpp/", "/"):
        stream, response = await rawws.connect(csms.port, path)
        assert response.startswith(b"HTTP/1.1 400"), response
        assert await rawws.closed_by_server(stream)
