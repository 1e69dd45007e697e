"""``POST /api/v1/chat`` and the web chat page, over HTTP through the Flask test client.

Request validation and the store's side of the channel use the fake engine
(:class:`bot.store.testing.FakeEngine`); whole conversations with the real
questionnaire use ``bot.conversation``'s default engine.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot import create_app
from bot.chat.routes import ENGINE_KEY
from bot.store import get_store
from bot.store.models import (
    AggregateDaily,
    Answer,
    Assessment,
    Consent,
    Conversation,
    Identity,
    InboundMessage,
    OutboundMessage,
    OutboundStatus,
)
from bot.store.testing import FakeEngine, temporary_database

pytestmark = pytest.mark.db

URL = "/api/v1/chat"


def make_app(url: str, **extra: Any) -> Flask:
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": url, **extra})


@pytest.fixture
def fake_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh database whose engine is the fake one."""
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        app.extensions[ENGINE_KEY] = FakeEngine()
        yield app
        get_store(app).engine.dispose()


@pytest.fixture
def fake_client(fake_app: Flask) -> FlaskClient:
    return fake_app.test_client()


def problem_of(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert body is not None, response.data
    problems = body["error"]["problems"]
    assert len(problems) == 1
    return problems[0]


# -- request validation -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field", "code"),
    [
        ({"text": "chào"}, 422, "user", "required"),  # user missing
        ({"user": None, "text": "chào"}, 422, "user", "required"),
        ({"user": "   ", "text": "chào"}, 422, "user", "required"),  # blank
        ({"user": 42, "text": "chào"}, 422, "user", "invalid_type"),
        ({"user": "u" * 129, "text": "chào"}, 422, "user", "too_long"),  # limit is 128
        ({"user": "u"}, 422, "text", "exactly_one_of"),  # neither text nor payload
        ({"user": "u", "text": "a", "payload": "b"}, 422, "payload", "exactly_one_of"),  # both
        ({"user": "u", "text": ["a"]}, 422, "text", "invalid_type"),
        ({"user": "u", "payload": 3}, 422, "payload", "invalid_type"),
        ({"user": "u", "payload": ""}, 422, "payload", "required"),
        ({"user": "u", "payload": "p" * 257}, 422, "payload", "too_long"),
        ({"user": "u", "text": "a", "message_id": 7}, 422, "message_id", "invalid_type"),
        ({"user": "u", "text": "a", "message_id": "m" * 129}, 422, "message_id", "too_long"),
        ({"user": "u", "event": "wave"}, 422, "event", "unknown_value"),
        ({"user": "u", "text": "a", "event": "follow"}, 422, "event", "exactly_one_of"),
        (["user", "text"], 400, "body", "invalid_type"),  # JSON, but not an object
        ("just a string", 400, "body", "invalid_type"),
    ],
)
def test_invalid_requests_name_the_field(
    fake_client: FlaskClient, body: Any, status: int, field: str, code: str
) -> None:
    response = fake_client.post(URL, json=body)
    assert response.status_code == status
    assert response.is_json
    problem = problem_of(response)
    assert (problem["field"], problem["code"]) == (field, code)
    assert problem["message_vi"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"\xff\xfe", b'{"user": "u", "text": NaN}', b"[" * 100_000],
)
def test_non_json_bodies_are_400_not_500(fake_client: FlaskClient, raw: bytes) -> None:
    response = fake_client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert problem_of(response)["field"] == "body"


def test_user_of_exactly_128_characters_is_accepted(fake_client: FlaskClient) -> None:
    assert fake_client.post(URL, json={"user": "u" * 128, "text": "4"}).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        '{"user": "u\\u0000x", "text": "a\\u0000b", "message_id": "m\\u0000"}',  # NUL
        '{"user": "u", "text": "\\ud800 lone surrogate"}',
        '{"user": "\\udfff", "payload": "\\ud800"}',
    ],
)
def test_characters_databases_refuse_are_not_500(fake_client: FlaskClient, raw: str) -> None:
    response = fake_client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "user": st.one_of(st.text(max_size=140), _json_values),
            "text": st.one_of(st.text(max_size=60), _json_values),
            "payload": st.one_of(st.text(max_size=60), _json_values),
            "event": st.one_of(st.sampled_from(["follow", "x"]), _json_values),
            "message_id": st.one_of(st.text(max_size=130), _json_values),
        },
    )
)
def test_any_json_object_gets_a_structured_answer_never_a_500(
    fake_client: FlaskClient, body: dict[str, Any]
) -> None:
    response = fake_client.post(URL, json=body)
    assert response.status_code in (200, 400, 422), response.get_data(as_text=True)
    data = response.get_json()
    if response.status_code == 200:
        assert isinstance(data["messages"], list)
    else:
        fields = {"body", "user", "text", "payload", "event", "message_id"}
        assert data["error"]["problems"][0]["field"] in fields


