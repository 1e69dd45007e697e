"""Rasa interop: the action server (``python -m rasa_sdk --actions bot.rasa_actions``) and the ``rasa/`` project.

The action server is started for real as a subprocess on a free port, and every test posts the payload Rasa
3.6 posts to ``/webhook`` (``next_action``, ``sender_id``, ``tracker``, ``domain``, ``version``): for the form's
validation action, the tracker Rasa's ``FormAction`` builds (the user's message, the extracted slot, then
``requested_slot``, the form's action and the slot candidate at the end). The reference date is pinned with
``TUSOAT_REFERENCE_DATE`` for the whole server and with the ``reference_date`` slot per conversation.

Rasa itself does not install on Python 3.11, so the project files are checked here: they load, and every
slot, response, action and intent they reference exists, and the questions match the engine's questionnaire.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from bot.parsing.text import fold
from bot.rasa_actions.bridge import (
    FOLLOWUP_SLOT,
    choose_payload,
    default_bridge,
    reference_date,
)

ROOT = Path(__file__).resolve().parent.parent
RASA = ROOT / "rasa"
#: The Rasa version whose payloads these are (the SDK only warns that 3.6 and 3.21 differ).
RASA_VERSION = "3.6.21"
PINNED = "2026-06-01"  # 2022–2025 standard, extended through 2026 by Decree 351/2025
FORM = "household_form"
VALIDATE = "validate_household_form"
COMMANDS = ("start_assessment", "help", "pause", "resume", "restart", "back", "erase")


# ------------------------------------------------------------------------------------------------------------
# The action server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running ``python -m rasa_sdk --actions bot.rasa_actions``; stopped after the module."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("rasa_sdk") / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TUSOAT_REFERENCE_DATE": PINNED,
        "SANIC_HOST": "127.0.0.1",
    }
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rasa_sdk", "--actions", "bot.rasa_actions", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Sanic's worker is stopped with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"action server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"action server did not answer /health within 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            # Sanic's graceful shutdown of the main process and its worker (SIGINT may be ignored in background jobs).
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    """``rasa/domain.yml`` as Rasa sends it (the SDK reads ``forms`` and ``slots`` from it)."""
    return _load("domain.yml")


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((RASA / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), name
    return data


# ------------------------------------------------------------------------------------------------------------
# Payloads as Rasa 3.6 sends them

_T0 = 1_780_000_000.0


def _action(name: str, t: float) -> dict[str, Any]:
    return {
        "event": "action",
        "timestamp": t,
        "name": name,
        "policy": None,
        "confidence": 1.0,
        "action_text": None,
        "hide_rule_turn": False,
    }


def _parse_data(text: str, intent: str, entities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "text": text,
        "intent": {"name": intent, "confidence": 0.93},
        "entities": [dict(e) for e in entities],
        "intent_ranking": [{"name": intent, "confidence": 0.93}],
        "message_id": "m-latest",
        "metadata": {},
    }


def _user(text: str, parse: Mapping[str, Any], t: float) -> list[dict[str, Any]]:
    return [
        {
            "event": "user",
            "timestamp": t,
            "text": text,
            "parse_data": dict(parse),
            "input_channel": "rest",
            "message_id": parse.get("message_id"),
            "metadata": {},
        },
        {"event": "user_featurization", "timestamp": t, "use_text_for_featurization": False},
    ]


def _slot(name: str, value: Any, t: float) -> dict[str, Any]:
    return {"event": "slot", "timestamp": t, "name": name, "value": value}


def tracker_state(
    domain: Mapping[str, Any],
    *,
    slots: Mapping[str, Any] | None = None,
    text: str = "",
    intent: str = "inform",
    entities: Sequence[Mapping[str, Any]] = (),
    requested: str | None = None,
    candidate: tuple[str, Any] | None = None,
    active: bool = True,
    latest_action: str | None = None,
) -> dict[str, Any]:
    """A tracker state (``DialogueStateTracker.current_state(EventVerbosity.ALL)``) in the middle of the form.

    With ``candidate``, the tail is what Rasa's ``FormAction._temporary_tracker`` appends before calling the
    validation action: ``requested_slot``, the form's action, and the extracted slot.
    """
    filled = dict(slots or {})
    start = _parse_data("bắt đầu", "start_assessment", [])
    parse = _parse_data(text, intent, entities)
    t = _T0
    events: list[dict[str, Any]] = [
        _action("action_session_start", t),
        {"event": "session_started", "timestamp": t},
        _action("action_listen", t),
        *_user("bắt đầu", start, t + 1),
        _action("action_reset_household", t + 2),
        _action(FORM, t + 3),
    ]
    if active:
        events.append({"event": "active_loop", "timestamp": t + 3, "name": FORM})
    events += [_slot(k, v, t + 3) for k, v in filled.items()]
    if requested is not None:
        events.append(_slot("requested_slot", requested, t + 3))
    events.append(_action("action_listen", t + 4))
    events += _user(text, parse, t + 5)
    if candidate is not None:
        events.append(_slot(candidate[0], candidate[1], t + 5))  # action_extract_slots
        events += [
            _slot("requested_slot", requested, t + 6),
            _action(FORM, t + 6),
            _slot(candidate[0], candidate[1], t + 6),
        ]
    all_slots: dict[str, Any] = {name: None for name in domain["slots"]}
    all_slots.update(filled)
    all_slots["requested_slot"] = requested
    if candidate is not None:
        all_slots[candidate[0]] = candidate[1]
    last = latest_action or (FORM if candidate is not None else "action_listen")
    return {
        "sender_id": "zalo-1234",
        "slots": all_slots,
        "latest_message": parse,
        "latest_event_time": t + 6,
        "followup_action": None,
        "paused": False,
        "events": events,
        "latest_input_channel": "rest",
        "active_loop": {"name": FORM, "validate": True, "rejected": False, "trigger_message": start} if active else {},
        "latest_action": {"action_name": last},
        "latest_action_name": last,
    }


def webhook(server: str, next_action: str, tracker: Mapping[str, Any], domain: Mapping[str, Any]) -> requests.Response:
    """POST one action call exactly as Rasa's ``RemoteAction`` does."""
    payload = {
        "next_action": next_action,
        "sender_id": tracker["sender_id"],
        "tracker": tracker,
        "domain": domain,
        "version": RASA_VERSION,
    }
    return requests.post(f"{server}/webhook", json=payload, timeout=60)


