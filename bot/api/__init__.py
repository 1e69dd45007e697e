"""The public HTTP API, version 1 (``/api/v1``): stateless and JSON only."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Imported for its side effect of attaching the views to ``bp``.
from bot.api import routes  # noqa: E402,F401
