"""The chat channels served over HTTP: ``POST /api/v1/chat`` and the web chat page at ``/``."""

from flask import Blueprint

bp = Blueprint("chat", __name__)

# Imported for its side effect of attaching the views to ``bp``.
from bot.chat import routes  # noqa: E402,F401
