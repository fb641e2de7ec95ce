#!/usr/bin/env python3
"""Screenshots of the web page at phone size, for a person to look at.

Starts a server in this process on a throwaway database with demo data (an owner with two
chargers, a price, past charges and a month of data use), connects a simulated 2.0.1 station,
then drives headless Chromium (Debian's chromium and chromium-driver, via selenium) through
the driver's and the owner's pages at 360 x 740 CSS px, saving one PNG per page:

    .venv/bin/python tools/screenshots.py --out shots/          # 360 x 740, what a phone
    .venv/bin/python tools/screenshots.py --out shots/ --full   # shows first; --full: all

Needs the test extra (selenium) and `apt-get install chromium chromium-driver`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import trio

# tools/ is not a package: the simulator is the station_sim.py beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import station_sim

from lite_csms import config, passwords
from lite_csms.budget.names import IP, OUT
from lite_csms.db.database import open_database
from lite_csms.db.models import Station, TrafficCounter, Transaction
from lite_csms.net.server import CsmsServer
from lite_csms.ocppj import timestamps
from lite_csms.ocppj.versions import Version
from lite_csms.sharing import codes, drivers, owners, pricing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 360, 740
STATION = "CS-DEMO"
PHONE = "+254711000111"
OWNER_LOGIN, OWNER_PASSWORD = "amina@example.com", "demo password"
# Chromium's flags: headless, and nothing of its own on the network (no updates, no sync).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def phone_browser(profile: Path, pixel_ratio: float = 2) -> Any:
    """Headless Chromium emulating a 360 x 740 phone screen (a desktop window cannot be
    narrower than 500 px), with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": WIDTH, "height": HEIGHT, "pixelRatio": pixel_ratio}})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    return browser


def seed_demo() -> None:
    """The demo: Amina owns CS-DEMO (priced) and CS-HOME (no price, never connected); a
    driver charged three times this month; CS-DEMO used data every day of its cycle."""
    now = timestamps.now_utc()
    owner = owners.add_owner("Amina Wanjiru", email=OWNER_LOGIN, phone="+254722000333",
                             password_hash=passwords.hash_password(OWNER_PASSWORD))
    for station in (STATION, "CS-HOME"):
        Station.create(id=station)
        owners.set_station_owner(station, owner.id)
    pricing.set_tariff(STATION, "KES", "25", "0", "50")
    price = pricing.tariff_of(STATION)
    assert price is not None
    driver = drivers.add_driver(phone=PHONE)
    for days_ago, wh, minutes in ((1, 7400, 75), (2, 12_250, 110), (3, 3_100, 30)):
        start = now - timedelta(days=days_ago, hours=3)
        stop = start + timedelta(minutes=minutes)
        Transaction.create(
            station=STATION, evse_id=1, connector_id=1, id_token="DEMO", started_at=start,
            stopped_at=stop, energy_wh=float(wh), price_at=start, price_currency="KES",
            price_per_kwh=price.per_kwh, price_per_hour=price.per_hour,
            price_fee=price.session_fee, owner_id=owner.id, driver_id=driver.id,
            cost=pricing.session_cost(price, wh, minutes * 60))
    for days_ago in range(1, now.day):
        day = (now - timedelta(days=days_ago)).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
        TrafficCounter.create(station=STATION, period="hour", period_start=day,
                              action="Heartbeat", direction=OUT, layer=IP,
                              bytes=420_000 + 90_000 * (days_ago % 5), messages=300)


