"""The one domain model that 1.6, 2.0.1 and 2.1 messages are translated into.

1.6 has no EVSEs: its connector N is stored as EVSE N, connector 1; connector 0, the charge
point itself, is EVSE 0, connector 0, which is also how 2.x reports the whole station.
"""

from __future__ import annotations

from datetime import UTC, datetime

import peewee as pw

from lite_csms.db.routing import RoutedProxy
from lite_csms.ocppj.timestamps import now_utc as utcnow

# The writer's database, or the read connection's inside routing.reading_from.
database_proxy = RoutedProxy()

STATION_ID_MAX_LENGTH = 48


class UtcDateTimeField(pw.DateTimeField):
    """Stored as ISO text with its offset, so sorting and reading back never shift the hour."""

    field_type = "TEXT"

    def db_value(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:
            # (Already in UTC, the commonest case, it is written as it is: a stop converts
            # 30,000 of these on the writer's thread, with the GIL.)
            value = value.astimezone(UTC)
        return value.isoformat(timespec="milliseconds")

    def python_value(self, value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Station(BaseModel):
    id = pw.CharField(primary_key=True, max_length=STATION_ID_MAX_LENGTH)
    password_hash = pw.TextField(null=True)
    # accepted: known to the operator; pending: auto-registered, waiting for the operator.
    registration = pw.CharField(default="accepted", max_length=16)
    vendor = pw.TextField(null=True)
    model = pw.TextField(null=True)
    serial_number = pw.TextField(null=True)
    firmware_version = pw.TextField(null=True)
    iccid = pw.TextField(null=True)
    imsi = pw.TextField(null=True)
    protocol = pw.CharField(null=True, max_length=16)
    online = pw.BooleanField(default=False)
    last_boot_at = UtcDateTimeField(null=True)
    last_seen_at = UtcDateTimeField(null=True)
    created_at = UtcDateTimeField(default=utcnow)
    # The last BootNotification that reported another firmware than the boot before it: the
    # budget policy then trusts neither the refusals nor the settings held before it.
    firmware_changed_at = UtcDateTimeField(null=True)
    previous_firmware_version = pw.TextField(null=True)
    # OCPP security profile 1, 2 or 3 (net/profiles.py); NULL follows the server's
    # security_profile_default. Only ever raised by a connecting station.
    security_profile = pw.IntegerField(null=True)
    # The person who owns the charger and earns what it sells (lite_csms/sharing/); NULL:
    # the operator's own. Deferred: Owner is declared after the existing models.
    owner = pw.DeferredForeignKey("Owner", null=True, backref="stations",
                                  on_delete="SET NULL")
    # Password rotation (net/rotation.py): the chosen password's hash, still accepted until
    # the station first connects with the generated one that replaced it.
    previous_password_hash = pw.TextField(null=True)
    # Hashes of generated passwords sent to the station and not yet confirmed by a login
    # (answer lost, RebootRequired, or the other form of a 1.6 key), space-separated; any
    # of them is accepted, and the first login with one makes it the password.
    pending_password_hash = pw.TextField(null=True)


class Connector(BaseModel):
    station = pw.ForeignKeyField(Station, backref="connectors", on_delete="CASCADE")
    evse_id = pw.IntegerField()
    connector_id = pw.IntegerField()
    status = pw.CharField(max_length=32)
    error_code = pw.CharField(null=True, max_length=64)
    info = pw.TextField(null=True)
    status_at = UtcDateTimeField()

    class Meta:
        indexes = ((("station", "evse_id", "connector_id"), True),)


class ConnectorStatusChange(BaseModel):
    connector = pw.ForeignKeyField(Connector, backref="history", on_delete="CASCADE")
    status = pw.CharField(max_length=32)
    error_code = pw.CharField(null=True, max_length=64)
    info = pw.TextField(null=True)
    timestamp = UtcDateTimeField()
    received_at = UtcDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("connector", "timestamp"), False),)


def token_key(token: str) -> str:
    """The form id tokens are compared in: OCPP id tokens are case-insensitive (1.6 CiString20,
    2.0.1 and 2.1 IdTokenType.idToken), so `04a2b3c4ff` is the token `04A2B3C4FF`."""
    return token.casefold()