class Reply:
    """The action server's answer: slot values set (last wins), other events, and the texts uttered."""

    def __init__(self, response: requests.Response) -> None:
        assert response.status_code == 200, response.text
        body = response.json()
        self.events: list[dict[str, Any]] = body["events"]
        self.responses: list[dict[str, Any]] = body["responses"]
        self.slots: dict[str, Any] = {e["name"]: e["value"] for e in self.events if e["event"] == "slot"}
        self.texts: list[str] = [r["text"] for r in self.responses if r.get("text")]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


def validate(
    server: str,
    domain: Mapping[str, Any],
    slot: str,
    text: Any,
    slots: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Reply:
    """Run ``validate_household_form`` on ``text`` extracted for ``slot`` (the form's requested slot)."""
    state = tracker_state(domain, slots=slots, text=str(text), requested=slot, candidate=(slot, text), **kwargs)
    return Reply(webhook(server, VALIDATE, state, domain))


# A poor rural household of 4 (Xã Thường Phước, Đồng Tháp), as the form leaves it.
POOR = {
    "commune": "Xã Thường Phước, Đồng Tháp",
    "commune_code": "29971",
    "area": "rural",
    "household_size": 4,
    "children": 2,
    "allowance": 0,
    "dependants": 2,
    "income": 4_000_000,
    "working_age_unemployed_or_no_contract": False,
    "member_6plus_without_health_insurance": True,
    "member_16_30_lacking_education": False,
    "child_under16_malnourished": False,
    "child_3_15_not_in_school": False,
    "housing": "simple",
    "floor_area": 20,
    "water": "surface_water",
    "toilet": "none",
    "devices": ["phone"],
    "internet": False,
    "waste": "dumped",
}


def before(slot: str, **overrides: Any) -> dict[str, Any]:
    """The slots of ``POOR`` that the form fills before ``slot`` (so that ``slot`` is the one requested)."""
    order = default_bridge().form_slots
    derived = {
        "commune": ("commune_code", "area"),
        "children": ("dependants",),
        "allowance": ("dependants",),
        "devices": ("internet",),
    }
    out: dict[str, Any] = {}
    for name in order[: order.index(slot)]:
        out[name] = POOR[name]
        out.update({d: POOR[d] for d in derived.get(name, ())})
    out.update(overrides)
    return out


# ------------------------------------------------------------------------------------------------------------
# The server itself


def test_the_action_server_command_serves_health_and_actions(server: str, domain: dict[str, Any]) -> None:
    assert requests.get(f"{server}/health", timeout=10).json() == {"status": "ok"}
    names = {a["name"] for a in requests.get(f"{server}/actions", timeout=10).json()}
    # Exactly the custom actions the Rasa domain declares.
    assert (
        names
        == set(domain["actions"])
        == {
            "validate_household_form",
            "action_assess_household",
            "action_ask_followup",
            "action_reset_household",
        }
    )


# ------------------------------------------------------------------------------------------------------------
# Slot validation


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", 4),  # digits
        ("bốn", 4),  # a number word
        ("nha co 5 nguoi", 5),  # a sentence without diacritics
    ],
)
def test_household_size_is_read_with_the_engine_parser(
    server: str, domain: dict[str, Any], text: str, value: int
) -> None:
    reply = validate(server, domain, "household_size", text, before("household_size"))
    assert reply.slots["household_size"] == value
    assert reply.slots["requested_slot"] == "children"
    assert reply.texts == []


