"""The officials' dashboard (``/dashboard``): anonymous counts by province, commune and hamlet; the households
to visit and to review inside each official's scope; the review hand-off and the printable Mẫu số 01.

See :mod:`bot.dashboard.views` for who may see which page.
"""

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# Imported for its side effect of attaching the views to ``bp``.
from bot.dashboard import (
    views,  # noqa: F401
    web_form,  # noqa: F401  (the collaborators' web form, issue D)
)
