"""The key that signs the web session cookie (itsdangerous, via Starlette's SessionMiddleware).

The setting `web_secret` wins; empty (the default), the key is generated on first start and
kept beside the database in `<database>.web-secret` (mode 0600), so a restart keeps everyone
signed in and a copy of the database alone cannot forge a session. Deleting the file signs
everyone out at the next start.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from lite_csms.config import Settings

log = logging.getLogger("lite_csms.web")

# 32 random bytes: the HMAC-SHA1 key itsdangerous derives from it needs no more.
_BYTES = 32


def secret_path(settings: Settings) -> Path:
    return Path(f"{settings.database}.web-secret")


def session_secret(settings: Settings) -> str:
    """The configured secret, else the one kept beside the database, made if absent.

    Raises OSError if the file can neither be read nor created (the server does not start
    with a key it would forget)."""
    if settings.web_secret:
        return settings.web_secret
    if settings.database in ("", ":memory:"):
        # Nothing outlives this process: neither need its sessions.
        return secrets.token_urlsafe(_BYTES)
    path = secret_path(settings)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
        raise OSError(f"{path} holds no usable key: delete it to make a new one") from None
    value = secrets.token_urlsafe(_BYTES)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.info("web: made a new session key in %s", path)
    return value
