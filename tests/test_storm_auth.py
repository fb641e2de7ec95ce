"""Reconnect storms and password guessing against the real server (docs/SECURITY.md)."""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import secrets
import threading
import time

import pytest
import trio

from lite_csms import passwords
from lite_csms.db.models import Station
from lite_csms.net.kdf import KdfQueue, Overloaded
from tests import rawws
from tests.conftest import CsmsInProcess, run_cli, start_in_process


def cheap_hash(password: str) -> str:
    """A real scrypt hash with a small N, so registering hundreds of stations stays fast;
    verify() reads the cost from the stored string."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**8, r=8, p=1, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${2**8}$8$1${b64(salt).decode()}${b64(digest).decode()}"


async def register(csms: CsmsInProcess, ids_and_passwords: dict[str, str]) -> None:
    rows = [{"id": sid, "password_hash": cheap_hash(pw), "registration": "accepted"}
            for sid, pw in ids_and_passwords.items()]
    await csms.server.store.run(lambda: Station.insert_many(rows).execute())


class CountingVerify:
    """passwords.verify, counted; optionally slowed down or held until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0,
                 hold: threading.Event | None = None) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._real = passwords.verify
        self._delay = delay
        self._hold = hold
        monkeypatch.setattr(passwords, "verify", self)

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.calls += 1
        if self._hold is not None:
            self._hold.wait(10)
        if self._delay:
            time.sleep(self._delay)
        return self._real(password, stored)


async def handshake(port: int, station_id: str, password: str | None, *,
                    source: str = "127.0.0.1") -> tuple[trio.SocketStream, int, dict[str, str]]:
    """A raw upgrade from `source` (another loopback address stands for another host);
    returns the stream, the HTTP status and the response headers (lower-case names)."""
    stream, response = await rawws.connect(port, f"/ocpp/{station_id}",
                                           headers=_authorization(station_id, password),
                                           source=source)
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return stream, status, headers


def _authorization(station_id: str, password: str | None) -> tuple[str, ...]:
    if password is None:
        return ()
    return (f"Authorization: Basic "
            f"{base64.b64encode(f'{station_id}:{password}'.encode()).decode()}",)


async def send_upgrade(port: int, station_id: str, password: str | None, *,
                       source: str = "127.0.0.1") -> trio.SocketStream:
    return await rawws.send_upgrade(port, f"/ocpp/{station_id}",
                                    headers=_authorization(station_id, password),
                                    source=source)


async def status_of(port: int, station_id: str, password: str | None, *,
                    source: str = "127.0.0.1") -> tuple[int, dict[str, str]]:
    stream, status, headers = await handshake(port, station_id, password, source=source)
    await stream.aclose()
    return status, headers


