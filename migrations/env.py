"""Alembic environment: where migrations get their database connection.

Three ways in, first match wins:

1. ``config.attributes["connection"]``: the app (``bot.store.migrate``) passes
   the connection it holds the migration lock on;
2. ``alembic -x url=postgresql+psycopg://...``;
3. the app's own configuration (``DATABASE_URL``, ``TUSOAT_DATABASE_URL``,
   default SQLite in the instance folder), read through ``create_app``.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON, Connection

from bot.store.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render the app's custom types as plain SQLAlchemy types in new revisions.

    Revisions must not import application code (it changes over time while old
    revisions must keep working), and the default rendering of the JSON/JSONB
    variant is not valid Python (a bare ``Text()``).
    """
    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, JSON) and obj._variant_mapping:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')"
    return False


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else (url or "").split(":")[0]
    sqlite = dialect.startswith("sqlite")
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        # SQLite can't ALTER most things: batch mode recreates the table instead.
        render_as_batch=sqlite,
        # With the driver's autocommit off (bot.store.db), SQLite DDL is transactional:
        # run all revisions in one transaction so a failed upgrade leaves nothing half done.
        transactional_ddl=True if sqlite else None,
        compare_type=True,
        render_item=_render_item,
        compare_server_default=False,
        # Offline (--sql) output must carry its values inline.
        **({"literal_binds": True} if connection is None else {}),
    )


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    from bot import create_app

    # AUTO_MIGRATE off: we are the migration; don't let app start-up run it too.
    return str(create_app({"AUTO_MIGRATE": False}).config["DATABASE_URL"])


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``alembic upgrade head --sql``)."""
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from bot.store.db import make_engine
    from bot.store.migrate import migration_lock

    engine = make_engine(_database_url())
    try:
        with migration_lock(engine) as locked:
            _configure(locked)
            with context.begin_transaction():
                context.run_migrations()
            locked.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