class IdToken(BaseModel):
    # As first registered: shown to the operator and sent to stations in this spelling.
    token = pw.CharField(unique=True, max_length=255)
    token_type = pw.CharField(default="ISO14443", max_length=32)
    # Accepted, Blocked, Expired or Invalid, as both 1.6 and 2.x spell them.
    status = pw.CharField(default="Accepted", max_length=16)
    expires_at = UtcDateTimeField(null=True)
    # 1.6 parentIdTag and 2.x groupIdToken are the same idea: a group of tokens.
    group_token = pw.CharField(null=True, max_length=255)
    created_at = UtcDateTimeField(default=utcnow)
    # Differential local lists send what changed since a station's last list.
    updated_at = UtcDateTimeField(default=utcnow)

    # token_key(token): unique, so no two tokens differ only in case. NULL only on a row a
    # schema-2 upgrade found to duplicate an older one (see authorization.upgrade_v3).
    token_key = pw.CharField(null=True, unique=True, max_length=255)
    # The driver this token belongs to (lite_csms/sharing/drivers.py); NULL: nobody's.
    driver = pw.DeferredForeignKey("Driver", null=True, backref="tokens",
                                   on_delete="SET NULL")

    def save(self, *args: object, **kwargs: object) -> int:
        self.updated_at = utcnow()
        if self.token_key is None and self.id is None:
            self.token_key = token_key(self.token)
        return super().save(*args, **kwargs)


class Transaction(BaseModel):
    # The integer primary key is the transactionId a 1.6 station is given.
    station = pw.ForeignKeyField(Station, backref="transactions", on_delete="CASCADE")
    # 2.x stations name their own transactions; 1.6 ones leave this empty.
    station_tx_id = pw.CharField(null=True, max_length=36)
    evse_id = pw.IntegerField()
    connector_id = pw.IntegerField()
    id_token = pw.CharField(null=True, max_length=255)
    auth_status = pw.CharField(null=True, max_length=16)
    reservation_id = pw.IntegerField(null=True)
    started_at = UtcDateTimeField()
    stopped_at = UtcDateTimeField(null=True)
    meter_start_wh = pw.FloatField(null=True)
    meter_stop_wh = pw.FloatField(null=True)
    # The latest energy register reading seen, so a running session shows its energy so far.
    meter_last_wh = pw.FloatField(null=True)
    stop_reason = pw.CharField(null=True, max_length=32)
    # Set when any event of this transaction was sent while the station was offline.
    offline = pw.BooleanField(default=False)
    last_seq_no = pw.IntegerField(null=True)
    seq_no_gaps = pw.IntegerField(default=0)
    created_at = UtcDateTimeField(default=utcnow)
    # Delivered energy by the rules of lite_csms/energy.py, kept current on every reading so
    # that listings, the API and sums read one value; never negative.
    energy_wh = pw.FloatField(null=True)
    # Built from a stop or meter values naming a transaction whose start never arrived.
    reconstructed = pw.BooleanField(default=False)
    # Short tags for listings ("reconstructed / backward register") and the full reason.
    review = pw.CharField(null=True, max_length=64)
    review_reason = pw.TextField(null=True)
    # Why a handler flagged it beyond what its readings show (a stop kept without a sample),
    # one reason a line.
    review_note = pw.TextField(null=True)
    # A station may reuse its transaction number (a 2.x transactionId after its Ended, a 1.6
    # charger's 0 or -1 for sessions that never got an id): each session under one number is
    # a row of its own, 0, 1, 2, ... in order; later messages go to the newest.
    generation = pw.IntegerField(default=0)
    # The price in force when the CSMS first heard of the session (lite_csms/sharing/
    # pricing.py), copied so that a later tariff change never reprices it. Money in integer
    # minor units of price_currency (ISO 4217); price_at NULL: not taken yet (a row older
    # than pricing); price_currency NULL: the session had no tariff.
    price_at = UtcDateTimeField(null=True)
    price_currency = pw.CharField(null=True, max_length=3)
    price_per_kwh = pw.BigIntegerField(null=True)
    price_per_hour = pw.BigIntegerField(null=True)
    price_fee = pw.BigIntegerField(null=True)
    # Cost of the session (minor units) from its energy_wh and duration, kept current on each
    # recount, final at stop; NULL without a tariff.
    cost = pw.BigIntegerField(null=True)
    # Who the session belongs to, taken with the price: the station's owner (who earns it)
    # and the id token's driver.
    owner_id = pw.IntegerField(null=True)
    driver_id = pw.IntegerField(null=True)

    class Meta:
        indexes = (
            (("station", "station_tx_id", "generation"), True),
            (("station", "evse_id", "started_at"), False),
        )


