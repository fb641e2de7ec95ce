"""The guess throttle and the credential cache on their own, with a fake clock."""

from __future__ import annotations

from lite_csms.net import throttle
from lite_csms.net.kdf import CredentialCache
from lite_csms.net.throttle import GuessThrottle, delay_for, source_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_from_the_free_failures_up_to_the_cap() -> None:
    free = throttle.FREE_FAILURES
    assert [delay_for(n, free) for n in range(free)] == [0.0] * free
    assert [delay_for(free + k, free) for k in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert delay_for(free + 40, free) == throttle.MAX_DELAY


def test_a_source_waits_longer_after_each_failure_and_is_forgotten_later() -> None:
    clock = Clock()
    guard = GuessThrottle(clock=clock)
    for n in range(throttle.FREE_FAILURES - 1):
        assert guard.failed("10.0.0.1", f"CS-{n}") is None
        assert guard.source_wait("10.0.0.1") is None
    waits = []
    for _ in range(4):
        clock.now += 100  # each guess after the previous wait ran out
        waits.append(guard.failed("10.0.0.1", "CS-X"))
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert guard.source_wait("10.0.0.1") == 8.0
    assert guard.source_wait("10.0.0.2") is None  # others are not affected
    clock.now += throttle.FORGET_AFTER + 1
    assert guard.source_wait("10.0.0.1") is None and len(guard.sources) == 0


def test_a_station_under_attack_blocks_a_new_source_at_its_first_failure() -> None:
    clock = Clock()
    guard = GuessThrottle(clock=clock)
    for n in range(throttle.STATION_FREE_FAILURES):
        guard.failed(f"10.0.1.{n}", "CS-1")
    assert guard.under_attack("CS-1") is not None
    assert guard.under_attack("CS-2") is None
    assert guard.failed("10.0.2.1", "CS-1") is not None
    assert guard.source_wait("10.0.2.1") is not None


def test_tables_are_bounded() -> None:
    guard = GuessThrottle(entries=100, clock=Clock())
    for n in range(1000):
        guard.failed(f"10.1.{n // 256}.{n % 256}", f"CS-{n}")
    assert len(guard.sources) == 100 and len(guard.stations) == 100


def test_ipv6_sources_are_throttled_per_slash_64() -> None:
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_the_cache_misses_on_another_stored_hash_after_its_ttl_and_beyond_its_size() -> None:
    clock = Clock()
    cache = CredentialCache(entries=3, ttl=60, clock=clock)
    cache.remember("CS-1", "secret-password-1", "scrypt$a")
    assert cache.verified("CS-1", "secret-password-1", "scrypt$a")
    assert not cache.verified("CS-1", "other-password-22", "scrypt$a")
    assert not cache.verified("CS-2", "secret-password-1", "scrypt$a")
    # A password change stores another hash: the old entry misses and is dropped.
    assert not cache.verified("CS-1", "secret-password-1", "scrypt$b")
    assert not cache.knows("CS-1", "secret-password-1")
    cache.remember("CS-1", "secret-password-1", "scrypt$a")
    clock.now += 61
    assert not cache.verified("CS-1", "secret-password-1", "scrypt$a")
    for n in range(5):
        cache.remember(f"CS-{n}", "pw", "h")
    assert len(cache) == 3 and not cache.knows("CS-0", "pw") and cache.knows("CS-4", "pw")


def test_the_cache_holds_no_password() -> None:
    cache = CredentialCache()
    cache.remember("CS-1", "secret-password-1", "scrypt$a")
    assert all(b"secret" not in key for key in cache._entries)
    # Another process (another key) cannot use these keys.
    assert not CredentialCache().knows("CS-1", "secret-password-1")
