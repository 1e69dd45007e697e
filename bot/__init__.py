"""Tự rà soát: the web side (HTTP API, chat channels, web chat, dashboard).

``create_app`` is the Flask application factory. Flask is imported inside it
so that ``bot.parsing`` and ``bot.conversation`` (used by the Rasa action server
and the CLI tools) can be imported without pulling in the web stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Blueprint, Flask

__all__ = ["create_app"]


def _blueprints() -> list[Blueprint]:
    """Return the blueprints to register, one per area of the product.

    Add a new area here (chat, web, channels, dashboard): import its ``bp``
    inside this function so that each area's imports stay lazy.
    """
    from bot.accounts import blueprint as accounts_blueprint
    from bot.api import bp as api_bp
    from bot.chat import bp as chat_bp
    from bot.channels.routes import bp as channels_bp
    from bot.dashboard import bp as dashboard_bp
    from bot.interop import bp as interop_bp
    from bot.reports import bp as reports_bp

    blueprints: list[Blueprint] = [
        api_bp,  # /api/v1: stateless assessment, standards, schema, OpenAPI
        chat_bp,  # /api/v1/chat and / (bot.chat: JSON chat API + web chat page)
        channels_bp,  # /channels/<name>: push-channel webhooks (bot.channels.routes) + delivery worker
        accounts_blueprint(),  # /login, /logout, /account, /admin/... (bot.accounts)
        dashboard_bp,  # /dashboard     (bot.dashboard: officials, collaborators)
        reports_bp,  # /reports: CSV/XLSX exports, 6-month and annual report tables (bot.reports)
        interop_bp,  # /interop: XLSForm, Kobo/ODK and quick-form CSV imports (bot.interop)
    ]
    return blueprints


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the Flask application.

    Configuration layers, last wins: :func:`bot.config.defaults`, then the
    environment (``DATABASE_URL``, ``SECRET_KEY``, ``TUSOAT_*``), then
    ``test_config``.

    Args:
        test_config: Settings that override everything else (tests).

    Returns:
        The configured application.

    Raises:
        RuntimeError: If the settings are unsafe for production.
    """
    from flask import Flask

    from bot import accounts, cli, config, errors, offices, store
    from bot.jsoncodec import JSONProvider

    app = Flask(__name__, instance_relative_config=True)
    # The default SQLite database lives here; created up front so SQLite can open it.
    os.makedirs(app.instance_path, exist_ok=True)

    app.config.from_mapping(config.defaults(app.instance_path))
    config.load_environment(app)
    if test_config is not None:
        app.config.from_mapping(test_config)
    config.check(app)

    # Vietnamese text stays readable in responses; keep the core's key order.
    app.json = JSONProvider(app)  # orjson where it can (bot.jsoncodec)
    app.json.ensure_ascii = bool(app.config.get("JSON_AS_ASCII", False))  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    errors.init_app(app)
    # Deployment names of the offices listed with each support policy (fails at start on a bad file).
    offices.configure(app.config.get("OFFICES_FILE"))
    # Database: engine, per-request session; migrates to the newest revision on first start.
    store.init_app(app)
    cli.init_app(app)  # flask db-upgrade / db-current / db-revision
    accounts.init_app(app)  # Flask-Login sessions, CSRF, login throttling, flask users
    for blueprint in _blueprints():
        app.register_blueprint(blueprint)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness probe for load balancers and ``make run`` users."""
        return {"status": "ok"}

    return app