def press(browser: Any, label: str) -> None:
    """Click the button or link whose text is `label`, and return once the page it leads to
    has replaced this one (a plain form POST and its redirect, or a link)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def gone(element: Any) -> bool:
        # Stale, or chromedriver's "does not belong to the document": the page was replaced.
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False

    found = browser.find_elements(By.XPATH, f"//button[normalize-space()='{label}'] | "
                                            f"//a[normalize-space()='{label}']")
    if not found:
        raise RuntimeError(f"no {label!r} on {browser.current_url}")
    page = browser.find_element(By.TAG_NAME, "html")
    found[0].click()
    WebDriverWait(browser, 10).until(lambda _: gone(page))


class Shooter:
    def __init__(self, browser: Any, base: str, out: Path, full: bool) -> None:
        from selenium.webdriver.common.by import By

        self.browser, self.base, self.out, self.full, self.by = browser, base, out, full, By
        self.count = 0

    def shot(self, name: str) -> None:
        self.count += 1
        path = self.out / f"{self.count:02d}-{name}.png"
        if self.full:
            height = self.browser.execute_script("return document.documentElement.scrollHeight")
            self.browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": WIDTH, "height": max(HEIGHT, height), "deviceScaleFactor": 2,
                "mobile": True})
        self.browser.save_screenshot(str(path))
        if self.full:
            self.browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 2, "mobile": True})
        # The page as it came over the wire: the HTML with its inline CSS is all there is.
        size = self.browser.execute_script(
            "return performance.getEntriesByType('navigation')[0].decodedBodySize")
        print(f"{path}  {size} bytes  {self.browser.current_url.split('/', 3)[-1]}")

    def open(self, path: str) -> None:
        self.browser.get(self.base + path)

    def type(self, field_id: str, value: str) -> None:
        element = self.browser.find_element(self.by.ID, field_id)
        element.clear()
        element.send_keys(value)

    def press(self, label: str) -> None:
        """Click the button or link `label` and wait for the next page to replace this one."""
        press(self.browser, label)

    def wait_for(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.browser.find_element(self.by.TAG_NAME, "body").text:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} never showed on {self.browser.current_url}")
            time.sleep(0.3)
            self.browser.refresh()


def take_all(browser: Any, base: str, out: Path, full: bool, sent: dict[str, str]) -> None:
    s = Shooter(browser, base, out, full)
    s.open("/")
    s.shot("home")
    s.open(f"/s/{STATION}/1")
    s.wait_for("Free")
    s.shot("charge-point")
    s.press("Sign in to charge")
    s.type("phone", PHONE)
    s.shot("sign-in")
    s.press("Send me a code")
    s.type("code", sent[PHONE])
    s.shot("code")
    s.press("Sign in")
    s.shot("charge-point-signed-in")
    s.press("Start charging")
    s.wait_for("See your charge")
    s.shot("charge-point-charging")
    s.press("See your charge")
    time.sleep(1)
    s.press("Update reading")
    s.shot("session-running")
    s.press("Stop charging")
    s.wait_for("Charge ended")
    s.shot("session-ended")
    s.open("/driver")
    s.shot("driver-charges")
    s.press("Sign out")
    s.open("/owner/signin")
    s.type("login", OWNER_LOGIN)
    s.type("password", OWNER_PASSWORD)
    s.shot("owner-sign-in")
    s.press("Sign in")
    s.shot("owner-home")
    s.open(f"/owner/stations/{STATION}")
    s.shot("owner-station")
    s.open("/owner/sessions")
    s.shot("owner-sessions")
    now = timestamps.now_utc()
    s.open(f"/owner/statements/{now.year:04d}-{now.month:02d}")
    s.shot("owner-statement")


async def run(out: Path, full: bool) -> None:
    sent: dict[str, str] = {}
    # No SMS gateway here: the code the server would send is handed to the browser.
    codes.deliver = lambda number, code: sent.update({number: code})  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "demo.sqlite3"
        settings = config.load(environ={}, overrides={
            "host": "127.0.0.1", "port": 0, "admin_port": 0, "database": str(database),
            "budget_policy": False, "currency": "KES"})
        server = CsmsServer(settings, open_database(database))
        async with trio.open_nursery() as nursery:
            ports = await nursery.start(server.run)
            await server.store.run(seed_demo)
            station = station_sim.make_station(station_sim.StationOptions(
                url=f"ws://127.0.0.1:{ports[0]}/ocpp", station_id=STATION,
                protocol=Version.OCPP201, linger=float("inf"), power_w=22_000.0,
                time_scale=1.0))
            nursery.start_soon(station.run)
            browser = await trio.to_thread.run_sync(partial(phone_browser,
                                                            Path(folder) / "profile"))
            try:
                await trio.to_thread.run_sync(take_all, browser,
                                              f"http://127.0.0.1:{server.admin_port}", out,
                                              full, sent)
            finally:
                await trio.to_thread.run_sync(browser.quit)
                station.shut_down()
                server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("shots"), help="folder for the PNGs")
    parser.add_argument("--full", action="store_true",
                        help="whole pages (360 px wide, as tall as the page)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    trio.run(run, args.out, args.full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
