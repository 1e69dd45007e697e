"""Configuration defaults and the environment layer of the Flask app.

Layers, last wins (see :func:`bot.create_app`):

1. :func:`defaults` — safe values that work on a developer's machine with no
   credentials at all (embedded SQLite in the instance folder);
2. the environment — plain ``DATABASE_URL`` / ``SECRET_KEY`` (the names every
   PaaS sets), then any ``TUSOAT_<KEY>`` variable (values are JSON-parsed by
   Flask, so ``TUSOAT_CONVERSATION_EXPIRY_DAYS=3`` is the integer 3);
3. the test mapping passed to ``create_app``.
"""

from __future__ import annotations

import os
from typing import Any, Final

from flask import Flask

#: Only ever used outside production; production refuses to start with it.
DEV_SECRET_KEY: Final = "dev-only-not-secret"

#: Environment prefix for every setting (``TUSOAT_SECRET_KEY``, ...).
ENV_PREFIX: Final = "TUSOAT"

#: Plain, unprefixed variables honoured because hosting platforms set them.
PLAIN_ENV_KEYS: Final = ("DATABASE_URL", "SECRET_KEY")

#: Value of ``ENVIRONMENT`` that turns on production safety checks.
PRODUCTION: Final = "production"


def defaults(instance_path: str) -> dict[str, Any]:
    """Return the default settings for an app whose instance folder is ``instance_path``.

    Args:
        instance_path: Absolute path of the Flask instance folder; the default
            SQLite database lives there so a fresh checkout needs no setup.

    Returns:
        A new dict of upper-case settings.
    """
    return {
        # "development" | "production"; production refuses the dev secret.
        "ENVIRONMENT": "development",
        "SECRET_KEY": DEV_SECRET_KEY,
        "DATABASE_URL": "sqlite:///" + os.path.join(instance_path, "tusoat.db"),
        # Households are small JSON documents; 1 MiB also bounds a 1,000-item batch.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # The batch endpoint (up to 1,000 households) gets its own, larger limit.
        "BATCH_MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
        # Kept for readers of the config; Flask 3 reads app.json.ensure_ascii instead.
        "JSON_AS_ASCII": False,
        "CONVERSATION_EXPIRY_DAYS": 7,
        # Personal data is erased this long after a person's last message (the consent text promises 12 months).
        "RETENTION_DAYS": 365,
        # Optional YAML renaming the offices named in policy results (deployment-specific).
        "OFFICES_FILE": None,
    }


def load_environment(app: Flask) -> None:
    """Apply the environment layer (``os.environ``) to ``app.config``.

    Plain variables are applied first so that the more specific ``TUSOAT_``
    form wins when both are set.

    Args:
        app: The application being configured.
    """
    for key in PLAIN_ENV_KEYS:
        value = os.environ.get(key)
        if value:
            app.config[key] = value
    app.config.from_prefixed_env(ENV_PREFIX)


def check(app: Flask) -> None:
    """Refuse settings that would be unsafe in production.

    Args:
        app: The fully configured application.

    Raises:
        RuntimeError: In production with the development secret key.
    """
    if app.config.get("ENVIRONMENT") == PRODUCTION and app.config.get("SECRET_KEY") in (
        None,
        "",
        DEV_SECRET_KEY,
    ):
        raise RuntimeError(
            "SECRET_KEY (or TUSOAT_SECRET_KEY) must be set when ENVIRONMENT is production"
        )
