"""The accounts interface (docs/CONTRACTS.md §7) as the reports and interop routes use it.

One place to import ``current_scope``, ``require_roles`` and ``audit`` from, so the routes follow the contract
and not the accounts package's internal layout.
"""

from __future__ import annotations

from typing import Any

from bot.accounts import audit as _audit
from bot.accounts import current_scope, require_roles

__all__ = ["audit", "current_scope", "require_roles"]


def audit(action: str, object_type: str, object_id: str | None = None, **detail: Any) -> None:
    """Write an AuditLog row in the request's session, with ``detail`` (the export's filters) as its JSON."""
    _audit(action, object_type, object_id, detail=detail or None)
