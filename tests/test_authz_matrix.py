"""The whole authorisation matrix: every role × every route of ``bot.accounts`` and ``bot.dashboard`` × scope.

Routes are enumerated from ``app.url_map``: a new route without an entry in ``MATRIX`` fails
``test_every_route_is_in_the_matrix``, so none can be forgotten. Each cell says what the actor must get:
a status code, or ``LOGIN`` (a 302 to the login page), or ``ELSEWHERE`` (a 302 somewhere else).

Actors: anonymous; a collaborator of commune A, hamlet X; an official of commune A; an official of province P
(A's province); an official of another province; an admin; a disabled account (logged in, then disabled).
Targets: units and households inside and outside each actor's scope, and unknown ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from bot.store import get_store
from bot.store.models import User
from bot.store.testing import temporary_database
from tests.dashboard_support import (
    COMMUNE_A,
    COMMUNE_B,
    COMMUNE_OTHER,
    HAMLET_X,
    HAMLET_Y,
    OTHER_PROVINCE,
    PROVINCE,
    add_assessment,
    add_hamlets,
    add_user,
    login,
    make_app,
)

pytestmark = pytest.mark.db

LOGIN: Final = "login"
ELSEWHERE: Final = "elsewhere"
ACTORS: Final = ("anonymous", "collaborator", "official_a", "official_p", "official_q", "admin", "disabled")
HAMLET_B: Final = "Ấp Long Bình"
HAMLET_OTHER: Final = "Tổ 1"

try:  # bot.accounts.links ships with the collaborator chat mode; without it the button answers 503.
    import bot.accounts.links  # noqa: F401

    LINK_CODE_OK = 200
except ImportError:  # pragma: no cover - depends on the other module being present
    LINK_CODE_OK = 503


def everyone(code: Any) -> dict[str, Any]:
    """The same answer for every logged-in actor; anonymous and disabled go to the login page."""
    return {a: (LOGIN if a in ("anonymous", "disabled") else code) for a in ACTORS}


def table(**rows: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``actor -> {target: expected}``, anonymous and disabled always sent to log in."""
    targets = next(iter(rows.values())).keys()
    out = {actor: dict(row) for actor, row in rows.items()}
    for actor in ("anonymous", "disabled"):
        out[actor] = {t: LOGIN for t in targets}
    return out


def same(targets: list[str], code: Any) -> dict[str, Any]:
    return {t: code for t in targets}


UNITS_P: Final = ["P", "Q", "unknown"]
UNITS_C: Final = ["A", "B", "other", "unknown"]
UNITS_H: Final = ["A/X", "A/Y", "B/h", "other/h", "A/unknown"]
HOUSEHOLDS: Final = ["ax", "ay", "b", "other", "unshared", "missing"]

