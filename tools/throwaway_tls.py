"""A throwaway CA and a server certificate for 127.0.0.1, for runs that need real TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def issue(workdir: Path, client: ssl.SSLContext | None = None
          ) -> tuple[Path, Path, ssl.SSLContext]:
    """Write cert.pem and key.pem into `workdir`; return them and a client context trusting
    the CA that signed them (`client` if given, e.g. a subclass that offers a saved session).
    The CA's certificate goes to ca.pem too, for a client in another process."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    if client is None:
        client = ssl.create_default_context()
    ca.configure_trust(client)
    return cert_file, key_file, client