@pytest.mark.parametrize(
    ("slot", "text", "slots", "hint"),
    [
        # not a number at all
        ("household_size", "abc", {}, "Bạn gõ số người, ví dụ: 4."),
        # 0 people
        ("household_size", "0", {}, "Nhà phải có ít nhất 1 người."),
        # more children than members
        ("children", "5", {"household_size": 4}, "Số trẻ em (5) không thể nhiều hơn số người trong nhà (4)."),
        # children and allowance recipients together exceed the household: dependants > members
        (
            "allowance",
            "3",
            {"household_size": 4, "children": 2},
            "Trẻ em và người nhận trợ cấp cộng lại (5) nhiều hơn số người trong nhà (4).",
        ),
        # not money
        ("income", "abc", {}, "Mình chưa hiểu số tiền. Ví dụ: 5 triệu, 4.500.000, hoặc 60 triệu một năm."),
        # a daily amount: the engine asks for a monthly or yearly one
        ("income", "200k/ngày", {}, "Số tiền đó là mỗi ngày hay mỗi tuần?"),
        # no such choice
        ("housing", "9", {}, "Bạn chọn một số từ 1 đến 5."),
        # unknown commune
        ("commune", "xyzxyz", {}, "Mình chưa tìm thấy xã/phường nào tên như vậy."),
        # an indicator that is neither yes nor no
        ("member_6plus_without_health_insurance", "abc", {}, "Bạn trả lời: có hoặc không."),
        # floor area out of range
        ("floor_area", "0", {"housing": "durable"}, "Diện tích phải từ 1 mét vuông trở lên."),
    ],
)
def test_bad_values_clear_the_slot_with_a_vietnamese_hint(
    server: str, domain: dict[str, Any], slot: str, text: str, slots: dict[str, Any], hint: str
) -> None:
    reply = validate(server, domain, slot, text, before(slot, **slots))
    assert reply.slots[slot] is None
    assert reply.slots["requested_slot"] == slot  # Rasa asks the same question again
    assert len(reply.texts) == 1 and reply.texts[0].startswith(hint)
    # Only the hint: the question itself comes from utter_ask_<slot>.
    assert "?" not in reply.texts[0] or slot == "income"


def test_children_set_dependants_and_skip_child_questions_when_zero(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "children", "2", {"household_size": 4})
    assert reply.slots["children"] == 2 and reply.slots["dependants"] == 2
    reply = validate(server, domain, "allowance", "1", {"household_size": 4, "children": 2, "dependants": 2})
    assert reply.slots["allowance"] == 1 and reply.slots["dependants"] == 3
    # No children: the two child questions are not required; after the third indicator comes housing.
    base = {
        "commune": "x",
        "commune_code": "29971",
        "area": "rural",
        "household_size": 2,
        "children": 0,
        "allowance": 0,
        "income": 3_000_000,
        "working_age_unemployed_or_no_contract": False,
        "member_6plus_without_health_insurance": False,
    }
    reply = validate(server, domain, "member_16_30_lacking_education", "không", base)
    assert reply.slots["member_16_30_lacking_education"] is False
    assert reply.slots["requested_slot"] == "housing"


def test_plain_income_is_taken_and_read_back_amounts_wait_for_confirmation(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "income", "5 triệu", before("income"))
    assert reply.slots["income"] == 5_000_000
    # "1tr5" is shorthand: the engine reads it back before recording it, and so does the form.
    reply = validate(server, domain, "income", "1tr5", before("income"))
    assert reply.slots["income"] is None
    assert reply.slots["followup_state"]["q"] == "income"
    assert reply.slots["followup_state"]["sub"]["value"] == 1_500_000
    assert reply.slots["requested_slot"] == FOLLOWUP_SLOT
    slots = before("income", followup_state=reply.slots["followup_state"])
    asked = Reply(
        webhook(server, "action_ask_followup", tracker_state(domain, slots=slots, requested=FOLLOWUP_SLOT), domain)
    )
    assert asked.texts == ["Bạn nhập 1.500.000 đồng mỗi tháng, đúng không?"]
    assert [b["payload"] for b in asked.responses[0]["buttons"]] == [
        choose_payload("income.confirm:yes"),
        choose_payload("income.confirm:no"),
    ]
    reply = validate(server, domain, FOLLOWUP_SLOT, "đúng", slots)
    assert reply.slots["income"] == 1_500_000
    assert reply.slots["followup_state"] is None and reply.slots[FOLLOWUP_SLOT] is None
    assert reply.slots["requested_slot"] == "working_age_unemployed_or_no_contract"


