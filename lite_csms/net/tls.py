"""Security profile 2: TLS served by lite-csms itself, so its accounting sees every record."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    pass


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2 and up; TLS 1.3 session tickets so that a reconnect resumes cheaply."""
    for name in (cert_file, key_file):
        if not Path(name).is_file():
            raise TlsConfigError(f"TLS file {name} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot load TLS certificate {cert_file}: {exc}") from exc
    # A charger resumes with one ticket; the default of two sends a second it never uses.
    context.num_tickets = 1
    return context
