"""Property tests of the conversation engine: whatever users send, in any order, the engine holds up.

For any sequence of up to 50 messages (typed text from all of Unicode, likely answers, commands, button
payloads, stickers and images, follow/unfollow, and clock jumps) every step must: not raise, not log an error,
answer with at least one message of at most 2,000 characters, and return a state that survives a JSON round
trip, so the store can save it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.conversation import MAX_CHUNK, Engine, Inbound

ENGINE = Engine(today=dt.date(2026, 6, 1))
T0 = dt.datetime(2026, 6, 1, 9, 0)

LIKELY = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "10",
    "0",
    "200",
    "-1",
    "1,3",
    "1,4,6",
    "13",
    "không",
    "có",
    "đúng",
    "dung",
    "không đúng",
    "ok",
    "thuong phuoc 1",
    "Thường Phước",
    "tan hoa",
    "không biết",
    "phường",
    "5 triệu",
    "1tr5",
    "60 triệu một năm",
    "200k/ngày",
    "tính giúp",
    "5x8",
    "40m2",
    "sửa câu 2",
    "sửa câu 99",
    "3",
    "xem kết quả",
    "bắt đầu",
    "làm lại",
    "quay lại",
    "trợ giúp",
    "dừng",
    "dừng",
    "tiếp tục",
    "xóa dữ liệu",
    "xoa du lieu",
    "/start",
    "/unknown",
    "",
    "   ",
    "🙂",
    "a" * 5000,
]
PAYLOADS = [
    "consent:anonymous",
    "consent:share",
    "consent:decline",
    "commune.confirm:yes",
    "commune.confirm:no",
    "commune.pick:none",
    "commune.pick:29971",
    "income:helper",
    "income.sources:none",
    "income.sources:year",
    "income.sources:yes",
    "income.confirm:no",
    "hardships:none",
    "water:piped",
    "summary:ok",
    "erase:yes",
    "erase:no",
    "expired:resume",
    "expired:restart",
    "cmd:restart",
    "cmd:resume",
    "cmd:back",
    "cmd:erase",
    "children:none",
    "devices:none",
    ":",
    "x:y:z",
    "",
]

inbounds = st.one_of(
    st.builds(lambda t: Inbound(text=t), st.sampled_from(LIKELY)),
    st.builds(lambda t: Inbound(text=t), st.text(max_size=60)),
    st.builds(lambda p: Inbound(payload=p, kind="payload"), st.sampled_from(PAYLOADS)),
    st.builds(lambda p: Inbound(payload=p, kind="payload"), st.text(max_size=30)),
    st.builds(lambda k: Inbound(kind=k), st.sampled_from(["media", "sticker", "unsupported", "follow", "unfollow"])),
    st.builds(
        lambda t, p, k: Inbound(text=t, payload=p, kind=k),
        st.none() | st.text(max_size=10),
        st.none() | st.text(max_size=10),
        st.text(max_size=8),
    ),
)
waits = st.sampled_from([0, 0, 0, 30, 3600, 8 * 86400])
messages = st.lists(st.tuples(inbounds, waits), max_size=50)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def errors() -> Any:
    handler = _Errors()
    logger = logging.getLogger("bot.conversation")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages)
def test_any_message_sequence_is_handled(errors: _Errors, sequence: list[tuple[Inbound, int]]) -> None:
    errors.records.clear()
    state: dict[str, Any] | None = None
    now = T0
    for inbound, wait in sequence:
        now += dt.timedelta(seconds=wait)
        res = ENGINE.step(state, inbound, now)
        assert res.messages, inbound
        assert all(isinstance(m.text, str) and m.text and len(m.text) <= MAX_CHUNK for m in res.messages)
        assert json.loads(json.dumps(res.state)) == res.state
        json.dumps(res.events)
        json.dumps(res.assessment)
        assert res.question_id is None or res.question_id in ENGINE.qn.by_id
        state = res.state
    assert not errors.records, [r.getMessage() for r in errors.records]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(LIKELY[:40]), min_size=1, max_size=50))
def test_likely_answers_reach_deep_states_without_errors(errors: _Errors, texts: list[str]) -> None:
    """Biased towards valid answers, so the summary, the result and corrections are reached often."""
    errors.records.clear()
    state: dict[str, Any] | None = None
    for text in [
        "xin chào",
        "1",
        "không biết",
        "2",
        "4",
        "2",
        "0",
        "5 triệu",
        "không",
        "1",
        "40",
        "1",
        "1",
        "1",
    ] + texts:
        res = ENGINE.step(state, Inbound(text=text), T0)
        assert res.messages
        assert json.loads(json.dumps(res.state)) == res.state
        state = res.state
    assert not errors.records, [r.getMessage() for r in errors.records]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _valid_states() -> list[dict[str, Any]]:
    """States at several points of a conversation, to be damaged by the test below."""
    states = []
    state: dict[str, Any] | None = None
    script = [
        "chào",
        "1",
        "thuong phuoc 1",
        "đúng",
        "4",
        "2",
        "0",
        "tính giúp",
        "1,6",
        "20 triệu",
        "1",
        "3 triệu",
        "đúng",
        "không",
        "2",
        "45",
        "2",
        "1",
        "1,4,6",
        "1",
        "đúng",
    ]
    for text in script:
        state = ENGINE.step(state, Inbound(text=text), T0).state
        states.append(state)
    return states


VALID_STATES = _valid_states()


#: Plausible-looking damage (small integers, short strings) finds more than arbitrary JSON: an index one past
#: the end, a payload that no longer exists.
damage_values = st.one_of(
    st.integers(-3, 12), st.sampled_from(["", "x", "crops", "none", "amount", "total"]), json_values
)
_PARTS = [
    "q",
    "sub",
    "overlay",
    "answers",
    "history",
    "mode",
    "tries",
    "done",
    "result",
    "updated_at",
    "qv",
    "expired_days",
    "answers.*",
    "answers.*.value",
    "sub.*",
    "history.*",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(range(len(VALID_STATES))),
    st.lists(st.tuples(st.sampled_from(_PARTS), st.integers(0, 20), damage_values), max_size=4),
    inbounds,
)
def test_damaged_saved_states_never_break_a_step(
    errors: _Errors, index: int, damage: list[tuple[str, int, Any]], inbound: Inbound
) -> None:
    """A state saved by an older version, edited by hand or truncated must still get an answer, not an error."""
    errors.records.clear()
    state = json.loads(json.dumps(VALID_STATES[index]))
    for part, pick, value in damage:
        head, _, rest = part.partition(".")
        container = state.get(head)
        if not rest:
            state[head] = value
        elif isinstance(container, dict) and container:
            key = sorted(container)[pick % len(container)]
            if rest == "*.value" and isinstance(container[key], dict):
                container[key]["value"] = value
            else:
                container[key] = value
        elif isinstance(container, list) and container:
            container[pick % len(container)] = value
    res = ENGINE.step(state, inbound, T0)
    assert res.messages and all(len(m.text) <= MAX_CHUNK for m in res.messages)
    assert json.loads(json.dumps(res.state)) == res.state
    assert not errors.records, [r.getMessage() for r in errors.records]
