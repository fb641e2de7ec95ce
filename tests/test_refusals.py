"""Refused handshakes: one answer for unknown and known ids, timing included, and their bytes
in the station's data budget (docs/SECURITY.md, items 2 and 6 of issue 11)."""

from __future__ import annotations

import base64
import os
import statistics

import pytest
import trio

from lite_csms import passwords
from lite_csms.budget.names import IN, IP, OUT, REFUSED_HANDSHAKE, WS
from lite_csms.budget.recorder import REFUSAL_BYTES, REFUSALS_PER_HOUR
from lite_csms.db.models import Station, TrafficCounter
from tests import rawws
from tests.conftest import CsmsInProcess
from tests.test_storm_auth import CountingVerify, status_of


async def exchange(port: int, station_id: str, password: str | None, source: str,
                   pad: int = 0) -> tuple[bytes, bytes, float]:
    """One upgrade with Basic auth (none if `password` is None) from `source`, padded with a
    `pad`-byte header: (request sent, whole answer, seconds to the answer's first byte)."""
    lines = [f"GET /ocpp/{station_id} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6"]
    if password is not None:
        lines.append("Authorization: Basic "
                     + base64.b64encode(f"{station_id}:{password}".encode()).decode())
    if pad:
        lines.append("X-Pad: " + "x" * pad)
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    started = trio.current_time()
    await stream.send_all(request)
    answer = b""
    took = 0.0
    with trio.fail_after(5):
        # Until the server closes: the whole answer is charged, the time is to its start.
        while chunk := await stream.receive_some(4096):
            took = took or trio.current_time() - started
            answer += chunk
    await stream.aclose()
    return request, answer, took


async def add(csms: CsmsInProcess, station_id: str, stored: str) -> None:
    await csms.server.store.run(lambda: Station.create(
        id=station_id, password_hash=stored, registration="accepted"))


async def test_unknown_and_known_ids_get_the_same_401_after_the_same_work(
        csms: CsmsInProcess) -> None:
    await add(csms, "CHOSEN", passwords.hash_password("a-chosen-password-1"))
    await add(csms, "GENERATED", passwords.hash_generated(passwords.generate()))
    took: dict[str, list[float]] = {"CHOSEN": [], "GENERATED": [], "NOBODY": []}
    answers: set[bytes] = set()
    runs = kdf_runs = csms.server.kdf.runs
    source = 10
    for _ in range(3):
        for sid in took:
            # A new address each time: the throttle stays out of the way.
            _, answer, seconds = await exchange(csms.port, sid, "wrong-password-123",
                                                f"127.0.0.{source}")
            source += 1
            assert answer.startswith(b"HTTP/1.1 401 "), answer
            answers.add(answer)
            took[sid].append(seconds)
    assert len(answers) == 1, answers
    # Each 401 ran one KDF check: the unknown id and the generated password a dummy one.
    runs = csms.server.kdf.runs
    assert runs - kdf_runs == 9
    known = statistics.median(took["CHOSEN"])
    for sid in ("NOBODY", "GENERATED"):
        assert statistics.median(took[sid]) > 0.5 * known, took


