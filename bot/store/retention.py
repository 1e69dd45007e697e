"""Retention: erase the personal data of people who have not written for longer than the promised period.

The consent text (bot/data/questionnaire.yaml, Decree 13/2023/NĐ-CP) promises that answers are kept at most
RETENTION_DAYS (default 365) after the last message, then erased. This job keeps that promise: it erases each such
identity exactly as "xóa dữ liệu" does (:func:`bot.store.repository.erase_identity`), one transaction per person,
so anonymous aggregates stay and nothing else is touched. Run it daily: ``flask purge-expired`` (cron, or a
systemd timer).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.store import repository as repo
from bot.store.db import run_in_transaction
from bot.store.models import Identity


def expired_identities(session: Session, *, now: dt.datetime, retention: dt.timedelta, limit: int = 1000) -> list[int]:
    """Ids of identities not erased yet whose last message is older than `retention`."""
    cutoff = now - retention
    rows = session.execute(
        select(Identity.id)
        .where(Identity.erased_at.is_(None), Identity.last_seen_at < cutoff)
        .order_by(Identity.id)
        .limit(limit)
    )
    return [row.id for row in rows]


def purge_expired(session: Session, *, now: dt.datetime, retention: dt.timedelta) -> int:
    """Erase every identity past the retention period; return how many were erased."""
    erased = 0
    while True:
        ids = expired_identities(session, now=now, retention=retention)
        session.rollback()  # end the read transaction before the per-person writes
        if not ids:
            return erased
        for identity_id in ids:
            if run_in_transaction(session, lambda s, i=identity_id: _erase_one(s, i, now, retention)):
                erased += 1


def _erase_one(session: Session, identity_id: int, now: dt.datetime, retention: dt.timedelta) -> bool:
    # Lock the row and re-check: the person may have written again since the list was read.
    locked = session.execute(
        update(Identity)
        .where(
            Identity.id == identity_id,
            Identity.erased_at.is_(None),
            Identity.last_seen_at < now - retention,
        )
        .values(outbound_seq=Identity.outbound_seq)
        .returning(Identity.id, Identity.outbound_seq)
    ).one_or_none()
    if locked is None:
        return False
    repo.erase_identity(session, repo.IdentityRow(id=locked.id, outbound_seq=locked.outbound_seq), now=now)
    return True