def test_content_type_is_not_required(fake_client: FlaskClient) -> None:
    # curl users forget the header; the body alone says it is JSON.
    response = fake_client.post(URL, data='{"user": "u", "text": "4"}', content_type="text/plain")
    assert response.status_code == 200


def test_get_is_not_allowed_and_says_so_in_json(fake_client: FlaskClient) -> None:
    response = fake_client.get(URL)
    assert response.status_code == 405 and response.is_json


# -- the channel's side of the store (fake engine) ----------------------------


def test_whole_conversation_over_http(fake_app: Flask, fake_client: FlaskClient) -> None:
    first = fake_client.post(URL, json={"user": "web-1", "text": "4"})
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-store"
    assert first.get_json() == {
        "messages": [{"text": "Thu nhập mỗi tháng?", "choices": []}],
        "question_id": "income",
        "done": False,
    }  # no "assessment" key until there is one
    last = fake_client.post(URL, json={"user": "web-1", "text": "1tr5"}).get_json()
    assert last["done"] is True and last["question_id"] is None
    assert last["assessment"]["status"] == "poor"
    assert "KẾT QUẢ SƠ BỘ" in last["messages"][0]["text"]

    with get_store(fake_app).sessions() as session:
        identity = session.execute(select(Identity)).scalar_one()
        assert identity.channel == "web" and identity.address is None  # replies go in the response
        assert "web-1" not in identity.user_hash
        outbox = session.execute(select(OutboundMessage)).scalars().all()
        assert len(outbox) == 2 and all(o.status is OutboundStatus.SENT for o in outbox)


def test_payload_is_passed_to_the_engine(fake_client: FlaskClient) -> None:
    body = fake_client.post(URL, json={"user": "web-2", "payload": "3"}).get_json()
    assert body["question_id"] == "income"


def test_retried_message_id_returns_the_same_reply_once(
    fake_app: Flask, fake_client: FlaskClient
) -> None:
    request = {"user": "web-3", "text": "4", "message_id": "abc"}
    first = fake_client.post(URL, json=request)
    second = fake_client.post(URL, json=request)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    with get_store(fake_app).sessions() as session:
        assert session.execute(select(func.count()).select_from(Answer)).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(InboundMessage)).scalar_one() == 1


def test_users_are_kept_apart(fake_client: FlaskClient) -> None:
    fake_client.post(URL, json={"user": "a", "text": "4"})
    body = fake_client.post(URL, json={"user": "b", "text": "4"}).get_json()
    assert body["question_id"] == "income"  # b starts at the first question


