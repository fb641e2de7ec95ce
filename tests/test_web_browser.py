"""The web page in a real browser: headless Chromium (Debian's chromium and chromedriver,
driven by selenium) at phone size, against an in-process server with a simulated 2.0.1
station that accepts RequestStartTransaction and charges until it is stopped.

One browser for the module, one test: the driver's flow (QR page, one-time code, start,
progress, stop) and then the owner's (sign in, the session with its cost, a new price),
the owner seeing the very charge the driver made."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from lite_csms import passwords
from lite_csms.db.models import Station
from lite_csms.ocppj.versions import Version
from lite_csms.sharing import codes, owners, pricing
from tests.conftest import start_in_process
from tests.test_simulator import SIM_PATH, sim


def load_screenshots() -> Any:
    """tools/screenshots.py, loaded by path (tools/ is not a package): its phone browser and
    its click-and-wait are the ones this test uses."""
    path = SIM_PATH.with_name("screenshots.py")
    spec = importlib.util.spec_from_file_location("screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


shots = load_screenshots()
CHROMIUM, CHROMEDRIVER, WIDTH = shots.CHROMIUM, shots.CHROMEDRIVER, shots.WIDTH
PHONE = "+254711000111"
OWNER_PASSWORD = "owner password 1"

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Never skipped: the README's test command installs chromium and chromium-driver.
    for program in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(program), f"{program} is missing: apt-get install chromium " \
                                      "chromium-driver (the README's test command does)"
    driver = shots.phone_browser(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def seed(station_id: str) -> None:
    owner = owners.add_owner("Amina", email="amina@example.com",
                             password_hash=passwords.hash_password(OWNER_PASSWORD))
    Station.create(id=station_id)
    owners.set_station_owner(station_id, owner.id)
    pricing.set_tariff(station_id, "KES", "25", "0", "50")


class Phone:
    """The test's hands on the browser: find, type, click, wait, and check the page fits."""

    def __init__(self, browser: Any, base: str) -> None:
        from selenium.webdriver.common.by import By

        self.browser, self.base, self.by = browser, base, By
        self.widths: dict[str, int] = {}

    def open(self, path: str) -> None:
        self.browser.get(self.base + path)
        self.check_fits()

    def text(self) -> str:
        return self.browser.find_element(self.by.TAG_NAME, "body").text

    def type(self, field_id: str, value: str) -> None:
        element = self.browser.find_element(self.by.ID, field_id)
        element.clear()
        element.send_keys(value)

    def press(self, label: str) -> None:
        """Click the button or link whose text is `label`; the page it leads to is loaded
        when this returns (a plain form POST, then its redirect)."""
        shots.press(self.browser, label)
        self.check_fits()

    def until(self, wanted: Callable[[str], bool], what: str, timeout: float = 8.0) -> str:
        """Reload until the page's text satisfies `wanted` (no script on the page: reloading
        is how a person sees news)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if wanted(text):
                return text
            assert time.monotonic() < deadline, f"never {what}:\n{text}"
            time.sleep(0.2)
            self.browser.refresh()

    def check_fits(self) -> None:
        """At 360 px nothing may scroll sideways: a phone user would have to pan."""
        width = self.browser.execute_script("return document.documentElement.scrollWidth")
        path = re.sub(r"^https?://[^/]+", "", self.browser.current_url)
        self.widths[path] = width
        assert width <= WIDTH, f"{path} is {width} px wide"


def driver_and_owner(browser: Any, base: str, sent: dict[str, str], database: Path) -> None:
    phone = Phone(browser, base)
    browser.delete_all_cookies()
    # The driver scans the QR code: price and a free connector, then signs in with a code.
    phone.open("/s/CS-WEB/1")
    text = phone.until(lambda t: "Free" in t, "a free connector")
    assert "KES 25.00/kWh + KES 50.00 per session" in text
    phone.press("Sign in to charge")
    phone.type("phone", PHONE)
    phone.press("Send me a code")
    assert "We sent a code" in phone.text()
    phone.type("code", sent[PHONE])
    phone.press("Sign in")
    assert browser.current_url == base + "/s/CS-WEB/1"
    phone.press("Start charging")
    assert "The charger is starting" in phone.text()
    phone.until(lambda t: "See your charge" in t, "the running session on the QR page")
    phone.press("See your charge")
    assert "Charging" in phone.text() and "Stop charging" in phone.text()
    time.sleep(0.3)  # let the register climb: the reading must show energy
    phone.press("Update reading")
    text = phone.text()
    assert "Just read from the charger." in text, text
    energy = float(re.search(r"Energy\n([\d.]+) kWh", text).group(1))  # type: ignore[union-attr]
    assert energy > 0, text
    phone.press("Stop charging")
    assert "The charger is stopping the session." in phone.text()
    text = phone.until(lambda t: "Charge ended" in t, "the session ended")
    cost = re.search(r"Cost\n(KES [\d.]+)", text)
    assert cost is not None, text
    final_energy = float(re.search(r"Energy\n([\d.]+) kWh", text).group(1))  # type: ignore[union-attr]
    assert final_energy >= energy
    # 25.00/kWh + 50.00 per session, from the stored energy (the time is not priced).
    with closing(sqlite3.connect(database)) as conn:
        wh, stored = conn.execute("SELECT energy_wh, cost FROM \"transaction\"").fetchone()
    # Half up, as the price rule says (Python's round() would round half to even).
    half_up = (round(wh) * 2500 + 500) // 1000
    assert cost.group(1) == f"KES {(5000 + half_up) / 100:.2f}" == \
        f"KES {stored / 100:.2f}"
    phone.press("Sign out")
    # The owner signs in, sees the charge with its cost, and sets a new price.
    phone.open("/owner/signin")
    phone.type("login", "amina@example.com")
    phone.type("password", OWNER_PASSWORD)
    phone.press("Sign in")
    text = phone.text()
    assert "CS-WEB" in text and "Online" in text and cost.group(1) in text
    phone.press("CS-WEB")
    text = phone.text()
    assert cost.group(1) in text and "Data use" in text
    phone.type("per_kwh", "30")
    phone.press("Save price")
    assert "New price saved" in phone.text()
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT per_kwh FROM tariff").fetchone() == (3000,)
    # Out of service (ChangeAvailability through the command path), seen on the QR page.
    phone.press("Take out of service")
    assert "The charger is now out of service." in phone.text()
    phone.open("/s/CS-WEB/1")
    text = phone.until(lambda t: "Out of service" in t, "the connector out of service")
    assert "KES 30.00/kWh" in text and "Start charging" not in text
    phone.open("/owner/stations/CS-WEB")
    phone.press("Make available")
    assert "The charger is now available." in phone.text()


async def test_a_driver_charges_and_the_owner_sees_it(
        browser: Any, nursery: trio.Nursery, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[str, str] = {}
    monkeypatch.setattr(codes, "deliver", lambda number, code: sent.update({number: code}))
    csms = await start_in_process(nursery, tmp_path)
    await csms.server.store.run(lambda: seed("CS-WEB"))
    station = sim.make_station(sim.StationOptions(
        url=f"ws://127.0.0.1:{csms.port}/ocpp", station_id="CS-WEB",
        protocol=Version.OCPP201, scenario="boot", linger=float("inf"),
        # 360 kW: a tenth of a kWh a second, so a few seconds of charging show on the page.
        power_w=360_000.0))
    nursery.start_soon(station.run)
    base = f"http://127.0.0.1:{csms.server.admin_port}"
    await trio.to_thread.run_sync(driver_and_owner, browser, base, sent, csms.database)
    station.shut_down()
