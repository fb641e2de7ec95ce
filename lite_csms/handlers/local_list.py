"""Local authorization lists, built from the id-token table, full or differential."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lite_csms.db.models import IdToken, LocalListState
from lite_csms.domain import AuthResult
from lite_csms.handlers.authorization import group_of

# 1.6 idTag is at most 20 characters: longer tokens cannot be on a 1.6 list.
V16_ID_TAG_MAX = 20
# Keeps one SendLocalList well under the default 64 KiB message size.
MAX_ENTRIES = 500


@dataclass(frozen=True, slots=True)
class ListEntry:
    token: str
    token_type: str
    auth: AuthResult


@dataclass(frozen=True, slots=True)
class PlannedList:
    version: int
    full: bool
    entries: tuple[ListEntry, ...]


def plan(station_id: str, full: bool, max_token_length: int | None) -> PlannedList:
    """The next list for the station: every token (full) or those changed since the last."""
    state = LocalListState.get_or_none(LocalListState.station == station_id)
    differential = not full and state is not None and state.sent_at is not None
    # One entry per token: a spelling an upgrade found to duplicate another has no key, and
    # a station compares tokens without regard to case, so it would take both as one.
    query = IdToken.select().where(IdToken.token_key.is_null(False)).order_by(IdToken.token)
    if differential:
        query = query.where(IdToken.updated_at > state.sent_at)
    groups: dict[str | None, tuple[str, str] | None] = {None: None}
    entries = tuple(
        ListEntry(t.token, t.token_type,
                  AuthResult(t.status, t.expires_at, *(_group(t, groups) or (None, None))))
        for t in query
        if max_token_length is None or len(t.token) <= max_token_length
    )[:MAX_ENTRIES]
    return PlannedList((state.version if state else 0) + 1, not differential, entries)


def _group(token: IdToken, seen: dict[str | None, tuple[str, str] | None]
           ) -> tuple[str, str] | None:
    """The group and its type as registered; `seen` keeps one lookup per group for the list."""
    if token.group_token not in seen:
        seen[token.group_token] = group_of(token)
    return seen[token.group_token]


def accepted(station_id: str, version: int, at: datetime) -> None:
    LocalListState.insert(station=station_id, version=version, sent_at=at).on_conflict(
        conflict_target=[LocalListState.station],
        preserve=[LocalListState.version, LocalListState.sent_at]).execute()


def reported_version(station_id: str, version: int) -> None:
    """GetLocalListVersion's answer: keep our version in step with the station's."""
    LocalListState.insert(station=station_id, version=version).on_conflict(
        conflict_target=[LocalListState.station],
        preserve=[LocalListState.version]).execute()