async def wait_until(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_a_reconnect_storm_of_known_stations_costs_no_kdf(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    stations = {f"STORM-{i:03d}": secrets.token_urlsafe(18) for i in range(200)}
    await register(csms, stations)
    counting = CountingVerify(monkeypatch)

    async def storm() -> list[int]:
        statuses: list[int] = []

        async def one(sid: str, pw: str) -> None:
            statuses.append((await status_of(csms.port, sid, pw))[0])

        async with trio.open_nursery() as nursery:
            for sid, pw in stations.items():
                nursery.start_soon(one, sid, pw)
        return statuses

    with trio.fail_after(20):
        first = await storm()
    assert first == [101] * 200
    assert counting.calls == 200
    await wait_until(lambda: not csms.server.connections)
    # All drop and come back at once: every credential is in the cache.
    started = time.monotonic()
    with trio.fail_after(10):
        again = await storm()
    assert again == [101] * 200, sorted(set(again))
    assert counting.calls == 200, "a cached credential ran the KDF"
    assert time.monotonic() - started < 10


async def test_a_client_that_leaves_mid_handshake_costs_no_kdf(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    await register(csms, {"HOLD-1": "password-one-1234", "HOLD-2": "password-two-1234",
                          "LEAVER": "password-three-12"})
    caplog.set_level(logging.INFO, "lite_csms.net")
    release = threading.Event()
    counting = CountingVerify(monkeypatch, hold=release)
    try:
        # Two checks occupy both KDF slots.
        first = await send_upgrade(csms.port, "HOLD-1", "password-one-1234")
        second = await send_upgrade(csms.port, "HOLD-2", "password-two-1234")
        await wait_until(lambda: counting.calls == 2)
        leaver = await send_upgrade(csms.port, "LEAVER", "password-three-12")
        limiter = csms.server.kdf.limiter
        await wait_until(lambda: limiter.statistics().tasks_waiting == 1)
        await leaver.aclose()
        # The server notices the peer left and drops its place in the queue.
        await wait_until(lambda: limiter.statistics().tasks_waiting == 0)
    finally:
        release.set()
    for stream in (first, second):
        response = await stream.receive_some(4096)
        assert response.startswith(b"HTTP/1.1 101"), response
        await stream.aclose()
    await trio.sleep(0.2)
    assert counting.calls == 2
    assert "abandoned: the peer left" in caplog.text


async def test_a_queue_too_long_for_the_handshake_timeout_is_shed_with_503(
        nursery: trio.Nursery, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    csms = await start_in_process(nursery, tmp_path, handshake_timeout=2.0)
    stations = {f"SHED-{i:02d}": secrets.token_urlsafe(18) for i in range(24)}
    await register(csms, stations)
    counting = CountingVerify(monkeypatch, delay=0.4)
    # One check measures the KDF at ~0.4 s: two slots serve ~5 a second.
    assert (await status_of(csms.port, "SHED-00", stations["SHED-00"]))[0] == 101
    results: dict[str, tuple[int, dict[str, str], float]] = {}

    async def one(sid: str, pw: str) -> None:
        started = trio.current_time()
        status, headers = await status_of(csms.port, sid, pw)
        results[sid] = (status, headers, trio.current_time() - started)

    with trio.fail_after(10):
        async with trio.open_nursery() as burst:
            for sid, pw in list(stations.items())[1:]:
                burst.start_soon(one, sid, pw)
                await trio.sleep(0.005)  # arrival order = queue order
    shed = {sid: r for sid, r in results.items() if r[0] == 503}
    served = {sid: r for sid, r in results.items() if r[0] == 101}
    assert shed and served and len(shed) + len(served) == 23, results
    for _status, headers, took in shed.values():
        assert int(headers["retry-after"]) >= 1
        assert took < 0.5, "shed only after waiting"
    # Shed handshakes cost no KDF: only the warm-up and the served ones ran it.
    assert counting.calls == 1 + len(served)


async def test_a_guesser_is_pushed_back_and_the_right_password_still_gets_in(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    await register(csms, {"VICTIM": "the-right-password-42"})
    counting = CountingVerify(monkeypatch)
    statuses: list[tuple[int, dict[str, str]]] = []
    limit = trio.CapacityLimiter(20)

    async def guess(n: int) -> None:
        async with limit:
            statuses.append(await status_of(csms.port, "VICTIM", f"wrong-guess-{n:04d}"))

    with trio.fail_after(10):
        async with trio.open_nursery() as attack:
            for n in range(100):
                attack.start_soon(guess, n)
    codes = [status for status, _ in statuses]
    assert set(codes) <= {401, 429} and codes.count(429) >= 80, codes
    assert all(int(h["retry-after"]) >= 1 for s, h in statuses if s == 429)
    # The KDF work one source can cause is bounded, however fast it guesses.
    assert counting.calls <= 10, counting.calls
    # Retries keep being refused without a KDF while the source waits.
    status, headers = await status_of(csms.port, "VICTIM", "one-more-wrong-guess")
    assert status == 429 and int(headers["retry-after"]) >= 1
    calls = counting.calls
    # The station itself, from its own address, gets in at once.
    started = time.monotonic()
    status, _ = await status_of(csms.port, "VICTIM", "the-right-password-42", source="127.0.0.2")
    assert status == 101 and time.monotonic() - started < 1.0
    assert counting.calls == calls + 1


async def test_a_station_under_attack_lets_its_password_in_and_blocks_new_guessers(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    await register(csms, {"TARGET": "the-right-password-77"})
    counting = CountingVerify(monkeypatch)
    # Three addresses, four wrong guesses each: none is blocked alone, the station is attacked.
    for host in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        for n in range(4):
            status, _ = await status_of(csms.port, "TARGET", f"guess-{n}", source=host)
            assert status in (401, 429)
    assert csms.server.throttle.under_attack("TARGET") is not None
    # A new address's first wrong guess now blocks it...
    status, headers = await status_of(csms.port, "TARGET", "fresh-guess", source="127.0.0.6")
    assert status == 429 and int(headers["retry-after"]) >= 1
    calls = counting.calls
    status, _ = await status_of(csms.port, "TARGET", "fresh-guess-2", source="127.0.0.6")
    assert status == 429 and counting.calls == calls
    # ...while the right password is still checked and let in.
    status, _ = await status_of(csms.port, "TARGET", "the-right-password-77", source="127.0.0.7")
    assert status == 101


async def test_a_changed_password_misses_the_cache(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    await register(csms, {"RESET-1": "the-old-password-123"})
    counting = CountingVerify(monkeypatch)
    assert (await status_of(csms.port, "RESET-1", "the-old-password-123"))[0] == 101
    await wait_until(lambda: not csms.server.connections)
    assert (await status_of(csms.port, "RESET-1", "the-old-password-123"))[0] == 101
    assert counting.calls == 1
    changed = await trio.to_thread.run_sync(lambda: run_cli(
        "station", "set-password", "RESET-1", "--password", "the-new-password-456",
        "--database", str(csms.database)))
    assert changed.returncode == 0, changed.stderr
    await wait_until(lambda: not csms.server.connections)
    assert (await status_of(csms.port, "RESET-1", "the-old-password-123"))[0] == 401
    assert counting.calls == 2
    assert (await status_of(csms.port, "RESET-1", "the-new-password-456"))[0] == 101


async def test_a_generated_password_needs_no_kdf_and_old_scrypt_hashes_still_work(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    added = await trio.to_thread.run_sync(lambda: run_cli(
        "station", "add", "GEN-1", "--database", str(csms.database)))
    assert added.returncode == 0, added.stderr
    generated = added.stdout.split("password: ")[1].split()[0]
    await register(csms, {"OLD-1": "a-password-from-before"})
    derived: list[int] = []
    real = passwords._derive

    def counting_derive(*args: object) -> bytes:
        derived.append(1)
        return real(*args)

    monkeypatch.setattr(passwords, "_derive", counting_derive)
    assert (await status_of(csms.port, "GEN-1", generated))[0] == 101
    assert derived == []
    # A wrong one is answered after a dummy check, as an unknown id is (docs/SECURITY.md).
    assert (await status_of(csms.port, "GEN-1", generated[:-1] + "?"))[0] == 401
    assert derived == [1]
    assert (await status_of(csms.port, "OLD-1", "a-password-from-before"))[0] == 101
    assert derived == [1, 1]


async def test_refused_clients_are_told_to_come_back_spread_over_the_kdf_time() -> None:
    # 100 refused at once with 50 ms checks, two at a time: their promised slots cover the
    # 2.5 s the KDF needs for them, instead of all coming back after the same wait.
    queue = KdfQueue(2, seed=0.05)
    times = [queue.book(1.0) for _ in range(100)]
    assert all(1.0 <= t <= 1.0 + 99 * 0.025 + 0.5 for t in times)
    assert max(times) - min(times) >= 2.0
    assert Overloaded(1.0, times[-1]).retry_after == math.ceil(times[-1])
