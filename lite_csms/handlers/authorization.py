"""Authorization: id tokens, their status, expiry and group, compared without regard to case.

OCPP id tokens are case-insensitive (1.6 IdToken is a CiString20; 2.0.1 and 2.1 say so of
IdTokenType.idToken), so every lookup goes through `token_key`, and a token keeps the spelling
it was first registered with for display and for what we send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import peewee as pw

from lite_csms.db import statements
from lite_csms.db.models import IdToken, Transaction, token_key
from lite_csms.domain import AuthResult

log = logging.getLogger("lite_csms.auth")

TOKEN_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
# When an upgrade folds two spellings of one token together, the stricter status wins.
_STRICTER_FIRST = ("Blocked", "Expired", "Invalid", "Accepted")


@dataclass(slots=True)
class _Policy:
    # free_charging (config): a token the CSMS does not know is Accepted, not Invalid/Unknown.
    free_charging: bool = False


_policy = _Policy()


def set_free_charging(enabled: bool) -> None:
    """The server sets this once at start from `free_charging` in its settings."""
    _policy.free_charging = enabled


class TokenRefused(ValueError):
    """A remote start names a token the CSMS would not accept."""


def check_token(raw: str) -> str:
    """1.6 idTag is at most 20 characters, 2.x idToken 36; store what the longer one allows."""
    if not raw or len(raw) > 36 or not raw.isprintable():
        raise ValueError(f"invalid token {raw!r}: 1 to 36 printable characters")
    return raw


def find_token(token: str) -> IdToken | None:
    """The registered token that `token` names, whatever its letter case."""
    return statements.first(IdToken, 'WHERE "token_key" = ? LIMIT 1', (token_key(token),))


def group_of(row: IdToken) -> tuple[str, str] | None:
    """The token's group as (token, type): spelled as registered when the group is itself a
    registered token (its type too), else as stored with the type Central."""
    if row.group_token is None:
        return None
    group = find_token(row.group_token)
    if group is None:
        return row.group_token, "Central"
    return group.token, group.token_type


def _result(row: IdToken, at: datetime) -> AuthResult:
    group_token, group_type = group_of(row) or (None, None)
    status = row.status
    if status == "Accepted" and row.expires_at is not None and row.expires_at <= at:
        status = "Expired"
    return AuthResult(status, row.expires_at, group_token, group_type)


def authorize(token: str, at: datetime, *, unknown_status: str = "Invalid") -> AuthResult:
    """The token's status at `at`; an unknown token gets unknown_status (1.6 Invalid, 2.x
    Unknown), or Accepted when free charging is on."""
    row = find_token(token)
    if row is None:
        return AuthResult("Accepted" if _policy.free_charging else unknown_status)
    return _result(row, at)


def authorize_for_start(
    token: str, at: datetime, station_id: str, *, unknown_status: str = "Invalid"
) -> AuthResult:
    """As authorize, plus ConcurrentTx when the token (in any letter case) is already charging."""
    result = authorize(token, at, unknown_status=unknown_status)
    if result.status != "Accepted":
        return result
    if is_charging(token):
        return AuthResult("ConcurrentTx", result.expires_at, result.group_token,
                          result.group_type)
    return result


def is_charging(token: str) -> bool:
    # Compared here, not in SQL: SQLite's lower() folds ASCII only. Open transactions are few.
    key = token_key(token)
    running = statements.connection(Transaction).execute(
        'SELECT "id_token" FROM "transaction" '
        'WHERE "stopped_at" IS NULL AND "id_token" IS NOT NULL')
    return any(token_key(found) == key for (found,) in running)


def same_holder(reserved: str, presented: str) -> bool:
    """Whether `presented` may use what `reserved` holds: the same token in any case, or a
    token of the same group (1.6 parentIdTag, 2.x groupIdToken), or a member of it."""
    if token_key(reserved) == token_key(presented):
        return True
    reserved_row, presented_row = find_token(reserved), find_token(presented)
    presented_group = None if presented_row is None else group_of(presented_row)
    if presented_group is None:
        return False
    if token_key(presented_group[0]) == token_key(reserved):
        return True
    reserved_group = None if reserved_row is None else group_of(reserved_row)
    return reserved_group is not None and token_key(reserved_group[0]) == token_key(
        presented_group[0])


def token_for_remote_start(token: str, at: datetime, *, free_charging: bool,
                           allow_unknown: bool) -> str:
    """The spelling to send in a remote start, or TokenRefused.

    An unknown token is refused unless free charging is on or the operator overrides; a
    blocked, expired or invalid one is refused unless the operator overrides. A remote start the
    CSMS would then refuse to authorize ends as a 0 kWh, de-authorized session.
    """
    row = find_token(token)
    if row is None:
        if free_charging or allow_unknown:
            return token
        raise TokenRefused(
            f"token {token!r} is not registered: register it, or allow it for this start "
            "(allow_unknown_token; CLI --allow-unknown-token), or set free_charging")
    status = _result(row, at).status
    if status != "Accepted" and not allow_unknown:
        raise TokenRefused(f"token {row.token!r} is {status.lower()}: unblock or renew it, or "
                           "allow it for this start (allow_unknown_token; CLI "
                           "--allow-unknown-token)")
    return row.token


def upgrade_v3(db: pw.SqliteDatabase) -> None:
    """Give each id token of a schema-2 database its case-insensitive key; idempotent.

    Schema 2 compared tokens exactly, so it may hold two spellings of one token. The first
    registered (lowest id) keeps the key and takes the strictest status (Blocked, Expired,
    Invalid, Accepted) and the earliest expiry of its spellings, so no card the operator
    blocked in one spelling charges in another; each later spelling stays as a row with a NULL
    key, which no lookup finds, and is logged.
    """
    # db/upgrade.py has added the token_key column and its unique index by now.
    rows = db.execute_sql('SELECT "id", "token", "status", "expires_at", "token_key" '
                          'FROM "id_token" ORDER BY "id"').fetchall()
    kept: dict[str, list] = {key: [row_id, token, status, expires]
                             for row_id, token, status, expires, key in rows if key is not None}
    changed: set[str] = set()
    for row_id, token, status, expires, key in rows:
        if key is not None:
            continue
        key = token_key(token)
        first = kept.get(key)
        if first is None:
            db.execute_sql('UPDATE "id_token" SET "token_key" = ? WHERE "id" = ?', (key, row_id))
            kept[key] = [row_id, token, status, expires]
            continue
        log.warning("id token %r duplicates %r (tokens are case-insensitive): %r is the token "
                    "now and %r is no longer used", token, first[1], first[1], token)
        stricter = min((first[2], status), key=lambda s: _STRICTER_FIRST.index(s)
                       if s in _STRICTER_FIRST else 0)
        earliest = min((e for e in (first[3], expires) if e is not None), default=None)
        if (stricter, earliest) != (first[2], first[3]):
            first[2], first[3] = stricter, earliest
            changed.add(key)
    for key in changed:
        _, _, status, expires = kept[key]
        # A newer updated_at sends the stricter entry in the next differential local list.
        db.execute_sql('UPDATE "id_token" SET "status" = ?, "expires_at" = ?, '
                       '"updated_at" = strftime(\'%Y-%m-%dT%H:%M:%f+00:00\', \'now\') '
                       'WHERE "token_key" = ?', (status, expires, key))