class TransactionEventRecord(BaseModel):
    """Each 2.x TransactionEvent once, keyed by seqNo, so retransmits are recognised."""

    transaction = pw.ForeignKeyField(Transaction, backref="events", on_delete="CASCADE")
    seq_no = pw.IntegerField()
    event_type = pw.CharField(max_length=16)
    trigger_reason = pw.CharField(max_length=40)
    timestamp = UtcDateTimeField()
    offline = pw.BooleanField(default=False)

    class Meta:
        # A repeat of a seqNo is a retransmit only when it is the same event: same type,
        # timestamp and trigger reason. Another event under a reused seqNo is kept too.
        indexes = ((("transaction", "seq_no", "event_type", "timestamp", "trigger_reason"),
                    True),)


class MeterSample(BaseModel):
    station = pw.ForeignKeyField(Station, on_delete="CASCADE")
    transaction = pw.ForeignKeyField(
        Transaction, null=True, backref="samples", on_delete="SET NULL"
    )
    evse_id = pw.IntegerField()
    timestamp = UtcDateTimeField()
    measurand = pw.CharField(max_length=48)
    unit = pw.CharField(null=True, max_length=16)
    # Empty rather than NULL: SQLite unique indexes treat NULLs as all different.
    phase = pw.CharField(default="", max_length=8)
    location = pw.CharField(default="", max_length=8)
    context = pw.CharField(default="", max_length=32)
    value = pw.FloatField()

    class Meta:
        # A retransmitted MeterValues repeats samples exactly; this key makes storing idempotent.
        indexes = (
            (("station", "evse_id", "timestamp", "measurand", "phase", "location", "context"),
             True),
        )


class StationEvent(BaseModel):
    """Notifications kept as received: firmware, diagnostics, log, security, events, reports."""

    station = pw.ForeignKeyField(Station, backref="events", on_delete="CASCADE")
    action = pw.CharField(max_length=48)
    timestamp = UtcDateTimeField(null=True)
    payload = pw.TextField()
    received_at = UtcDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("station", "action", "received_at"), False),)


class Command(BaseModel):
    """A CSMS-initiated CALL: queued, sent, answered or not, and who asked for it."""

    station = pw.ForeignKeyField(Station, backref="commands", on_delete="CASCADE")
    action = pw.CharField(max_length=48)
    payload = pw.TextField()
    requested_by = pw.CharField(max_length=64)
    # queued, sent, answered, error, timeout, expired, offline
    status = pw.CharField(max_length=16)
    created_at = UtcDateTimeField(default=utcnow)
    # Only queued commands expire: a charger back after a day must not act on a stale order.
    expires_at = UtcDateTimeField(null=True)
    sent_at = UtcDateTimeField(null=True)
    finished_at = UtcDateTimeField(null=True)
    result = pw.TextField(null=True)
    error_code = pw.CharField(null=True, max_length=48)
    error_description = pw.TextField(null=True)

    class Meta:
        indexes = ((("station", "status", "created_at"), False),)


class StationSetting(BaseModel):
    """A charger's configuration as it last reported it: 1.6 keys, 2.x Component.Variable."""

    station = pw.ForeignKeyField(Station, backref="settings", on_delete="CASCADE")
    key = pw.CharField(max_length=160)
    value = pw.TextField(null=True)
    readonly = pw.BooleanField(default=False)
    updated_at = UtcDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("station", "key"), True),)


class ApiKey(BaseModel):
    """An admin API key: only its SHA-256 is kept (the key itself is 256 random bits)."""

    name = pw.CharField(unique=True, max_length=64)
    key_hash = pw.CharField(unique=True, max_length=64)
    created_at = UtcDateTimeField(default=utcnow)
    revoked_at = UtcDateTimeField(null=True)
    last_used_at = UtcDateTimeField(null=True)


class Reservation(BaseModel):
    """A connector held for one token until it expires; its id is the reservationId sent."""

    station = pw.ForeignKeyField(Station, backref="reservations", on_delete="CASCADE")
    evse_id = pw.IntegerField()
    id_token = pw.CharField(max_length=255)
    expires_at = UtcDateTimeField()
    # requested, accepted, rejected, cancelled, used, expired, failed
    status = pw.CharField(default="requested", max_length=16)
    transaction = pw.ForeignKeyField(Transaction, null=True, on_delete="SET NULL")
    created_at = UtcDateTimeField(default=utcnow)