def test_database_busy_is_503_not_500(
    fake_app: Flask, fake_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr("bot.chat.routes.process_inbound", locked)
    response = fake_client.post(URL, json={"user": "u", "text": "4"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "busy"


# -- the web page ---------------------------------------------------------------


def test_page_is_self_contained(fake_client: FlaskClient) -> None:
    response = fake_client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<html lang="vi">' in html
    assert 'name="viewport"' in html
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    # No CDN, no external fonts: every URL is on this server.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert 'aria-live="polite"' in html and 'for="text"' in html
    for asset in re.findall(r"""(?:src|href)="(/static/[^"]+)""", html):
        served = fake_client.get(asset)
        assert served.status_code == 200, asset
        assert b"http://" not in served.data and b"https://" not in served.data
        served.close()


# -- whole conversations with the real engine ---------------------------------


@pytest.fixture
def real_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a fresh database with the real questionnaire."""
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        yield app
        get_store(app).engine.dispose()


class Person:
    """One person chatting over HTTP: remembers the last buttons, taps them by label."""

    def __init__(self, client: FlaskClient, user: str) -> None:
        self.client = client
        self.user = user
        self.last: dict[str, Any] = {}
        self.count = 0

    def post(self, **body: Any) -> dict[str, Any]:
        self.count += 1
        response = self.client.post(
            URL, json={"user": self.user, "message_id": uuid.uuid4().hex, **body}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        self.last = response.get_json()
        assert self.last["messages"], "every message gets an answer"
        return self.last

    def open(self) -> dict[str, Any]:
        return self.post(event="follow")

    def say(self, text: str) -> dict[str, Any]:
        return self.post(text=text)

    def tap(self, label_start: str) -> dict[str, Any]:
        choices = [c for m in self.last["messages"] for c in m["choices"]]
        matching = [c for c in choices if c["label"].startswith(label_start)]
        assert matching, f"no button {label_start!r} in {[c['label'] for c in choices]}"
        return self.post(payload=matching[0]["payload"])

    @property
    def text(self) -> str:
        return "\n".join(m["text"] for m in self.last["messages"])


def complete_assessment(person: Person) -> dict[str, Any]:
    """Answer the whole questionnaire, by buttons where there are some and by typing."""
    assert "Xin chào" in person.open()["messages"][0]["text"]
    person.tap("Chỉ xem thử")
    person.say("thuong phuoc 1")
    person.tap("Đúng")
    person.say("4")
    person.tap("Không có")  # children under 16
    person.say("0")
    person.say("8 triệu")
    person.tap("Không có")  # hardships
    person.tap("Bán kiên cố")
    person.say("45")
    person.tap("Giếng khoan")
    person.tap("Tự hoại")
    person.say("1,4,6")
    person.tap("Được thu gom")
    return person.tap("Đúng")  # the summary: "Đúng, xem kết quả"


def test_first_visit_to_result_over_http(real_app: Flask) -> None:
    person = Person(real_app.test_client(), "web-first-visit")
    final = complete_assessment(person)
    assert final["done"] is True and final["question_id"] is None
    assert final["messages"][0]["text"].startswith("KẾT QUẢ SƠ BỘ")
    assessment = final["assessment"]
    assert assessment["income_per_capita_vnd"] == 2_000_000
    assert assessment["commune"]["code"] == "29971"

    with get_store(real_app).sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert record.status == assessment["status"] and record.shared is False
        assert record.input is not None and record.input["household_size"] == 4
        assert record.questionnaire_version is not None
        aggregate = session.execute(select(AggregateDaily)).scalar_one()
        assert (aggregate.commune_code, aggregate.area, aggregate.count) == ("29971", "rural", 1)
        consent = session.execute(select(Consent)).scalar_one()
        assert consent.mode == "anonymous"
        answered = session.execute(select(Answer.question_id)).scalars().all()
        assert "household_size" in answered or len(answered) >= 12
        outbox = session.execute(select(func.count()).select_from(OutboundMessage)).scalar_one()
        assert outbox >= person.count


def test_reopening_the_chat_shows_where_the_person_left_off(real_app: Flask) -> None:
    client = real_app.test_client()
    person = Person(client, "web-returning")
    person.open()
    person.tap("Chỉ xem thử")
    before = person.say("thuong phuoc 1")["question_id"]
    again = Person(client, "web-returning").open()  # a new tab: "follow" again
    assert again["question_id"] == before
    assert "Xin chào! Mình là" not in again["messages"][0]["text"]


def test_over_long_text_is_accepted_and_answered_with_a_hint(real_app: Flask) -> None:
    person = Person(real_app.test_client(), "web-long")
    person.open()
    person.tap("Chỉ xem thử")
    question = person.last["question_id"]
    reply = person.say("nhà tôi " * 1000)  # 8,000 characters
    assert reply["question_id"] == question  # still the same question
    assert len(person.text) < 1500  # a short hint plus the question, not an echo


def test_erasing_over_http(real_app: Flask) -> None:
    person = Person(real_app.test_client(), "web-erase")
    complete_assessment(person)
    person.say("xóa dữ liệu")
    person.tap("Xóa")  # confirm
    assert "xóa" in person.text.lower()
    with get_store(real_app).sessions() as session:
        assert session.execute(select(func.count()).select_from(Answer)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(Consent)).scalar_one() == 0
        record = session.execute(select(Assessment)).scalar_one()
        assert record.input is None and record.result is None and record.identity_id is None
        assert session.execute(select(AggregateDaily.count)).scalar_one() == 1
        states = session.execute(select(Conversation.state)).scalars().all()
        assert all(not (s or {}).get("answers") for s in states)
    # And the next visit is a first visit again.
    assert "Xin chào" in person.open()["messages"][0]["text"]
