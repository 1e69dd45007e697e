"""Engine, sessions and transactions of the store, bound to the Flask app.

* :func:`make_engine` builds the SQLAlchemy engine from ``DATABASE_URL``. On
  SQLite it turns on WAL, ``busy_timeout`` and foreign keys for every
  connection, and starts every transaction with ``BEGIN IMMEDIATE`` so writers
  queue on the database lock instead of failing mid-transaction.
* :func:`init_app` attaches a :class:`Store` to the app, closes the
  request's session at teardown and brings the schema to the newest Alembic
  revision on first start (see :mod:`bot.store.migrate`).
* :func:`get_session` gives the one session of the current request or CLI
  command; :func:`run_in_transaction` commits a unit of work at the boundary,
  retrying it when a concurrent writer got there first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import StaticPool

from bot import jsoncodec

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "BUSY_TIMEOUT_MS",
    "RetryableConflict",
    "Store",
    "engine_with",
    "get_session",
    "get_store",
    "init_app",
    "is_retryable",
    "make_engine",
    "run_in_transaction",
    "write_lock",
]

log = logging.getLogger(__name__)

#: How long a SQLite writer waits for the lock before giving up (milliseconds).
BUSY_TIMEOUT_MS: Final = 5000

#: Attempts of one unit of work before a conflict is reported to the caller.
MAX_ATTEMPTS: Final = 5

#: Key under ``app.extensions``.
EXTENSION_KEY: Final = "bot.store"

#: Execution option naming the SQLite BEGIN mode (``"IMMEDIATE"`` by default;
#: read-only callers may pass ``"DEFERRED"`` to not queue behind writers, or
#: ``"NONE"`` for no transaction at all: each statement is its own snapshot).
SQLITE_BEGIN_OPTION: Final = "sqlite_begin"

T = TypeVar("T")


class RetryableConflict(Exception):
    """Raised by a unit of work to ask :func:`run_in_transaction` for another attempt."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with the settings this app relies on.

    Args:
        url: SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``).
        **kwargs: Extra arguments for :func:`sqlalchemy.create_engine`.

    Returns:
        The configured engine.
    """
    parsed = make_url(url)
    # Compact JSON that keeps Vietnamese as UTF-8: the default escapes every
    # accented letter (\u1ebf...), doubling the size of stored states and replies.
    kwargs.setdefault("json_serializer", jsoncodec.dumps)
    kwargs.setdefault("json_deserializer", jsoncodec.loads)
    if parsed.get_backend_name() != "sqlite":
        # A gunicorn worker that sat idle across a PostgreSQL restart must not
        # fail its first request: connections idle in the pool are pinged at
        # checkout (see _ping_idle_connections). Pass pool_pre_ping=True to ping
        # at every checkout instead.
        ping_every_checkout = kwargs.setdefault("pool_pre_ping", False)
        engine = create_engine(url, **kwargs)
        if not ping_every_checkout:
            _ping_idle_connections(engine)
        return engine

    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or every checkout would see a new empty database.
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(url, **kwargs)
    _configure_sqlite(engine)
    if parsed.database not in (None, "", ":memory:") and not parsed.database.startswith("file:"):
        _write_locks[engine] = WriteLock(os.path.abspath(parsed.database) + ".write.lock")
    return engine


def engine_with(engine: Engine, **options: Any) -> Engine:
    """``engine.execution_options(**options)``, made once per engine and options.

    It shares ``engine``'s pool; a connection from it starts with ``options`` set (autocommit, a SQLite BEGIN
    mode), which costs about a third of setting them on a session's connection for each use.
    """
    made: dict[tuple[tuple[str, Any], ...], Engine] = engine.__dict__.setdefault("_bot_with_options", {})
    key = tuple(sorted(options.items()))
    derived = made.get(key)
    if derived is None:
        derived = made[key] = engine.execution_options(**options)
    return derived


#: A pooled connection unused for longer than this is pinged before it is handed out (seconds).
PING_AFTER_IDLE_S: Final = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it sat idle for a while.

    ``pool_pre_ping`` costs a round trip (``SELECT 1``) on every checkout, that
    is on every chat message: about a tenth of the server's CPU per message.
    A connection checked in less than :data:`PING_AFTER_IDLE_S` ago was just
    working; one idle longer (a quiet worker, possibly across a database
    restart) is pinged, and replaced when the ping finds it dead, as with
    ``pool_pre_ping``. A connection that died in that last second fails its
    statement instead; :func:`run_in_transaction` retries such a unit of work
    (``connection_invalidated``) on a fresh connection.
    """
    from sqlalchemy.exc import InvalidatePoolError

    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["bot.idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("bot.idle_since", None)
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # As pool_pre_ping: a dead connection means a restart, so every
                # pooled connection is replaced, and this checkout gets a new one.
                raise InvalidatePoolError(str(exc)) from exc
            raise


class WriteLock:
    """An exclusive lock shared by every process writing one SQLite database.

    SQLite itself lets one writer in at a time, but a writer that finds the
    database locked polls with growing sleeps (1, 2, 5, 10 ms...), so under
    load the lock sits idle while waiters sleep. Queueing on ``flock`` instead
    wakes the next writer the moment the previous one commits. The file is
    opened per process (after gunicorn forks), and a thread lock orders the
    threads of one process, since ``flock`` does not exclude two threads
    sharing a descriptor.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        import fcntl

        with self._threads:
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            assert self._fd is not None
            # No timeout: the holder is a transaction of at most a few ms, and a
            # worker stuck holding it is killed by gunicorn, which frees the lock.
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __del__(self) -> None:
        # The engine (and this lock with it) was dropped: close this process's descriptor.
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)


#: The write lock of each file-backed SQLite engine made by :func:`make_engine`.
_write_locks: weakref.WeakKeyDictionary[Engine, WriteLock] = weakref.WeakKeyDictionary()


def write_lock(session: Session) -> contextlib.AbstractContextManager[None]:
    """Return the cross-process write lock for the session's database (a no-op if none)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    lock = _write_locks.get(engine)
    return lock.hold() if lock is not None else contextlib.nullcontext()


def _configure_sqlite(engine: Engine) -> None:
    """Install the per-connection pragmas and the explicit BEGIN on ``engine``."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy: pysqlite's own implicit BEGIN
        # is DEFERRED and would make writers fail with SQLITE_BUSY instead of waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer and vice versa; NORMAL is durable
            # across application crashes and much cheaper than FULL in WAL mode.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        if mode == "NONE":
            return  # autocommit: pysqlite runs each statement on its own (isolation_level None)
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        # IMMEDIATE takes the write lock up front: this is how one person's
        # messages are serialised on SQLite (the PostgreSQL path uses FOR UPDATE).
        connection.exec_driver_sql(f"BEGIN {mode}")


@dataclass
class Store:
    """The database handles of one app: engine and session factory."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Store:
        """Build a store for ``url`` (see :func:`make_engine`)."""
        engine = make_engine(url, **kwargs)
        # expire_on_commit=False: views read attributes after the commit at the boundary.
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @property
    def dialect(self) -> str:
        """Name of the database dialect (``"sqlite"`` or ``"postgresql"``)."""
        return self.engine.dialect.name


def init_app(app: Flask) -> Store:
    """Bind the store to ``app``; migrate the database on first start.

    Reads ``DATABASE_URL``; ``AUTO_MIGRATE`` (default true) applies pending
    Alembic revisions now, under a lock so parallel workers don't race.

    Args:
        app: The application being created.

    Returns:
        The store, also kept at ``app.extensions["bot.store"]``.
    """
    store = Store.from_url(app.config["DATABASE_URL"])
    app.extensions[EXTENSION_KEY] = store
    app.teardown_appcontext(_close_session)

    if app.config.get("AUTO_MIGRATE", True):
        from bot.store.migrate import upgrade_if_needed

        upgrade_if_needed(store.engine)
    return store


def get_store(app: Flask | None = None) -> Store:
    """Return the store bound to ``app`` (default: the current app)."""
    if app is None:
        from flask import current_app

        app = current_app
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("bot.store.init_app(app) was not called") from None


def get_session() -> Session:
    """Return the session of the current request (or CLI command), opening it lazily."""
    from flask import g

    session: Session | None = g.get("_store_session")
    if session is None:
        session = get_store().sessions()
        g._store_session = session
    return session


def _close_session(_exc: BaseException | None) -> None:
    from flask import g

    session: Session | None = g.pop("_store_session", None)
    if session is not None:
        # Anything not committed at the boundary is rolled back here.
        session.close()


def is_retryable(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a conflict that a fresh attempt can resolve."""
    if isinstance(exc, (StaleDataError, RetryableConflict)):
        return True
    if isinstance(exc, IntegrityError):
        # Two first messages racing to create the same identity or inbound row.
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        text = str(exc.orig).lower()
        # SQLite after busy_timeout; PostgreSQL serialization failure / deadlock.
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return "database is locked" in text or sqlstate in ("40001", "40P01")
    return False


def run_in_transaction(
    session: Session,
    work: Callable[[Session], T],
    *,
    attempts: int = MAX_ATTEMPTS,
) -> T:
    """Run ``work(session)`` and commit; on a write conflict roll back and run it again.

    This is the request boundary: repository and pipeline functions only
    flush, and this is where the one transaction per inbound message commits.
    On a SQLite file the transaction runs under :class:`WriteLock`.

    Args:
        session: The session to use (rolled back before each retry).
        work: The unit of work; must be safe to run again from scratch.
        attempts: Total attempts before the last conflict is re-raised.

    Returns:
        Whatever ``work`` returned on the attempt that committed.
    """
    for attempt in range(1, attempts + 1):
        try:
            with write_lock(session):
                try:
                    result = work(session)
                    session.commit()
                except BaseException:
                    session.rollback()  # inside the lock: release SQLite's lock first
                    raise
            return result
        except Exception as exc:
            if attempt >= attempts or not is_retryable(exc):
                raise
            log.info("retrying transaction after conflict (attempt %d): %s", attempt, exc)
            # Jitter so two losers of the same race don't collide again.
            time.sleep(random.uniform(0.001, 0.01) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