async def test_guessing_unknown_ids_is_throttled_and_costs_bounded_kdf(
        csms: CsmsInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingVerify(monkeypatch)
    statuses: list[int] = []
    limit = trio.CapacityLimiter(10)

    async def guess(n: int) -> None:
        async with limit:
            statuses.append((await status_of(csms.port, f"NOBODY-{n:03d}", "guess-123"))[0])

    with trio.fail_after(10):
        async with trio.open_nursery() as attack:
            for n in range(40):
                attack.start_soon(guess, n)
    assert set(statuses) <= {401, 429} and statuses.count(429) >= 30, statuses
    assert counting.calls <= 10, counting.calls
    # No row for any of them.
    assert await csms.server.store.run(lambda: Station.select().count()) == 0


def refusal_rows() -> dict[tuple[str, str, str], int]:
    return {(r.station_id, r.direction, r.layer): r.bytes
            for r in TrafficCounter.select().where(TrafficCounter.action == REFUSED_HANDSHAKE)}


async def charged_after_flush(csms: CsmsInProcess) -> dict[tuple[str, str, str], int]:
    # Kept in memory until the flush: no write per refused handshake.
    with trio.fail_after(5):
        while csms.server.traffic._refused:
            await trio.sleep(0.02)
    assert await csms.server.store.run(refusal_rows) == {}
    await csms.server.traffic.flush()
    return await csms.server.store.run(refusal_rows)


async def test_a_wrong_password_is_charged_to_its_station_capped_per_refusal_and_hour(
        csms: CsmsInProcess) -> None:
    await add(csms, "WRONG-PW", passwords.hash_password("the-right-password-9"))
    statuses = []
    # A charger's ordinary wrong password: charged exactly.
    request, answer, _ = await exchange(csms.port, "WRONG-PW", "not-the-password",
                                        "127.0.0.40")
    statuses.append(int(answer.split()[1]))
    # Padded to 12 kB: charged at most REFUSAL_BYTES a direction and layer. Then 401s and a
    # 429 beyond REFUSALS_PER_HOUR, and 429s before the database: none of them charged.
    for _ in range(6):
        _, padded, _ = await exchange(csms.port, "WRONG-PW", "not-the-password",
                                      "127.0.0.40", pad=12_000)
        statuses.append(int(padded.split()[1]))
    for _ in range(2):
        await exchange(csms.port, "NOT-A-STATION", "whatever-123", "127.0.0.41")
    assert statuses[:4] == [401] * 4 and set(statuses[4:]) == {429}, statuses

    charged = await charged_after_flush(csms)
    assert REFUSALS_PER_HOUR == 2
    assert charged[("WRONG-PW", IN, WS)] == len(request) + REFUSAL_BYTES
    assert charged[("WRONG-PW", OUT, WS)] == 2 * len(answer)
    # Below: headers, the TCP handshake and teardown; at least one header per byte moved.
    assert len(request) < charged[("WRONG-PW", IN, IP)] <= 2 * REFUSAL_BYTES
    assert 2 * len(answer) < charged[("WRONG-PW", OUT, IP)] <= 2 * REFUSAL_BYTES
    assert {sid for sid, _, _ in charged} == {"WRONG-PW"}
    assert await csms.server.store.run(lambda: Station.select().count()) == 1


def without_retry_after(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n")
                        if not line.startswith(b"Retry-After:"))


async def test_a_generated_password_gets_in_from_an_address_blocked_by_a_guesser(
        csms: CsmsInProcess) -> None:
    # After a restart the credential cache is empty; a guesser shares the station's NAT.
    right = passwords.generate()
    await add(csms, "GENERATED", passwords.hash_generated(right))
    await add(csms, "CHOSEN", passwords.hash_password("a-chosen-password-1"))
    nat = "127.0.0.50"
    for _ in range(10):
        _, answer, _ = await exchange(csms.port, "GENERATED", "guess-0000000000", nat)
        if answer.startswith(b"HTTP/1.1 429 "):
            break
    assert csms.server.throttle.source_wait(nat) is not None
    runs = csms.server.kdf.runs
    basic = base64.b64encode(f"GENERATED:{right}".encode()).decode()
    stream, answer = await rawws.connect(csms.port, "/ocpp/GENERATED", source=nat,
                                         headers=(f"Authorization: Basic {basic}",))
    assert answer.startswith(b"HTTP/1.1 101 "), answer
    await stream.aclose()
    # Everything else from that address still waits, known id or not, with one answer.
    _, wrong, _ = await exchange(csms.port, "GENERATED", "guess-0000000001", nat)
    _, unknown, _ = await exchange(csms.port, "NOBODY", "guess-0000000001", nat)
    _, chosen, _ = await exchange(csms.port, "CHOSEN", "a-chosen-password-1", nat)
    assert wrong.startswith(b"HTTP/1.1 429 ") and chosen.startswith(b"HTTP/1.1 429 ")
    assert without_retry_after(wrong) == without_retry_after(unknown), (wrong, unknown)
    assert csms.server.kdf.runs == runs


async def test_profile_refusals_cost_what_a_wrong_password_costs(csms: CsmsInProcess) -> None:
    # Plain ws://: a profile 2 station needs TLS, a profile 3 one a certificate. Refused at
    # once, the timing would tell their ids from unknown ones.
    for sid, profile in (("PROFILE-2", 2), ("PROFILE-3", 3)):
        await csms.server.store.run(lambda sid=sid, profile=profile: Station.create(
            id=sid, password_hash=passwords.hash_password("the-right-password-9"),
            registration="accepted", security_profile=profile))
    answers = set()
    for n, sid in enumerate(("PROFILE-2", "PROFILE-3", "NOBODY")):
        runs = csms.server.kdf.runs
        _, answer, _ = await exchange(csms.port, sid, "the-right-password-9",
                                      f"127.0.0.{60 + n}")
        assert csms.server.kdf.runs == runs + 1, sid
        answers.add(answer)
    assert len(answers) == 1 and answers.pop().startswith(b"HTTP/1.1 401 ")
    # Counted as failures, as wrong passwords are.
    assert csms.server.throttle.stations.get("PROFILE-2") is not None


async def test_refusals_an_outsider_causes_without_the_password_checked_cost_nothing(
        csms: CsmsInProcess) -> None:
    await add(csms, "VICTIM", passwords.hash_password("the-right-password-9"))
    await add(csms, "DECOY", passwords.hash_password("the-right-password-9"))
    # No credential at all: a 401 that needs no check.
    for _ in range(3):
        _, answer, _ = await exchange(csms.port, "VICTIM", None, "127.0.0.42", pad=12_000)
        assert answer.startswith(b"HTTP/1.1 401 "), answer
    # A source throttled by guesses at another station: 429 before the database is asked.
    while (await exchange(csms.port, "DECOY", "guess-1234", "127.0.0.43"))[1].startswith(
            b"HTTP/1.1 401 "):
        pass
    for _ in range(3):
        _, answer, _ = await exchange(csms.port, "VICTIM", "guess-1234", "127.0.0.43",
                                      pad=12_000)
        assert answer.startswith(b"HTTP/1.1 429 "), answer
    charged = await charged_after_flush(csms)
    assert not any(sid == "VICTIM" for sid, _, _ in charged), charged
