"""API keys: generated once, shown once, stored as a SHA-256 digest.

A key is 256 random bits, so a fast digest is safe here where a password needs scrypt.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from lite_csms.db.models import ApiKey

PREFIX = "lcs_"


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(name: str) -> str:
    key = generate()
    ApiKey.create(name=name, key_hash=digest(key))
    return key


def check(key: str, at: datetime) -> str | None:
    """The key's name if it is valid and not revoked."""
    row = ApiKey.get_or_none(ApiKey.key_hash == digest(key), ApiKey.revoked_at.is_null())
    if row is None:
        return None
    ApiKey.update(last_used_at=at).where(ApiKey.id == row.id).execute()
    return row.name


def revoke(name: str, at: datetime) -> bool:
    return ApiKey.update(revoked_at=at).where(
        ApiKey.name == name, ApiKey.revoked_at.is_null()).execute() > 0