class LocalListState(BaseModel):
    """The local authorization list a station holds: its version and when it was sent."""

    station = pw.ForeignKeyField(Station, primary_key=True, on_delete="CASCADE")
    version = pw.IntegerField(default=0)
    sent_at = UtcDateTimeField(null=True)


class TrafficCounter(BaseModel):
    """Bytes a station moved in one hour (or, once rolled up, one day), by action and layer.

    Never a row per message: a live connection adds its counts to these rows once a flush.
    Layers nest: payload (OCPP text) <= ws (frames) <= tls (records) <= ip (segments on the
    wire). Pseudo-actions in parentheses carry what no OCPP message caused: the TCP, TLS and
    HTTP set-up, WebSocket control frames, TCP keepalives and pure acknowledgements.
    """

    # No index of its own: the unique index below starts with it (a second index cost
    # about 40 % more per row written; a stop writes 100,000).
    station = pw.ForeignKeyField(Station, backref="traffic", on_delete="CASCADE", index=False)
    # "hour" or "day"
    period = pw.CharField(max_length=4)
    period_start = UtcDateTimeField()
    action = pw.CharField(max_length=64)
    # Seen from the CSMS: "in" is station to CSMS.
    direction = pw.CharField(max_length=3)
    layer = pw.CharField(max_length=8)
    bytes = pw.BigIntegerField(default=0)
    messages = pw.IntegerField(default=0)

    class Meta:
        indexes = (
            (("station", "period", "period_start", "action", "direction", "layer"), True),
            (("period", "period_start"), False),
        )


class TrafficConnection(BaseModel):
    """One WebSocket connection's totals and set-up cost, written when it closes."""

    # Indexed by (station, opened_at) below, which serves lookups by station alone.
    station = pw.ForeignKeyField(Station, backref="traffic_connections", on_delete="CASCADE",
                                 index=False)
    opened_at = UtcDateTimeField()
    closed_at = UtcDateTimeField()
    protocol = pw.CharField(max_length=16)
    tls = pw.BooleanField(default=False)
    tls_resumed = pw.BooleanField(default=False)
    # IP bytes, both directions, of the TCP handshake, TLS handshake and HTTP upgrade.
    tcp_setup_bytes = pw.IntegerField(default=0)
    tls_setup_bytes = pw.IntegerField(default=0)
    http_setup_bytes = pw.IntegerField(default=0)
    ip_bytes_in = pw.BigIntegerField(default=0)
    ip_bytes_out = pw.BigIntegerField(default=0)
    payload_bytes_in = pw.BigIntegerField(default=0)
    payload_bytes_out = pw.BigIntegerField(default=0)
    retransmitted_bytes = pw.BigIntegerField(default=0)
    close_reason = pw.TextField(null=True)

    class Meta:
        indexes = ((("station", "opened_at"), False),)


class StationBudget(BaseModel):
    """A station's data cap and policy settings; NULL means the global default."""

    station = pw.ForeignKeyField(Station, primary_key=True, on_delete="CASCADE")
    cap_bytes = pw.BigIntegerField(null=True)
    cycle_day = pw.IntegerField(null=True)
    warn_ratio = pw.FloatField(null=True)
    nat_timeout = pw.IntegerField(null=True)
    policy_enabled = pw.BooleanField(null=True)
    # The policy level the station was last moved to, and the cycle that move belongs to.
    level = pw.CharField(default="normal", max_length=16)
    level_cycle_start = UtcDateTimeField(null=True)
    updated_at = UtcDateTimeField(default=utcnow)


class PolicyChange(BaseModel):
    """Every move the budget policy makes, with its reason and what the station answered."""

    station = pw.ForeignKeyField(Station, backref="policy_changes", on_delete="CASCADE")
    at = UtcDateTimeField(default=utcnow)
    from_level = pw.CharField(max_length=16)
    to_level = pw.CharField(max_length=16)
    reason = pw.TextField()
    # JSON: the settings sent and each one's outcome.
    settings = pw.TextField()

    class Meta:
        indexes = ((("station", "at"), False),)


