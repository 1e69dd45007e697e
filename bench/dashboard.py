"""How fast the officials' dashboard answers over a province's worth of stored assessments.

Usage::

    python bench/dashboard.py [--rows 1000000] [--db sqlite:////tmp/dash.db | postgresql+psycopg://...]
                              [--repeat 7] [--keep] [--no-seed]

Seeds synthetic assessments across the 102 communes of Đồng Tháp (province 82, from
``assessment.geo.iter_communes('82')``), each commune with 6-14 hamlets, spread over the last 12 months, with
realistic mixes of channel, provenance, status and deprivations; 30 % are shared (with a household head, a
review row, and per-capita income next to the line for some). Rows go in with bulk Core inserts, together with
the matching ``aggregates_monthly`` / ``aggregates_deprivation_monthly`` rows (as ``record_assessment`` would
have kept them), then ``ANALYZE``. Then it logs in as a province official and as a commune official through the
Flask test client and times:

* the province page (goal ≤ 300 ms), and
* a commune page (goal ≤ 100 ms),

printing the median and worst of ``--repeat`` runs after one warm-up, against the goals. No asserts: figures.

Default database: a new SQLite file in a temporary folder (removed afterwards unless ``--keep``). With a
PostgreSQL URL, the rows go into a new schema that is dropped afterwards; with ``--keep`` into the schema
``dashboard_bench``, kept. ``--no-seed`` times a database kept by an earlier run (same ``--db``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text

from assessment.geo import iter_communes
from bot.store.models import (
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Assessment,
    Hamlet,
    Review,
    ReviewStatus,
    User,
    UserRole,
    UserScope,
)

PROVINCE: Final = "82"
GOALS_MS: Final = {"province": 300.0, "commune": 100.0}
BATCH: Final = 20_000
PASSWORD: Final = "bench-password-123"
KEPT_SCHEMA: Final = "dashboard_bench"

CHANNELS: Final = (("zalo_oa", 55), ("web", 20), ("zalo_bot", 10), ("import", 10), ("telegram", 3), ("messenger", 2))
INDICATORS_2022: Final = (
    ("employment", 0.10), ("dependants", 0.08), ("nutrition", 0.03), ("health_insurance", 0.12),
    ("adult_education", 0.15), ("child_schooling", 0.03), ("housing_quality", 0.08), ("housing_area", 0.05),
    ("water", 0.10), ("sanitation", 0.14), ("telecom", 0.06), ("information_devices", 0.04),
)
STANDARD: Final = "decree07_2022"
NEXT_STANDARD: Final = "decree351_2027"
FAMILY: Final = ("Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Phan", "Đặng", "Bùi", "Đỗ")
GIVEN: Final = ("Văn An", "Thị Bình", "Văn Cường", "Thị Dung", "Văn Hùng", "Thị Lan", "Văn Minh", "Thị Ngọc")


def _status(income: int, line: int, deprivations: int, average_max: int | None) -> str:
    if income <= line:
        return "poor" if deprivations >= 3 else "near_poor"
    if average_max is not None and income <= average_max:
        return "average_living"
    return "not_poor"


def month_start(moment: dt.datetime) -> dt.date:
    local = moment.astimezone(dt.timezone(dt.timedelta(hours=7)))
    return local.date().replace(day=1)


def seed(engine: Any, rows: int, *, now: dt.datetime, rng: random.Random, verbose: bool = True) -> dict[str, Any]:
    """Insert ``rows`` synthetic assessments of province 82 with their aggregate rows; return what was made.

    Also used by the tests (at a few hundred rows) to check that the dashboard's totals add up to the rows.
    """
    communes = list(iter_communes(PROVINCE))
    hamlets: dict[str, list[str]] = {}
    for commune in communes:
        word = "Khóm" if commune.area == "urban" else "Ấp"
        hamlets[commune.code] = [f"{word} {i}" for i in range(1, rng.randint(6, 14) + 1)]
    # Communes differ in size, as they do: weights from 0.3 to 3.
    weights = [rng.uniform(0.3, 3.0) for _ in communes]
    channel_names = [c for c, _ in CHANNELS]
    channel_weights = [w for _, w in CHANNELS]
    monthly: Counter[tuple[Any, ...]] = Counter()
    deprivation: Counter[tuple[Any, ...]] = Counter()
    span = dt.timedelta(days=365)
    made = 0
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            insert(Hamlet),
            [{"commune_code": c, "name": h} for c, names in hamlets.items() for h in names],
        )
    next_id = 1
    while made < rows:
        count = min(BATCH, rows - made)
        batch: list[dict[str, Any]] = []
        reviews: list[dict[str, Any]] = []
        picks = rng.choices(range(len(communes)), weights=weights, k=count)
        for index in picks:
            commune = communes[index]
            hamlet = rng.choice(hamlets[commune.code])
            created = now - span * rng.random() ** 1.3
            channel = rng.choices(channel_names, weights=channel_weights)[0]
            provenance = "imported" if channel == "import" else ("collaborator" if rng.random() < 0.15 else "self")
            urban = commune.area == "urban"
            line, next_line = (2_000_000, 2_800_000) if urban else (1_500_000, 2_200_000)
            average_max = 3_000_000 if urban else 2_250_000
            shared = rng.random() < 0.30
            if shared and rng.random() < 0.15:
                income = int(line * rng.uniform(0.88, 1.12))  # near the line: the visit list has work to do
            else:
                income = int(math.exp(rng.gauss(math.log(line * 2.2), 0.55)))
            deprived = [name for name, p in INDICATORS_2022 if rng.random() < p * (2.2 if income <= line else 1)]
            status = _status(income, line, len(deprived), average_max)
            next_status = _status(income, next_line, len(deprived), None)
            row = {
                "id": next_id,
                "standard_id": STANDARD,
                "status": status,
                "deprivations": deprived,
                "commune_code": commune.code,
                "area": commune.area,
                "provenance": provenance,
                "shared": shared,
                "created_at": created,
                "channel": channel,
                "hamlet": hamlet,
                "household_head": f"{rng.choice(FAMILY)} {rng.choice(GIVEN)}" if shared else None,
                "household_code": f"{commune.code}-{next_id:07d}" if shared and rng.random() < 0.5 else None,
                "income_per_capita_vnd": income,
                "income_line_vnd": line,
                "deprivation_count": len(deprived),
                "next_standard_id": NEXT_STANDARD,
                "next_status": next_status,
                "result": None,
                "input": None,
            }
            batch.append(row)
            if shared:
                reviews.append({"assessment_id": next_id, "status": ReviewStatus.QUEUED, "queued_at": created})
            month = month_start(created)
            monthly[(month, PROVINCE, commune.code, hamlet, channel, provenance, STANDARD, status, next_status)] += 1
            for indicator in deprived:
                deprivation[(month, PROVINCE, commune.code, hamlet, STANDARD, indicator)] += 1
            next_id += 1
        with engine.begin() as connection:
            connection.execute(insert(Assessment), batch)
            if reviews:
                connection.execute(insert(Review), reviews)
        made += count
        if verbose and (made % 200_000 == 0 or made == rows):
            print(f"  seeded {made:,} assessments ({time.perf_counter() - started:.0f} s)", flush=True)
    keys = ("month", "province_code", "commune_code", "hamlet", "channel", "provenance", "standard_id", "status",
            "next_status")
    monthly_rows = [dict(zip(keys, k, strict=True), count=v) for k, v in monthly.items()]
    dep_keys = ("month", "province_code", "commune_code", "hamlet", "standard_id", "indicator")
    deprivation_rows = [dict(zip(dep_keys, k, strict=True), count=v) for k, v in deprivation.items()]
    with engine.begin() as connection:
        for start in range(0, len(monthly_rows), BATCH):
            connection.execute(insert(AggregateMonthly), monthly_rows[start:start + BATCH])
        for start in range(0, len(deprivation_rows), BATCH):
            connection.execute(insert(AggregateDeprivationMonthly), deprivation_rows[start:start + BATCH])
    from sqlalchemy.orm import Session

    from bot.dashboard.rollup import rebuild_rollups

    with Session(engine) as session:
        rollup_rows = rebuild_rollups(session)
        session.commit()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    if verbose:
        print(
            f"  aggregates: {len(monthly_rows):,} monthly rows, {len(deprivation_rows):,} deprivation rows; "
            f"rollups {rollup_rows[0]:,} + {rollup_rows[1]:,} rows "
            f"({time.perf_counter() - started:.0f} s in all)",
            flush=True,
        )
    return {"communes": communes, "hamlets": hamlets, "monthly_rows": len(monthly_rows)}


def add_user(engine: Any, username: str, role: str, *, province: str | None = None,
             communes: tuple[str, ...] = ()) -> None:
    """Create an account with the bench password (hashing once per account)."""
    from bot.accounts.security import hash_password

    with engine.begin() as connection:
        user_id = connection.execute(
            insert(User).returning(User.id),
            {"username": username, "password_hash": hash_password(PASSWORD), "full_name": username,
             "role": UserRole(role), "province_code": province, "active": True,
             "created_at": dt.datetime.now(dt.UTC)},
        ).scalar_one()
        for code in communes:
            connection.execute(insert(UserScope), {"user_id": user_id, "commune_code": code, "hamlet": None})


def login(client: Any, username: str) -> None:
    """Log in through the form, CSRF token and all."""
    import re

    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None, "no CSRF token on the login page"
    response = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf_token": token.group(1)})
    assert response.status_code == 302, f"login failed: {response.status_code}"


def time_page(client: Any, path: str, repeat: int) -> tuple[float, float, int]:
    """Median and worst milliseconds of ``repeat`` GETs after one warm-up; and the status code."""
    status = client.get(path).status_code
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return statistics.median(times), max(times), status


@contextlib.contextmanager
def database(url: str | None, keep: bool) -> Iterator[str]:
    """Yield the URL to seed: a new SQLite file, or a new schema in the given PostgreSQL database."""
    if url is None:
        folder = tempfile.mkdtemp(prefix="dashboard-bench-")
        path = Path(folder) / "bench.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            if keep:
                print(f"kept {path}")
            else:
                for leftover in Path(folder).iterdir():
                    leftover.unlink()
                os.rmdir(folder)
        return
    if url.startswith("sqlite"):
        yield url
        return
    from bot.store.testing import temporary_database

    if keep:
        # A fixed schema, kept for --no-seed runs; never the database's public schema.
        from urllib.parse import quote

        from bot.store.db import make_engine

        admin = make_engine(url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{KEPT_SCHEMA}"'))
        admin.dispose()
        separator = "&" if "?" in url else "?"
        print(f"keeping schema {KEPT_SCHEMA}")
        yield f"{url}{separator}options={quote(f'-csearch_path={KEPT_SCHEMA}')}"
        return
    with temporary_database(Path(tempfile.gettempdir()), url) as scoped:
        yield scoped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="assessments to seed (default 1,000,000)")
    parser.add_argument("--db", default=None, help="database URL (default: a new SQLite file)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per page after a warm-up")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed", type=int, default=82)
    parser.add_argument("--no-seed", action="store_true", help="time a database seeded by an earlier --keep run")
    args = parser.parse_args(argv)

    from bot import create_app
    from bot.store import get_store

    rng = random.Random(args.seed)
    now = dt.datetime.now(dt.UTC)
    with database(args.db, args.keep) as url:
        app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "TESTING": True, "RATELIMIT_ENABLED": False})
        engine = get_store(app).engine
        print(f"database: {engine.dialect.name}; seeding {args.rows:,} assessments over province {PROVINCE}")
        if args.no_seed:
            with engine.connect() as connection:
                found = connection.execute(text("SELECT commune_code, name FROM hamlets ORDER BY id")).all()
                monthly = connection.execute(text("SELECT count(*) FROM aggregates_monthly")).scalar_one()
            hamlet_map: dict[str, list[str]] = {}
            for code, name in found:
                hamlet_map.setdefault(code, []).append(name)
            made = {"hamlets": hamlet_map, "monthly_rows": monthly}
        else:
            made = seed(engine, args.rows, now=now, rng=rng)
        # The biggest commune: the commune page's worst case.
        with engine.connect() as connection:
            commune = connection.execute(
                text("SELECT commune_code FROM assessments GROUP BY commune_code ORDER BY count(*) DESC LIMIT 1")
            ).scalar_one()
            total_rows = connection.execute(text("SELECT count(*) FROM assessments")).scalar_one()
            in_commune = connection.execute(
                text("SELECT count(*) FROM assessments WHERE commune_code = :c"), {"c": commune}
            ).scalar_one()
        with engine.connect() as connection:
            connection.execute(text("DELETE FROM user_scopes"))
            connection.execute(text("DELETE FROM users WHERE username LIKE 'bench-%'"))
            connection.commit()
        add_user(engine, "bench-province", "official", province=PROVINCE)
        add_user(engine, "bench-commune", "official", communes=(commune,))
        results = []
        for username, label, path, goal in (
            ("bench-province", "province page, province official", f"/dashboard/p/{PROVINCE}", "province"),
            ("bench-commune", "province page, commune official", f"/dashboard/p/{PROVINCE}", "province"),
            ("bench-province", "commune page, province official", f"/dashboard/c/{commune}", "commune"),
            ("bench-commune", "commune page, commune official", f"/dashboard/c/{commune}", "commune"),
            ("bench-commune", "hamlet page, commune official",
             f"/dashboard/c/{commune}/h/{made['hamlets'][commune][0]}", "commune"),
        ):
            client = app.test_client()
            login(client, username)
            median, worst, status = time_page(client, path, args.repeat)
            results.append((label, median, worst, status, GOALS_MS[goal]))
        print()
        print(f"{total_rows:,} assessments, {made['monthly_rows']:,} monthly aggregate rows; "
              f"commune {commune} has {in_commune:,} assessments")
        print(f"{'page':<36} {'median ms':>10} {'worst ms':>10} {'goal ms':>8}  status")
        for label, median, worst, status, goal in results:
            verdict = "meets goal" if median <= goal else "OVER GOAL"
            print(f"{label:<36} {median:>10.1f} {worst:>10.1f} {goal:>8.0f}  {status} {verdict}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
