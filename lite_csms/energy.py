"""The energy a transaction delivered, from its ordered energy-register readings.

Pure rules, no store: `measure` takes every Energy.Active.Import.Register reading a
transaction's messages carried (1.6 meterStart/meterStop included) and says which one is
the start, the stop and the latest, how many Wh were delivered, and what needs review.

The rules (the same for 1.6, 2.0.1 and 2.1):

- Order: by seqNo (2.x TransactionEvent), then timestamp, then context, Transaction.Begin
  first and Transaction.End last among equals, then value (so arrival order never matters).
  1.6 readings have no seqNo: timestamp order. A 2.x transaction whose station reused a
  seqNo for a different event (`by_time`) has lost that order: timestamp first, then seqNo.
- Start: the first Transaction.Begin reading (1.6 meterStart is one). Without one, the first
  reading of any other context, so a reading with no context inside a Started event is the
  start when it is the oldest, and only then.
- Stop: the last Transaction.End reading (1.6 meterStop is one). Without one, and once the
  transaction has ended, the last reading, so a reading with no context inside an Ended
  event is the stop when it is the newest, and only then. A running transaction has none.
- Readings ordered before the start or after the stop are not counted (for instance 1.6
  MeterValues stamped after the StopTransaction, whenever they arrive); the latest is the
  last counted reading.
- Energy: walk the counted readings in order keeping the register's high-water mark h (the
  start's value first). A reading r >= h adds r - h and becomes h. At a reading r < h look
  ahead to the first later counted reading q >= h. None: the register was reset or the meter
  replaced, counting goes on from r (h = r), reported "backward register". One: counting on
  from r as a reset would mean q - r Wh between r and q; if that needs more than
  MAX_PLAUSIBLE_POWER_W (identical timestamps: any positive energy) it is a dip: the
  readings below h up to q are skipped and reported once ("register dip"), so one low
  reading (a "0" from a meter read too early) adds nothing; otherwise it is a reset. So
  2259988, 0, 2268000 ten minutes apart gives 8012 Wh (a dip: 2268000 Wh in 20 minutes is
  6.8 MW); a meter replaced mid-session, 1000, 5000, 0, 2000, 4000, 6000, 7000 every ten
  minutes, gives 4000 + 7000 = 11000 (backward: 6000 Wh in 30 minutes is 12 kW);
  2259988, 1200, 0 gives 0 (backward). A step down of under a micro-Wh is conversion
  noise and ignored. Energy is never negative, and never more than the sum of the rises
  between consecutive readings.
- After the end (2.x): readings with a seqNo, once the transaction has ended by an Ended
  event, are not counted when their event comes after the Ended (a higher seqNo, unless the
  station reused seqNos) or they are stamped after it; reported ("reading after its end").
  The Ended event's own readings (source "Ended", its seqNo) are never after it, even
  stamped a little later, unless a later Ended event (a reused transactionId) could have
  carried them. So the Ended's newest reading is the stop when no Transaction.End reading
  exists.
- Unknown energy (None): no readings; only end readings; or an ended transaction whose one
  counted reading is both its start and its stop (a stop without a reading of its own).
- A stop ordered before its start (a clock reset between the two) counts max(0, stop -
  start) and is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

BEGIN = "Transaction.Begin"
END = "Transaction.End"

_RANK = {BEGIN: 0, END: 2}

# Reading.source of the readings a 2.x Ended event carried (handlers/transactions.py).
ENDED = "Ended"

# Unit and multiplier conversion leaves float noise (5.3 kWh -> 5300.000000000001 Wh); a step
# down smaller than this is that noise, not a meter going backwards.
NOISE_WH = 1e-6

# Above this a rise is not energy a charger delivered: the most powerful chargers in the field
# (MCS, 350 kW CCS) stay under 400 kW, so a climb back that would need more is a register that
# dipped and recovered, not a reset meter counting up again.
MAX_PLAUSIBLE_POWER_W = 400_000.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One energy register reading: Wh, when, its context and the message that carried it."""

    timestamp: datetime
    value_wh: float
    context: str = ""
    source: str = ""
    seq_no: int | None = None

    def order_key(self) -> tuple[int, datetime, int, float]:
        return (-1 if self.seq_no is None else self.seq_no, self.timestamp,
                _RANK.get(self.context, 1), self.value_wh)

    def time_key(self) -> tuple[datetime, int, int, float]:
        return (self.timestamp, -1 if self.seq_no is None else self.seq_no,
                _RANK.get(self.context, 1), self.value_wh)

    def describe(self) -> str:
        source = f", {self.source}" if self.source else ""
        at = self.timestamp.isoformat(timespec="seconds")
        return f"{format_wh(self.value_wh)} at {at}{source}"


