"""Field-collection interop (issue D): the questionnaire as an XLSForm and bulk CSV imports.

* :mod:`bot.interop.xlsform` — XLSForm generated from ``bot/data/questionnaire.yaml``;
* :mod:`bot.interop.importer` — Kobo/ODK and quick-form CSV imports with per-row errors and progress;
* :mod:`bot.interop.routes` — the ``/interop`` blueprint (``bp``) and the ``flask export-xlsform`` /
  ``flask import-csv`` commands.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bp"]


def __getattr__(name: str) -> Any:
    # The blueprint pulls in Flask; the generator and importer are usable without it.
    if name == "bp":
        from .routes import bp

        return bp
    raise AttributeError(name)