def test_a_yearly_income_becomes_monthly(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "income", "60 triệu một năm", before("income"))
    sub = reply.slots["followup_state"]["sub"]
    assert sub["value"] == 5_000_000
    assert sub["prompt"] == "Bạn nhập 60.000.000 đồng mỗi năm, tức khoảng 5.000.000 đồng mỗi tháng, đúng không?"
    reply = validate(
        server, domain, FOLLOWUP_SLOT, "/affirm", {"followup_state": reply.slots["followup_state"]}, intent="affirm"
    )
    assert reply.slots["income"] == 5_000_000


def test_old_commune_name_is_resolved_and_confirmed(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "commune", "Thường Phước 1")
    assert reply.slots["commune_code"] == "29971" and reply.slots["area"] == "rural"
    assert reply.slots["commune"] is None  # until the user confirms
    assert reply.slots["requested_slot"] == FOLLOWUP_SLOT
    pending = {k: reply.slots[k] for k in ("commune_code", "area", "followup_state")}
    asked = Reply(
        webhook(server, "action_ask_followup", tracker_state(domain, slots=pending, requested=FOLLOWUP_SLOT), domain)
    )
    assert asked.texts == ["Có phải Xã Thường Phước, Đồng Tháp (trước đây là Xã Thường Phước 1) không?"]
    yes = asked.responses[0]["buttons"][0]
    assert yes == {"title": "Đúng", "payload": choose_payload("commune.confirm:yes")}
    # The button press: Rasa parses /choose{"choice": ...} into intent `choose` and entity `choice`.
    reply = validate(
        server,
        domain,
        FOLLOWUP_SLOT,
        yes["payload"],
        pending,
        intent="choose",
        entities=[{"entity": "choice", "value": "commune.confirm:yes", "start": 0, "end": 0}],
    )
    assert reply.slots["commune"] == "Xã Thường Phước, Đồng Tháp"
    assert reply.slots["commune_code"] == "29971" and reply.slots["area"] == "rural"
    assert reply.slots["followup_state"] is None
    assert reply.slots["requested_slot"] == "household_size"


def test_a_rejected_commune_offers_the_other_candidates(server: str, domain: dict[str, Any]) -> None:
    first = validate(server, domain, "commune", "thuong phuoc 1")
    pending = {k: first.slots[k] for k in ("commune_code", "area", "followup_state")}
    reply = validate(server, domain, FOLLOWUP_SLOT, "không đúng", pending)
    assert reply.slots["followup_state"]["sub"]["kind"] == "pick"
    assert reply.slots["commune_code"] is None and reply.slots["area"] is None
    asked = Reply(
        webhook(
            server,
            "action_ask_followup",
            tracker_state(domain, slots={"followup_state": reply.slots["followup_state"]}, requested=FOLLOWUP_SLOT),
            domain,
        )
    )
    assert asked.texts[0].startswith("Mình thấy mấy nơi gần giống. Nhà bạn ở nơi nào?\n1. ")


def test_an_ambiguous_commune_is_picked_from_a_list(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "commune", "tan hoa")
    assert reply.slots["followup_state"]["sub"]["kind"] == "pick"
    state = reply.slots["followup_state"]
    asked = Reply(
        webhook(
            server,
            "action_ask_followup",
            tracker_state(domain, slots={"followup_state": state}, requested=FOLLOWUP_SLOT),
            domain,
        )
    )
    lines = asked.texts[0].splitlines()
    assert lines[0] == "Mình thấy mấy nơi gần giống. Nhà bạn ở nơi nào?"
    assert lines[-1].endswith("Không có ở đây")
    second = state["sub"]["options"][1]
    reply = validate(server, domain, FOLLOWUP_SLOT, "2", {"followup_state": state})
    assert reply.slots["commune_code"] == second["code"]
    assert reply.slots["commune"] == f"{second['name']}, {second['province']}"
    assert reply.slots["area"] == second["area"]


