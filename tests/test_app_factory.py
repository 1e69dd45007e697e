"""The app factory: configuration layers, production safety, health check."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot import create_app
from bot.config import DEV_SECRET_KEY

ENV_NAMES = (
    "DATABASE_URL",
    "SECRET_KEY",
    "TUSOAT_DATABASE_URL",
    "TUSOAT_SECRET_KEY",
    "TUSOAT_CONVERSATION_EXPIRY_DAYS",
    "TUSOAT_ENVIRONMENT",
    "TUSOAT_OFFICES_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment without our settings."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_work_without_any_setting(tmp_path: Path) -> None:
    # A fresh checkout must run with no credentials: SQLite in the instance folder.
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert app.config["CONVERSATION_EXPIRY_DAYS"] == 7
    assert app.config["OFFICES_FILE"] is None
    assert app.json.ensure_ascii is False  # type: ignore[attr-defined]
    assert not app.testing


def test_default_database_is_sqlite_in_instance_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the default is inspected; AUTO_MIGRATE off so nothing is written to ./instance.
    app = create_app({"AUTO_MIGRATE": False})
    assert app.config["DATABASE_URL"] == "sqlite:///" + str(Path(app.instance_path) / "tusoat.db")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUSOAT_CONVERSATION_EXPIRY_DAYS", "3")
    offices_file = tmp_path / "offices.yaml"
    offices_file.write_text("ubnd_xa: UBND xã Thường Phước\n", encoding="utf-8")
    monkeypatch.setenv("TUSOAT_OFFICES_FILE", str(offices_file))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'plain.db'}")
    app = create_app()
    assert app.config["CONVERSATION_EXPIRY_DAYS"] == 3  # JSON-parsed: an int, not "3"
    assert app.config["OFFICES_FILE"] == str(offices_file)
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'plain.db'}"


def test_prefixed_variable_wins_over_plain_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'plain.db'}")
    monkeypatch.setenv("TUSOAT_DATABASE_URL", f"sqlite:///{tmp_path / 'prefixed.db'}")
    monkeypatch.setenv("SECRET_KEY", "plain-secret")
    app = create_app()
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'prefixed.db'}"
    assert app.config["SECRET_KEY"] == "plain-secret"


def test_test_mapping_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUSOAT_CONVERSATION_EXPIRY_DAYS", "3")
    monkeypatch.setenv("TUSOAT_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    app = create_app(
        {"TESTING": True, "CONVERSATION_EXPIRY_DAYS": 1, "DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    )
    assert app.testing
    assert app.config["CONVERSATION_EXPIRY_DAYS"] == 1
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 't.db'}"


def test_production_refuses_the_development_secret(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"ENVIRONMENT": "production", "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUSOAT_ENVIRONMENT", "production")
    monkeypatch.setenv("TUSOAT_SECRET_KEY", "a-real-secret-from-the-vault")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    assert app.config["ENVIRONMENT"] == "production"


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_webhook_module_exposes_the_app_loaded_and_settled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # webhook.py is what `flask --app webhook run` and gunicorn load.
    import gc
    import importlib
    import sys

    from bot import pipeline

    monkeypatch.setenv("TUSOAT_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setattr(pipeline, "_engines", {})
    sys.modules.pop("webhook", None)
    try:
        webhook = importlib.import_module("webhook")
        # Loaded before the first message (the questionnaire compiled), then kept out of the collector's passes.
        assert pipeline._engines and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual
    assert webhook.app.name == "bot"
    assert webhook.app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'w.db'}"


@pytest.mark.db
def test_configured_database_answers(app: Flask) -> None:
    # Runs on SQLite by default and on PostgreSQL in CI (TEST_DATABASE_URL).
    from sqlalchemy import create_engine, text

    engine = create_engine(app.config["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
