"""CostUpdated (OCPP 2.0.1/2.1 I02): a session's running cost sent to the charger's display.

The rules, for a metered link:
- sent only when the charger reported meter values for the session's EVSE (a 2.x
  MeterValues, which names no transaction: it goes to the session running there), never on
  a timer, so a charger that reports no meter values is never sent one;
- only for a session with a price whose cost differs from the last one the charger was told,
  by CostUpdated or by the totalCost of a TransactionEventResponse;
- at most one per session per `cost_update_interval` seconds (900; 0: never). A change inside
  the window waits for the next meter values after it.
Each CostUpdated is a command like any other (logged, requested_by "pricing"), sent in a task
of its own, so the MeterValues answer never waits for it.
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from lite_csms.config import Settings
from lite_csms.db.models import Transaction
from lite_csms.db.writer import StoreWriter
from lite_csms.net.commands import CommandSender, StationOffline
from lite_csms.sharing.money import wire_amount

log = logging.getLogger("lite_csms.pricing")

REQUESTED_BY = "pricing"
# Sessions whose told cost is remembered; beyond it the memory starts over.
MEMORY = 4096


def _running(station_id: str, evse_id: int) -> tuple[int, str, int, str] | None:
    """(transaction, station's transactionId, cost, currency) of the priced session running
    on the EVSE, or None."""
    tx = (Transaction.select()
          .where(Transaction.station == station_id, Transaction.evse_id == evse_id,
                 Transaction.stopped_at.is_null(), Transaction.station_tx_id.is_null(False),
                 Transaction.cost.is_null(False))
          .order_by(Transaction.started_at.desc(), Transaction.id.desc()).first())
    if tx is None or tx.price_currency is None:
        return None
    return tx.id, tx.station_tx_id, tx.cost, tx.price_currency


class CostUpdates:
    def __init__(self, store: StoreWriter, commands: CommandSender, settings: Settings) -> None:
        self._store = store
        self._commands = commands
        self._interval = settings.cost_update_interval
        # Per transaction: the last cost the charger was told, and when CostUpdated was sent.
        self._told: dict[int, int] = {}
        self._sent_at: dict[int, float] = {}
        self._checking: set[tuple[str, int]] = set()
        # The session last seen on each EVSE: a new one there lets the old one's entries go.
        self._tx_of: dict[tuple[str, int], int] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Hold the nursery the sends run in."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def told(self, tx_id: int, cost: int) -> None:
        """A TransactionEventResponse carried this cost."""
        if len(self._told) >= MEMORY:
            self._told.clear()  # at worst one CostUpdated that was not needed
        self._told[tx_id] = cost

    def meter_values(self, station_id: str, evse_id: int) -> None:
        """Meter values of this EVSE were stored: send CostUpdated if one is due."""
        key = (station_id, evse_id)
        if self._interval <= 0 or self._nursery is None or key in self._checking:
            return
        self._checking.add(key)
        self._nursery.start_soon(self._check, key)

    async def _check(self, key: tuple[str, int]) -> None:
        station_id, evse_id = key
        try:
            found = await self._store.run(partial(_running, station_id, evse_id))
            if found is None:
                return
            tx_id, station_tx_id, cost, currency = found
            previous = self._tx_of.get(key)
            if previous is not None and previous != tx_id:
                self._told.pop(previous, None)
                self._sent_at.pop(previous, None)
            self._tx_of[key] = tx_id
            now = trio.current_time()
            last = self._sent_at.get(tx_id)
            if self._told.get(tx_id) == cost or (last is not None
                                                 and now - last < self._interval):
                return
            self._sent_at[tx_id] = now
            payload = {"totalCost": wire_amount(cost, currency), "transactionId": station_tx_id}
            try:
                outcome = await self._commands.send(station_id, "CostUpdated", payload,
                                                    requested_by=REQUESTED_BY)
            except StationOffline:
                return
            if outcome.status == "answered":
                self._told[tx_id] = cost
            else:
                log.info("%s: CostUpdated for transaction %s %s: %s", station_id,
                         station_tx_id, outcome.status, outcome.error_code or "")
        except Exception:  # a failing send must never take the server down with it
            log.exception("%s: CostUpdated check for EVSE %d failed", station_id, evse_id)
        finally:
            self._checking.discard(key)
