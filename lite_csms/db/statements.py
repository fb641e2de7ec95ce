"""Prepared statements for the hot path, written once per model from its peewee fields.

Building a query through peewee costs more CPU than SQLite takes to run it (the issue 12
profile: peewee 63 % of the server at 1,000 calls/s). These helpers keep peewee's models and
its value conversions (`db_value`, `python_value`) but send fixed SQL texts straight to the
sqlite3 connection the model is bound to (the writer's, or the reader's inside
routing.reading_from), which caches each prepared statement. They do what the equivalent
peewee call does: `save` is `Model.save()` of a loaded row (every field but the key), `rows`
a `Model.select().where(...)` that yields model instances.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import peewee as pw

M = TypeVar("M", bound=pw.Model)

_SAVES: dict[tuple[type[pw.Model], tuple[str, ...]], str] = {}
_SELECTS: dict[tuple[type[pw.Model], str], str] = {}
_INSERTS: dict[tuple[type[pw.Model], tuple[str, ...], bool], str] = {}


def connection(model: type[pw.Model]) -> sqlite3.Connection:
    """The sqlite3 connection `model` is bound to now: the writer's or the reader's through
    database_proxy, or another under Database.bind_ctx (an upgrade)."""
    return model._meta.database.connection()


def _table(model: type[pw.Model]) -> str:
    return f'"{model._meta.table_name}"'


def save(row: pw.Model) -> None:
    """UPDATE every field of a loaded row but its primary key (peewee's save())."""
    model, meta = type(row), row._meta
    key = meta.primary_key
    data = row.__data__
    names = tuple(name for name in data if name != key.name)
    sql = _SAVES.get((model, names))
    if sql is None:
        columns = ", ".join(f'"{meta.fields[name].column_name}" = ?' for name in names)
        sql = _SAVES[(model, names)] = (
            f'UPDATE {_table(model)} SET {columns} WHERE "{key.column_name}" = ?')
    fields = meta.fields
    connection(model).execute(sql, [*(fields[name].db_value(data[name]) for name in names),
                               key.db_value(data[key.name])])
    row._dirty -= set(names)


def rows(model: type[M], where: str, params: Sequence[Any] = ()) -> list[M]:
    """Full rows of `model` as instances (clean, as a peewee select returns them); `where`
    is the SQL after FROM, with ? placeholders: 'WHERE "id" = ? LIMIT 1'."""
    sql = _SELECTS.get((model, where))
    fields = model._meta.sorted_fields
    if sql is None:
        columns = ", ".join(f'"{field.column_name}"' for field in fields)
        sql = _SELECTS[(model, where)] = f"SELECT {columns} FROM {_table(model)} {where}"
    found = []
    for values in connection(model).execute(sql, params):
        row = model(__no_default__=1, **{field.name: field.python_value(value)
                                         for field, value in zip(fields, values, strict=True)})
        row._dirty.clear()
        found.append(row)
    return found


def first(model: type[M], where: str, params: Sequence[Any] = ()) -> M | None:
    found = rows(model, where, params)
    return found[0] if found else None


def _insert_sql(model: type[pw.Model], names: tuple[str, ...], ignore: bool) -> str:
    sql = _INSERTS.get((model, names, ignore))
    if sql is None:
        fields = model._meta.fields
        columns = ", ".join(f'"{fields[name].column_name}"' for name in names)
        marks = ", ".join("?" * len(names))
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        sql = _INSERTS[(model, names, ignore)] = (
            f"{verb} INTO {_table(model)} ({columns}) VALUES ({marks})")
    return sql


def insert(model: type[pw.Model], names: tuple[str, ...],
           values: Iterable[Sequence[Any]], *, ignore: bool = False) -> int:
    """INSERT (OR IGNORE) rows given as db values in the order of `names` (field names);
    returns how many rows were inserted (a row an index refuses under `ignore` is not)."""
    cursor = connection(model).executemany(_insert_sql(model, names, ignore), values)
    return max(cursor.rowcount, 0)


def insert_one(model: type[pw.Model], names: tuple[str, ...], values: Sequence[Any]) -> int:
    """INSERT one row; returns its rowid (the integer primary key)."""
    cursor = connection(model).execute(_insert_sql(model, names, False), values)
    return int(cursor.lastrowid or 0)
