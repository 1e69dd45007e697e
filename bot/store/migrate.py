"""Apply Alembic migrations from code: on app start, from the CLI and in tests.

The revisions live in ``migrations/versions`` at the top of the repository.
:func:`upgrade_if_needed` runs at ``create_app`` time: it compares the
database's revision with the newest one and, only when they differ, upgrades
under a lock so that the 2+ gunicorn workers booting together don't run the
same DDL twice — a PostgreSQL advisory lock, or an exclusive ``flock`` on a
file beside the SQLite database.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revisions",
    "head_revisions",
    "migration_lock",
    "upgrade",
    "upgrade_if_needed",
]

log = logging.getLogger(__name__)

#: ``migrations/`` at the top of the repository.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[2] / "migrations"

#: Arbitrary but fixed key of the PostgreSQL advisory lock ("tusoat" in ASCII, shifted).
ADVISORY_LOCK_KEY: Final = 0x7475736F6174


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config for this repository's migrations.

    Args:
        connection: When given, ``migrations/env.py`` runs on it instead of
            opening its own (so the caller's lock and transaction apply).

    Returns:
        A config usable with :mod:`alembic.command`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revisions() -> set[str]:
    """Return the newest revision(s) of the migration scripts."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(connection: Connection) -> set[str]:
    """Return the revision(s) the database is at (empty for a new database)."""
    return set(MigrationContext.configure(connection).get_current_heads())


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[Connection]:
    """Hold the cross-process migration lock and yield a connection to migrate on.

    On SQLite the connection also has foreign keys off: batch migrations copy
    and drop tables, and with foreign keys on, dropping a parent table would
    cascade-delete its children's rows.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            connection.commit()  # leave no transaction open; the lock is session-level
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                connection.commit()
        return

    with _sqlite_file_lock(engine), engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            raw = connection.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys = OFF")  # outside any transaction, or it is ignored
            try:
                yield connection
            finally:
                connection.rollback()
                raw.execute("PRAGMA foreign_keys = ON")
        else:  # pragma: no cover - other databases are not supported yet
            yield connection


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # in-memory: one process only, nothing to race with
        return
    import fcntl

    lock_path = f"{os.path.abspath(database)}.migrate.lock"
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the other worker is done
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` under the migration lock."""
    with migration_lock(engine) as connection:
        command.upgrade(alembic_config(connection), revision)
        connection.commit()


def upgrade_if_needed(engine: Engine) -> bool:
    """Upgrade to the newest revision when the database is new or behind.

    Cheap when there is nothing to do (one SELECT), so it can run at every
    app start. The revision is checked again after taking the lock because
    another worker may have finished the upgrade while this one waited.

    Args:
        engine: Engine of the database to migrate.

    Returns:
        True if this call applied migrations.
    """
    heads = head_revisions()
    # DEFERRED: this check only reads, it must not queue behind SQLite writers.
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
        if current_revisions(connection) == heads:
            return False
    with migration_lock(engine) as connection:
        current = current_revisions(connection)
        connection.rollback()  # end the read transaction before Alembic begins its own
        if current == heads:
            return False
        log.info("migrating database from %s to %s", sorted(current) or "empty", sorted(heads))
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
        return True