# endpoint -> method -> (targets -> path builder key, expectations actor -> target -> answer)
MATRIX: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("accounts.login", "GET"): {
        "targets": {"-": "/login"},
        "expect": {a: {"-": 200 if a in ("anonymous", "disabled") else ELSEWHERE} for a in ACTORS},
    },
    ("accounts.login", "POST"): {
        "targets": {"-": "/login"},
        # A wrong password: 401 for visitors; logged-in accounts are sent on to their page.
        "expect": {a: {"-": 401 if a in ("anonymous", "disabled") else ELSEWHERE} for a in ACTORS},
        "data": {"password": "wrong password!"},
    },
    ("accounts.account", "GET"): {"targets": {"-": "/account"}, "expect": {a: {"-": v} for a, v in everyone(200).items()}},
    ("accounts.link_code", "POST"): {
        "targets": {"-": "/account/link-code"},
        "expect": table(collaborator={"-": LINK_CODE_OK}, official_a={"-": 403}, official_p={"-": 403},
                        official_q={"-": 403}, admin={"-": 403}),
    },
    ("accounts.admin_users", "GET"): {
        "targets": {"-": "/admin/users"},
        "expect": table(collaborator={"-": 403}, official_a={"-": 403}, official_p={"-": 403},
                        official_q={"-": 403}, admin={"-": 200}),
    },
    ("accounts.admin_audit", "GET"): {
        "targets": {"-": "/admin/audit"},
        "expect": table(collaborator={"-": 403}, official_a={"-": 403}, official_p={"-": 403},
                        official_q={"-": 403}, admin={"-": 200}),
    },
    ("dashboard.index", "GET"): {
        "targets": {"-": "/dashboard/"},
        "expect": table(collaborator={"-": ELSEWHERE}, official_a={"-": ELSEWHERE}, official_p={"-": ELSEWHERE},
                        official_q={"-": ELSEWHERE}, admin={"-": 200}),
    },
    ("dashboard.province", "GET"): {
        "targets": {"P": f"/dashboard/p/{PROVINCE}", "Q": f"/dashboard/p/{OTHER_PROVINCE}", "unknown": "/dashboard/p/99"},
        "expect": table(
            collaborator=same(UNITS_P, 403),
            official_a={"P": 200, "Q": 403, "unknown": 404},
            official_p={"P": 200, "Q": 403, "unknown": 404},
            official_q={"P": 403, "Q": 200, "unknown": 404},
            admin={"P": 200, "Q": 200, "unknown": 404},
        ),
    },
    ("dashboard.commune", "GET"): {
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}", "B": f"/dashboard/c/{COMMUNE_B}",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}", "unknown": "/dashboard/c/99999"},
        "expect": table(
            collaborator=same(UNITS_C, 403),
            official_a={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.hamlet", "GET"): {
        "targets": {"A/X": f"/dashboard/c/{COMMUNE_A}/h/{HAMLET_X}", "A/Y": f"/dashboard/c/{COMMUNE_A}/h/{HAMLET_Y}",
                    "B/h": f"/dashboard/c/{COMMUNE_B}/h/{HAMLET_B}",
                    "other/h": f"/dashboard/c/{COMMUNE_OTHER}/h/{HAMLET_OTHER}",
                    "A/unknown": f"/dashboard/c/{COMMUNE_A}/h/Ấp Không Có"},
        "expect": table(
            collaborator={"A/X": 200, "A/Y": 403, "B/h": 403, "other/h": 403, "A/unknown": 403},
            official_a={"A/X": 200, "A/Y": 200, "B/h": 200, "other/h": 403, "A/unknown": 404},
            official_p={"A/X": 200, "A/Y": 200, "B/h": 200, "other/h": 403, "A/unknown": 404},
            official_q={"A/X": 403, "A/Y": 403, "B/h": 403, "other/h": 200, "A/unknown": 403},
            admin={"A/X": 200, "A/Y": 200, "B/h": 200, "other/h": 200, "A/unknown": 404},
        ),
    },
    ("dashboard.near_line", "GET"): {
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/near-line", "B": f"/dashboard/c/{COMMUNE_B}/near-line",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/near-line", "unknown": "/dashboard/c/99999/near-line"},
        "expect": table(
            collaborator={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_a={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.reviews", "GET"): {
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/reviews", "B": f"/dashboard/c/{COMMUNE_B}/reviews",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/reviews", "unknown": "/dashboard/c/99999/reviews"},
        "expect": table(
            collaborator=same(UNITS_C, 403),
            official_a={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.official_list", "GET"): {
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/official-list", "B": f"/dashboard/c/{COMMUNE_B}/official-list",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/official-list",
                    "unknown": "/dashboard/c/99999/official-list"},
        "expect": table(
            collaborator=same(UNITS_C, 403),
            official_a={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.official_list", "POST"): {
        # No file attached: an allowed upload answers 400 (nothing to read), a refused one 403.
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/official-list", "B": f"/dashboard/c/{COMMUNE_B}/official-list",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/official-list",
                    "unknown": "/dashboard/c/99999/official-list"},
        "expect": table(
            collaborator=same(UNITS_C, 403),
            official_a={"A": 400, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 400, "B": 400, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 400, "unknown": 404},
            admin={"A": 403, "B": 403, "other": 403, "unknown": 404},
        ),
    },
    ("dashboard.new_assessment", "GET"): {
        # The web form: collaborators of the commune (any of their hamlets), officials in scope, admins.
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/new", "B": f"/dashboard/c/{COMMUNE_B}/new",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/new", "unknown": "/dashboard/c/99999/new"},
        "expect": table(
            collaborator={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_a={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.new_assessment", "POST"): {
        # An empty form: allowed accounts get the form back with its errors (200, nothing stored), others 403.
        "targets": {"A": f"/dashboard/c/{COMMUNE_A}/new", "B": f"/dashboard/c/{COMMUNE_B}/new",
                    "other": f"/dashboard/c/{COMMUNE_OTHER}/new", "unknown": "/dashboard/c/99999/new"},
        "expect": table(
            collaborator={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_a={"A": 200, "B": 403, "other": 403, "unknown": 404},
            official_p={"A": 200, "B": 200, "other": 403, "unknown": 404},
            official_q={"A": 403, "B": 403, "other": 200, "unknown": 404},
            admin={"A": 200, "B": 200, "other": 200, "unknown": 404},
        ),
    },
    ("dashboard.household", "GET"): {
        "targets": {h: f"/dashboard/household/{{{h}}}" for h in HOUSEHOLDS},
        "expect": table(
            collaborator={"ax": 200, "ay": 404, "b": 404, "other": 404, "unshared": 404, "missing": 404},
            official_a={"ax": 200, "ay": 200, "b": 404, "other": 404, "unshared": 404, "missing": 404},
            official_p={"ax": 200, "ay": 200, "b": 200, "other": 404, "unshared": 404, "missing": 404},
            official_q={"ax": 404, "ay": 404, "b": 404, "other": 200, "unshared": 404, "missing": 404},
            admin={"ax": 200, "ay": 200, "b": 200, "other": 200, "unshared": 404, "missing": 404},
        ),
    },
    ("dashboard.form_01", "GET"): {
        "targets": {h: f"/dashboard/household/{{{h}}}/mau-01" for h in HOUSEHOLDS},
        "expect": table(
            collaborator={"ax": 200, "ay": 404, "b": 404, "other": 404, "unshared": 404, "missing": 404},
            official_a={"ax": 200, "ay": 200, "b": 404, "other": 404, "unshared": 404, "missing": 404},
            official_p={"ax": 200, "ay": 200, "b": 200, "other": 404, "unshared": 404, "missing": 404},
            official_q={"ax": 404, "ay": 404, "b": 404, "other": 200, "unshared": 404, "missing": 404},
            admin={"ax": 200, "ay": 200, "b": 200, "other": 200, "unshared": 404, "missing": 404},
        ),
    },
    ("dashboard.review_decide", "POST"): {
        "targets": {h: f"/dashboard/household/{{{h}}}/review" for h in HOUSEHOLDS},
        "data": {"status": "not_recognised", "note": "matrix"},
        "expect": table(
            collaborator=same(HOUSEHOLDS, 403),
            official_a={"ax": ELSEWHERE, "ay": ELSEWHERE, "b": 404, "other": 404, "unshared": 404, "missing": 404},
            official_p={"ax": ELSEWHERE, "ay": ELSEWHERE, "b": ELSEWHERE, "other": 404, "unshared": 404, "missing": 404},
            official_q={"ax": 404, "ay": 404, "b": 404, "other": ELSEWHERE, "unshared": 404, "missing": 404},
            admin=same(HOUSEHOLDS, 403),
        ),
    },
    # Last for each actor: it ends the session.
    ("accounts.logout", "POST"): {"targets": {"-": "/logout"}, "expect": {a: {"-": LOGIN} for a in ACTORS}},
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Flask, dict[str, int]]]:
    """An app with the actors' accounts and households in and out of their scopes."""
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        add_hamlets(app, COMMUNE_A, [HAMLET_X, HAMLET_Y])
        add_hamlets(app, COMMUNE_B, [HAMLET_B])
        add_hamlets(app, COMMUNE_OTHER, [HAMLET_OTHER])
        add_user(app, "collaborator", "collaborator", scopes=[(COMMUNE_A, HAMLET_X)])
        add_user(app, "official_a", "official", scopes=[(COMMUNE_A, None)])
        add_user(app, "official_p", "official", province=PROVINCE)
        add_user(app, "official_q", "official", province=OTHER_PROVINCE)
        add_user(app, "admin", "admin")
        add_user(app, "disabled", "official", scopes=[(COMMUNE_A, None)])
        households = {
            "ax": add_assessment(app, COMMUNE_A, hamlet=HAMLET_X, user_ref="ax"),
            "ay": add_assessment(app, COMMUNE_A, hamlet=HAMLET_Y, user_ref="ay"),
            "b": add_assessment(app, COMMUNE_B, hamlet=HAMLET_B, user_ref="b"),
            "other": add_assessment(app, COMMUNE_OTHER, hamlet=HAMLET_OTHER, user_ref="other"),
            "unshared": add_assessment(app, COMMUNE_A, hamlet=HAMLET_X, shared=False),
            "missing": 999_999,
        }
        yield app, households
        get_store(app).engine.dispose()


def test_every_route_is_in_the_matrix(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    routes = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in ("accounts", "dashboard")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    missing = sorted(routes - set(MATRIX))
    assert not missing, f"routes without an authorisation spec in MATRIX: {missing}"
    assert not sorted(set(MATRIX) - routes), "MATRIX names routes that no longer exist"


def _token(client: FlaskClient) -> str:
    import re

    for path in ("/account", "/login"):
        response = client.get(path)
        if response.status_code == 200:
            match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
            if match:
                return match.group(1)
    raise AssertionError("no page with a CSRF token")


def _answer(response: Any) -> Any:
    if response.status_code == 302:
        location = response.headers["Location"]
        return LOGIN if location.split("?")[0].endswith("/login") else ELSEWHERE
    return response.status_code


@pytest.mark.parametrize("actor", ACTORS)
def test_matrix(world: tuple[Flask, dict[str, int]], actor: str) -> None:
    app, households = world
    client = app.test_client()
    if actor != "anonymous":
        assert login(client, actor).status_code == 302
    if actor == "disabled":
        with get_store(app).sessions() as session:
            session.execute(update(User).where(User.username == "disabled").values(active=False))
            session.commit()
    token = _token(client)
    failures = []
    checked = 0
    for (endpoint, method), spec in MATRIX.items():
        for target, path in spec["targets"].items():
            url = path.format(**households)
            expected = spec["expect"][actor][target]
            if method == "GET":
                response = client.get(url)
            else:
                data = {"csrf_token": token, **spec.get("data", {})}
                if endpoint == "accounts.login":
                    data["username"] = f"{actor}-wrong"
                response = client.post(url, data=data)
            got = _answer(response)
            checked += 1
            if got != expected:
                failures.append(f"{actor} {method} {url} ({endpoint}/{target}): expected {expected}, got {got}")
    assert not failures, "\n".join(failures)
    assert checked == sum(len(s["targets"]) for s in MATRIX.values())