class ChargingProfile(BaseModel):
    """A charging profile the station holds: accepted by SetChargingProfile or reported by it.

    1.6 connector N is stored as EVSE N, like everywhere else; EVSE 0 is the whole station.
    """

    station = pw.ForeignKeyField(Station, backref="charging_profiles", on_delete="CASCADE")
    evse_id = pw.IntegerField()
    profile_id = pw.IntegerField()
    purpose = pw.CharField(max_length=40)
    stack_level = pw.IntegerField()
    # The station's transaction id (1.6: ours, as text) for a TxProfile.
    transaction_id = pw.CharField(null=True, max_length=36)
    # The profile as sent (or reported), in the station's OCPP version's shape.
    profile = pw.TextField()
    set_at = UtcDateTimeField()

    class Meta:
        # A profile id names one profile per station: setting it again replaces it.
        indexes = ((("station", "profile_id"), True),)


class CompositeSchedule(BaseModel):
    """The last composite schedule a station answered for one EVSE (1.6: connector)."""

    station = pw.ForeignKeyField(Station, on_delete="CASCADE")
    evse_id = pw.IntegerField()
    status = pw.CharField(max_length=16)
    # chargingRateUnit, scheduleStart, duration and periods, the same for every version.
    schedule = pw.TextField(null=True)
    asked_at = UtcDateTimeField()

    class Meta:
        indexes = ((("station", "evse_id"), True),)


class MaintenanceRequest(BaseModel):
    """A firmware update or a diagnostics/log upload asked of a station, and its progress."""

    station = pw.ForeignKeyField(Station, backref="maintenance", on_delete="CASCADE")
    # firmware or diagnostics (1.6 GetDiagnostics, 2.x GetLog)
    kind = pw.CharField(max_length=16)
    # 2.x requestId; 1.6 has none on the wire, so status reports go to the latest open one.
    request_id = pw.IntegerField(null=True)
    command = pw.ForeignKeyField(Command, null=True, on_delete="SET NULL")
    location = pw.TextField()
    # requested, then the station's answer (Accepted, Rejected...) and then its reports
    status = pw.CharField(default="requested", max_length=32)
    file_name = pw.TextField(null=True)
    # False once a final status (Installed, Uploaded, a failure, a refusal) arrived.
    open = pw.BooleanField(default=True)
    requested_at = UtcDateTimeField()
    status_at = UtcDateTimeField()

    class Meta:
        indexes = ((("station", "kind", "open", "requested_at"), False),
                   (("station", "kind", "request_id"), False))


class MaintenanceStatus(BaseModel):
    """Each status report for a maintenance request, in the order received."""

    request = pw.ForeignKeyField(MaintenanceRequest, backref="statuses", on_delete="CASCADE")
    status = pw.CharField(max_length=32)
    received_at = UtcDateTimeField()


class DeviceReport(BaseModel):
    """A 2.x GetBaseReport/GetReport (or an unrequested report) and the NotifyReport parts."""

    station = pw.ForeignKeyField(Station, backref="device_reports", on_delete="CASCADE")
    request_id = pw.IntegerField()
    # FullInventory, ConfigurationInventory, SummaryInventory, custom (GetReport)
    kind = pw.CharField(max_length=32)
    # requested, then the station's answer (Accepted, EmptyResultSet...), then complete
    status = pw.CharField(default="requested", max_length=32)
    parts_received = pw.IntegerField(default=0)
    requested_at = UtcDateTimeField()
    complete_at = UtcDateTimeField(null=True)

    class Meta:
        indexes = ((("station", "request_id"), True),)


class DeviceReportPart(BaseModel):
    """The seqNo of each NotifyReport part taken, so a retransmitted part counts once."""

    report = pw.ForeignKeyField(DeviceReport, backref="parts", on_delete="CASCADE")
    seq_no = pw.IntegerField()

    class Meta:
        indexes = ((("report", "seq_no"), True),)


