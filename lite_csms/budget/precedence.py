"""Boots first: under a connection burst the policy's settings wait for the handshakes.

After an outage a whole fleet reconnects at once. A station whose BootNotification is not
answered cannot charge, and one that waits too long gives up and reconnects, which makes the
burst longer; a station whose budget settings (heartbeat, ping, meter intervals) come a few
seconds late only runs on its own values a little longer. Each first boot is followed by up
to six ChangeConfiguration round trips, so the settings would otherwise take most of the
CPU while others wait for their boot answer. They therefore wait while other stations'
handshakes are running, at most `budget_policy_boots_first` seconds per station, so a steady
trickle of handshakes delays them but never starves them. The TCP keepalive that holds the
station's NAT mapping is set before this wait, not after.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class BootsFirst:
    """`busy()`: whether handshakes are running now (net/limits.py counts them); `max_wait`:
    seconds a station's settings wait at most (0: never). One waiter at a time polls `busy`
    every `poll` seconds; the others sleep on an event it sets when no handshake has run for
    two polls (or its own wait runs out), so a thousand waiting stations cost one timer, not a
    thousand."""

    def __init__(self, busy: Callable[[], bool], max_wait: float, poll: float = 0.05) -> None:
        self._busy = busy
        self.max_wait = max_wait
        self._poll = poll
        self._quiet: trio.Event | None = None
        # How many stations' settings waited, for the log and the tests.
        self.waited = 0

    def would_wait(self) -> bool:
        """Whether wait() would wait now."""
        return self.max_wait > 0 and self._busy()

    async def wait(self) -> bool:
        """Return once no handshake runs, or after `max_wait` seconds; True if it waited."""
        if not self.would_wait():
            return False
        self.waited += 1
        await self.wait_until(trio.current_time() + self.max_wait)
        return True

    async def wait_until(self, deadline: float) -> None:
        """Return once no handshake runs, or at `deadline` (trio's clock): for a station that
        noted its wait earlier (`waited`) and queued (budget/policy.py)."""
        while self._busy() and trio.current_time() < deadline:
            quiet = self._quiet
            if quiet is not None:
                with trio.move_on_at(deadline):
                    await quiet.wait()
                continue
            self._quiet = quiet = trio.Event()
            try:
                with trio.move_on_at(deadline):
                    # Quiet for two polls running: a burst's next handshake may be a moment
                    # away, and releasing every waiter in that gap would let them compete.
                    quiet_polls = 0
                    while quiet_polls < 2:
                        await trio.sleep(self._poll)
                        quiet_polls = 0 if self._busy() else quiet_polls + 1
            finally:
                # The others look again for themselves; one of them polls next if need be.
                self._quiet = None
                quiet.set()
