"""Rebuild the commune-level rollups from the hamlet-level monthly counts (``flask dashboard rollup``).

The rollups are kept up to date, in the same transaction, by every writer that goes through
``bot.store.repository.increment_monthly_aggregates``. A writer that fills ``aggregates_monthly`` another way
(a bulk load, a repair by hand) runs this afterwards; it is one ``DELETE`` and one ``INSERT ... SELECT`` per
table, so it takes seconds even at a million assessments.
"""

from __future__ import annotations

import click
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from bot.dashboard import bp
from bot.store.db import get_session, run_in_transaction
from bot.store.models import (
    AggregateCommuneDeprivationMonthly,
    AggregateCommuneMonthly,
    AggregateDeprivationMonthly,
    AggregateMonthly,
)

__all__ = ["rebuild_rollups"]


def rebuild_rollups(session: Session) -> tuple[int, int]:
    """Replace both rollups with the sums of the hamlet-level tables; return their new row counts."""
    fine = AggregateMonthly
    keys = [fine.month, fine.province_code, fine.commune_code, fine.channel, fine.provenance, fine.standard_id,
            fine.status, fine.next_status]
    session.execute(delete(AggregateCommuneMonthly))
    session.execute(
        insert(AggregateCommuneMonthly).from_select(
            [k.key for k in keys] + ["count"], select(*keys, func.sum(fine.count)).group_by(*keys)
        )
    )
    dep = AggregateDeprivationMonthly
    dep_keys = [dep.month, dep.province_code, dep.commune_code, dep.standard_id, dep.indicator]
    session.execute(delete(AggregateCommuneDeprivationMonthly))
    session.execute(
        insert(AggregateCommuneDeprivationMonthly).from_select(
            [k.key for k in dep_keys] + ["count"], select(*dep_keys, func.sum(dep.count)).group_by(*dep_keys)
        )
    )
    monthly = session.execute(select(func.count()).select_from(AggregateCommuneMonthly)).scalar_one()
    deprivation = session.execute(select(func.count()).select_from(AggregateCommuneDeprivationMonthly)).scalar_one()
    return int(monthly), int(deprivation)


@bp.cli.command("rollup")
def rollup_command() -> None:
    """Rebuild the dashboard's commune-level rollups from aggregates_monthly."""
    monthly, deprivation = run_in_transaction(get_session(), rebuild_rollups)
    click.echo(f"Rebuilt rollups: {monthly} monthly rows, {deprivation} deprivation rows.")