class DeviceVariable(BaseModel):
    """One attribute of one variable of a 2.x station's device model, as last reported.

    Absent qualifiers are stored as '' and 0 (EVSE and connector ids start at 1), not NULL:
    SQLite unique indexes treat NULLs as all different.
    """

    station = pw.ForeignKeyField(Station, backref="device_model", on_delete="CASCADE")
    component = pw.CharField(max_length=50)
    component_instance = pw.CharField(default="", max_length=50)
    evse_id = pw.IntegerField(default=0)
    connector_id = pw.IntegerField(default=0)
    variable = pw.CharField(max_length=50)
    variable_instance = pw.CharField(default="", max_length=50)
    # Actual, Target, MinSet, MaxSet
    attribute_type = pw.CharField(default="Actual", max_length=8)
    value = pw.TextField(null=True)
    mutability = pw.CharField(null=True, max_length=16)
    data_type = pw.CharField(null=True, max_length=16)
    unit = pw.CharField(null=True, max_length=16)
    min_limit = pw.FloatField(null=True)
    max_limit = pw.FloatField(null=True)
    values_list = pw.TextField(null=True)
    report = pw.ForeignKeyField(DeviceReport, null=True, on_delete="SET NULL")
    updated_at = UtcDateTimeField()

    class Meta:
        indexes = ((("station", "component", "component_instance", "evse_id", "connector_id",
                     "variable", "variable_instance", "attribute_type"), True),)


class EnergyReading(BaseModel):
    """Each energy register reading a transaction's messages carried, for its energy.

    1.6 meterStart and meterStop are readings too (Transaction.Begin and Transaction.End);
    `source` names the message (StartTransaction, MeterValues, Started, Ended, ...).
    """

    transaction = pw.ForeignKeyField(Transaction, backref="readings", on_delete="CASCADE")
    timestamp = UtcDateTimeField()
    value_wh = pw.FloatField()
    context = pw.CharField(default="", max_length=32)
    source = pw.CharField(max_length=24)
    # The 2.x event's seqNo; -1 for 1.6, not NULL: SQLite unique indexes treat NULLs as distinct.
    seq_no = pw.IntegerField(default=-1)

    class Meta:
        # A retransmitted message repeats its readings exactly; this key stores them once. It
        # keeps seqNo and value, so different events at one timestamp (a charger whose clock
        # is unset) keep each reading.
        indexes = ((("transaction", "timestamp", "context", "source", "seq_no", "value_wh"),
                    True),)


class StationDeviation(BaseModel):
    """A schema deviation lenient mode accepted from a station, counted per message type.

    Kept for the operator to take to the vendor; docs/DEVIATIONS.md lists the kinds.
    """

    station = pw.ForeignKeyField(Station, backref="deviations", on_delete="CASCADE")
    action = pw.CharField(max_length=64)
    # over-long string, number as string, null for optional field, enum value case, ...
    kind = pw.CharField(max_length=32)
    # Where in the payload, list indexes as []: "meterValue[].sampledValue[].unit".
    path = pw.TextField()
    count = pw.IntegerField(default=0)
    first_at = UtcDateTimeField()
    last_at = UtcDateTimeField()
    # The latest offending value, truncated.
    example = pw.TextField(null=True)

    class Meta:
        indexes = ((("station", "action", "kind", "path"), True),)


class TrafficFlush(BaseModel):
    """When the server last wrote its traffic counts: budget figures are as of then.

    One row (id 1), rewritten by every flush, empty ones included, so a reader in another
    process (the CLI on the same file) knows how far the figures trail live traffic.
    """

    id = pw.IntegerField(primary_key=True)
    flushed_at = UtcDateTimeField()
    # The server's traffic_flush_interval: how far figures may trail live traffic.
    interval_s = pw.FloatField(null=True)


class SettingRefusal(BaseModel):
    """A value the charger refused for one of its settings, whoever sent it
    (1.6 NotSupported/Rejected, 2.x Rejected/Unknown*/NotSupportedAttributeType), under the
    firmware it ran then: the policy does not send it again until the firmware changes."""

    station = pw.ForeignKeyField(Station, backref="setting_refusals", on_delete="CASCADE")
    key = pw.CharField(max_length=160)
    value = pw.TextField()
    # The answer: the status, or the CALLERROR code.
    status = pw.CharField(max_length=40)
    firmware_version = pw.TextField(null=True)
    at = UtcDateTimeField(default=utcnow)
    # Who asked for the refused value: the policy, or the operator whose `config set` it was.
    requested_by = pw.TextField(null=True)
    # What the refusal covers: "value" (Rejected: this value), "key" (1.6 NotSupported, 2.x
    # UnknownVariable/UnknownComponent: any value of the key) or "action" (a CALLERROR
    # NotImplemented/NotSupported: the configuration action itself; `key` is its name).
    scope = pw.CharField(max_length=8, default="value")

    class Meta:
        indexes = ((("station", "key", "value"), True),)


