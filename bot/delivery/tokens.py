"""Zalo OA tokens kept in the ``channel_tokens`` table, refreshed by one process at a time.

Zalo refresh tokens are single-use (channels.md §1.7): a rotated pair that is used before it is saved, or two
processes refreshing with the same refresh token, leave the OA needing a human to re-consent. So:

* :meth:`DatabaseTokens.persist` saves a rotated pair in **its own committed transaction**, and
  :class:`bot.channels.ZaloOATokenStore` calls it before anyone gets the new access token;
* :class:`DatabaseZaloTokenStore` takes a cross-process lock around every refresh (a PostgreSQL advisory lock,
  or an exclusive ``flock`` on a file beside the SQLite database) and, once inside, reloads the saved pair: a
  process that waited behind another one's refresh adopts the saved pair instead of refreshing again.

The plain ``get()`` of each send only takes the store's thread lock: cross-process locking on every send would
cost two database round trips per message and serialise all senders on one lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from bot.channels import TokenPair, ZaloOATokenStore
from bot.store import repository as repo
from bot.store.db import Store, run_in_transaction
from bot.store.models import utcnow

__all__ = ["CrossProcessLock", "DatabaseTokens", "DatabaseZaloTokenStore", "build_zalo_token_store"]

log = logging.getLogger(__name__)


class CrossProcessLock:
    """A reusable lock excluding every thread of every process using the same database.

    PostgreSQL: ``pg_advisory_lock`` on a dedicated connection (released by ``pg_advisory_unlock``, or by the
    server when the process dies). SQLite file: ``flock`` on ``<database>.<name>.lock``. In-memory SQLite:
    the thread lock alone (one process).
    """

    def __init__(self, store: Store, name: str) -> None:
        """Lock ``name`` (e.g. ``zalo_oa-token``) for ``store``'s database."""
        self.store = store
        self.name = name
        self._threads = threading.Lock()
        self._connection: Connection | None = None
        self._fd: int | None = None
        # A stable signed 64-bit key: advisory locks are one namespace per database.
        self.key = int.from_bytes(hashlib.sha256(f"tusoat:{name}".encode()).digest()[:8], "big", signed=True)
        database = make_url(str(store.engine.url)).database if store.dialect == "sqlite" else None
        self.path = (
            os.path.abspath(database) + f".{name}.lock"
            if database and database != ":memory:" and not database.startswith("file:")
            else None
        )

    def __enter__(self) -> Self:
        self._threads.acquire()
        try:
            if self.store.dialect == "postgresql":
                connection = self.store.engine.connect()
                try:
                    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
                    connection.commit()  # the lock is session-level: it outlives this transaction
                except BaseException:
                    connection.close()
                    raise
                self._connection = connection
            elif self.path is not None:
                import fcntl

                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                    self._connection.commit()
                finally:
                    # Closing returns it to the pool; should the unlock have failed, invalidate it so the
                    # server session (and its lock) ends instead of going back to the pool.
                    if self._connection.in_transaction():
                        self._connection.invalidate()
                    self._connection.close()
                    self._connection = None
            if self._fd is not None:
                import fcntl

                try:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                finally:
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._threads.release()


class DatabaseTokens:
    """Load and save one channel's token pair in ``channel_tokens``, each in its own transaction."""

    def __init__(self, store: Store, channel: str = "zalo_oa") -> None:
        """Tokens of ``channel`` in ``store``."""
        self.store = store
        self.channel = channel

    def load(self) -> TokenPair | None:
        """Return the saved pair (None when nothing is saved yet)."""
        with self.store.sessions() as session:
            session.connection(execution_options={"sqlite_begin": "DEFERRED"})
            row = repo.load_channel_token(session, self.channel)
        if row is None:
            return None
        return TokenPair(row.access_token, row.refresh_token, row.expires_at, row.rotated_at)

    def persist(self, pair: TokenPair) -> None:
        """Save ``pair`` and commit before returning (called before the new access token is used)."""
        with self.store.sessions() as session:
            run_in_transaction(
                session,
                lambda s: repo.save_channel_token(
                    s,
                    self.channel,
                    access_token=pair.access_token,
                    refresh_token=pair.refresh_token,
                    expires_at=pair.access_expires_at,
                    rotated_at=pair.rotated_at or utcnow(),
                ),
            )
        log.info("saved rotated %s token pair (access token expires %s)", self.channel, pair.access_expires_at)

    def seed(self, access_token: str, refresh_token: str | None, expires_in: float | None = None) -> TokenPair:
        """Replace the saved pair with one pasted by an operator (``flask zalo-oa-tokens``)."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=expires_in) if expires_in else None
        pair = TokenPair(access_token, refresh_token, expires, now)
        self.persist(pair)
        return pair


class DatabaseZaloTokenStore(ZaloOATokenStore):
    """:class:`ZaloOATokenStore` whose refreshes are single-flight across processes."""

    def __init__(self, *, cross_process_lock: CrossProcessLock, **kwargs: Any) -> None:
        """Build the store; ``kwargs`` are :class:`ZaloOATokenStore`'s."""
        super().__init__(**kwargs)
        self.cross_process_lock = cross_process_lock

    def refresh(self, stale_token: str) -> str:
        """Refresh under the cross-process lock; the base class reloads the saved pair once inside it."""
        with self.cross_process_lock:
            return super().refresh(stale_token)


def build_zalo_token_store(
    store: Store, config: Mapping[str, Any], *, session: Any = None, timeout: Any = None
) -> DatabaseZaloTokenStore:
    """The Zalo OA token store of a deployment: saved pair first, else the one in the settings.

    ``ZALO_OA_ACCESS_TOKEN`` / ``ZALO_OA_REFRESH_TOKEN`` only seed a database that has no pair yet; once a pair
    is saved (by a refresh or ``flask zalo-oa-tokens``) the saved one wins, because the configured refresh
    token was spent by the first refresh.
    """
    from bot.channels.base import config_float, config_value, http_timeout
    from bot.channels.zalo_tokens import DEFAULT_OAUTH_BASE

    tokens = DatabaseTokens(store, "zalo_oa")
    access = config_value(config, "ZALO_OA_ACCESS_TOKEN")
    initial = TokenPair(access, config_value(config, "ZALO_OA_REFRESH_TOKEN")) if access else None
    return DatabaseZaloTokenStore(
        cross_process_lock=CrossProcessLock(store, "zalo_oa-token"),
        app_id=config_value(config, "ZALO_OA_APP_ID") or "",
        app_secret=config_value(config, "ZALO_APP_SECRET"),
        initial=initial,
        persist=tokens.persist,
        load=tokens.load,
        oauth_base=config_value(config, "ZALO_OA_OAUTH_BASE") or DEFAULT_OAUTH_BASE,
        session=session,
        timeout=timeout or http_timeout(config),
        refresh_margin=dt.timedelta(
            seconds=config_float(config, "ZALO_OA_TOKEN_REFRESH_MARGIN_SECONDS", 5 * 3600.0)
        ),
    )