@dataclass(frozen=True, slots=True)
class Measurement:
    start: Reading | None
    stop: Reading | None
    latest: Reading | None
    energy_wh: float | None
    backward_steps: tuple[tuple[Reading, Reading], ...] = ()
    stop_before_start: bool = False
    # Readings skipped as dips: below the high-water mark, which a later reading regains.
    dips: tuple[Reading, ...] = ()
    # One sentence per problem, each starting with its tag ("backward register: ...").
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class End:
    """The 2.x Ended event that stopped a transaction: its timestamp and seqNo, and the
    timestamps of any later Ended events stored with it (a reused transactionId)."""

    timestamp: datetime
    seq_no: int
    later_ends: tuple[datetime, ...] = ()

    def after(self, reading: Reading, by_time: bool) -> bool:
        """Is this 2.x reading from after the end? The Ended's own readings never are, even
        stamped a little after the event, unless a later Ended could have carried them."""
        if reading.seq_no is None:
            return False
        if (reading.source == ENDED and reading.seq_no == self.seq_no
                and not any(t <= reading.timestamp for t in self.later_ends)):
            return False
        return reading.timestamp > self.timestamp or (not by_time
                                                     and reading.seq_no > self.seq_no)


def format_wh(value: float | None) -> str:
    """`1234 Wh`, or `unknown energy`; whole numbers without a decimal point."""
    return "unknown energy" if value is None else f"{value:.12g} Wh"


def measure(readings: Iterable[Reading], *, ended: bool, by_time: bool = False,
            end: End | None = None) -> Measurement:
    """Apply the module's rules; `ended` says whether the transaction has stopped, `by_time`
    orders by timestamp before seqNo (seqNos reused), `end` names the 2.x Ended event that
    stopped it, after which its readings are not counted."""
    ordered = sorted(readings, key=Reading.time_key if by_time else Reading.order_key)
    late: list[Reading] = []
    if end is not None:
        late = [r for r in ordered if end.after(r, by_time)]
        ordered = [r for r in ordered if r not in late]
    late_problems = tuple(f"reading after its end: {r.describe()} (seqNo {r.seq_no}) came "
                          f"after the Ended event; not counted" for r in late)
    found = _measure(ordered, ended)
    if not late_problems:
        return found
    return replace(found, problems=found.problems + late_problems)


def _measure(ordered: list[Reading], ended: bool) -> Measurement:
    if not ordered:
        return Measurement(None, None, None, None)
    begins = [i for i, r in enumerate(ordered) if r.context == BEGIN]
    ends = [i for i, r in enumerate(ordered) if r.context == END]
    if begins:
        first = begins[0]
    else:
        others = [i for i, r in enumerate(ordered) if r.context != END]
        first = others[0] if others else None
    if ends:
        last: int | None = ends[-1]
    else:
        last = len(ordered) - 1 if ended else None
    stop = None if last is None else ordered[last]
    if first is None:
        # Only end readings: what the session started from is unknown.
        return Measurement(None, stop, stop, None)
    start = ordered[first]
    if last is not None and last < first:
        problem = (f"stop before start: the stop reading ({stop.describe()}) is ordered before "
                   f"the start reading ({start.describe()})")
        return Measurement(start, stop, stop, max(0.0, stop.value_wh - start.value_wh),
                           stop_before_start=True, problems=(problem,))
    counted = ordered[first:] if last is None else ordered[first:last + 1]
    if last == first:
        return Measurement(start, stop, stop, None)
    energy, backward, dip_runs = _walk(counted)
    problems = tuple(
        f"backward register: {a.describe()} then {b.describe()} (a reset: no later reading "
        f"regains the register, or only at a plausible power), counted on from it"
        for a, b in backward
    ) + tuple(f"register dip: {_run(run)} skipped ({q.describe()} regains the register, "
              f"which a reset could only reach above {MAX_PLAUSIBLE_POWER_W / 1000:g} kW)"
              for run, q in dip_runs)
    return Measurement(start, stop, counted[-1], energy, tuple(backward), problems=problems,
                       dips=tuple(r for run, _ in dip_runs for r in run))


def _run(run: list[Reading]) -> str:
    if len(run) == 1:
        return run[0].describe()
    return f"{len(run)} readings from {run[0].describe()} to {run[-1].describe()}"


def implausible(low: Reading, high: Reading) -> bool:
    """Would going from `low` to `high` need more than MAX_PLAUSIBLE_POWER_W?"""
    rise = high.value_wh - low.value_wh
    if rise <= 0:
        return False
    hours = (high.timestamp - low.timestamp).total_seconds() / 3600
    return hours <= 0 or rise / hours > MAX_PLAUSIBLE_POWER_W


def _walk(counted: list[Reading]) -> tuple[
        float, list[tuple[Reading, Reading]], list[tuple[list[Reading], Reading]]]:
    """The high-water walk of the module docstring: (energy, backward steps, dip runs, each
    with the reading that regains the register)."""
    high = counted[0]
    energy = 0.0
    backward: list[tuple[Reading, Reading]] = []
    dips: list[tuple[list[Reading], Reading]] = []
    i = 1
    while i < len(counted):
        reading = counted[i]
        if reading.value_wh >= high.value_wh - NOISE_WH:
            if reading.value_wh > high.value_wh:
                energy += reading.value_wh - high.value_wh
                high = reading
            i += 1
            continue
        back = next((j for j in range(i + 1, len(counted))
                     if counted[j].value_wh >= high.value_wh - NOISE_WH), None)
        if back is not None and implausible(reading, counted[back]):
            dips.append((counted[i:back], counted[back]))
            i = back
        else:
            backward.append((high, reading))
            high = reading
            i += 1
    return energy, backward, dips
