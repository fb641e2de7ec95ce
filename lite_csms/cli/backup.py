"""`lite-csms backup FILE`: a consistent copy of the database while the server runs.

SQLite's online backup API copies the file page by page inside one read transaction; in WAL
mode that reader does not block the server's writer, and the copy is the database as of one
commit. The copy is written beside FILE, synced, checked (`PRAGMA integrity_check`) and only
then renamed to FILE, with mode 0600 like the database itself.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

from lite_csms.cli.output import CliError


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    backup = sub.add_parser("backup", parents=[common],
                            help="copy the database consistently, also while serving")
    backup.add_argument("file", type=Path, help="where the copy goes (must not exist)")


def run(args: argparse.Namespace, database: Path) -> int:
    """Copy `database` to args.file. Raises CliError when FILE exists, is the database, or
    the copy fails its integrity check (nothing is left at FILE then)."""
    target: Path = args.file
    if target.exists():
        raise CliError(f"{target} exists; give a new file name")
    if target.resolve() == database.resolve():
        raise CliError("the backup cannot be the database itself")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        copy = sqlite3.connect(partial)
        try:
            # All pages in one step: one read transaction, so one commit's state.
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")
            (check,) = copy.execute("PRAGMA integrity_check").fetchone()
            (version,) = copy.execute("PRAGMA user_version").fetchone()
        finally:
            copy.close()
            source.close()
        if check != "ok":
            raise CliError(f"the copy failed its integrity check: {check}")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(f"backup of {database} to {target}: {target.stat().st_size} bytes, schema {version}, "
          "integrity ok")
    return 0
