"""One set of models, two connections: the writer's, and the read-only one of db/reader.py.

The models are bound to `database_proxy`, which normally stands for the writer's database.
While `reading_from(db)` is active in the current context (a thread, a trio task), the same
proxy stands for `db` instead, so read-only domain functions (an id token's status, the
budget policy's state) run unchanged on the read connection, beside the writer rather than
queued behind it. The writer's thread never enters that context, so it always gets its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import peewee as pw

_reading: ContextVar[pw.Database | None] = ContextVar("lite_csms_reading", default=None)


class RoutedProxy(pw.DatabaseProxy):  # type: ignore[misc]
    """A DatabaseProxy that answers for the read database inside `reading_from`."""

    def __getattr__(self, attr: str) -> Any:
        db = _reading.get()
        if db is not None:
            return getattr(db, attr)
        return super().__getattr__(attr)


@contextmanager
def reading_from(db: pw.Database) -> Iterator[None]:
    """Route the models to `db` until the block ends; the block must not await (a trio task
    switch inside it would carry the route into no other task, but would hold it longer)."""
    token = _reading.set(db)
    try:
        yield
    finally:
        _reading.reset(token)
