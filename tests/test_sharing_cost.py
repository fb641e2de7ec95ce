"""Sharing: money arithmetic, tariffs, the price kept with each session, and its cost.

The cost rule (lite_csms/sharing/pricing.py): fee + per_kwh * kWh + per_hour * h in integer
minor units, rounded half up once at the end; energy rounded half up to whole Wh.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee as pw
import pytest

from lite_csms.db.database import open_database
from lite_csms.db.models import Station, Tariff, Transaction
from lite_csms.domain import Sample, TransactionEvent
from lite_csms.handlers import transactions
from lite_csms.sharing import money, pricing
from lite_csms.sharing.pricing import Price, billed_wh, session_cost

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
REGISTER = "Energy.Active.Import.Register"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[pw.SqliteDatabase]:
    database = open_database(tmp_path / "sharing.sqlite3")
    Station.create(id="CS-1")
    yield database
    database.close()


def test_parse_and_format_amounts_without_floats() -> None:
    assert money.parse_amount("25.5", "KES") == 2550
    assert money.parse_amount("25", "KES") == 2500
    assert money.parse_amount("0.01", "EUR") == 1
    assert money.parse_amount("150", "UGX") == 150  # no minor unit
    assert money.parse_amount("1.234", "KWD") == 1234  # three decimals
    assert money.parse_amount(2550, "KES") == 2550  # already minor units
    for bad, currency in (("25.505", "KES"), ("1.5", "UGX"), ("-1", "KES"), ("1e3", "KES"),
                          ("", "KES"), ("12,50", "EUR"),
                          # Fullwidth and Arabic-Indic digits, which int() would read.
                          ("\uff13", "KES"), ("\u0663.5", "KES")):
        with pytest.raises(money.MoneyError):
            money.parse_amount(bad, currency)
    with pytest.raises(money.MoneyError):
        money.parse_amount(True, "KES")  # type: ignore[arg-type]
    assert money.format_amount(2550, "KES") == "KES 25.50"
    assert money.format_amount(5, "EUR") == "EUR 0.05"
    assert money.format_amount(1234, "KWD") == "KWD 1.234"
    assert money.format_amount(150, "UGX") == "UGX 150"
    assert money.check_currency(" kes ") == "KES"
    with pytest.raises(money.MoneyError):
        money.check_currency("KSH1")
    # The wire number is the decimal text's own float: 25.5, not 25.499999...
    assert money.wire_amount(2550, "KES") == 25.5 and repr(money.wire_amount(1, "EUR")) == "0.01"


def test_cost_arithmetic_energy_time_fee_and_one_rounding() -> None:
    price = Price("KES", per_kwh=2550, per_hour=1000, session_fee=5000)
    # 4 kWh * 25.50 + 0.5 h * 10.00 + 50.00 = 157.00
    assert session_cost(price, 4000, 1800) == 15700
    # Energy only: 1 Wh at 25.50/kWh is 2.55 minor units: rounded once, at the end, to 3.
    assert session_cost(Price("KES", per_kwh=2550), 1, 0) == 3
    # Half up: 2 Wh at 25.00/kWh is exactly 5.0; 1 Wh at 10.00/kWh is exactly 1.0;
    # 1 Wh at 5.00/kWh is 0.5 -> 1; 1 Wh at 4.99/kWh is 0.499 -> 0.
    assert session_cost(Price("EUR", per_kwh=2500), 2, 0) == 5
    assert session_cost(Price("EUR", per_kwh=500), 1, 0) == 1
    assert session_cost(Price("EUR", per_kwh=499), 1, 0) == 0
    # Per hour: 90 s at 10.00/h = 25 minor units exactly; 1 s = 0.2777 -> 0; 2 s -> 1.
    assert session_cost(Price("EUR", per_hour=1000), 0, 90) == 25
    assert session_cost(Price("EUR", per_hour=1000), 0, 1) == 0
    assert session_cost(Price("EUR", per_hour=1000), 0, 2) == 1
    # Rounded once over the sum, not per part: 0.5 + 0.5 = 1, where rounding each part
    # half up would give 2 (and half down 0).
    assert session_cost(Price("EUR", per_kwh=500, per_hour=1800), 1, 1) == 1
    # The fee alone, and a free tariff.
    assert session_cost(Price("EUR", session_fee=300), 0, 0) == 300
    assert session_cost(Price("EUR"), 123_456, 7200) == 0
    # Large sessions stay exact: 10 MWh at 999,999.99/kWh.
    assert session_cost(Price("EUR", per_kwh=99_999_999), 10_000_000, 0) == 999_999_990_000
    with pytest.raises(ValueError):
        session_cost(price, -1, 0)
    assert billed_wh(1234.5) == 1235 and billed_wh(1234.49) == 1234
    assert billed_wh(None) == 0 and billed_wh(-3.0) == 0


def test_set_tariff_validates_and_describes(db: pw.SqliteDatabase) -> None:
    assert pricing.set_tariff("NOPE", "KES", "1") is None
    with pytest.raises(money.MoneyError):
        pricing.set_tariff("CS-1", "KES", "1.001")
    assert Tariff.select().count() == 0  # nothing half-set
    price = pricing.set_tariff("CS-1", "kes", "25.50", "10", "50", updated_by="test")
    assert price == Price("KES", 2550, 1000, 5000)
    assert pricing.tariff_of("CS-1") == price
    assert pricing.describe(price) == "KES 25.50/kWh + KES 10.00/h + KES 50.00 per session"
    assert pricing.describe(Price("EUR")) == "free"
    assert pricing.clear_tariff("CS-1") and pricing.tariff_of("CS-1") is None


def _start_201(tx_id: str, at: datetime, wh: float) -> transactions.EventOutcome:
    return transactions.apply_event("CS-1", TransactionEvent(
        event_type="Started", station_tx_id=tx_id, seq_no=0, timestamp=at,
        trigger_reason="Authorized", offline=False, evse_id=1, connector_id=1,
        id_token=None, id_token_type=None, stopped_reason=None, reservation_id=None,
        samples=(Sample.normalised(at, REGISTER, wh, "Wh", "", "", "Transaction.Begin"),)))


def _event_201(tx_id: str, kind: str, seq: int, at: datetime, wh: float
               ) -> transactions.EventOutcome:
    context = "Transaction.End" if kind == "Ended" else "Sample.Periodic"
    return transactions.apply_event("CS-1", TransactionEvent(
        event_type=kind, station_tx_id=tx_id, seq_no=seq, timestamp=at,
        trigger_reason="MeterValuePeriodic" if kind == "Updated" else "EVDeparted",
        offline=False, evse_id=1, connector_id=1, id_token=None, id_token_type=None,
        stopped_reason="EVDisconnected" if kind == "Ended" else None, reservation_id=None,
        samples=(Sample.normalised(at, REGISTER, wh, "Wh", "", "", context),)))


def test_price_is_taken_at_start_and_a_later_tariff_never_reprices(
        db: pw.SqliteDatabase) -> None:
    pricing.set_tariff("CS-1", "KES", "20", "0", "10")
    tx = _start_201("A", T0, 10_000).transaction
    assert (tx.price_currency, tx.price_per_kwh, tx.price_fee) == ("KES", 2000, 1000)
    assert tx.cost == 1000  # the fee, nothing delivered yet
    # The owner raises the price mid-session: this session keeps its own.
    pricing.set_tariff("CS-1", "KES", "99", "50", "0")
    tx = _event_201("A", "Updated", 1, T0 + timedelta(minutes=30), 12_000).transaction
    assert tx.cost == 1000 + 2 * 2000  # 2 kWh at 20.00 + fee
    tx = _event_201("A", "Ended", 2, T0 + timedelta(hours=1), 13_000.4).transaction
    stored = Transaction.get_by_id(tx.id)
    assert stored.price_per_kwh == 2000 and stored.price_per_hour == 0
    assert stored.cost == 1000 + 3 * 2000
    # The next session takes the new price, per hour included.
    nxt = _start_201("B", T0 + timedelta(hours=2), 13_000).transaction
    nxt = _event_201("B", "Ended", 1, T0 + timedelta(hours=3), 14_000).transaction
    assert Transaction.get_by_id(nxt.id).cost == 9900 + 5000


def test_unpriced_session_has_no_cost_and_tariff_set_later_is_not_applied(
        db: pw.SqliteDatabase) -> None:
    tx = _start_201("C", T0, 0).transaction
    assert tx.price_at is not None and tx.price_currency is None and tx.cost is None
    pricing.set_tariff("CS-1", "EUR", "1")
    tx = _event_201("C", "Ended", 1, T0 + timedelta(hours=1), 5000).transaction
    assert Transaction.get_by_id(tx.id).cost is None


def test_row_older_than_pricing_is_not_priced_by_a_tariff_set_after_it(
        db: pw.SqliteDatabase) -> None:
    # A session the previous release stored (no price taken), then the tariff is set, then
    # its stop arrives: it began before the tariff existed, so it stays unpriced.
    tx = Transaction.create(station="CS-1", evse_id=1, connector_id=1, started_at=T0,
                            created_at=datetime.now(UTC) - timedelta(hours=2))
    pricing.set_tariff("CS-1", "EUR", "1")
    outcome = transactions.stop_v16("CS-1", tx.id, 3000.0, T0 + timedelta(hours=1), "Local",
                                    None, [])
    stored = Transaction.get_by_id(outcome.transaction.id)
    assert stored.price_at is not None and stored.cost is None


def test_v16_session_cost_per_hour_and_running_cost(db: pw.SqliteDatabase) -> None:
    pricing.set_tariff("CS-1", "EUR", per_kwh="0.30", per_hour="1.20", session_fee="0.50")
    started = transactions.start_v16("CS-1", 1, "TAG", 100_000.0, T0, None)
    tx = Transaction.get_by_id(started.transaction_id)
    # 45 min later, no reading yet: 0.75 h * 1.20 = 0.90, + 0.50 fee.
    assert pricing.running_cost(tx, T0 + timedelta(minutes=45)) == 140
    transactions.stop_v16("CS-1", tx.id, 107_400.0, T0 + timedelta(minutes=45), "Local",
                          None, [])
    stored = Transaction.get_by_id(tx.id)
    # 7.4 kWh * 0.30 = 2.22, + 0.90 + 0.50 = 3.62
    assert stored.cost == 362
    assert pricing.running_cost(stored, T0 + timedelta(hours=5)) == 362  # final at stop
    assert pricing.cost_record(stored)["cost_text"] == "EUR 3.62"
