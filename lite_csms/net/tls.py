"""Security profile 2: TLS served by lite-csms itself, so its accounting sees every record.

Session tickets let a reconnecting charger resume (about 660 to 820 bytes cheaper than a full
handshake). OpenSSL gives them a lifetime of 7200 s, too short for a charger whose link drops a
few times a day. Python's `ssl` module has no setter for it (CPython exposes `num_tickets`
and `session_stats()`, not SSL_CTX_set_timeout), and pyOpenSSL's `Context.set_timeout`
cannot serve a `trio.SSLStream`, which takes only an `ssl.SSLContext`. So the lifetime is set
with SSL_CTX_set_timeout from the very libssl `_ssl` is linked against, on the SSL_CTX that
the context wraps, and only after reading that SSL_CTX's options and verify mode back and
finding the context's own: if anything does not match, the default stays and we say so.

Ticket keys: OpenSSL draws them at random for each SSL_CTX and keeps them in memory only.
Every restart of lite-csms therefore starts new keys: each charger's next reconnect is a full
handshake, once. That is the key rotation; keys are never written to disk.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
from pathlib import Path

log = logging.getLogger("lite_csms.net")

DEFAULT_TICKET_LIFETIME = 86400
# RFC 8446 section 4.6.1: a ticket lifetime hint of at most 7 days.
MAX_TICKET_LIFETIME = 604800


# Python's verify modes as OpenSSL spells them: SSL_VERIFY_PEER 1, FAIL_IF_NO_PEER_CERT 2.
_OPENSSL_VERIFY = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}


class TlsConfigError(ValueError):
    pass


def server_context(cert_file: str, key_file: str,
                   ticket_lifetime: int = DEFAULT_TICKET_LIFETIME,
                   client_ca: str = "") -> ssl.SSLContext:
    """TLS 1.2 and up; one TLS 1.3 session ticket per handshake, valid `ticket_lifetime` s.

    With `client_ca` (a PEM bundle), a client certificate is asked for but not required
    (CERT_OPTIONAL: profile 1 and 2 stations on the same port send none), and one that is sent
    must chain to these CAs and no others, or the TLS handshake fails (security profile 3,
    A00.FR.403). A resumed session keeps the certificate verified at its full handshake.
    """
    for name in (cert_file, key_file, *([client_ca] if client_ca else [])):
        if not Path(name).is_file():
            raise TlsConfigError(f"TLS file {name} does not exist")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"cannot load TLS certificate {cert_file}: {exc}") from exc
    if client_ca:
        # The context holds no CA before this (Purpose.CLIENT_AUTH with CERT_NONE loads no
        # system store): a certificate from a public CA must never name a station.
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsConfigError(f"cannot load the station CA {client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_OPTIONAL
    # A charger resumes with one ticket; the default of two sends a second it never uses.
    context.num_tickets = 1
    set_session_lifetime(context, ticket_lifetime)
    return context


def _libssl() -> ctypes.CDLL | None:
    import _ssl

    # dlsym on the extension module finds the libssl it was linked with, not another one.
    path = getattr(_ssl, "__file__", None)
    try:
        lib = ctypes.CDLL(path)
        lib.SSL_CTX_set_timeout  # noqa: B018 - fails here when the symbol is not reachable
    except (OSError, AttributeError):
        return None
    lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
    lib.SSL_CTX_set_timeout.restype = ctypes.c_long
    lib.SSL_CTX_get_timeout.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_timeout.restype = ctypes.c_long
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    return lib


def _ssl_ctx_pointer(context: ssl.SSLContext, lib: ctypes.CDLL) -> int | None:
    """The SSL_CTX* of `context`: CPython's PySSLContext starts with it, after PyObject_HEAD.

    Checked before use: the SSL_CTX found there must report the context's own options and
    verify mode, which Python reads from that same SSL_CTX.
    """
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        return None
    if lib.SSL_CTX_get_options(pointer) != int(context.options):
        return None
    if lib.SSL_CTX_get_verify_mode(pointer) & 3 != _OPENSSL_VERIFY[context.verify_mode]:
        return None
    return pointer


def session_lifetime(context: ssl.SSLContext) -> int | None:
    """The context's session (and ticket) lifetime in seconds, or None if it cannot be read."""
    lib = _libssl()
    pointer = None if lib is None else _ssl_ctx_pointer(context, lib)
    return None if lib is None or pointer is None else int(lib.SSL_CTX_get_timeout(pointer))


def set_session_lifetime(context: ssl.SSLContext, seconds: int) -> bool:
    """SSL_CTX_set_timeout: how long a session, and so a TLS 1.3 ticket, may be resumed.

    The ticket lifetime hint a server sends is this value (capped at 7 days); a ticket older
    than it is refused and the charger pays a full handshake. Returns False, logging one
    warning, when this Python's ssl cannot be reached that way (the default then stays).
    """
    if not 1 <= seconds <= MAX_TICKET_LIFETIME:
        raise TlsConfigError(f"ticket lifetime {seconds} s: 1 to {MAX_TICKET_LIFETIME}")
    lib = _libssl()
    pointer = None if lib is None else _ssl_ctx_pointer(context, lib)
    if lib is None or pointer is None:
        log.warning("cannot set the TLS ticket lifetime on this Python; OpenSSL's default "
                    "(usually 7200 s) stays")
        return False
    lib.SSL_CTX_set_timeout(pointer, seconds)
    return int(lib.SSL_CTX_get_timeout(pointer)) == seconds
