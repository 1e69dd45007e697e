"""Helpers shared by the accounts, dashboard, authorisation-matrix and dashboard browser tests.

Accounts are created straight in the database (hashing with the real function); assessments go through the
real ``bot.store.repository.record_assessment``, so the aggregates and review rows the pages read are the ones
production keeps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Final

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert

from assessment.geo import iter_communes
from bot import create_app
from bot.accounts.security import hash_password
from bot.store import get_store
from bot.store import repository as repo
from bot.store.db import run_in_transaction
from bot.store.models import Hamlet, User, UserRole, UserScope

PASSWORD: Final = "correct horse battery"
PROVINCE: Final = "82"  # Đồng Tháp
COMMUNE_A: Final = "29971"  # Xã Thường Phước
COMMUNE_B: Final = "29983"  # Xã Long Khánh (a neighbour, same province)
OTHER_PROVINCE: Final = "01"  # Hà Nội
COMMUNE_OTHER: Final = min(c.code for c in iter_communes(OTHER_PROVINCE))
HAMLET_X: Final = "Ấp Phú Lợi"
HAMLET_Y: Final = "Ấp Phú Thọ"
NOW: Final = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_app(url: str, **extra: Any) -> Flask:
    """An app for tests on ``url`` (TESTING on: cookies not Secure, exceptions propagate)."""
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": url, **extra})


def add_user(
    app: Flask,
    username: str,
    role: str,
    *,
    province: str | None = None,
    scopes: Sequence[tuple[str, str | None]] = (),
    active: bool = True,
    password: str = PASSWORD,
) -> int:
    """Create an account with ``scopes`` (commune, hamlet-or-None); return its id."""
    store = get_store(app)
    with store.sessions() as session:
        def work(s: Any) -> int:
            user_id = s.execute(
                insert(User).returning(User.id),
                {"username": username, "password_hash": hash_password(password), "full_name": username.title(),
                 "role": UserRole(role), "province_code": province, "active": active, "created_at": NOW},
            ).scalar_one()
            for commune, hamlet in scopes:
                s.execute(insert(UserScope), {"user_id": user_id, "commune_code": commune, "hamlet": hamlet})
            return int(user_id)

        return run_in_transaction(session, work)


def add_hamlets(app: Flask, commune: str, names: Sequence[str]) -> None:
    with get_store(app).sessions() as session:
        run_in_transaction(
            session, lambda s: s.execute(insert(Hamlet), [{"commune_code": commune, "name": n} for n in names])
        )


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, read from a page's form."""
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    """Log in through the form; returns the response (302 on success)."""
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def result_doc(
    commune: str,
    status: str,
    *,
    income: int = 1_400_000,
    line: int = 1_500_000,
    deprivations: Sequence[str] = ("water", "sanitation"),
    next_status: str | None = "poor",
    standard: str = "decree07_2022",
) -> dict[str, Any]:
    """A result document shaped like ``AssessmentResult.to_dict()`` (the parts the store reads)."""
    doc: dict[str, Any] = {
        "status": status,
        "status_vi": status,
        "standard": {"id": standard, "name_vi": "Chuẩn nghèo đa chiều giai đoạn 2022–2025", "reference": "NĐ 07"},
        "area": "rural",
        "commune": {"code": commune, "province_code": commune_province(commune)},
        "household_size": 4,
        "income_per_capita_vnd": income,
        "income_line_vnd": line,
        "deprivation_count": len(deprivations),
        "deprivations": list(deprivations),
        "indicators": [{"id": d, "name_vi": d, "deprived": True, "answered": True, "reason_vi": "", "reference": ""}
                       for d in deprivations],
        "summary_vi": f"Ước tính sơ bộ: {status}",
        "what_would_change": [],
    }
    if next_status is not None:
        doc["next_standard"] = {"status": next_status, "standard": {"id": "decree351_2027"}}
    return doc


def commune_province(commune: str) -> str:
    from assessment.geo import commune_by_code

    found = commune_by_code(commune)
    assert found is not None
    return found.province_code


def add_assessment(
    app: Flask,
    commune: str,
    status: str = "poor",
    *,
    hamlet: str | None = HAMLET_X,
    shared: bool = True,
    channel: str = "zalo_oa",
    user_ref: str | None = None,
    head: str | None = "Nguyễn Văn An",
    household_code: str | None = None,
    now: dt.datetime = NOW,
    **result: Any,
) -> int:
    """Store one assessment through ``record_assessment`` (with an identity on ``channel`` when ``user_ref``)."""
    with get_store(app).sessions() as session:
        def work(s: Any) -> int:
            identity = None
            if user_ref is not None:
                identity = repo.lock_identity(
                    s, channel, repo.pseudonymise("k", channel, user_ref), now=now, address=user_ref
                )
            return repo.record_assessment(
                s,
                input={"household_size": 4},
                result=result_doc(commune, status, **result),
                now=now,
                identity=identity,
                shared=shared,
                channel=channel,
                hamlet=hamlet,
                household_head=head if shared else None,
                household_code=household_code,
            )

        return run_in_transaction(session, work)


def number(text: str) -> int:
    """Parse a number as the dashboard writes it ("1.234")."""
    return int(text.strip().replace(".", ""))
