"""Settings: defaults, then one TOML file, then LITE_CSMS_* environment variables, then flags.

Every key is top-level in the TOML file and its environment variable is LITE_CSMS_ plus the key
in upper case: `port = 9000` and LITE_CSMS_PORT=9000 say the same thing.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "LITE_CSMS_"
INBOUND_MODES = ("lenient", "strict")
DATABASE_NAME = "lite-csms.sqlite3"
# Where a root-run service keeps its state when systemd gives no StateDirectory.
SYSTEM_DATA_DIR = Path("/var/lib/lite-csms")
# Read when no --config and no LITE_CSMS_CONFIG is given, if it exists and is readable.
SYSTEM_CONFIG = Path("/etc/lite-csms/lite-csms.toml")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 9000
    # "" until load() resolves it: see default_database().
    database: str = ""
    # Subprotocols we offer; the charger's order of preference decides among these.
    subprotocols: tuple[str, ...] = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")
    # Unknown stations are kept as pending instead of refused with 401.
    auto_register: bool = False
    heartbeat_interval: int = 300
    # The interval a Pending or Rejected BootNotification answer carries: when the station
    # boots again (1.6 4.2, 2.0.1 B02/B03). Independent of the heartbeat and the budget
    # policy; each retry costs one boot exchange (about 0.4 kB with TLS).
    boot_retry_interval: int = 900
    max_message_size: int = 65536
    handshake_timeout: float = 10.0
    call_timeout: float = 30.0
    # Server WebSocket pings cost bytes on metered links: off unless asked for (seconds, 0 = off).
    ws_ping_interval: float = 0.0
    # TCP keepalive finds dead peers for ~60 bytes a probe; idle + interval * count bounds how
    # long a vanished station can still look online.
    tcp_keepalive_idle: int = 300
    tcp_keepalive_interval: int = 30
    tcp_keepalive_count: int = 4
    # Stop waiting for a peer that acknowledges nothing (TCP_USER_TIMEOUT, seconds, 0 = kernel).
    tcp_user_timeout: int = 120
    last_seen_flush_interval: float = 60.0
    # SQLite's page cache for each of the server's two connections (writer, reader), KiB.
    # SQLite's own 2,000 KiB filled at the first reconnect burst and stayed; the hot pages
    # of the writes fit in far less, and a page not cached is re-read from the OS's cache.
    db_cache_kib: int = 512
    log_level: str = "INFO"
    # The admin HTTP API; loopback only unless the operator decides otherwise.
    admin_enabled: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int = 9001
    # Security profile 2: TLS served by lite-csms itself (PEM files; both or neither). A proxy
    # in front would hide the station's real bytes from the traffic accounting.
    tls_cert: str = ""
    tls_key: str = ""
    # Traffic counters are written once per interval: a restart loses at most this much.
    traffic_flush_interval: float = 60.0
    # Hourly traffic rows older than this roll up into one row per day.
    traffic_hourly_retention_days: int = 62
    # Data budget defaults; each station may override them (`lite-csms budget set`).
    budget_cap: int = 25_000_000
    budget_cycle_day: int = 1
    budget_warn_ratio: float = 0.8
    nat_timeout: int = 600
    budget_policy: bool = True
    # How often the policy looks at each station's projection (seconds).
    budget_policy_interval: float = 900.0
    # Seconds at most a newly accepted station's policy settings wait while other stations'
    # handshakes run, so that boots go first under a reconnect burst (0: never wait).
    budget_policy_boots_first: float = 10.0
    # Free charging: id tokens the CSMS does not know are Accepted, and a remote start may name
    # one. Blocked and expired tokens are still refused.
    free_charging: bool = False
    # Used by the CLI's remote commands to call the admin API (or LITE_CSMS_API_KEY).
    api_key: str = ""
    # "lenient" accepts the known charger deviations of docs/DEVIATIONS.md and records them per
    # station; "strict" answers every schema violation with the spec's CALLERROR.
    inbound_mode: str = "lenient"
    # permessage-deflate (RFC 7692), accepted whenever a charger offers it. The window (9..15
    # bits) is ours and the one we ask of the charger when it lets us; mem_level (1..9) sizes
    # our compressor. Memory and bytes per choice: docs/DATA-BUDGET.md.
    ws_deflate: bool = True
    ws_deflate_window_bits: int = 11
    ws_deflate_mem_level: int = 4
    # The lite link (codecs/SPEC.md): a station offering "<version>.lite1" gets compact CBOR
    # frames with zstd dictionaries; off, it gets the plain subprotocol it offers after it.
    lite: bool = True
    # Lifetime of a TLS session ticket (seconds): a charger resumes within it for a cheaper
    # handshake. OpenSSL's default is 7200; TLS 1.3 caps it at 7 days (RFC 8446 4.6.1).
    tls_ticket_lifetime: int = 86400
    # A running session's live reading is fetched on demand (TriggerMessage MeterValues): at
    # most one per transaction per `progress_min_interval` seconds (askers within it get the
    # stored reading), waiting `progress_wait` seconds for it unless the request says
    # otherwise (at most `progress_max_wait`). docs/DATA-BUDGET.md prices one fetch.
    progress_min_interval: float = 60.0
    progress_wait: float = 5.0
    progress_max_wait: float = 30.0
    # Debugging only: an unknown station id gets 404 instead of the same 401 as a wrong
    # password, which lets anyone probing the port enumerate station ids.
    reveal_unknown_stations: bool = False
    # Security profile 3 (docs/SECURITY.md): a PEM bundle of the CA(s) that sign station
    # certificates. Set, the TLS port asks every station for a certificate (optional, so
    # profile 1 and 2 stations on the same port still get in) and verifies it against these
    # CAs only. Needs tls_cert and tls_key.
    tls_client_ca: str = ""
    # When set, a station certificate's subject O (organizationName) must equal it
    # (A00.FR.404: the certificate is owned by the CPO). Empty: O is not checked.
    tls_client_organization: str = ""
    # The profile of a station whose own profile is not set (`lite-csms station set-profile`):
    # 1 Basic auth on any transport, 2 TLS + Basic auth, 3 TLS + client certificate.
    security_profile_default: int = 1
    # A station below profile 3 that presents a valid certificate for its own id is raised
    # to 3 for good; off, the certificate is ignored and the station's own profile applies.
    security_profile_auto_raise: bool = True
    # Connection caps (docs/SECURITY.md, "Limits"); 0 = no cap of its own. A connection over
    # one is answered 503 + Retry-After before its request is read. max_connections is also
    # held 64 below the descriptor limit. ~70 KB each with permessage-deflate (47 without):
    # 5,000 take ~390 MB, what a 512 MB VPS can give.
    max_connections: int = 5000
    # Handshakes (TLS, HTTP upgrade, password check) running at once.
    max_handshakes: int = 1000
    # Stations connected from one IPv4 address or IPv6 /64 (checked after the password, a
    # returning station exempt); chargers behind one carrier NAT share one.
    max_connections_per_source: int = 1000
    # The names set explicitly (config file, environment, flags) rather than left at their
    # defaults: an operator's explicit heartbeat_interval wins over the budget policy's level.
    explicit: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Handshakes from one IPv4 address or IPv6 /64 at once, and never more than half of
    # max_handshakes: idle sockets from one address cannot hold every handshake slot.
    max_handshakes_per_source: int = 500
    # Peer-to-peer sharing (lite_csms/sharing/). The web page's address as drivers reach it
    # (https://charge.example.com): QR codes point at <public_url>/s/<station>/<connector>.
    public_url: str = ""
    # ISO 4217 currency of tariffs set without one, and of the data price.
    currency: str = "EUR"
    # What a charger's data costs its owner in statements: minor units of `currency` per
    # 1,000,000 bytes at the IP layer (0: not charged).
    data_price_per_mb: int = 0
    # 2.0.1/2.1 chargers: the least seconds between two CostUpdated to one session, sent only
    # when its running cost changed with new meter values (0: never send CostUpdated).
    cost_update_interval: float = 900.0
    # The key that signs the web page's session cookie; empty: generated on first start and
    # kept in <database>.web-secret (mode 0600). Changing it signs everyone out.
    web_secret: str = ""
    # A station that logs in with a chosen (scrypt-hashed) password gets a generated one
    # over OCPP once accepted (2.x SetVariables BasicAuthPassword, 1.6 ChangeConfiguration
    # AuthorizationKey), so later cold starts cost no KDF (docs/SECURITY.md). Never for
    # security profile 3 or a station without a password.
    rotate_chosen_passwords: bool = True

    @property
    def dead_peer_bound(self) -> int:
        return self.tcp_keepalive_idle + self.tcp_keepalive_interval * self.tcp_keepalive_count


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)
           if f.name not in ("extra", "explicit")}
_DEFAULTS = Settings()


def _coerce(name: str, value: Any) -> Any:
    expected = type(getattr(_DEFAULTS, name))
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if expected is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
        return tuple(value)
    if expected in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            number = expected(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{name}: must not be negative")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def _check(settings: Settings) -> Settings:
    from lite_csms.ocppj.versions import SUPPORTED_SUBPROTOCOLS

    unknown = [p for p in settings.subprotocols if p not in SUPPORTED_SUBPROTOCOLS]
    if unknown or not settings.subprotocols:
        raise ConfigError(f"subprotocols: unsupported {unknown or 'empty list'}")
    for name in ("port", "admin_port"):
        if not 0 <= getattr(settings, name) < 65536:
            raise ConfigError(f"{name}: {getattr(settings, name)} is out of range")
    for name in ("handshake_timeout", "call_timeout"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name}: must be more than 0 seconds")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("tls_cert and tls_key: give both or neither")
    if settings.budget_policy_boots_first < 0:
        raise ConfigError("budget_policy_boots_first: 0 or more seconds")
    if not 1 <= settings.budget_cycle_day <= 28:
        raise ConfigError("budget_cycle_day: 1 to 28, so that every month has the day")
    if not 0 < settings.budget_warn_ratio < 1:
        raise ConfigError("budget_warn_ratio: between 0 and 1")
    if settings.inbound_mode not in INBOUND_MODES:
        raise ConfigError(f"inbound_mode: one of {', '.join(INBOUND_MODES)}, "
                          f"got {settings.inbound_mode!r}")
    if not 9 <= settings.ws_deflate_window_bits <= 15:
        raise ConfigError("ws_deflate_window_bits: 9 to 15")
    if not 1 <= settings.ws_deflate_mem_level <= 9:
        raise ConfigError("ws_deflate_mem_level: 1 to 9")
    if not 1 <= settings.tls_ticket_lifetime <= 604800:
        raise ConfigError("tls_ticket_lifetime: 1 to 604800 seconds (TLS 1.3 caps it at 7 days)")
    if settings.max_message_size < 1024:
        raise ConfigError("max_message_size: at least 1024 bytes")
    if settings.tls_client_ca and not settings.tls_cert:
        raise ConfigError("tls_client_ca: needs tls_cert and tls_key (profile 3 is TLS)")
    if settings.tls_client_organization and not settings.tls_client_ca:
        raise ConfigError("tls_client_organization: needs tls_client_ca")
    if not 1 <= settings.security_profile_default <= 3:
        raise ConfigError("security_profile_default: 1, 2 or 3")
    if settings.security_profile_default >= 2 and not settings.tls_cert:
        raise ConfigError("security_profile_default 2 and 3 need tls_cert and tls_key")
    if settings.security_profile_default == 3 and not settings.tls_client_ca:
        raise ConfigError("security_profile_default 3 needs tls_client_ca")
    if settings.public_url and not settings.public_url.startswith(("https://", "http://")):
        raise ConfigError("public_url: an http:// or https:// URL")
    if not (len(settings.currency) == 3 and settings.currency.isalpha()
            and settings.currency.isupper()):
        raise ConfigError(f"currency: an ISO 4217 code such as KES or EUR, got "
                          f"{settings.currency!r}")
    if settings.progress_wait > settings.progress_max_wait:
        raise ConfigError("progress_wait: at most progress_max_wait")
    return settings


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is malformed: {exc}") from None


def default_database(environ: Mapping[str, str] | None = None, *,
                     euid: int | None = None) -> Path:
    """The database used when none is configured, whatever the working directory.

    - `$STATE_DIRECTORY/lite-csms.sqlite3` under systemd with `StateDirectory=lite-csms`;
    - `/var/lib/lite-csms/lite-csms.sqlite3` for root (a system service);
    - otherwise `$XDG_DATA_HOME/lite-csms/lite-csms.sqlite3`, by default
      `~/.local/share/lite-csms/lite-csms.sqlite3` (XDG Base Directory).
    """
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None and hasattr(os, "geteuid") else euid
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / DATABASE_NAME
    if euid == 0:
        return SYSTEM_DATA_DIR / DATABASE_NAME
    xdg = environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "lite-csms" / DATABASE_NAME


def load(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from the layers; raises ConfigError with a one-line message."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = environ[ENV_PREFIX + "CONFIG"]
    if config_file is None and os.access(SYSTEM_CONFIG, os.R_OK):
        # The service's file (deploy/lite-csms.service): a CLI command on the same machine
        # must find the same database and settings as the server it manages.
        config_file = SYSTEM_CONFIG
    values: dict[str, Any] = {}
    if config_file is not None:
        for key, value in read_toml(Path(config_file)).items():
            if isinstance(value, dict):
                # A setting under a table would be ignored without a word: refuse it.
                raise ConfigError(f"config file {config_file}: [{key}] is a table; every "
                                  "setting is a top-level key (see deploy/lite-csms.toml)")
            if key in _FIELDS:
                values[key] = _coerce(key, value)
            else:
                raise ConfigError(f"config file {config_file}: unknown key {key!r}")
    for name in _FIELDS:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
    explicit = frozenset(values)
    if not values.get("database"):
        values["database"] = str(default_database(environ))
    return _check(Settings(**values, explicit=explicit))