class OperatorSetting(BaseModel):
    """A setting an operator set explicitly (`config set`) and the charger accepted: the
    budget policy yields it to the operator until it is handed back
    (`budget set ID --release KEY`). A refused operator value is a SettingRefusal only."""

    station = pw.ForeignKeyField(Station, backref="operator_settings", on_delete="CASCADE")
    key = pw.CharField(max_length=160)
    value = pw.TextField()
    requested_by = pw.TextField(null=True)
    at = UtcDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("station", "key"), True),)


class ServerSetting(BaseModel):
    """A setting the running server was started with that changes what stations are told
    (budget/served.py): the CLI reads it, since it cannot see serve's flags."""

    key = pw.CharField(primary_key=True, max_length=64)
    value = pw.TextField()
    updated_at = UtcDateTimeField(default=utcnow)


class Owner(BaseModel):
    """A person who owns one or more stations and earns what they sell.

    Signs in to the web page with email or phone and a password (scrypt, lite_csms/passwords.py).
    """

    name = pw.TextField()
    email = pw.CharField(null=True, unique=True, max_length=254)
    # E.164, "+254712345678" (sharing/phones.py).
    phone = pw.CharField(null=True, unique=True, max_length=16)
    password_hash = pw.TextField(null=True)
    created_at = UtcDateTimeField(default=utcnow)
    disabled = pw.BooleanField(default=False)
    # Raised at each sign-out: every web session signed in before it ends (web/security.py).
    session_epoch = pw.IntegerField(default=0)


class Driver(BaseModel):
    """A person who charges: with id tokens (IdToken.driver), a phone login, or both."""

    name = pw.TextField(null=True)
    # E.164; signs in with a one-time code sent to it (OneTimeCode).
    phone = pw.CharField(null=True, unique=True, max_length=16)
    email = pw.CharField(null=True, unique=True, max_length=254)
    # A simple account's password (scrypt); NULL: one-time codes only.
    password_hash = pw.TextField(null=True)
    created_at = UtcDateTimeField(default=utcnow)
    disabled = pw.BooleanField(default=False)
    # Raised at each sign-out: every web session signed in before it ends (web/security.py).
    session_epoch = pw.IntegerField(default=0)


class OneTimeCode(BaseModel):
    """A sign-in code sent to a phone: only its salted hash is kept, it expires soon and
    allows a few attempts (sharing/codes.py)."""

    phone = pw.CharField(max_length=16)
    code_hash = pw.CharField(max_length=128)
    created_at = UtcDateTimeField()
    expires_at = UtcDateTimeField()
    attempts = pw.IntegerField(default=0)
    used_at = UtcDateTimeField(null=True)

    class Meta:
        indexes = ((("phone", "created_at"), False),)


class Tariff(BaseModel):
    """A station's price: all money in integer minor units of `currency` (ISO 4217)."""

    station = pw.ForeignKeyField(Station, primary_key=True, backref="tariff",
                                 on_delete="CASCADE")
    currency = pw.CharField(max_length=3)
    # Per kWh delivered, per hour of session (plugged in, not only charging), per session.
    per_kwh = pw.BigIntegerField(default=0)
    per_hour = pw.BigIntegerField(default=0)
    session_fee = pw.BigIntegerField(default=0)
    updated_at = UtcDateTimeField(default=utcnow)
    updated_by = pw.TextField(null=True)


# Declared before their targets, these two were deferred; resolved now, they get their
# FOREIGN KEY in a new file as an in-place upgrade's ALTER TABLE gives them (db/upgrade.py).
Station.owner.deferred = False
IdToken.driver.deferred = False


ALL_MODELS: tuple[type[BaseModel], ...] = (
    Station,
    Connector,
    ConnectorStatusChange,
    IdToken,
    Transaction,
    TransactionEventRecord,
    MeterSample,
    StationEvent,
    Command,
    StationSetting,
    ApiKey,
    Reservation,
    LocalListState,
    TrafficCounter,
    TrafficConnection,
    StationBudget,
    PolicyChange,
    ChargingProfile,
    CompositeSchedule,
    MaintenanceRequest,
    MaintenanceStatus,
    DeviceReport,
    DeviceReportPart,
    DeviceVariable,
    EnergyReading,
    StationDeviation,
    TrafficFlush,
    SettingRefusal,
    OperatorSetting,
    ServerSetting,
    Owner,
    Driver,
    OneTimeCode,
    Tariff,
)
