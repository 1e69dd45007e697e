"""Share-mode details, link codes and collaborator mode (issue D, conversation side).

Engine-level behaviour is mostly pinned by the transcripts (``share_details*``, ``link_code``,
``collaborator_*``); this module covers what needs more than a transcript: the hamlet list a commune keeps
(services / the pipeline's lookup), answer counts per mode, the core deriving the status from a member roster,
the loader's checks of the new keys, property tests in collaborator mode, and everything the store does with
the new events (link codes, provenance, the new assessment columns, erasure), on SQLite and, through
``TEST_DATABASE_URL``, on PostgreSQL.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.accounts.links import (
    CODE_VALIDITY,
    create_link_code,
    normalize_code,
    redeem_link_code,
)
from bot.conversation import (
    INTERNAL_KINDS,
    MAX_CHUNK,
    Engine,
    Inbound,
    QuestionnaireError,
    StepResult,
    hamlet_source,
    parse_questionnaire,
)
from bot.conversation.details import match_hamlet, normalize_phone, split_age_sex
from bot.conversation.questionnaire import DEFAULT_PATH
from bot.pipeline import (
    _INTERNAL_KINDS,
    PipelineConfig,
    PipelineResult,
    process_inbound,
)
from bot.store.db import Store
from bot.store.models import (
    Answer,
    Assessment,
    Hamlet,
    Identity,
    LinkCode,
    Provenance,
    User,
    UserRole,
    UserScope,
)

ON = dt.date(2026, 6, 1)
T0 = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
NOW = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)
CONFIG = PipelineConfig(pseudonym_key="test-key")
ENGINE = Engine(today=ON)
HAMLETS = ["Ấp Phú Lợi", "Ấp Tân Hòa", "Khóm 3"]
LINKED = json.dumps({"user_id": 7, "name": "Lê Thị Cộng", "communes": ["29971"]})

# The rest of the typical 4-person household of tests/test_engine.py, after the commune.
QUICK_REST = ("4", "2", "0", "8 triệu", "không", "2", "45", "2", "1", "1,4,6", "1", "đúng")
# A 4-member roster: man 45 (wage work without contract), woman 42 (no health insurance, farming), boy 15 and
# girl 8 at school, the girl receiving a monthly social allowance.
ROSTER = (
    "4",
    "nam 45", "có", "2", "không",
    "nữ 42", "không", "4", "không",
    "nam 15", "có", "không", "có", "không",
    "nữ 8", "có", "không", "có", "1",
)  # fmt: skip
DETAILED_REST = ("5 triệu", "2", "45", "5", "1", "1,4,6", "1", "đúng")


class Chat:
    """One conversation against the engine, with the invariants every step must keep."""

    def __init__(self, engine: Engine = ENGINE) -> None:
        self.engine = engine
        self.state: dict[str, Any] | None = None
        self.now = T0
        self.events: list[dict[str, Any]] = []
        self.last: StepResult | None = None

    def send(self, inbound: Inbound) -> StepResult:
        before = copy.deepcopy(self.state)
        res = self.engine.step(self.state, inbound, self.now)
        assert self.state == before, "step() must not modify the state it was given"
        assert res.messages and all(m.text.strip() and len(m.text) <= MAX_CHUNK for m in res.messages)
        assert json.loads(json.dumps(res.state)) == res.state
        self.state, self.last = res.state, res
        self.events.extend(res.events)
        self.now += dt.timedelta(seconds=30)
        return res

    def say(self, *texts: str) -> StepResult:
        res = None
        for text in texts:
            res = self.send(Inbound(text=text))
        assert res is not None
        return res

    def tap(self, payload: str) -> StepResult:
        return self.send(Inbound(payload=payload, kind="payload"))

    def link(self, payload: str = LINKED) -> StepResult:
        self.say("liên kết 12345678")
        return self.send(Inbound(kind="linked", payload=payload))

    @property
    def text(self) -> str:
        assert self.last is not None
        return "\n".join(m.text for m in self.last.messages)

    @property
    def buttons(self) -> list[str]:
        assert self.last is not None
        return [c.payload for m in self.last.messages for c in m.choices]

    def answers(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "answer"]

    def assessment(self) -> dict[str, Any]:
        return next(e for e in reversed(self.events) if e["type"] == "assessment")


# ----------------------------------------------------------------------------------------------------------------
# Share-mode details: the hamlet list, phone numbers, names


def test_hamlets_the_commune_keeps_are_offered_as_numbered_choices() -> None:
    asked: list[str] = []

    def hamlets(code: str) -> list[str]:
        asked.append(code)
        return HAMLETS

    chat = Chat(Engine(ENGINE.qn, today=ON, services=ENGINE.services.replace(hamlets=hamlets)))
    chat.say("chào", "2", "thuong phuoc 1", "đúng")
    assert asked == ["29971"]
    assert "1. Ấp Phú Lợi\n2. Ấp Tân Hòa\n3. Khóm 3" in chat.text
    assert {"hamlet:1", "hamlet:2", "hamlet:3", "hamlet:skip"} <= set(chat.buttons)
    chat.say("9")
    assert chat.last is not None and chat.last.question_id == "hamlet"
    assert "Bạn chọn một số từ 1 đến 3, hoặc gõ tên ấp, khóm, thôn." in chat.text
    chat.say("tan hoa")  # the name without the "ấp" and without accents
    assert chat.state is not None and chat.state["answers"]["hamlet"]["value"] == "Ấp Tân Hòa"
    chat.say("quay lại")
    chat.tap("hamlet:3")
    assert chat.state["answers"]["hamlet"]["value"] == "Khóm 3"
    chat.say("quay lại", "Xóm Mới")  # not on the list: kept as typed (officials may add it)
    assert chat.state["answers"]["hamlet"]["value"] == "Xóm Mới"
    chat.say("quay lại", "2")
    assert chat.state["answers"]["hamlet"]["value"] == "Ấp Tân Hòa"


def test_the_default_hamlet_source_is_what_the_caller_installs_for_the_step() -> None:
    chat = Chat()
    chat.say("chào", "2", "thuong phuoc 1")
    with hamlet_source(lambda code: HAMLETS if code == "29971" else []):
        chat.say("đúng")
    assert "2. Ấp Tân Hòa" in chat.text
    chat.say("2")  # read against the list shown, kept in the state (no source needed any more)
    assert chat.state is not None and chat.state["answers"]["hamlet"]["value"] == "Ấp Tân Hòa"
    chat.say("quay lại")  # without a source the question is asked as free text
    assert "Ấp Tân Hòa" not in chat.text and chat.buttons == ["hamlet:skip"]


def test_no_hamlet_list_when_the_commune_is_not_known() -> None:
    chat = Chat(Engine(ENGINE.qn, today=ON, services=ENGINE.services.replace(hamlets=lambda code: HAMLETS)))
    chat.say("chào", "2", "không biết", "xã")
    assert chat.last is not None and chat.last.question_id == "hamlet"
    assert "Ấp Phú Lợi" not in chat.text


@pytest.mark.parametrize(
    ("typed", "phone"),
    [
        ("0912345678", "0912345678"),
        ("0912 345 678", "0912345678"),
        ("091.234.5678", "0912345678"),
        ("+84 912 345 678", "0912345678"),
        ("84912345678", "0912345678"),
        ("(+84) 386-123-456", "0386123456"),
        ("0312345678", None),  # 031 is not a mobile prefix
        ("0212345678", None),  # landline
        ("091234567", None),  # 9 digits
        ("09123456789", None),
        ("số 0912345678", None),
        ("", None),
    ],
)
def test_phone_numbers(typed: str, phone: str | None) -> None:
    assert normalize_phone(typed) == phone


@pytest.mark.parametrize(
    ("typed", "rest", "sex"),
    [
        ("nam 45", "45", "male"),
        ("45 nữ", "45", "female"),
        ("45 nu", "45", "female"),
        ("15 tuổi nam", "15", "male"),
        ("15 tuoi nam", "15", "male"),
        ("con gái 8", "8", "female"),
        ("bốn mươi lăm nam", "bốn mươi lăm", "male"),
        ("45", "45", None),
        ("năm", "năm", None),  # five, not male
        ("nam", "", "male"),  # no accent anywhere: male, and no age
        ("nam nữ 30", "nam nữ 30", None),
    ],
)
def test_age_and_sex_in_one_reply(typed: str, rest: str, sex: str | None) -> None:
    from bot.conversation.questionnaire import normalize

    text = normalize(typed)
    assert split_age_sex(text, accented=any(ord(c) > 127 for c in text)) == (rest, sex)


def test_hamlet_names_match_without_prefix_or_accents() -> None:
    assert match_hamlet("ap phu loi", HAMLETS) == "Ấp Phú Lợi"
    assert match_hamlet("phu loi", HAMLETS) == "Ấp Phú Lợi"
    assert match_hamlet("khom 3", HAMLETS) == "Khóm 3"
    assert match_hamlet("3", HAMLETS) == "Khóm 3"
    assert match_hamlet("3", ["Ấp 3", "Khóm 3"]) is None  # two hamlets numbered 3: no guess
    assert match_hamlet("tan phu", HAMLETS) is None


# ----------------------------------------------------------------------------------------------------------------
# Answer counts and results per mode


def test_answers_needed_in_each_mode() -> None:
    """Quick self mode stays within 15 messages; share mode adds at most the 3 optional details."""
    anonymous = Chat()
    anonymous.say("xin chào", "1", "thuong phuoc 1", "đúng", *QUICK_REST)
    assert len(anonymous.answers()) == 12  # 15 messages with consent, the commune confirmation and "đúng"

    share = Chat()
    share.say("xin chào", "2", "thuong phuoc 1", "đúng", "bỏ qua", "bỏ qua", "bỏ qua", *QUICK_REST)
    assert len(share.answers()) == 15
    assert share.assessment()["result"]["status"] == anonymous.assessment()["result"]["status"]

    quick = Chat()
    quick.link()
    quick.say("hộ mới", "1", "thuong phuoc 1", "đúng", "Ấp 3", "Nguyễn Văn Hộ", "bỏ qua", *QUICK_REST)
    assert len(quick.answers()) == 16  # entry + commune + 3 details + the 11 of the quick form

    detailed = Chat()
    detailed.link()
    detailed.say("hộ mới", "2", "thuong phuoc 1", "đúng", "Ấp 3", "Nguyễn Văn Hộ", "bỏ qua", *ROSTER)
    # 19 replies for 4 members (count, then 4 + 4 + 5 + 5), recorded as one answer.
    assert len(ROSTER) == 19
    detailed.say(*DETAILED_REST)
    assert len(detailed.answers()) == 13
    assert detailed.last is not None and detailed.last.done


def test_detailed_mode_gives_the_status_the_core_computes_from_the_members() -> None:
    assessment = pytest.importorskip("assessment")
    chat = Chat()
    chat.link()
    chat.say("hộ mới", "2", "thuong phuoc 1", "đúng", "Ấp 3", "Nguyễn Văn Hộ", "bỏ qua", *ROSTER, *DETAILED_REST)
    event = chat.assessment()
    data = event["input"]
    assert [m["age"] for m in data["members"]] == [45, 42, 15, 8]
    # No quick flag is sent: an explicit flag would win over the roster in the core.
    for name in ("household_size", "dependants", "member_6plus_without_health_insurance", "children_under_16"):
        assert name not in data
    expected = assessment.assess(data, on=ON).to_dict()
    assert event["result"]["status"] == expected["status"] == "poor"
    assert set(expected["deprivations"]) >= {"employment", "health_insurance"}
    assert expected["household_size"] == 4
    # The same household in quick mode, its flags answered by hand, gets the same status.
    quick = Chat()
    quick.link()
    quick.say("hộ mới", "1", "thuong phuoc 1", "đúng", "Ấp 3", "Nguyễn Văn Hộ", "bỏ qua")
    quick.say("4", "2", "1", "5 triệu", "1,2", "2", "45", "5", "1", "1,4,6", "1", "đúng")
    assert quick.assessment()["result"]["status"] == "poor"


def test_roster_corrections_and_bounds() -> None:
    chat = Chat()
    chat.link()
    chat.say("hộ mới", "2", "không biết", "xã", "Ấp 3", "Nguyễn Văn Hộ", "bỏ qua")
    chat.say("0")
    assert "Hộ phải có ít nhất 1 người." in chat.text
    chat.say("1", "nam")
    assert "Bạn gõ tuổi là một số" in chat.text
    chat.say("200")
    assert "Tuổi có vẻ quá lớn" in chat.text
    chat.say("bảy mươi", "nữ")  # words for numbers; no work question at 70 (above the working ages asked)
    assert "Người thứ 1/1 (nữ, 70 tuổi):" in chat.text and "BHYT" in chat.text
    chat.say("trợ giúp")
    assert "Tính mọi loại thẻ BHYT" in chat.text  # the member question's own help
    chat.say("có", "1,2")
    assert chat.state is not None
    assert chat.state["answers"]["members"]["value"] == [
        {"age": 70, "sex": "female", "health_insurance": True, "monthly_social_allowance": True, "disability": True}
    ]
    chat.say("6 triệu", "1", "40", "1", "1", "1,4,6", "1")
    assert "Thành viên: 1 người: nữ 70" in chat.text
    chat.say("sửa câu 7")  # the roster is answered again from its count
    assert chat.last is not None and chat.last.question_id == "members" and "Hộ có bao nhiêu người?" in chat.text


# ----------------------------------------------------------------------------------------------------------------
# The questionnaire file: the new keys are checked at load


def _raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def _q(data: dict[str, Any], qid: str) -> dict[str, Any]:
    return next(q for q in data["questions"] if q["id"] == qid)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _q(d, "hamlet").update(household="address"), "question 'hamlet': text, phone and hamlet"),
        (lambda d: _q(d, "water").update(household="hamlet"), "question 'water': text, phone and hamlet"),
        (lambda d: _q(d, "water").update(optional=True), "only text, phone and hamlet questions can be optional"),
        (lambda d: _q(d, "phone").update(required_if={"collaborator": True}, optional=False), "required_if is for"),
        (lambda d: _q(d, "hamlet").update(fills="area"), "fills nothing"),
        (lambda d: _q(d, "entry").update(ask_if={"collaborator": "yes"}), "'collaborator' stands alone"),
        (lambda d: _q(d, "members").update(roster=["member_age", "water"]), "'water', which is not a member"),
        (lambda d: _q(d, "members").update(roster=["member_sex", "member_age"]), "a roster starts with the member's age"),
        (lambda d: _q(d, "member_work").update(member={"field": "job"}), "member field 'job'"),
        (lambda d: _q(d, "member_work")["choices"][0].update(payload="salaried"), "choice 'salaried'"),
        (lambda d: _q(d, "member_special")["choices"][0].update(sets="pension"), "sets 'pension'"),
        (lambda d: _q(d, "members")["roster"].remove("member_work"), "question 'member_work': a member question"),
        (lambda d: d["messages"].update(collab_new="Hộ {x}"), "messages.collab_new: unknown placeholder(s) {x}"),
        (lambda d: d["keywords"].pop("new_household"), "missing 'new_household'"),
    ],
)
def test_loader_rejects_defects_of_the_new_keys(mutate: Any, message: str) -> None:
    data = _raw()
    mutate(data)
    with pytest.raises(QuestionnaireError) as info:
        parse_questionnaire(data, source="questionnaire.yaml")
    assert message in str(info.value)


def test_pipeline_and_engine_agree_on_the_internal_kinds() -> None:
    assert _INTERNAL_KINDS == INTERNAL_KINDS


# ----------------------------------------------------------------------------------------------------------------
# Property tests in collaborator mode


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def errors() -> Iterator[_Errors]:
    handler = _Errors()
    logger = logging.getLogger("bot.conversation")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


COLLAB_TEXTS = [
    "hộ mới", "ho moi", "danh sách", "tạm dừng", "dừng", "tiếp tục", "tiếp tục 1", "tiếp tục 2", "tiep tuc 9",
    "hủy liên kết", "liên kết", "liên kết 12345678", "12345678", "1234 5678", "làm lại", "quay lại", "trợ giúp",
    "xóa dữ liệu", "có", "không", "đúng", "1", "2", "3", "4", "0", "nam 45", "nữ 8", "15", "bỏ qua",
    "Ấp Phú Lợi", "Nguyễn Văn An", "0912345678", "thuong phuoc 1", "không biết", "xã", "5 triệu", "1,4,6",
    "sửa câu 6", "99", "", "🙂",
]  # fmt: skip
COLLAB_PAYLOADS = [
    "collab:new", "collab:list", "collab:h1", "collab:h2", "collab:self", "collab:zzz", "cmd:new_household",
    "cmd:households", "cmd:unlink", "cmd:restart", "hamlet:skip", "hamlet:1", "hamlet:99", "phone:skip",
    "entry:detailed", "members.roster.1.member_insurance:yes", "members.roster.1.member_sex:female",
    "members.roster.2.member_special:none", "summary:ok", "erase:yes", "erase:no",
]  # fmt: skip
internal_payloads = st.one_of(
    st.just(LINKED),
    st.just(json.dumps({"user_id": 8, "name": "Người Khác"})),
    st.text(max_size=20),
    st.none(),
    st.builds(
        lambda uid, name, communes: json.dumps({"user_id": uid, "name": name, "communes": communes}),
        st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=3)),
        st.one_of(st.text(max_size=10), st.none(), st.integers()),
        st.one_of(st.lists(st.text(max_size=5), max_size=3), st.text(max_size=3), st.none()),
    ),
)
collab_inbounds = st.one_of(
    st.builds(lambda t: Inbound(text=t), st.sampled_from(COLLAB_TEXTS)),
    st.builds(lambda t: Inbound(text=t), st.text(max_size=30)),
    st.builds(lambda p: Inbound(payload=p, kind="payload"), st.sampled_from(COLLAB_PAYLOADS)),
    st.builds(lambda k, p: Inbound(kind=k, payload=p), st.sampled_from(sorted(INTERNAL_KINDS)), internal_payloads),
    st.builds(lambda k: Inbound(kind=k), st.sampled_from(["media", "follow", "unfollow"])),
)


def _collab_start_states() -> list[dict[str, Any]]:
    """Linked states at several points: idle, in a household, inside the roster, with households set aside."""
    chat = Chat(Engine(ENGINE.qn, today=ON, services=ENGINE.services.replace(hamlets=lambda code: HAMLETS)))
    states = []
    chat.link()
    states.append(chat.state)
    chat.say("hộ mới", "1", "thuong phuoc 1", "đúng", "2", "Trần Văn Một")
    states.append(chat.state)
    chat.say("hộ mới", "2", "không biết", "xã", "Ấp 3", "Lê Hai", "bỏ qua", "3", "nam 45", "có")
    states.append(chat.state)
    chat.say("tạm dừng")
    states.append(chat.state)
    chat.say("tiếp tục 2", "2", "không", "nữ 8")
    states.append(chat.state)
    return [copy.deepcopy(s) for s in states if s is not None]


COLLAB_STATES = _collab_start_states()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(range(len(COLLAB_STATES))), st.lists(collab_inbounds, max_size=40))
def test_any_message_sequence_in_collaborator_mode_is_handled(
    errors: _Errors, start: int, sequence: list[Inbound]
) -> None:
    errors.records.clear()
    state: dict[str, Any] | None = copy.deepcopy(COLLAB_STATES[start])
    now = T0
    for inbound in sequence:
        now += dt.timedelta(minutes=7)
        res = ENGINE.step(state, inbound, now)
        assert res.messages and all(m.text and len(m.text) <= MAX_CHUNK for m in res.messages)
        assert json.loads(json.dumps(res.state)) == res.state
        json.dumps(res.events)
        assert res.question_id is None or res.question_id in ENGINE.qn.by_id
        for event in res.events:
            if event["type"] in ("answer", "assessment") and res.state.get("hh"):
                assert event.get("provenance") == "collaborator"
        state = res.state
    assert not errors.records, [r.getMessage() for r in errors.records]


_damage = st.one_of(
    st.none(), st.integers(-2, 30), st.text(max_size=6), st.booleans(),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.sampled_from(["key", "n", "q", "x"]), st.integers(0, 3)),
)  # fmt: skip
_PATHS = [
    ("collab",), ("collab", "user_id"), ("collab", "name"), ("collab", "paused"), ("collab", "seq"),
    ("collab", "paused", 0), ("collab", "paused", 0, "q"), ("collab", "paused", 0, "answers"),
    ("collab", "paused", 0, "hh"), ("hh",), ("hh", "n"), ("offer",), ("offer", "options"), ("link_guard",),
    ("link_guard", "fails"), ("sub", "n"), ("sub", "i"), ("sub", "at"), ("sub", "members"), ("sub", "trail"),
    ("sub", "members", 0), ("sub", "members", 0, "age"), ("sub", "trail", 0), ("answers", "members", "value"),
    ("answers", "consent"), ("answers", "hamlet", "value"), ("answers", "phone", "value"),
]  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(range(len(COLLAB_STATES))),
    st.lists(st.tuples(st.sampled_from(_PATHS), _damage), max_size=3),
    collab_inbounds,
)
def test_damaged_collaborator_states_never_break_a_step(
    errors: _Errors, start: int, damage: list[tuple[tuple[Any, ...], Any]], inbound: Inbound
) -> None:
    errors.records.clear()
    state = copy.deepcopy(COLLAB_STATES[start])
    for path, value in damage:
        target: Any = state
        for key in path[:-1]:
            if isinstance(target, dict) and key in target or isinstance(target, list) and isinstance(key, int) and key < len(target):
                target = target[key]
            else:
                target = None
                break
        last = path[-1]
        if isinstance(target, dict) or isinstance(target, list) and isinstance(last, int) and last < len(target):
            target[last] = value
    res = ENGINE.step(state, inbound, T0)
    assert res.messages and all(len(m.text) <= MAX_CHUNK for m in res.messages)
    assert json.loads(json.dumps(res.state)) == res.state
    # Whatever the damage, the next message is handled too.
    again = ENGINE.step(res.state, Inbound(text="danh sách"), T0)
    assert again.messages
    assert not errors.records, [r.getMessage() for r in errors.records]


# ----------------------------------------------------------------------------------------------------------------
# The store: link codes, provenance, the new columns, erasure (also on PostgreSQL)



def _user(
    store: Store, username: str = "ctv1", *, name: str = "Lê Thị Cộng", active: bool = True, communes: tuple = ()
) -> int:
    with store.sessions() as session:
        user = User(
            username=username,
            password_hash="not-a-real-hash",
            full_name=name,
            role=UserRole.COLLABORATOR,
            active=active,
        )
        session.add(user)
        session.flush()
        for code in communes:
            session.add(UserScope(user_id=user.id, commune_code=code))
        session.commit()
        return user.id


def _code(store: Store, user_id: int, now: dt.datetime = NOW) -> str:
    with store.sessions() as session:
        code = create_link_code(session, session.get(User, user_id), now)  # type: ignore[arg-type]
        session.commit()
        return code


def send(
    store: Store, *texts: str, user: str = "zalo-ctv", now: dt.datetime = NOW, channel: str = "zalo_oa"
) -> PipelineResult:
    result = None
    for i, text in enumerate(texts):
        with store.sessions() as session:
            result = process_inbound(
                session,
                channel,
                user,
                None,
                Inbound(text=text),
                now + dt.timedelta(seconds=i),
                engine=ENGINE,
                config=CONFIG,
            )
    assert result is not None
    return result


def text_of(result: PipelineResult) -> str:
    return "\n".join(m["text"] for m in result.messages)


def _identity(session: Session, user: str = "zalo-ctv", channel: str = "zalo_oa") -> Identity:
    from bot.store.repository import pseudonymise

    return session.execute(
        select(Identity).where(Identity.user_hash == pseudonymise("test-key", channel, user))
    ).scalar_one()


@pytest.mark.db
def test_link_code_is_stored_hashed_and_links_the_chat_once(store: Store) -> None:
    user_id = _user(store, communes=("29971",))
    code = _code(store, user_id)
    assert len(code) == 8 and code.isdigit()
    with store.sessions() as session:
        row = session.execute(select(LinkCode)).scalar_one()
        assert row.code_hash == hashlib.sha256(code.encode()).hexdigest() and row.used_at is None
        assert row.expires_at - row.created_at == CODE_VALIDITY
    result = send(store, f"liên kết {code[:4]} {code[4:]}")
    assert "Đã liên kết với tài khoản cộng tác viên: Lê Thị Cộng" in text_of(result)
    assert [c["payload"] for c in result.messages[-1]["choices"]] == ["collab:new", "collab:list"]
    with store.sessions() as session:
        identity = _identity(session)
        assert identity.user_id == user_id
        row = session.execute(select(LinkCode)).scalar_one()
        assert row.used_at is not None and row.identity_id == identity.id
    # Used once: another chat cannot use it again.
    again = send(store, code, user="zalo-other")
    assert "Mã liên kết không đúng, đã hết hạn" in text_of(again)
    with store.sessions() as session:
        assert _identity(session, "zalo-other").user_id is None


@pytest.mark.db
def test_wrong_expired_and_retired_codes_link_nothing(store: Store) -> None:
    user_id = _user(store)
    first = _code(store, user_id)
    second = _code(store, user_id, NOW + dt.timedelta(minutes=1))  # making a new code retires the first
    later = NOW + dt.timedelta(minutes=2)
    assert "Mã liên kết không đúng" in text_of(send(store, f"liên kết {first}", user="a", now=later))
    wrong = f"{(int(second) + 1) % 10**8:08d}"
    assert "Mã liên kết không đúng" in text_of(send(store, f"liên kết {wrong}", user="b"))
    late = NOW + dt.timedelta(minutes=1) + CODE_VALIDITY + dt.timedelta(seconds=1)
    assert "Mã liên kết không đúng" in text_of(send(store, f"liên kết {second}", user="c", now=late))
    assert "Đã liên kết" in text_of(send(store, f"liên kết {second}", user="d", now=late - dt.timedelta(minutes=2)))
    with store.sessions() as session:
        linked = session.execute(select(Identity.user_id).where(Identity.user_id.is_not(None))).scalars().all()
        assert linked == [user_id]


@pytest.mark.db
def test_a_deactivated_account_cannot_be_linked(store: Store) -> None:
    user_id = _user(store, active=False)
    code = _code(store, user_id)
    assert "Mã liên kết không đúng" in text_of(send(store, code))
    with store.sessions() as session:
        assert redeem_link_code(session, "not a code", 1, NOW) is None
        assert normalize_code("1234-5678") == "12345678" and normalize_code("1234567") is None
        assert _identity(session).user_id is None


@pytest.mark.db
def test_internal_kinds_from_a_channel_are_not_trusted(store: Store) -> None:
    user_id = _user(store)
    with store.sessions() as session:
        process_inbound(
            session,
            "web",
            "intruder",
            None,
            Inbound(kind="linked", payload=json.dumps({"user_id": user_id, "name": "x"})),
            NOW,
            engine=ENGINE,
            config=CONFIG,
        )
    with store.sessions() as session:
        identity = _identity(session, "intruder", "web")
        assert identity.user_id is None
        from bot.store.models import Conversation

        states = session.execute(select(Conversation.state)).scalars().all()
        assert all(not (s or {}).get("collab") for s in states)


def _quick_household(store: Store, *, user: str = "zalo-ctv") -> PipelineResult:
    return send(
        store,
        "hộ mới",
        "1",
        "thuong phuoc 1",
        "đúng",
        "2",
        "Nguyễn Văn Hộ",
        "0912 345 678",
        *QUICK_REST,
        user=user,
    )


@pytest.mark.db
def test_collaborator_households_are_recorded_as_theirs_shared_and_with_details(store: Store) -> None:
    user_id = _user(store, communes=("29971",))
    with store.sessions() as session:
        session.add_all([Hamlet(commune_code="29971", name=name) for name in ("Ấp Tân Hòa", "Ấp Phú Lợi", "Khóm 3")])
        session.commit()
    send(store, f"liên kết {_code(store, user_id)}")
    result = _quick_household(store)
    assert result.done and "Đã lưu kết quả của hộ số 1: Nguyễn Văn Hộ, Ấp Tân Hòa" in text_of(result)
    with store.sessions() as session:
        answers = session.execute(select(Answer)).scalars().all()
        assert answers and {(a.provenance, a.collaborator_name) for a in answers} == {
            (Provenance.COLLABORATOR, "Lê Thị Cộng")
        }
        hamlet_answer = next(a for a in answers if a.question_id == "hamlet")
        assert hamlet_answer.value == "Ấp Tân Hòa"  # "2" on the list, sorted Ấp Phú Lợi, Ấp Tân Hòa, Khóm 3
        record = session.execute(select(Assessment)).scalar_one()
        assert record.provenance is Provenance.COLLABORATOR and record.collaborator_user_id == user_id
        assert record.shared is True
        assert (record.hamlet, record.household_head, record.phone) == ("Ấp Tân Hòa", "Nguyễn Văn Hộ", "0912345678")
        assert record.identity_id is None  # the household, not the collaborator's chat, is its subject
        assert record.conversation_id is not None
        assert record.input is not None and "household_head" not in json.dumps(record.input)
    # The collaborator erasing their own chat does not erase the households they entered for the commune.
    send(store, "xóa dữ liệu", "có")
    with store.sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert record.input is not None and record.household_head == "Nguyễn Văn Hộ"
        assert _identity(session).user_id is None  # and the link is gone with the chat's data


@pytest.mark.db
def test_two_households_in_progress_survive_between_messages(store: Store) -> None:
    user_id = _user(store)
    send(store, f"liên kết {_code(store, user_id)}")
    send(store, "hộ mới", "1", "không biết", "xã", "Ấp 1", "Trần Văn Một", "tạm dừng")
    send(store, "hộ mới", "2", "không biết", "phường", "Khóm 2", "Lê Thị Hai", "bỏ qua", "2", "nữ 30")
    listed = send(store, "danh sách")
    assert "• hộ số 1: Trần Văn Một, Ấp 1" in text_of(listed)
    resumed = send(store, "tiếp tục 1")
    assert resumed.question_id == "phone"
    back = send(store, "tiếp tục 2")
    assert back.question_id == "members" and "Người thứ 1/2 (nữ, 30 tuổi):" in text_of(back)


@pytest.mark.db
def test_unlinking_in_the_chat_or_on_the_web_ends_collaborator_mode(store: Store) -> None:
    user_id = _user(store)
    send(store, f"liên kết {_code(store, user_id)}")
    result = send(store, "hủy liên kết")
    assert "Đã hủy liên kết" in text_of(result)
    with store.sessions() as session:
        assert _identity(session).user_id is None
    # Linked again, then the link removed on the web: the next message says so and credits nobody.
    send(store, f"liên kết {_code(store, user_id, NOW + dt.timedelta(minutes=2))}", now=NOW + dt.timedelta(minutes=2))
    send(store, "hộ mới", "1")
    with store.sessions() as session:
        session.execute(update(Identity).values(user_id=None))
        session.commit()
    result = send(store, "thuong phuoc 1", now=NOW + dt.timedelta(minutes=5))
    assert "Đã hủy liên kết tài khoản cộng tác viên" in text_of(result)
    assert result.question_id is None  # the household is dropped with the link
    with store.sessions() as session:
        from bot.store.models import Conversation

        state = session.execute(select(Conversation.state).order_by(Conversation.id.desc())).scalars().first()
        assert state is not None and state.get("collab") is None and state.get("hh") is None


@pytest.mark.db
def test_share_mode_details_are_stored_and_erased(store: Store) -> None:
    with store.sessions() as session:
        session.add(Hamlet(commune_code="29971", name="Ấp Phú Lợi"))
        session.commit()
    result = send(store, "chào", "2", "thuong phuoc 1", "đúng", user="resident")
    assert "1. Ấp Phú Lợi" in text_of(result)
    send(store, "ap phu loi", "Trần Thị Bé", "0987 654 321", *QUICK_REST, user="resident")
    with store.sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert record.shared is True and record.provenance is Provenance.SELF
        assert (record.hamlet, record.household_head, record.phone) == ("Ấp Phú Lợi", "Trần Thị Bé", "0987654321")
        assert record.identity_id == _identity(session, "resident").id
    send(store, "xóa dữ liệu", "có", user="resident")
    with store.sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert (record.hamlet, record.household_head, record.phone) == (None, None, None)
        assert record.input is None and record.erased_at is not None


@pytest.mark.db
def test_anonymous_results_keep_no_personal_details(store: Store) -> None:
    """Even if an engine sent details with an anonymous result, the store drops them."""

    class Leaky:
        questionnaire_version = "leaky-1"

        def step(self, state: Any, inbound: Any, now: Any) -> Any:
            res = ENGINE.step(state, inbound, now)
            for event in res.events:
                if event["type"] == "assessment":
                    event["household"] = {"hamlet": "Ấp 1", "household_head": "Tên", "phone": "0912345678"}
            return res

    with store.sessions() as session:
        for i, text in enumerate(("chào", "1", "thuong phuoc 1", "đúng", *QUICK_REST)):
            process_inbound(session, "web", "anon", None, Inbound(text=text), NOW + dt.timedelta(seconds=i),
                            engine=Leaky(), config=CONFIG)  # fmt: skip
    with store.sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert record.shared is False
        assert (record.hamlet, record.household_head, record.phone) == (None, None, None)
