"""Reports, exports and the reporting regime (issue D).

* :mod:`bot.reports.periods` — the 6-month and annual reporting periods and date filters;
* :mod:`bot.reports.exports` — household and aggregate exports (rows, streaming CSV, write-only XLSX);
* :mod:`bot.reports.regime` — the report tables per commune and hamlet;
* :mod:`bot.reports.routes` — the ``/reports`` blueprint (``bp``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["bp"]


def __getattr__(name: str) -> Any:
    # The blueprint pulls in Flask; the row functions are usable without it.
    if name == "bp":
        from .routes import bp

        return bp
    raise AttributeError(name)
