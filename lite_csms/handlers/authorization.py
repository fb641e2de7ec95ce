"""Authorization: id tokens, their status and expiry."""

from __future__ import annotations

from datetime import datetime

from lite_csms.db.models import IdToken, Transaction
from lite_csms.domain import AuthResult

TOKEN_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


def check_token(raw: str) -> str:
    """1.6 idTag is at most 20 characters, 2.x idToken 36; store what the longer one allows."""
    if not raw or len(raw) > 36 or not raw.isprintable():
        raise ValueError(f"invalid token {raw!r}: 1 to 36 printable characters")
    return raw


def authorize(token: str, at: datetime, *, unknown_status: str = "Invalid") -> AuthResult:
    row = IdToken.get_or_none(IdToken.token == token)
    if row is None:
        return AuthResult(unknown_status)
    if row.status == "Accepted" and row.expires_at is not None and row.expires_at <= at:
        return AuthResult("Expired", row.expires_at, row.group_token)
    return AuthResult(row.status, row.expires_at, row.group_token)


def authorize_for_start(
    token: str, at: datetime, station_id: str, *, unknown_status: str = "Invalid"
) -> AuthResult:
    """As authorize, plus ConcurrentTx when the token is already charging elsewhere."""
    result = authorize(token, at, unknown_status=unknown_status)
    if result.status != "Accepted":
        return result
    busy = (
        Transaction.select()
        .where(Transaction.id_token == token, Transaction.stopped_at.is_null())
        .exists()
    )
    if busy:
        return AuthResult("ConcurrentTx", result.expires_at, result.group_token)
    return result