def test_the_income_helper_adds_up_the_sources(server: str, domain: dict[str, Any]) -> None:
    # "tính giúp" (or its button) opens the engine's income helper; each step is one follow-up turn.
    slots = before("income")
    reply = validate(
        server,
        domain,
        "income",
        choose_payload("income:helper"),
        slots,
        intent="choose",
        entities=[{"entity": "choice", "value": "income:helper"}],
    )
    prompts = []
    for text in ["1,4", "2 triệu", "1", "3 triệu một tháng", "đúng"]:
        assert reply.slots["income"] is None and reply.slots["requested_slot"] == FOLLOWUP_SLOT
        slots = {**slots, "followup_state": reply.slots["followup_state"]}
        asked = Reply(
            webhook(server, "action_ask_followup", tracker_state(domain, slots=slots, requested=FOLLOWUP_SLOT), domain)
        )
        prompts.append(asked.texts[0])
        reply = validate(server, domain, FOLLOWUP_SLOT, text, slots)
    assert prompts[0].startswith("Nhà bạn có những nguồn thu nào?")
    assert prompts[-1].endswith("Tổng: khoảng 5.000.000 đồng mỗi tháng. Đúng không?")
    assert reply.slots["income"] == 5_000_000
    assert reply.slots["income_sources"] == {"crops": 2_000_000, "wages": 3_000_000}
    assert reply.slots["followup_state"] is None


def test_an_unknown_commune_asks_the_area(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "commune", "không biết", intent="dont_know")
    assert reply.slots["commune"] == "không biết"
    assert reply.slots["commune_code"] is None
    assert reply.slots["requested_slot"] == "area"
    reply = validate(server, domain, "area", "2", {"commune": "không biết"})
    assert reply.slots["area"] == "rural"
    assert reply.slots["requested_slot"] == "household_size"


@pytest.mark.parametrize(
    ("text", "intent", "entities", "value"),
    [
        ("2", "inform", [], "semi_durable"),  # numbered reply
        ("nhà lá", "inform", [], "simple"),  # label or alias, with diacritics
        ("nha cap 4", "inform", [], "semi_durable"),  # alias without diacritics
        # button payload
        (
            choose_payload("housing:less_durable"),
            "choose",
            [{"entity": "choice", "value": "housing:less_durable"}],
            "less_durable",
        ),
    ],
)
def test_housing_choice_by_number_label_or_payload(
    server: str, domain: dict[str, Any], text: str, intent: str, entities: list[dict[str, Any]], value: str
) -> None:
    reply = validate(server, domain, "housing", text, before("housing"), intent=intent, entities=entities)
    assert reply.slots["housing"] == value
    assert reply.slots["requested_slot"] == "floor_area"


def test_no_home_skips_the_floor_area(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "housing", "5", before("housing"))
    assert reply.slots["housing"] == "none"
    assert reply.slots["requested_slot"] == "water"


@pytest.mark.parametrize(
    ("text", "intent", "value"),
    [("có", "affirm", True), ("khong", "deny", False), ("không có", "deny", False), ("1", "inform", True)],
)
def test_indicator_yes_no_from_text(server: str, domain: dict[str, Any], text: str, intent: str, value: bool) -> None:
    reply = validate(server, domain, "member_6plus_without_health_insurance", text, intent=intent)
    assert reply.slots["member_6plus_without_health_insurance"] is value


def test_indicator_from_intent_mapping(server: str, domain: dict[str, Any]) -> None:
    # The from_intent mapping (affirm -> true) fills the slot with a boolean; the action keeps it.
    state = tracker_state(
        domain,
        text="/affirm",
        intent="affirm",
        requested="working_age_unemployed_or_no_contract",
        candidate=("working_age_unemployed_or_no_contract", True),
    )
    reply = Reply(webhook(server, VALIDATE, state, domain))
    assert reply.slots["working_age_unemployed_or_no_contract"] is True


def test_devices_fill_the_list_and_internet(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "devices", "1,4,6")
    assert reply.slots["devices"] == ["tv", "smartphone", "internet"]
    assert reply.slots["internet"] is True
    reply = validate(server, domain, "devices", "không")
    assert reply.slots["devices"] == [] and reply.slots["internet"] is False


def test_floor_area_product_is_read_back(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "floor_area", "5x8", {"housing": "durable"})
    assert reply.slots["followup_state"]["sub"]["value"] == 40
    reply = validate(server, domain, "floor_area", "40m2", {"housing": "durable"})
    assert reply.slots["floor_area"] == 40


def test_help_gives_the_engine_help_text(server: str, domain: dict[str, Any]) -> None:
    reply = validate(server, domain, "household_size", "trợ giúp")
    assert reply.slots["household_size"] is None
    assert reply.texts[0].startswith("Tính cả người già, trẻ em, em bé mới sinh.")


def test_settled_values_are_kept_when_the_form_is_reactivated(server: str, domain: dict[str, Any]) -> None:
    # "tiếp tục" after "dừng": Rasa validates the slots filled before activation again, with their typed values.
    state = tracker_state(
        domain,
        slots={"household_size": 4},
        text="tiếp tục",
        intent="resume",
        requested=None,
        candidate=("household_size", 4),
        active=False,
    )
    reply = Reply(webhook(server, VALIDATE, state, domain))
    assert reply.slots["household_size"] == 4
    assert reply.slots["requested_slot"] == "commune"


