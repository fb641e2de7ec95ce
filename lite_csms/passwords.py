"""Station passwords: shown once, stored only as a salted hash.

Two schemes, told apart by the stored string's prefix:
- `scrypt$N$r$p$salt$digest` for a password someone chose (CLI `--password`, auto-register):
  it may be guessable, so a leaked database must cost a slow KDF per guess.
- `hmac-sha256$salt$digest` for a password lite-csms generated: 24 characters from 57 symbols
  are ~140 bits (20, the most an OCPP 1.6 AuthorizationKey holds, ~117 bits), beyond any
  offline search, so a fast keyed hash loses nothing and a reconnect storm after a restart
  costs no KDF (docs/SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# OWASP's scrypt floor (N=2^17, r=8, p=1) costs 128 MiB per check: too much on a 512 MB VPS when
# many stations reconnect at once. N=2^14 uses 16 MiB and ~40 ms.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024

# OCPP 1.6 security and 2.0.1 allow 16 to 40 characters for a Basic-auth password.
GENERATED_LENGTH = 24
# The shortest generated password: a 1.6 AuthorizationKey carries at most 20 bytes (40 hex
# digits), and 20 symbols of 57 are ~117 bits, still beyond any offline search.
GENERATED_MIN_LENGTH = 20
# Letters and digits that cannot be misread; all in 2.0.1's passwordString set.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def generate(length: int = GENERATED_LENGTH) -> str:
    """`length` random symbols of ALPHABET (GENERATED_MIN_LENGTH to 40)."""
    if not GENERATED_MIN_LENGTH <= length <= 40:
        raise ValueError(f"a generated password has {GENERATED_MIN_LENGTH} to 40 characters")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


FAST_SCHEME = "hmac-sha256"


def hash_generated(password: str) -> str:
    """The fast scheme, for a password from generate() (or its hex form) only. Raises
    ValueError for a password shorter than a generated one, which cannot have its entropy."""
    if len(password) < GENERATED_MIN_LENGTH:
        raise ValueError("only a generated password may use the fast scheme")
    salt = secrets.token_bytes(16)
    digest = hmac.new(salt, password.encode(), hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"{FAST_SCHEME}${b64(salt).decode()}${b64(digest).decode()}"


def is_fast(stored: str) -> bool:
    """Whether checking against `stored` is cheap (no KDF, no worker thread needed)."""
    return stored.startswith(FAST_SCHEME + "$")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify(password: str, stored: str) -> bool:
    if is_fast(stored):
        return _verify_fast(password, stored)
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _verify_fast(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hmac.new(base64.b64decode(salt), password.encode(), hashlib.sha256).digest()
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A well-formed scrypt hash with the current cost that no password matches (its digest is
# zeros): checking a password for an unknown station id against it costs what checking a
# real chosen password costs, so the answer's timing does not tell the id exists.
DUMMY_HASH = (f"scrypt${_N}${_R}${_P}${base64.b64encode(bytes(16)).decode()}"
              f"${base64.b64encode(bytes(32)).decode()}")
