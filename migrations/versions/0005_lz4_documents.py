"""PostgreSQL: the large JSON documents (decision records, states, replies) compressed with LZ4 instead of pglz.

A decision record's ``result`` is about 28 kB of JSON, written once per assessment and read by the dashboard's
household pages; conversation states, inbound replies and outbox texts pass 2 kB now and then. PostgreSQL
compresses a value over 2 kB when it is stored; LZ4 does so several times faster than the default pglz, for a
similar size, and decompresses faster too. Only values written from now on are affected (each value records its
own method, so older ones stay readable). Skipped where the server was built without LZ4, and on SQLite, which
has no such setting.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 15:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column) of the JSON documents that may pass the 2 kB at which PostgreSQL compresses a value.
DOCUMENTS: tuple[tuple[str, str], ...] = (
    ("assessments", "result"),
    ("assessments", "input"),
    ("conversations", "state"),
    ("inbound_messages", "payload"),
    ("inbound_messages", "reply"),
    ("outbound_messages", "payload"),
)


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    if method not in (available or ()):
        return
    for table, column in DOCUMENTS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    """Upgrade schema."""
    _set_compression("lz4")


def downgrade() -> None:
    """Downgrade schema."""
    _set_compression("pglz")
