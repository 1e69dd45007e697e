"""Retention: personal data is erased once nobody has written for longer than the promised period."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.pipeline import PipelineConfig, process_inbound
from bot.store.db import Store
from bot.store.models import AggregateDaily, Answer, Conversation, Identity
from bot.store.retention import purge_expired
from bot.store.testing import FakeEngine, FakeInbound

pytestmark = pytest.mark.db

CONFIG = PipelineConfig(pseudonym_key="test-key")
YEAR = dt.timedelta(days=365)
T0 = dt.datetime(2025, 1, 10, 3, 0, tzinfo=dt.UTC)



def _talk(store: Store, user: str, when: dt.datetime, texts: list[str]) -> None:
    for text in texts:
        with store.sessions() as session:
            process_inbound(session, "web", user, None, FakeInbound(text=text), when, engine=FakeEngine(), config=CONFIG)


def test_people_silent_for_more_than_the_retention_period_are_erased_and_others_kept(store: Store) -> None:
    # FakeEngine finishes an assessment after a few answers: enough to have answers, state and an aggregate.
    _talk(store, "old", T0, ["hi", "a", "b", "c", "d"])
    _talk(store, "recent", T0 + dt.timedelta(days=300), ["hi", "a"])
    with store.sessions() as session:
        aggregates_before = session.execute(select(func.sum(AggregateDaily.count))).scalar()
        erased = purge_expired(session, now=T0 + YEAR + dt.timedelta(days=1), retention=YEAR)
    assert erased == 1
    with store.sessions() as session:
        identities = {i.erased_at is not None for i in session.scalars(select(Identity))}
        assert identities == {True, False}
        assert session.execute(select(func.count()).select_from(Conversation)).scalar_one() == 1
        assert session.execute(select(func.sum(AggregateDaily.count))).scalar() == aggregates_before
        # Running it again finds nobody new.
        assert purge_expired(session, now=T0 + YEAR + dt.timedelta(days=1), retention=YEAR) == 0


def test_a_person_who_writes_again_is_not_erased(store: Store) -> None:
    _talk(store, "back", T0, ["hi", "a"])
    _talk(store, "back", T0 + dt.timedelta(days=200), ["b"])
    with store.sessions() as session:
        assert purge_expired(session, now=T0 + YEAR + dt.timedelta(days=1), retention=YEAR) == 0
        assert session.execute(select(func.count()).select_from(Answer)).scalar_one() >= 1


def test_the_purge_command_erases_and_reports(tmp_path: Path) -> None:
    from bot import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    result = app.test_cli_runner().invoke(args=["purge-expired", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "erased 0 identities" in result.output
