"""Shared fixtures: a fresh app per test on its own database, its client and CLI runner.

The database is a temporary SQLite file unless ``TEST_DATABASE_URL`` is set
(``.ci/run`` sets it to the local PostgreSQL for the tests marked ``db``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from bot import create_app
from bot.store.db import Store
from bot.store.migrate import upgrade_if_needed
from bot.store.testing import temporary_database

# Apps that tests build without TESTING (config-layering tests, for instance) would otherwise start the delivery
# worker thread, which outlives the test's temporary database. A test that wants the thread asks for it in its
# own config (WORKER_THREAD=True), which wins over the environment.
os.environ.setdefault("TUSOAT_WORKER_THREAD", "false")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """URL of the database this test may use."""
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty database of this test's own (SQLite, or a PostgreSQL schema with ``TEST_DATABASE_URL``)."""
    with temporary_database(tmp_path) as url:
        store = Store.from_url(url)
        upgrade_if_needed(store.engine)
        yield store
        store.engine.dispose()


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """A new application configured for testing."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "DATABASE_URL": database_url,
        }
    )
    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """A runner for ``app``'s Flask CLI commands."""
    return app.test_cli_runner()