# ------------------------------------------------------------------------------------------------------------
# Rejections (HTTP 400) and other SDK errors


def test_a_command_word_is_not_an_answer_400(server: str, domain: dict[str, Any]) -> None:
    # NLU took "dừng" for an answer; the engine knows it is "pause": the validation action rejects itself and
    # Rasa's rules (pause during the form) take over, as when Rasa's FormAction extracts nothing.
    state = tracker_state(domain, text="dừng", requested="household_size", candidate=("household_size", "dừng"))
    response = webhook(server, VALIDATE, state, domain)
    assert response.status_code == 400
    body = response.json()
    assert body["action_name"] == VALIDATE
    assert "pause" in body["error"] and "household_size" in body["error"]


def test_assessing_an_incomplete_form_is_rejected_400(server: str, domain: dict[str, Any]) -> None:
    slots = {k: v for k, v in POOR.items() if k != "income"}
    response = webhook(server, "action_assess_household", tracker_state(domain, slots=slots, active=False), domain)
    assert response.status_code == 400
    assert response.json()["action_name"] == "action_assess_household"
    assert "income" in response.json()["error"]


def test_malformed_requests(server: str, domain: dict[str, Any]) -> None:
    # Not JSON at all.
    response = requests.post(
        f"{server}/webhook", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    # JSON, but no body.
    response = requests.post(
        f"{server}/webhook", data=b"null", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid body request"}
    # An action this server does not have.
    response = webhook(server, "action_does_not_exist", tracker_state(domain), domain)
    assert response.status_code == 404


# ------------------------------------------------------------------------------------------------------------
# The result


def test_assess_a_poor_household_on_the_pinned_date(server: str, domain: dict[str, Any]) -> None:
    state = tracker_state(domain, slots=POOR, active=False, latest_action=FORM)
    reply = Reply(webhook(server, "action_assess_household", state, domain))
    text = reply.text
    assert text.startswith("KẾT QUẢ SƠ BỘ (chỉ để tham khảo)")
    assert "giai đoạn 2022–2025 (áp dụng đến hết 31/12/2026), hộ của bạn có thể thuộc diện: Hộ nghèo." in text
    assert "Thu nhập bình quân: 1.000.000 đồng mỗi người mỗi tháng. Chuẩn nghèo ở nông thôn: 1.500.000 đồng." in text
    assert "(Căn cứ: Nghị định 07/2021/NĐ-CP" in text  # deprivations with their legal basis
    assert "Điều gì có thể làm kết quả thay đổi:" in text
    assert "Từ năm 2027" in text  # the result under the next standard
    assert "Liên hệ:" in text  # policies with the office to contact
    assert "Mẫu số 01" in text  # how to apply
    assert "sửa câu" not in text  # the engine's closing line is replaced by Rasa's own
    assert reply.responses[-1]["response"] == "utter_after_result"
    assert all(len(t) <= 2000 for t in reply.texts)
    assert reply.slots["status"] == "poor"
    assert "health_insurance" in reply.slots["deprivations"] and "housing_quality" in reply.slots["deprivations"]


def test_the_reference_date_slot_wins_over_the_environment(server: str, domain: dict[str, Any]) -> None:
    state = tracker_state(domain, slots={**POOR, "reference_date": "2027-03-01"}, active=False)
    reply = Reply(webhook(server, "action_assess_household", state, domain))
    assert "Theo Chuẩn nghèo đa chiều giai đoạn 2027–2030, hộ của bạn có thể thuộc diện: Hộ nghèo." in reply.text
    assert "Chuẩn nghèo ở nông thôn: 2.200.000 đồng." in reply.text
    assert "waste" in reply.slots["deprivations"]


def test_result_text_is_the_engine_result_text(domain: dict[str, Any]) -> None:
    from assessment import assess
    from bot.conversation.result import render_result

    bridge = default_bridge()
    on = dt.date.fromisoformat(PINNED)
    data, result = bridge.assess(POOR, on)
    assert data == bridge.engine.build_input(bridge.answers(POOR), on)
    assert result == assess(data, on=on).to_dict()
    assert render_result(bridge.qn, result, share=False).startswith("KẾT QUẢ SƠ BỘ")


def test_reset_forgets_the_answers_but_keeps_the_pinned_date(server: str, domain: dict[str, Any]) -> None:
    state = tracker_state(domain, slots={**POOR, "reference_date": "2027-03-01"}, text="làm lại", intent="restart")
    reply = Reply(webhook(server, "action_reset_household", state, domain))
    assert [e["event"] for e in reply.events] == ["reset_slots", "active_loop", "slot"]
    assert reply.events[1]["name"] is None
    assert reply.slots == {"reference_date": "2027-03-01"}
    assert reply.texts == ["Mình bắt đầu lại từ đầu nhé."]
    # A first "bắt đầu" resets silently.
    reply = Reply(webhook(server, "action_reset_household", tracker_state(domain, active=False), domain))
    assert reply.texts == []


def test_reference_date_sources() -> None:
    assert reference_date({"reference_date": "2026-06-01"}, {"TUSOAT_REFERENCE_DATE": "2027-01-01"}) == dt.date(
        2026, 6, 1
    )
    assert reference_date({}, {"TUSOAT_REFERENCE_DATE": "2027-01-01"}) == dt.date(2027, 1, 1)
    assert isinstance(reference_date({}, {}), dt.date)
    with pytest.raises(ValueError, match="TUSOAT_REFERENCE_DATE"):
        reference_date({}, {"TUSOAT_REFERENCE_DATE": "1/6/2026"})


# ------------------------------------------------------------------------------------------------------------
# The Rasa project (rasa/): it loads, and everything it references exists


def rendered(template: str) -> str:
    """What Rasa sends for a response string that uses no slot: ``{{`` and ``}}`` unescaped.

    Rasa fills ``{slot}`` placeholders in texts and buttons; a payload with single braces would be taken for a
    placeholder (and logged as an error), so JSON in a payload is written with doubled braces. ``str.format``
    with no values raises on any single brace, which is what this check is for.
    """
    return template.format()


def _examples(nlu: Mapping[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for block in nlu["nlu"]:
        if "intent" in block:
            lines = [line.strip()[2:] for line in block["examples"].splitlines() if line.strip().startswith("- ")]
            out.setdefault(block["intent"], set()).update(lines)
    return out


def _story_steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for name, key in (("data/rules.yml", "rules"), ("data/stories.yml", "stories")):
        for item in _load(name)[key]:
            steps.extend(item.get("steps", []))
            steps.extend(item.get("condition", []))
    return steps


def test_project_files_load() -> None:
    for name in (
        "config.yml",
        "domain.yml",
        "endpoints.yml",
        "credentials.yml",
        "data/nlu.yml",
        "data/rules.yml",
        "data/stories.yml",
    ):
        data = _load(name)
        if name.startswith("data/") or name == "domain.yml":
            assert data["version"] == "3.1", name
    config = _load("config.yml")
    names = [c["name"] for c in config["pipeline"]]
    assert names[0] == "WhitespaceTokenizer" and "DIETClassifier" in names
    assert any(c["name"] == "CountVectorsFeaturizer" and c.get("analyzer") == "char_wb" for c in config["pipeline"])
    assert {p["name"] for p in config["policies"]} >= {"RulePolicy", "TEDPolicy"}
    assert _load("endpoints.yml")["action_endpoint"]["url"] == "http://localhost:5055/webhook"
    assert "rest" in _load("credentials.yml")


def test_form_slots_follow_the_questionnaire(domain: dict[str, Any]) -> None:
    bridge = default_bridge()
    required = domain["forms"][FORM]["required_slots"]
    assert required == [*bridge.form_slots, FOLLOWUP_SLOT]
    from bot.rasa_actions.forms import ValidateHouseholdForm

    for slot in required:
        assert slot in domain["slots"], slot
        assert callable(getattr(ValidateHouseholdForm, f"validate_{slot}", None)), slot


def test_slot_mappings(domain: dict[str, Any]) -> None:
    intents = set(domain["intents"])
    required = domain["forms"][FORM]["required_slots"]
    for name, slot in domain["slots"].items():
        mappings = slot["mappings"]
        assert mappings, name
        if slot["type"] == "any":
            assert slot["influence_conversation"] is False, name
        for m in mappings:
            assert m["type"] in ("from_text", "from_intent", "from_entity", "custom"), name
            for intent in [m.get("intent"), *(m.get("not_intent") or [])]:
                assert intent is None or intent in intents, (name, intent)
            for cond in m.get("conditions", []):
                assert cond["active_loop"] == FORM and cond["requested_slot"] == name, name
        if name in required:
            text = [m for m in mappings if m["type"] == "from_text"]
            assert len(text) == 1 and set(text[0]["not_intent"]) == set(COMMANDS), name
            assert mappings[-1]["type"] == "from_text", name  # Rasa takes the first mapping that yields a value
    indicators = [s.slot for s in default_bridge().specs if s.is_indicator]
    for name in indicators:
        kinds = [(m["type"], m.get("intent"), m.get("value")) for m in domain["slots"][name]["mappings"]]
        assert kinds[:2] == [("from_intent", "affirm", True), ("from_intent", "deny", False)], name
    from assessment.vocab import STATUS_VI

    assert domain["slots"]["status"]["values"] == list(STATUS_VI)


def test_every_referenced_response_action_slot_and_intent_exists(domain: dict[str, Any]) -> None:
    from rasa_sdk.executor import ActionExecutor

    from bot.rasa_actions.actions import UTTER_AFTER_RESULT

    responses = set(domain["responses"])
    actions = set(domain["actions"])
    forms = set(domain["forms"])
    slots = set(domain["slots"]) | {"requested_slot"}
    intents = set(domain["intents"])
    defaults = {"action_listen", "action_deactivate_loop", "action_restart", "action_default_fallback"}
    # The package registers every custom action of the domain (the running server is checked for the exact set).
    executor = ActionExecutor()
    executor.register_package("bot.rasa_actions")
    assert actions <= {a.name for a in executor.list_actions()}
    assert UTTER_AFTER_RESULT in responses
    for step in _story_steps():
        if "action" in step:
            name = step["action"]
            assert name in responses or name in actions or name in forms or name in defaults, name
        if "intent" in step:
            assert step["intent"] in intents or step["intent"] == "nlu_fallback", step
        if "active_loop" in step:
            assert step["active_loop"] is None or step["active_loop"] in forms, step
        for item in step.get("slot_was_set", []):
            for name in item if isinstance(item, dict) else {item: None}:
                assert name in slots, name
    # Every form slot is asked: a response utter_ask_<slot>, or the action for the follow-up.
    for slot in domain["forms"][FORM]["required_slots"]:
        assert f"utter_ask_{slot}" in responses or f"action_ask_{slot}" in actions, slot
    for name, variants in domain["responses"].items():
        for variant in variants:
            assert rendered(variant["text"]).strip(), name
            for button in variant.get("buttons", []):
                payload = rendered(button["payload"])
                assert payload.startswith("/"), (name, payload)
                assert payload[1:].split("{", 1)[0] in intents, (name, payload)
    # Every intent is trained, and every trained intent is declared.
    examples = _examples(_load("data/nlu.yml"))
    assert set(examples) == intents
    entities = set(domain["entities"])
    for lines in examples.values():
        for line in lines:
            if "](" in line:
                assert line.split("](", 1)[1].split(")", 1)[0] in entities, line


def test_questions_are_the_engine_questions(domain: dict[str, Any]) -> None:
    # utter_ask_<slot> is the engine's own full question: same text, same numbered choices, same buttons.
    bridge = default_bridge()
    engine = bridge.engine
    on = dt.date.fromisoformat(PINNED)
    for spec in bridge.specs:
        [response] = domain["responses"][f"utter_ask_{spec.slot}"]
        q = bridge.qn.by_id[spec.question]
        if spec.is_indicator:
            label = q.choice_by_payload[str(spec.choice)].label
            assert f"Trong nhà có {label[0].lower()}{label[1:]} không?" == response["text"], spec.slot
            assert [b["payload"] for b in response["buttons"]] == ["/affirm", "/deny"]
            continue
        state = engine.new_state(dt.datetime(2026, 6, 1, 12))
        state.update(q=spec.question, answers={"consent": {"value": "anonymous"}})
        text, choices = engine.views.view(state, on, True)
        assert response["text"] == text, spec.slot
        assert [(b["title"], rendered(b["payload"])) for b in response.get("buttons", [])] == [
            (c.label, choose_payload(c.payload)) for c in choices
        ], spec.slot


def test_nlu_knows_the_engine_words(domain: dict[str, Any]) -> None:
    # The conversation words of the questionnaire are trained examples of the matching intents, so that Rasa's
    # NLU and our engine understand the same commands and yes/no words.
    qn = default_bridge().qn
    examples = {intent: {fold(x) for x in lines} for intent, lines in _examples(_load("data/nlu.yml")).items()}
    wanted = {
        "yes": {"affirm"},
        "no": {"deny"},
        "dont_know": {"dont_know"},
    }
    for key, intents in wanted.items():
        for word in qn.words[key]:
            if word in qn.ambiguous_keywords:
                continue
            assert any(word in examples[i] for i in intents), (key, word)
    by_action = {
        "restart": {"restart", "start_assessment"},
        "help": {"help"},
        "pause": {"pause"},
        "resume": {"resume"},
        "back": {"back"},
        "erase": {"erase"},
    }
    for word, action in qn.keyword_plain.items():
        if action not in by_action or word in qn.ambiguous_keywords:
            continue  # collaborator words ("liên kết", "hộ mới") mean nothing to a resident
        assert any(word in examples[i] for i in by_action[action]), (action, word)
    assert set(COMMANDS) <= set(domain["intents"])
