"""Alembic migrations: they build exactly the models, start-up applies them once, the CLI works.

Runs on SQLite, and on a fresh PostgreSQL schema when ``TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot import create_app
from bot.store.db import get_store, make_engine
from bot.store.migrate import (
    alembic_config,
    current_revisions,
    head_revisions,
    upgrade,
    upgrade_if_needed,
)
from bot.store.models import Base
from bot.store.testing import temporary_database

pytestmark = pytest.mark.db

TABLES = {
    "identities",
    "conversations",
    "answers",
    "assessments",
    "inbound_messages",
    "outbound_messages",
    "consents",
    "aggregates_daily",
}


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with temporary_database(tmp_path) as url:
        yield url


def test_one_linear_history_with_a_docstring_per_revision() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1, "branched history: merge the heads"
    for revision in scripts.walk_revisions():
        assert revision.doc, f"revision {revision.revision} has no title"
        assert revision.module.downgrade.__doc__, f"{revision.revision}: no downgrade()"


def test_upgrade_from_empty_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert upgrade_if_needed(engine) is True
        with engine.connect() as connection:
            assert current_revisions(connection) == head_revisions()
            assert TABLES <= set(inspect(connection).get_table_names())
            # The `alembic check` comparison: autogenerate finds nothing to do.
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ; write a revision: {diff}"
    finally:
        engine.dispose()


def test_large_documents_are_compressed_with_lz4_where_postgresql_has_it(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            if connection.dialect.name != "postgresql":
                pytest.skip("a PostgreSQL column setting")
            available = connection.execute(
                text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
            ).scalar()
            methods = dict(
                connection.execute(
                    text(
                        "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
                        "WHERE attrelid IN ('assessments'::regclass, 'conversations'::regclass) AND attnum > 0"
                    )
                ).all()
            )
        expected = "l" if "lz4" in available else ""
        assert (methods["assessments.result"], methods["conversations.state"]) == (expected, expected)
        assert methods["assessments.status"] == ""  # short columns keep the default
    finally:
        engine.dispose()


def test_second_start_does_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert upgrade_if_needed(engine) is True
        assert upgrade_if_needed(engine) is False
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            command.downgrade(alembic_config(connection), "base")
            connection.commit()
            assert not TABLES & set(inspect(connection).get_table_names())
        upgrade(engine)
        with engine.connect() as connection:
            assert TABLES <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_create_app_migrates_a_new_database(database_url: str) -> None:
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "x"})
    engine = get_store(app).engine
    with engine.connect() as connection:
        assert current_revisions(connection) == head_revisions()
    engine.dispose()


def test_auto_migrate_can_be_turned_off(database_url: str) -> None:
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "x", "AUTO_MIGRATE": False})
    engine = get_store(app).engine
    with engine.connect() as connection:
        assert current_revisions(connection) == set()
    engine.dispose()


def _start_app(url: str) -> None:
    # In a child process, like one gunicorn worker booting.
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x"})
    get_store(app).engine.dispose()


def test_workers_starting_together_migrate_once(database_url: str) -> None:
    # Without the lock, the loser would fail with "table already exists".
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_start_app, args=(database_url,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert current_revisions(connection) == head_revisions()
        rows = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
        assert rows == 1
    engine.dispose()


def test_cli_commands(database_url: str) -> None:
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "x", "AUTO_MIGRATE": False})
    runner = app.test_cli_runner()
    before = runner.invoke(args=["db-current"])
    assert before.exit_code == 0, before.output
    assert "(none)" in before.output and "behind" in before.output
    upgraded = runner.invoke(args=["db-upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    (head,) = head_revisions()
    assert f"Database at revision {head}" in upgraded.output
    after = runner.invoke(args=["db-current"])
    assert after.exit_code == 0 and f"{head} (up to date)" in after.output
    get_store(app).engine.dispose()
