"""OCPP security profiles per station, decided at each handshake.

Profiles (OCPP 1.6 Security Whitepaper section 2 and OCPP 2.0.1 Part 2 section A00):
1 HTTP Basic auth on any transport, 2 TLS + Basic auth, 3 TLS + client certificate.

Rules (docs/SECURITY.md, "Security profile 3"):
- A station's profile is its own `security_profile`, or the server's
  `security_profile_default` while that is NULL.
- A certificate, once TLS has verified its chain against `tls_client_ca`, must name the
  station: exactly one subject CN, equal to the station id from the URL, compared exactly
  (station ids are matched case-sensitively everywhere in lite-csms); and, when
  `tls_client_organization` is set, a subject O equal to it (A00.FR.404, A00.FR.405). A
  certificate that fails this refuses the handshake whatever the station's profile: one
  naming another station never authenticates this one.
- Profile 3 needs such a certificate; Basic auth is then neither needed nor checked, so a
  password (cached or not) never lets a profile 3 station in. Profile 2 needs TLS.
- No downgrade (A00.FR.002, A00.FR.005): the only change a station causes is a raise to 3,
  when it presents a valid certificate for its own id and `security_profile_auto_raise` is
  on. Lowering is the operator's (`lite-csms station set-profile ID N --lower`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lite_csms.db.models import Station

if TYPE_CHECKING:  # trio and the meter cost every CLI command ~150 ms to import
    from lite_csms.budget.meter import ConnectionMeter

PROFILES = (1, 2, 3)
TLS_BASIC = 2
TLS_CERTIFICATE = 3

# ssl's getpeercert(): {"subject": ((("commonName", "CS-1"),), (("organizationName", "O"),))}
PeerCertificate = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Presented:
    """What the transport proved before the HTTP upgrade: TLS, and a verified certificate."""

    tls: bool
    certificate: PeerCertificate | None


@dataclass(frozen=True, slots=True)
class Decision:
    """`refusal` set: refuse with that reason (logged). `certified`: the certificate proved
    the station id, skip Basic auth. `raise_to`: store this higher profile for the station."""

    refusal: str | None = None
    certified: bool = False
    raise_to: int | None = None


def presented(meter: ConnectionMeter) -> Presented:
    """The TLS state of a connection whose TLS handshake is done (listener.py wraps the
    SSLStream in the meter's plain counting stream)."""
    import trio

    inner = getattr(meter.plain, "inner", None)
    if not meter.tls or not isinstance(inner, trio.SSLStream):
        return Presented(tls=meter.tls, certificate=None)
    # Empty when the station sent none; only a chain TLS verified reaches here.
    certificate = inner.getpeercert()
    return Presented(tls=True, certificate=certificate or None)


def subject_values(certificate: PeerCertificate, name: str) -> list[str]:
    return [value for rdn in certificate.get("subject", ()) for key, value in rdn
            if key == name]


def certificate_problem(certificate: PeerCertificate, station_id: str,
                        organization: str = "") -> str | None:
    """Why this verified certificate does not authenticate `station_id`, or None if it does.

    A00.FR.405 / A00.FR.511: the subject CN is the station's identity; a subjectAltName is
    ignored. More than one CN is ambiguous and refused.
    """
    names = subject_values(certificate, "commonName")
    if len(names) != 1:
        return f"client certificate has {len(names)} subject CNs, not one"
    if names[0] != station_id:
        return f"client certificate names another station (CN={names[0][:48]!r})"
    if organization and organization not in subject_values(certificate, "organizationName"):
        return "client certificate's subject O is not the configured organization"
    return None


def effective(stored: int | None, default: int) -> int:
    return default if stored is None else stored


def decide(profile: int, station_id: str, seen: Presented, *, organization: str = "",
           auto_raise: bool = True) -> Decision:
    """The profile rules for one handshake; Basic auth (when not certified) is the caller's."""
    if seen.certificate is not None:
        problem = certificate_problem(seen.certificate, station_id, organization)
        if problem is not None:
            return Decision(refusal=problem)
        if profile >= TLS_CERTIFICATE:
            return Decision(certified=True)
        if auto_raise:
            return Decision(certified=True, raise_to=TLS_CERTIFICATE)
    if profile >= TLS_CERTIFICATE:
        return Decision(refusal="security profile 3 needs a client certificate")
    if profile == TLS_BASIC and not seen.tls:
        return Decision(refusal="security profile 2 needs TLS")
    return Decision()


# ---- store jobs (run by the writer) -----------------------------------------------------------
def raise_profile(station_id: str, profile: int) -> bool:
    """Raise, never lower: True if the station's stored profile was below `profile` (or unset)."""
    updated = Station.update(security_profile=profile).where(
        (Station.id == station_id)
        & (Station.security_profile.is_null() | (Station.security_profile < profile))
    ).execute()
    return updated > 0


def auto_register_certified(station_id: str) -> None:
    """Keep an unknown station whose certificate names it as pending, at profile 3, with no
    password: the certificate is its credential from now on."""
    Station.insert(id=station_id, registration="pending", password_hash=None,
                   security_profile=TLS_CERTIFICATE).on_conflict("ignore").execute()


def set_profile(station_id: str, profile: int, default: int, *, lower: bool) -> tuple[int, int]:
    """The operator's change: (old effective profile, new). Raises ValueError for a profile
    outside 1-3, and PermissionError for a lowering without `lower`; LookupError for no
    such station."""
    if profile not in PROFILES:
        raise ValueError(f"security profile must be 1, 2 or 3, not {profile}")
    station = Station.get_or_none(Station.id == station_id)
    if station is None:
        raise LookupError(station_id)
    old = effective(station.security_profile, default)
    if profile < old and not lower:
        raise PermissionError(f"lowering {station_id} from security profile {old} to "
                              f"{profile} needs --lower")
    Station.update(security_profile=profile).where(Station.id == station_id).execute()
    return old, profile
