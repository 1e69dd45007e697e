"""Tests of the conversation engine (bot.conversation): unit tests and the transcript runner.

Transcripts (``tests/transcripts/*.yaml``) are whole conversations written as data: what the user sends, and
what the reply must contain, which question comes next, which events are emitted, and the final status.
``date`` pins the reference date and ``clock`` the starting time. They run against the real parsers and the
real legal core, so a change in any of them that alters what a user sees shows up here.

Transcript step keys: one of ``say`` (text), ``tap`` (button payload), ``send`` ({kind, text, payload}),
``say_repeat`` ({text, times}); optionally ``wait`` ({days, hours, minutes}) to move the clock first; then
expectations: ``question`` (StepResult.question_id), ``step`` (Engine.describe), ``contains`` /
``not_contains`` (all reply texts joined), ``events`` (event types in order), ``done``, ``status``,
``buttons`` (payloads that must be offered), ``input`` (subset of the assessment input), ``answer``
({question_id: value} in the state), ``mode``, ``fresh`` (the state is a new conversation), ``event`` ({type,
field: value}: fields of the first event of that type in the step); ``note`` explains. ``send`` also carries the
pipeline's internal kinds (``linked`` with its JSON payload, ``link_failed``), standing in for the store's answer
to a ``link`` event.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.conversation import (
    MAX_CHUNK,
    Engine,
    Inbound,
    QuestionnaireError,
    StepResult,
    default_engine,
    load_questionnaire,
    parse_questionnaire,
    split_text,
)
from bot.conversation.contract import FIELD_SPECS
from bot.conversation.questionnaire import DEFAULT_PATH

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.yaml"))
ON = dt.date(2026, 6, 1)
T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))

_STEP_KEYS = {"say", "tap", "send", "say_repeat", "wait"}
_EXPECT_KEYS = {
    "question",
    "step",
    "contains",
    "not_contains",
    "events",
    "done",
    "status",
    "buttons",
    "input",
    "answer",
    "mode",
    "fresh",
    "note",
    "event",
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(today=ON)


class Chat:
    """A conversation driven from a test: keeps the state and the clock, checks invariants on every step."""

    def __init__(self, engine: Engine, now: dt.datetime = T0) -> None:
        self.engine = engine
        self.state: dict[str, Any] | None = None
        self.now = now
        self.last: StepResult | None = None
        self.events: list[dict[str, Any]] = []

    def send(self, inbound: Inbound) -> StepResult:
        before = copy.deepcopy(self.state)
        res = self.engine.step(self.state, inbound, self.now)
        assert self.state == before, "step() must not modify the state it was given"
        check_invariants(self.engine, res)
        self.state = res.state
        self.last = res
        self.events.extend(res.events)
        self.now += dt.timedelta(seconds=30)
        return res

    def say(self, text: str) -> StepResult:
        return self.send(Inbound(text=text))

    def tap(self, payload: str) -> StepResult:
        return self.send(Inbound(payload=payload, kind="payload"))

    @property
    def text(self) -> str:
        assert self.last is not None
        return "\n".join(m.text for m in self.last.messages)

    @property
    def step(self) -> str:
        return self.engine.describe(self.state)

    def run(self, *texts: str) -> StepResult:
        res = None
        for t in texts:
            res = self.say(t)
        assert res is not None
        return res


def check_invariants(engine: Engine, res: StepResult) -> None:
    """What every step must guarantee, whatever the input."""
    assert res.messages, "every step answers with at least one message"
    for m in res.messages:
        assert isinstance(m.text, str) and m.text.strip()
        assert len(m.text) <= MAX_CHUNK
        for c in m.choices:
            assert c.label and c.payload
    assert json.loads(json.dumps(res.state)) == res.state, "state must survive a JSON round trip"
    json.dumps(res.events)
    assert res.question_id is None or res.question_id in engine.qn.by_id
    for event in res.events:
        assert event["type"] in {"answer", "consent", "assessment", "erase", "restart", "pause", "link", "unlink"}


# ----------------------------------------------------------------------------------------------------------------
# Transcripts


def _load_transcript(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # "date", not "on": YAML 1.1 reads a bare `on:` key as the boolean true.
    assert set(data) <= {"name", "date", "clock", "steps"}, f"{path.name}: unknown top-level keys"
    for i, step in enumerate(data["steps"]):
        unknown = set(step) - _STEP_KEYS - _EXPECT_KEYS
        assert not unknown, f"{path.name} step {i + 1}: unknown keys {unknown}"
        assert len(set(step) & (_STEP_KEYS - {"wait"})) == 1, f"{path.name} step {i + 1}: say, tap, send or say_repeat"
    return data


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    data = _load_transcript(path)
    on = data.get("date", ON)
    engine = Engine(today=dt.date.fromisoformat(str(on)))
    clock = data.get("clock")
    chat = Chat(engine, dt.datetime.fromisoformat(str(clock)) if clock else T0)
    for i, step in enumerate(data["steps"], 1):
        where = f"{path.name} step {i} ({ {k: v for k, v in step.items() if k in _STEP_KEYS} })"
        if "wait" in step:
            chat.now += dt.timedelta(**step["wait"])
        if "say" in step:
            res = chat.say(str(step["say"]))
        elif "tap" in step:
            res = chat.tap(str(step["tap"]))
        elif "say_repeat" in step:
            res = chat.say(str(step["say_repeat"]["text"]) * int(step["say_repeat"]["times"]))
        else:
            res = chat.send(Inbound(**step["send"]))
        text = chat.text
        folded = text.casefold()
        for needle in step.get("contains", []):
            assert str(needle).casefold() in folded, f"{where}: reply lacks {needle!r}:\n{text}"
        for needle in step.get("not_contains", []):
            assert str(needle).casefold() not in folded, f"{where}: reply has {needle!r}:\n{text}"
        if "question" in step:
            assert res.question_id == step["question"], f"{where}: at {res.question_id!r}:\n{text}"
        if "step" in step:
            assert chat.step == step["step"], f"{where}: at step {chat.step!r}:\n{text}"
        if "events" in step:
            assert [e["type"] for e in res.events] == step["events"], f"{where}: events {res.events}"
        if "done" in step:
            assert res.done is step["done"], where
        if "status" in step:
            assert res.assessment is not None, f"{where}: no assessment:\n{text}"
            assert res.assessment["status"] == step["status"], f"{where}: status {res.assessment['status']}"
        if "buttons" in step:
            offered = {c.payload for m in res.messages for c in m.choices}
            missing = set(step["buttons"]) - offered
            assert not missing, f"{where}: buttons {missing} not offered (got {offered})"
        if "input" in step:
            event = next(e for e in res.events if e["type"] == "assessment")
            for key, value in step["input"].items():
                assert event["input"].get(key) == value, f"{where}: input {key}={event['input'].get(key)!r}"
        if "answer" in step:
            for qid, value in step["answer"].items():
                assert res.state["answers"][qid]["value"] == value, f"{where}: answer {qid}"
        if "event" in step:
            # {type, field: value...}: the first event of that type in this step has these fields.
            wanted = dict(step["event"])
            kind = wanted.pop("type")
            found = next((e for e in res.events if e["type"] == kind), None)
            assert found is not None, f"{where}: no {kind} event in {res.events}"
            for key, value in wanted.items():
                assert found.get(key) == value, f"{where}: {kind}.{key}={found.get(key)!r}"
        if "mode" in step:
            assert res.state["mode"] == step["mode"], where
        if "fresh" in step:
            assert (engine.describe(res.state) == "new") is step["fresh"], where


def test_transcripts_cover_every_status_and_feature() -> None:
    """The transcript set must keep covering what the issue asks for."""
    statuses: set[str] = set()
    taps: list[str] = []
    said: list[str] = []
    events: set[str] = set()
    steps: set[str] = set()
    for path in TRANSCRIPTS:
        for step in _load_transcript(path)["steps"]:
            if "status" in step:
                statuses.add(step["status"])
            taps.append(str(step.get("tap", "")))
            said.append(str(step.get("say", "")))
            events.update(step.get("events", []))
            if "step" in step:
                steps.add(step["step"])
    assert statuses == {"poor", "near_poor", "average_living", "not_poor"}
    assert {"answer", "consent", "assessment", "erase", "restart", "pause"} <= events
    for word in ("quay lại", "trợ giúp", "dừng", "tiếp tục", "xóa dữ liệu", "làm lại", "sửa câu 2", "không biết"):
        assert word in said, f"no transcript says {word!r}"
    assert {"commune.confirm", "commune.pick", "income.sources.pick", "expired", "erase", "paused", "summary"} <= steps


# ----------------------------------------------------------------------------------------------------------------
# The questionnaire file and its loader


def _raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def _question(data: dict[str, Any], qid: str) -> dict[str, Any]:
    return next(q for q in data["questions"] if q["id"] == qid)


def test_default_questionnaire_loads() -> None:
    qn = load_questionnaire()
    assert qn.version == "2026.2"
    assert qn.linear[0].role == "consent" and qn.linear[-1].role == "summary"
    for q in qn.questions:
        assert q.text and q.short and q.help
        assert len(q.short) <= 120, f"{q.id}: the re-ask form must stay short"
    assert (DEFAULT_PATH.parent / "questionnaire.mmd").read_text(encoding="utf-8").startswith("%%")


def test_default_engine_is_shared() -> None:
    assert default_engine() is default_engine()


def test_every_quick_form_indicator_is_asked() -> None:
    """Each indicator input and the fields the result needs are filled by some question."""
    qn = load_questionnaire()
    needed = {
        "commune_code",
        "area",
        "household_size",
        "monthly_income_vnd",
        "dependants",
        "working_age_unemployed_or_no_contract",
        "child_under16_malnourished",
        "member_6plus_without_health_insurance",
        "member_16_30_lacking_education",
        "child_3_15_not_in_school",
        "housing",
        "floor_area_m2",
        "water_source",
        "toilet",
        "internet",
        "information_devices",
        "waste",
    }
    assert needed <= set(qn.field_questions)


def test_contract_fields_match_the_core() -> None:
    household = pytest.importorskip("assessment.household")
    assert set(FIELD_SPECS) <= set(household.FIELDS)
    specs = {"housing": "HOUSING", "water_source": "WATER_SOURCES", "toilet": "TOILETS", "waste": "WASTE"}
    for field, name in specs.items():
        assert FIELD_SPECS[field].values == frozenset(getattr(household, name))
    assert FIELD_SPECS["information_devices"].values == frozenset(household.DEVICES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _question(d, "water").update(colour="blue"), "question 'water': unknown key(s) 'colour'"),
        (lambda d: _question(d, "water").pop("text"), "question 'water': text: missing or empty text"),
        (lambda d: _question(d, "housing").update(help="  "), "question 'housing': help: missing or empty text"),
        (lambda d: _question(d, "water").update(fills="water_colour"), "question 'water': fills 'water_colour'"),
        (
            lambda d: _question(d, "floor_area").update(ask_if={"answer": "roof", "eq": 1}),
            "question 'floor_area': ask_if: condition names unknown or later question 'roof'",
        ),
        (
            lambda d: _question(d, "floor_area").update(ask_if={"answer": "water", "eq": "piped"}),
            "question 'floor_area': ask_if: condition names unknown or later question 'water'",
        ),
        (
            lambda d: _question(d, "hardships")["choices"][3].update(show_if={"answer": "kids", "gt": 0}),
            "question 'hardships': choice 'malnourished': show_if: condition names unknown or later question 'kids'",
        ),
        (
            lambda d: _question(d, "water")["choices"][0].update(payload="tap_water"),
            "question 'water': fills 'water_source', choice 'tap_water': value 'tap_water' does not fit",
        ),
        (
            lambda d: _question(d, "hardships")["choices"][0].update(sets="no_work"),
            "question 'hardships': choice 'no_job': sets 'no_work', which is not a household input field",
        ),
        (lambda d: _question(d, "children").update(fills={"dependants": "double"}), "unknown transform 'double'"),
        (lambda d: d["questions"].append(dict(_question(d, "waste"))), "question 'waste': duplicate id"),
        (lambda d: d["messages"].update(paused="Dừng {since}"), "messages.paused: unknown placeholder(s) {since}"),
        (lambda d: d["messages"].pop("apology"), "missing message(s) apology"),
        (lambda d: d.update(colour="blue"), "top level: unknown key(s) 'colour'"),
        (lambda d: d.pop("version"), "missing 'version'"),
        (lambda d: d["keywords"].update(back=["dừng"]), "'dừng' is also a keyword for"),
        (
            lambda d: _question(d, "water")["choices"][1].update(aliases=["nước máy"]),
            "choice 'drilled_well': label or alias 'nước máy' also selects choice 'piped'",
        ),
        (lambda d: _question(d, "income").update(helper="waste"), "helper 'waste' must be an income_sources question"),
        (lambda d: _question(d, "income_sources").update(linear=True), "question 'income_sources'"),
        (lambda d: d["questions"].pop(0), "role 'consent' must come first"),
    ],
)
def test_loader_rejects_defects_naming_the_question(mutate: Any, message: str) -> None:
    data = _raw()
    mutate(data)
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire(data, source="questionnaire.yaml")
    assert message in str(info.value)


def test_loader_accepts_yes_no_and_date_conditions(engine: Engine) -> None:
    data = _raw()
    # A yes/no question asked only before 2027, inserted before the summary.
    data["questions"].insert(
        -1,
        {
            "id": "newly_escaped",
            "type": "yes_no",
            "ask_if": {"all": [{"date_before": "2027-01-01"}, {"not": {"answer": "household_size", "lt": 1}}]},
            "text": "Nhà bạn có phải hộ mới thoát nghèo trong 3 năm qua không?",
            "short": "Hộ mới thoát nghèo? Trả lời: có hoặc không.",
            "help": "Hộ vừa ra khỏi danh sách hộ nghèo, cận nghèo trong 3 năm.",
            "summary_label": "Hộ mới thoát nghèo",
            "fills": "newly_escaped",
        },
    )
    qn = parse_questionnaire(data)
    q = qn.by_id["newly_escaped"]
    answers = {"household_size": {"value": 3}}
    assert q.applies(answers, dt.date(2026, 12, 31)) and not q.applies(answers, dt.date(2027, 1, 1))
    e = Engine(qn, today=ON)
    chat = Chat(e)
    chat.run("hi", "1", "không biết", "2", "3", "0", "0", "4500000", "không", "1", "50", "1", "1", "1,4,6", "1")
    assert chat.last is not None and chat.last.question_id == "newly_escaped"
    chat.say("có")
    assert chat.step == "summary" and "Hộ mới thoát nghèo: Có" in chat.text
    chat.say("đúng")
    event = next(e for e in chat.events if e["type"] == "assessment")
    assert event["input"]["newly_escaped"] is True


# ----------------------------------------------------------------------------------------------------------------
# Whole runs, answer counts, events


TYPICAL = (
    "xin chào",  # opens the chat: greeting + consent
    "1",  # 1 consent
    "thuong phuoc 1",  # 2 commune (old name)
    "đúng",  # 3 confirm
    "4",  # 4 members
    "2",  # 5 children
    "0",  # 6 allowance
    "8 triệu",  # 7 income
    "không",  # 8 hardships
    "2",  # 9 housing
    "45",  # 10 floor area
    "2",  # 11 water
    "1",  # 12 toilet
    "1,4,6",  # 13 devices + internet
    "1",  # 14 waste
    "đúng",  # 15 summary
)


def test_typical_four_person_household_needs_at_most_15_answers(engine: Engine) -> None:
    chat = Chat(engine)
    res = chat.run(*TYPICAL)
    assert res.done and res.assessment is not None
    assert len(TYPICAL) - 1 <= 15
    answered = [e["question_id"] for e in chat.events if e["type"] == "answer"]
    # 12 answers + consent + the commune confirmation + the summary's "đúng" = 15 messages.
    assert len(answered) == 12
    assert res.assessment["status"] == "average_living"  # 2.0M per person: over the 1.5M line, under 2.25M
    assert res.assessment["income_per_capita_vnd"] == 2_000_000


def test_events_of_a_whole_run(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL)
    types = [e["type"] for e in chat.events]
    assert types[0] == "consent" and types[-1] == "assessment"
    first = next(e for e in chat.events if e["type"] == "answer")
    assert first == {"type": "answer", "question_id": "commune", "value": "29971", "raw": "thuong phuoc 1"}
    assessment = chat.events[-1]
    assert assessment["input"] == {
        "commune_code": "29971",
        "household_size": 4,
        "dependants": 2,
        "children_under_16": True,
        "social_allowance_member": False,
        "monthly_income_vnd": 8_000_000,
        "working_age_unemployed_or_no_contract": False,
        "member_6plus_without_health_insurance": False,
        "member_16_30_lacking_education": False,
        "child_under16_malnourished": False,
        "child_3_15_not_in_school": False,
        "housing": "semi_durable",
        "floor_area_m2": 45,
        "water_source": "drilled_well",
        "toilet": "septic",
        "information_devices": ["tv", "smartphone"],
        "internet": True,
        "waste": "collected",
        "on": "2026-06-01",
    }
    assert assessment["result"]["status"] == chat.state["result"]["status"]


def test_result_is_split_into_chunks(engine: Engine) -> None:
    chat = Chat(engine)
    res = chat.run(*TYPICAL)
    assert all(len(m.text) <= MAX_CHUNK for m in res.messages)
    assert res.messages[0].text.startswith("KẾT QUẢ SƠ BỘ")
    assert "Mẫu số 01" in chat.text and "Từ năm 2027" in chat.text


def test_after_the_result_a_correction_gives_a_new_result(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL)
    chat.say("sửa câu 5")  # income is item 5
    assert chat.step == "income" and "Câu trả lời cũ: 8.000.000 đồng mỗi tháng" in chat.text
    chat.say("3 triệu")
    assert chat.step == "summary"
    res = chat.say("đúng")
    assert res.assessment is not None and res.assessment["status"] == "near_poor"
    assert [e["type"] for e in chat.events].count("assessment") == 2


# ----------------------------------------------------------------------------------------------------------------
# Matching replies


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("1", "piped"),
        ("số 2", "drilled_well"),
        ("nuoc may", "piped"),
        ("Giếng khoan", "drilled_well"),
        ("nhà tôi dùng nước máy", "piped"),
        ("hai", "drilled_well"),
        ("nước mưa", "rainwater"),
        ("nước mua", "bottled"),  # "bought water", not rain: accents decide
    ],
)
def test_choice_replies(engine: Engine, reply: str, expected: str) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:11])
    assert chat.step == "water"
    chat.say(reply)
    assert chat.state["answers"]["water"]["value"] == expected


def test_choice_by_button_payload(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:11])
    chat.tap("water:rainwater")
    assert chat.state["answers"]["water"]["value"] == "rainwater"


def test_unaccented_fold_clash_is_not_guessed(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:11])
    chat.say("nuoc mua")  # rain or bought? ask again rather than guess
    assert chat.step == "water" and "Bạn chọn một số từ 1 đến 10." in chat.text


@pytest.mark.parametrize(
    ("reply", "devices", "internet"),
    [
        ("1,4,6", ["tv", "smartphone"], True),
        ("1 4", ["tv", "smartphone"], False),
        ("14", ["tv", "smartphone"], False),
        ("ti vi và điện thoại thông minh", ["tv", "smartphone"], False),
        ("không", [], False),
        ("không có", [], False),
        ("6", [], True),
    ],
)
def test_multi_choice_replies(engine: Engine, reply: str, devices: list[str], internet: bool) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:13])
    assert chat.step == "devices"
    chat.say(reply)
    assert chat.step == "waste"
    chat.run("1", "đúng")
    event = chat.events[-1]
    assert event["input"]["information_devices"] == devices
    assert event["input"]["internet"] is internet


@pytest.mark.parametrize("reply", ["1,9", "1²", "٣", "ti vi và máy giặt"])
def test_multi_choice_rejects_what_it_cannot_read(engine: Engine, reply: str) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:13])
    chat.say(reply)
    assert chat.step == "devices" and "từ 1 đến 6" in chat.text


@pytest.mark.parametrize(
    ("reply", "step", "needle"),
    [
        ("6 triệu", "hardships", "Đã ghi: 6.000.000 đồng mỗi tháng."),
        ("6.000.000", "hardships", None),
        ("1tr5", "income.confirm", "Bạn nhập 1.500.000 đồng mỗi tháng, đúng không?"),
        ("60 triệu một năm", "income.confirm", "tức khoảng 5.000.000 đồng mỗi tháng"),
        ("1500", "income.confirm", "Bạn nhập 1.500 đồng mỗi tháng"),
        ("khoảng 3-4 triệu", "income.confirm", "3.500.000 đồng"),
        ("không có thu nhập", "income.confirm", "Bạn nhập 0 đồng mỗi tháng"),
        ("200k/ngày", "income", "mỗi ngày hay mỗi tuần"),
        ("nhiều lắm", "income", "Mình chưa hiểu số tiền"),
        ("50 tỷ", "income", "quá lớn"),
    ],
)
def test_money_replies(engine: Engine, reply: str, step: str, needle: str | None) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:7])
    assert chat.step == "income"
    chat.say(reply)
    assert chat.step == step, chat.text
    if needle:
        assert needle in chat.text


def test_money_read_back_yes_no_and_retype(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:7])
    chat.say("60 triệu một năm")
    chat.say("không")
    assert chat.step == "income"
    chat.say("1tr5")
    chat.say("2 triệu")  # not yes/no: a corrected amount
    assert chat.step == "hardships"
    assert chat.state["answers"]["income"]["value"] == 2_000_000
    chat2 = Chat(engine)
    chat2.run(*TYPICAL[:7], "60 triệu một năm", "đúng")
    assert chat2.state["answers"]["income"]["value"] == 5_000_000


@pytest.mark.parametrize(
    ("reply", "value", "step"),
    [
        ("40", 40, "water"),
        ("40m2", 40, "water"),
        ("40 mét vuông", 40, "water"),
        ("12,5", 12.5, "water"),
        ("5x8", 40, "floor_area.confirm"),
    ],
)
def test_floor_area_replies(engine: Engine, reply: str, value: float, step: str) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:10])
    assert chat.step == "floor_area"
    chat.say(reply)
    assert chat.step == step
    if step.endswith("confirm"):
        assert "Bạn nhập 40 m², đúng không?" in chat.text
        chat.say("có")
    assert chat.state["answers"]["floor_area"]["value"] == value


def test_household_size_bounds_and_contradictions(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:4])
    chat.say("0")
    assert chat.step == "household_size" and "ít nhất 1 người" in chat.text
    assert "Nhà bạn có mấy người?" in chat.text  # the short form, not the whole question
    assert "cùng ăn, cùng ở" not in chat.text
    chat.say("200")
    assert "quá lớn" in chat.text
    chat.say("bốn")
    assert chat.step == "children"
    chat.say("5")
    assert chat.step == "children" and "Số trẻ em (5) không thể nhiều hơn số người trong nhà (4)" in chat.text
    chat.say("3")
    chat.say("2")
    assert chat.step == "allowance" and "cộng lại (5) nhiều hơn số người trong nhà (4)" in chat.text


def test_two_reasks_then_help(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:4])
    for _ in range(2):
        chat.say("abc")
        assert "Bạn gõ số người" in chat.text and "Có vẻ câu này hơi khó" not in chat.text
    chat.say("abc")
    assert "Có vẻ câu này hơi khó" in chat.text and "Người đi học xa" in chat.text
    chat.say("abc")  # the count starts again after the help
    assert "Có vẻ câu này hơi khó" not in chat.text


# ----------------------------------------------------------------------------------------------------------------
# Keywords and accents


def test_dung_means_pause_or_yes_depending_on_accents_and_step(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:15])
    assert chat.step == "summary"
    res = chat.say("dung")  # unaccented at a yes/no step: "đúng"
    assert res.done
    chat = Chat(engine)
    chat.run(*TYPICAL[:15])
    chat.say("dừng")  # accented: pause, even at a yes/no step
    assert chat.step == "paused"
    chat = Chat(engine)
    chat.run(*TYPICAL[:5])
    chat.say("dung")  # unaccented where no yes/no is expected: pause
    assert chat.step == "paused"
    chat.say("tiep tuc")
    assert chat.step == "children"


def test_commands_are_accent_and_case_insensitive(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:6])
    chat.say("QUAY LAI")
    assert chat.step == "children"
    chat.say("Trợ Giúp!")
    assert "Lệnh:" in chat.text and chat.step == "children"
    chat.say("/help")
    assert "Lệnh:" in chat.text
    chat.say("/frobnicate")
    assert "không hiểu lệnh" in chat.text


def test_back_from_a_sub_step_returns_to_its_question(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:3])
    assert chat.step == "commune.confirm"
    chat.say("quay lại")
    assert chat.step == "commune"
    chat.say("quay lại")
    assert chat.step == "consent"
    chat.say("quay lại")
    assert "Đây là câu đầu tiên" in chat.text and chat.step == "consent"


# ----------------------------------------------------------------------------------------------------------------
# Robustness: bad state, failures inside a step, clocks


def test_new_user_and_garbage_states_get_the_greeting(engine: Engine) -> None:
    for state in (None, {}, {"v": 99}, {"v": 1, "q": "no_such_question"}):
        res = engine.step(state, Inbound(text="chào"), T0)  # type: ignore[arg-type]
        assert "Xin chào" in res.messages[0].text and res.question_id == "consent"


def test_damaged_state_parts_are_repaired(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:8])
    state = copy.deepcopy(chat.state)
    assert state is not None
    state["sub"] = {"kind": "confirm"}  # no value, no prompt
    state["history"] = ["nope", 3, "commune"]
    state["answers"]["mystery"] = {"value": 1}
    state["tries"] = "many"
    res = engine.step(state, Inbound(text="không"), T0)
    assert res.question_id == "housing"
    assert "mystery" not in res.state["answers"] and res.state["history"][:1] == ["commune"]


def test_a_new_questionnaire_version_keeps_answers_it_understands(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:12])
    state = copy.deepcopy(chat.state)
    assert state is not None
    state["qv"] = "2025.9"
    state["answers"]["water"] = {"value": "well_of_old", "raw": "3"}
    res = engine.step(state, Inbound(text="1"), T0)
    assert res.state["qv"] == engine.qn.version
    assert "water" not in res.state["answers"] and "housing" in res.state["answers"]


class _Boom(Exception):
    pass


def test_a_failure_inside_a_step_is_answered_with_an_apology(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    def explode(text: str) -> Any:
        raise _Boom("parser down")

    broken = Engine(engine.qn, today=ON, services=engine.services.replace(parse_int=explode))
    chat = Chat(broken)
    chat.run(*TYPICAL[:4])
    before = copy.deepcopy(chat.state)
    with caplog.at_level(logging.ERROR, logger="bot.conversation.engine"):
        res = chat.say("4")
    assert res.state == before
    assert res.events == []
    assert "Xin lỗi" in res.messages[0].text and "Nhà bạn có mấy người?" in chat.text
    assert any(r.exc_info and r.exc_info[0] is _Boom for r in caplog.records)
    assert "4" not in " ".join(r.getMessage() for r in caplog.records)  # no user text in logs


def test_core_input_errors_send_the_user_back_to_the_question(engine: Engine) -> None:
    class Problem:
        code, field, message_vi = "out_of_range", "floor_area_m2", "Diện tích nhà phải lớn hơn 0."

    class Invalid(Exception):
        problems = [Problem()]

    def reject(data: Any, on: Any = None) -> Any:
        raise Invalid()

    picky = Engine(engine.qn, today=ON, services=engine.services.replace(assess=reject))
    chat = Chat(picky)
    res = chat.run(*TYPICAL)
    assert not res.done and chat.step == "floor_area" and "Diện tích nhà phải lớn hơn 0." in chat.text


def test_unknown_commune_code_falls_back_to_the_area(engine: Engine) -> None:
    seen: list[dict[str, Any]] = []

    class Problem:
        code, field, message_vi = "unknown_commune", "commune_code", "Không có mã xã này."

    class Invalid(Exception):
        problems = [Problem()]

    def assess(data: Any, on: Any = None) -> Any:
        seen.append(dict(data))
        if "commune_code" in data:
            raise Invalid()
        return engine.services.assess(data, on=on)

    chat = Chat(Engine(engine.qn, today=ON, services=engine.services.replace(assess=assess)))
    res = chat.run(*TYPICAL)
    assert res.done and seen[-1]["area"] == "rural" and "commune_code" not in seen[-1]


def test_expiry_with_naive_and_aware_clocks(engine: Engine) -> None:
    naive = Chat(engine, dt.datetime(2026, 6, 1, 9, 0))
    naive.run(*TYPICAL[:5])
    naive.now += dt.timedelta(days=6)
    naive.say("2")
    assert naive.step == "allowance"
    naive.now = (naive.now + dt.timedelta(days=8)).replace(tzinfo=dt.UTC)
    naive.say("0")
    assert naive.step == "expired" and "cách đây 8 ngày" in naive.text


def test_reference_date_defaults_to_vietnam_time() -> None:
    e = Engine(load_questionnaire())
    late_utc = dt.datetime(2026, 12, 31, 18, 0, tzinfo=dt.UTC)  # already 2027 in Vietnam
    assert e._reference_date(late_utc) == dt.date(2027, 1, 1)
    assert Engine(e.qn, today=lambda: dt.date(2026, 3, 3))._reference_date(late_utc) == dt.date(2026, 3, 3)


# ----------------------------------------------------------------------------------------------------------------
# Text splitting and speed


def test_split_text_keeps_paragraphs_together() -> None:
    paragraphs = [(f"đoạn {i} ") * 40 for i in range(20)]
    text = "\n\n".join(paragraphs)
    chunks = split_text(text, 1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    for chunk in chunks:
        for part in chunk.split("\n\n"):
            assert part.strip() in [p.strip() for p in paragraphs]


def test_split_text_cuts_overlong_lines_and_words() -> None:
    assert split_text("") == []
    chunks = split_text("x" * 4500)
    assert [len(c) for c in chunks] == [2000, 2000, 500]
    chunks = split_text(("chữ " * 1000).strip())
    assert all(len(c) <= 2000 for c in chunks) and " ".join(chunks).split() == ["chữ"] * 1000


def test_steps_are_cheap(engine: Engine) -> None:
    """A rough guard against regressions (the benchmark target is hundreds of messages per second)."""
    chat = Chat(engine)
    chat.run(*TYPICAL[:4])
    state = chat.state
    replies = [Inbound(text=t) for t in ("4", "2", "0", "6 triệu", "không", "2", "45", "2", "1", "1,4,6", "1")]
    start = time.perf_counter()
    rounds = 30
    for _ in range(rounds):
        s = state
        for inbound in replies:
            s = engine.step(s, inbound, T0).state
    per_step = (time.perf_counter() - start) / (rounds * len(replies))
    assert per_step < 0.002, f"{per_step * 1000:.2f} ms per step"


def test_after_the_result_pause_and_help_say_what_comes_next(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL)
    for command in ("dừng", "tiếp tục", "trợ giúp"):
        res = chat.say(command)
        assert res.done and res.events == [] and "sửa câu" in chat.text and chat.step == "done"


def test_income_helper_period_step(engine: Engine) -> None:
    chat = Chat(engine)
    chat.run(*TYPICAL[:7], "tính giúp", "1", "30 triệu")
    assert chat.step == "income.sources.period"
    chat.say("không")  # not an amount of 0: ask again
    assert chat.step == "income.sources.period" and "Bạn chọn một số từ 1 đến 2" in chat.text
    chat.say("36 triệu một năm")  # the amount typed again, with its period
    assert chat.step == "income.sources.total" and "• Trồng trọt: 3.000.000 đồng" in chat.text
    chat.say("đúng")
    assert chat.state["answers"]["income"] == {
        "value": 3_000_000,
        "raw": "crops=3000000",
        "sources": {"crops": 3_000_000},
    }
    chat.run(*TYPICAL[8:])
    event = chat.events[-1]
    assert event["type"] == "assessment" and event["input"]["farm_household"] is True
