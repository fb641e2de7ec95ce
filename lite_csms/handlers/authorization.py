"""Authorization: id tokens, their status and expiry."""

from __future__ import annotations

from datetime import datetime

from lite_csms.db.models import IdToken, Transaction
from lite_csms.domain import AuthResult


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
