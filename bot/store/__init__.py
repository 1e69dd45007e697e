"""Persistence of the chat bot: models, sessions, migrations and repository functions.

Import what you need from the submodules:

* :mod:`bot.store.models` — SQLAlchemy 2 typed models (one table each);
* :mod:`bot.store.db` — engine, request-scoped session, :func:`run_in_transaction`;
* :mod:`bot.store.migrate` — Alembic upgrade at start-up, under a lock;
* :mod:`bot.store.repository` — plain functions taking a ``Session``; they
  run statements in its transaction but never commit (the caller commits at
  the request boundary);
* :mod:`bot.store.testing` — fresh databases and a fake engine for tests.

``init_app`` is re-exported for the app factory.
"""

from __future__ import annotations

from bot.store.db import get_session, get_store, init_app, run_in_transaction

__all__ = ["get_session", "get_store", "init_app", "run_in_transaction"]
