"""The conversation engine: a pure state machine over the questionnaire (contract section 5).

``Engine.step(state, inbound, now)`` takes the saved state (a JSON-ready dict, or None for a new user) and one
inbound event, and returns the new state, the messages to send and the events to persist. It does no I/O: the
channel adapters move messages, the store saves state and events (goflow's "the engine has no contact store").

Order of handling in a step:

1. a new (or declined, or erased) conversation gets the greeting and the consent question;
2. a conversation idle for longer than ``expiry`` is offered "làm tiếp" or "làm lại";
3. global commands (bắt đầu/làm lại, quay lại, trợ giúp, dừng, tiếp tục, xóa dữ liệu), accents optional;
4. an overlay (paused, erase confirmation, expiry offer) takes the reply;
5. otherwise the current step (question, or a sub-step: read-back confirmation, commune pick, income helper).

State shape (all JSON): ``v`` state version, ``qv`` questionnaire version, ``q`` current question id, ``sub``
sub-step dict or None, ``overlay`` None | "paused" | "erase" | "expired", ``answers`` {id: {value, raw, ...}},
``history`` ids answered in order (for "quay lại"), ``mode`` "anonymous" | "share", ``tries`` bad answers in a
row, ``done``, ``result`` {status, on}, ``started_at``, ``updated_at``, ``offer`` the hamlet list shown with the
hamlet question {q, options}.

Collaborator mode adds: ``collab`` {user_id, name, communes, seq, paused: [household snapshots]} once the chat
is linked to a collaborator account; ``hh`` {key, n} when the conversation at the top level is a household the
collaborator enters (its answers and its result then carry provenance "collaborator"); ``link_guard``
{fails: [times]} so that one chat cannot try link codes without end. The top level is always the household being
worked on: "tạm dừng" moves it into ``collab.paused`` and "tiếp tục N" brings one back.

Linking is two steps because the engine has no database: "liên kết 12345678" (or the bare 8-digit code where no
number is expected) emits ``link {code}``; the pipeline redeems the code and steps the engine again with the
internal inbound kind ``linked`` (payload: JSON {user_id, name, communes}) or ``link_failed``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from bot.parsing.text import fold

from . import details
from .messages import INTERNAL_KINDS, Choice, Inbound, Outbound, StepResult, split_text
from .questionnaire import DEFAULT_PATH, ChoiceSpec, Question, Questionnaire, load_questionnaire
from .replies import NUMBER_REPLY, Reply, ReplyReader, read_inbound
from .result import render_result, vnd
from .services import Services, default_services
from .views import Views, number_text

__all__ = ["Engine", "default_engine", "STATE_VERSION"]

log = logging.getLogger(__name__)

#: Version of the state layout; a saved state of another version starts over.
STATE_VERSION: Final = 1
#: Vietnam has no daylight saving time: UTC+7 all year.
VN_TZ: Final = dt.timezone(dt.timedelta(hours=7), "ICT")
_MAX_HISTORY: Final = 100

#: "sửa câu 3", "sua 3", "đổi câu số 3" (on folded text).
_CORRECTION: Final = re.compile(r"^(?:sua|doi|chinh)(?: lai)?(?: cau| muc)?(?: so)? ?([0-9]{1,3})$")
# "200k/ngày", "mỗi tuần": a period the contract has no room for; ask for a monthly or yearly figure instead.
_DAILY: Final = re.compile(r"\b(?:ngay|tuan|buoi|gio)\b")
# "5 triệu", "5tr", "300 nghìn đồng một tháng": a scale word read the only possible way, no read-back needed.
_PLAIN_MONEY: Final = re.compile(
    r"^\d{1,3}\s*(?:trieu|tr|cu|nghin|ngan|k)(?: (?:dong|d|vnd))?(?: ?/ ?thang| (?:moi|mot|1|hang) thang| thang)?$"
)
_AREA_UNIT: Final = re.compile(r"\s*(?:m2|m²|met vuong|met|m)$")
_PRODUCT: Final = re.compile(
    r"^\s*(\d+(?:[.,]\d+)?)\s*m?\s*[x×*]\s*(\d+(?:[.,]\d+)?)\s*(?:m2|m²|m|mét vuông|met vuong)?\s*$", re.I
)
_MONTH_WORDS: Final = frozenset({"thang", "moi thang", "1 thang", "mot thang", "hang thang", "month"})
_YEAR_WORDS: Final = frozenset({"nam", "moi nam", "1 nam", "mot nam", "hang nam", "ca nam", "year"})
#: Implausibly small monthly household incomes ("1500" typed for 1,500,000) are always read back.
_SMALL_INCOME: Final = 100_000
#: Smallest amount one income source can plausibly bring in; below it the unit was left out.
_MIN_SOURCE_AMOUNT: Final = 1_000
#: A link code typed alone: 8 digits, maybe split in two groups of 4 (folded text).
_BARE_CODE: Final = re.compile(r"^(\d{4}) ?(\d{4})$")
#: Failed link codes allowed per chat within ``_LINK_WINDOW`` before further tries are refused.
_LINK_MAX_FAILS: Final = 5
_LINK_WINDOW: Final = dt.timedelta(hours=1)
#: Households a collaborator may keep in progress at once (each one is a snapshot inside the saved state).
_MAX_PAUSED: Final = 20
#: State keys that belong to the household being worked on (what "tạm dừng" sets aside and "tiếp tục N" restores).
_HOUSEHOLD_KEYS: Final = (
    "q",
    "sub",
    "answers",
    "history",
    "mode",
    "tries",
    "done",
    "result",
    "started_at",
    "updated_at",
    "hh",
)
#: Question types whose reply is a number: a bare 8-digit message there is an answer, not a link code.
_NUMERIC_TYPES: Final = frozenset({"int", "number", "money", "roster", "phone"})


@dataclass(slots=True)
class _Turn:
    """What one step accumulates: the state being edited, messages, events."""

    st: dict[str, Any]
    now: dt.datetime
    on: dt.date
    out: list[Outbound] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    assessment: dict[str, Any] | None = None

    def say(self, text: str, choices: Sequence[Choice] = ()) -> None:
        """Queue a message; buttons go on the last chunk."""
        chunks = split_text(text)
        if not chunks:
            return
        for chunk in chunks[:-1]:
            self.out.append(Outbound(chunk))
        self.out.append(Outbound(chunks[-1], list(choices)))


class Engine:
    """The conversation state machine. Build it once (``default_engine()``); ``step`` is cheap and thread-safe.

    Args:
        questionnaire: the compiled questionnaire (default: ``bot/data/questionnaire.yaml``).
        today: reference date for the assessment and date conditions: a date, a function returning one, or
            None to use ``now`` in Vietnam time. Tests pin it so results are deterministic.
        expiry: idle time after which the user is offered to resume or restart.
        services: parsers and the legal core (default: ``bot.parsing`` and ``assessment.assess``).
    """

    def __init__(
        self,
        questionnaire: Questionnaire | None = None,
        *,
        today: dt.date | Callable[[], dt.date] | None = None,
        expiry: dt.timedelta = dt.timedelta(days=7),
        services: Services | None = None,
    ) -> None:
        self.qn = questionnaire if questionnaire is not None else load_questionnaire()
        self.services = services if services is not None else default_services()
        self.expiry = expiry
        self._today = today
        self.read = ReplyReader(self.qn, self.services.parse_int)
        self.views = Views(self.qn)
        self._expired_labels = {
            fold(self.qn.msg("expired_resume")): "resume",
            fold(self.qn.msg("expired_restart")): "restart",
        }
        self._erase_labels = {fold(self.qn.msg("erase_yes")): True, fold(self.qn.msg("erase_no")): False}
        self._period_labels = {fold(self.qn.msg("income_month")): "month", fold(self.qn.msg("income_year")): "year"}
        self._summary_ok = fold(self.qn.msg("summary_ok"))
        # "liên kết 12345678", "lien ket ma 1234 5678"; "tiếp tục 2", "lam tiep ho so 2" (on folded text).
        self._link_code = re.compile(rf"^(?:{_words(self.qn, 'link')})(?: ma(?: so)?)? ?(\d{{4}}) ?(\d{{4}})$")
        self._resume_number = re.compile(rf"^(?:{_words(self.qn, 'resume')})(?: ho)?(?: so)? ?(\d{{1,3}})$")
        self._detail_questions = {q.household: q.id for q in self.qn.linear if q.household is not None}

    # ------------------------------------------------------------------------------------------------------------
    # Public API

    @property
    def questionnaire_version(self) -> str:
        """Version of the questionnaire (also saved in each state as ``qv``)."""
        return self.qn.version

    def step(self, state: dict[str, Any] | None, inbound: Inbound, now: dt.datetime) -> StepResult:
        """Handle one inbound event. Never raises: a failure is logged and answered with an apology."""
        try:
            return self._step(state, inbound, now)
        except Exception:
            # The user's text is personal data (Decree 13/2023): log where it failed, not what they wrote.
            log.exception("conversation step failed at %s", self.describe(state))
            return self._apology(state, now)

    def describe(self, state: Mapping[str, Any] | None) -> str:
        """Name the step a state is at: "new", "consent", "commune.confirm", "summary", "paused", "done"..."""
        try:
            if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
                return "new"
            overlay = state.get("overlay")
            if overlay:
                return str(overlay)
            if state.get("done"):
                return "done"
            if not state.get("q"):
                return "collaborator" if state.get("collab") else "new"
            sub = state.get("sub")
            if isinstance(sub, Mapping):
                kind = sub.get("kind")
                stage = sub.get("stage")
                return f"{state['q']}.{kind}" + (f".{stage}" if stage else "")
            return str(state["q"])
        except Exception:  # describe is used in the error path itself
            return "unknown"

    def new_state(self, now: dt.datetime) -> dict[str, Any]:
        """Return the state of a conversation that has not started (the greeting comes next)."""
        stamp = now.isoformat()
        return {
            "v": STATE_VERSION,
            "qv": self.qn.version,
            "q": None,
            "sub": None,
            "overlay": None,
            "answers": {},
            "history": [],
            "mode": None,
            "tries": 0,
            "done": False,
            "result": None,
            "expired_days": None,
            "started_at": stamp,
            "updated_at": stamp,
            "offer": None,
            "hh": None,
            "collab": None,
            "link_guard": None,
        }

    def _blank(self, now: dt.datetime, keep: Mapping[str, Any] | None) -> dict[str, Any]:
        """A new conversation that keeps what outlives one: the collaborator link and the link-code guard."""
        st = self.new_state(now)
        if keep is not None:
            st["collab"] = copy.deepcopy(keep.get("collab"))
            st["link_guard"] = copy.deepcopy(keep.get("link_guard"))
        return st

    def build_input(self, answers: Mapping[str, Mapping[str, Any]], on: dt.date) -> dict[str, Any]:
        """Return the household input (contract section 1, quick form) the answers add up to."""
        data: dict[str, Any] = {}
        for q in self.qn.linear:
            if q.role is not None:
                continue
            if not q.applies(answers, on):
                data.update(q.when_skipped)
                continue
            entry = answers.get(q.id)
            if entry is None:
                continue
            value = entry.get("value")
            if q.type == "choice":
                choice = q.choice_by_payload.get(value) if isinstance(value, str) else None
                if choice is None:
                    continue
                value = choice.value
            elif q.type == "yes_no":
                value = q.yes_value if value else q.no_value
            elif q.type == "multi_choice":
                chosen = set(value) if isinstance(value, list) else set()
                visible = q.visible_choices(answers, on)
                for c in q.choices:
                    if c.sets is None:
                        continue
                    if c in visible:
                        data[c.sets] = c.payload in chosen
                    elif c.hidden_value is not None:
                        data[c.sets] = c.hidden_value
                value = [c.value for c in visible if c.sets is None and c.payload in chosen]
            elif q.type == "commune" and value is None:
                continue  # "không biết": the area question fills the area instead
            elif q.type == "roster":
                if not isinstance(value, list):
                    continue
                value = [dict(m) for m in value if isinstance(m, Mapping)]
            if q.type == "money" and q.helper and isinstance(entry.get("sources"), Mapping):
                self._tag_fills(q, entry["sources"], data)
            for f in q.fills:
                if f.transform == "value":
                    data[f.field] = value
                elif f.transform == "sum":
                    data[f.field] = data.get(f.field, 0) + value
                else:  # positive
                    data[f.field] = isinstance(value, (int, float)) and value > 0
        data["on"] = on.isoformat()
        return data

    def household_details(self, answers: Mapping[str, Mapping[str, Any]], on: dt.date) -> dict[str, Any]:
        """Return the share-mode details answered ({hamlet, household_head, phone}; None when skipped or not asked)."""
        out: dict[str, Any] = {"hamlet": None, "household_head": None, "phone": None}
        for q in self.qn.linear:
            if q.household is None or not q.applies(answers, on):
                continue
            entry = answers.get(q.id)
            value = entry.get("value") if isinstance(entry, Mapping) else None
            if isinstance(value, str) and value:
                out[q.household] = value
        return out

    # ------------------------------------------------------------------------------------------------------------
    # The step

    def _step(self, state: dict[str, Any] | None, inbound: Inbound, now: dt.datetime) -> StepResult:
        st, fresh = self._load(state, now)
        turn = _Turn(st, now, self._reference_date(now))
        if isinstance(inbound.kind, str) and inbound.kind in INTERNAL_KINDS:
            self._internal(turn, inbound)
            return self._result(turn)
        reply = read_inbound(inbound, self.qn.settings.max_answer_chars)
        if reply.kind == "unfollow":
            # The user left; channels may not deliver this, but every step answers something.
            turn.say(self.qn.msg("goodbye"))
            return self._result(turn, touch=False)
        if self._link_request(turn, reply):
            return self._result(turn)
        if st.get("collab") and self._collab_command(turn, reply):
            return self._result(turn)
        if fresh and st.get("overlay") is None:
            action = self.read.keyword(reply, accepts_yes=False)
            if action == "erase":
                self._command(turn, "erase", reply)
            else:
                self._greet(turn)
        elif not fresh and st.get("overlay") != "expired" and self._is_expired(st, now):
            action = self.read.keyword(reply, accepts_yes=False)
            if action in ("restart", "erase", "resume"):
                self._command(turn, action, reply)
            else:
                self._offer_resume(turn)
        else:
            self._dispatch(turn, reply)
        return self._result(turn)

    def _result(self, turn: _Turn, touch: bool = True) -> StepResult:
        st = turn.st
        if touch:
            st["updated_at"] = turn.now.isoformat()
        if not turn.out:  # every path says something; this guards the contract if one ever does not
            turn.say(self.qn.msg("apology"))
        done = bool(st.get("done"))
        qid = None if done or not st.get("q") else st["q"]
        return StepResult(st, turn.out, turn.events, qid, done, turn.assessment)

    def _apology(self, state: Any, now: dt.datetime) -> StepResult:
        """Answer a failed step: apology plus the current question, state unchanged."""
        keep = state if isinstance(state, dict) else None
        messages: list[Outbound] = []
        try:
            st, _ = self._load(keep, now)
            turn = _Turn(st, now, self._reference_date(now))
            turn.say(self.qn.msg("apology"))
            if st.get("q") and not st.get("done"):
                self._render(turn, full=False)
            messages = turn.out
        except Exception:
            log.exception("conversation apology failed")
        if not messages:
            messages = [Outbound(self.qn.messages.get("apology", "Xin lỗi, đã có lỗi."))]
        out_state = keep if keep is not None else self.new_state(now)
        done = bool(out_state.get("done"))
        qid = out_state.get("q") if not done and isinstance(out_state.get("q"), str) else None
        return StepResult(out_state, messages, [], qid, done, None)

    def _dispatch(self, turn: _Turn, reply: Reply) -> None:
        st = turn.st
        action = self.read.keyword(reply, accepts_yes=self._accepts_yes(st))
        if action in ("new_household", "households", "link") or (action == "unlink" and st.get("collab")):
            action = None  # collaborator words (handled before) mean nothing special here
        elif action == "unlink":
            turn.say(self.qn.msg("not_linked"))
            if st.get("q") and not st.get("done") and not st.get("overlay"):
                self._render(turn, full=False)
            return
        if action is not None:
            self._command(turn, action, reply)
            return
        overlay = st.get("overlay")
        if overlay == "paused":
            turn.say(self.qn.msg("still_paused"), [self.views.cmd_choice("resume"), self.views.cmd_choice("restart")])
            return
        if overlay == "erase":
            self._erase_reply(turn, reply)
            return
        if overlay == "expired":
            self._expired_reply(turn, reply)
            return
        if reply.kind == "follow":
            turn.say(self.qn.msg("welcome_back"))
            self._render(turn, full=True)
            return
        if st.get("done"):
            self._done_reply(turn, reply)
            return
        if reply.kind == "media":
            self._reject(turn, self.qn.msg("hint_media"))
            return
        if reply.payload is None:
            if reply.too_long:
                self._reject(turn, self.qn.msg("hint_too_long"))
                return
            if not reply.folded:
                self._reject(turn, self.qn.msg("hint_empty"))
                return
            if reply.text.lstrip().startswith("/"):
                self._reject(turn, self.qn.msg("hint_unknown_command"))
                return
        elif reply.prefix is not None and reply.prefix != self._step_id(st):
            self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return
        self._answer(turn, reply)

    def _answer(self, turn: _Turn, reply: Reply) -> None:
        """Route a reply to the handler of the current step."""
        st = turn.st
        q = self.qn.by_id[st["q"]]
        sub = st.get("sub")
        if sub is not None:
            kind = sub["kind"]
            if kind == "confirm":
                self._confirm_reply(turn, q, reply)
            elif kind == "pick":
                self._pick_reply(turn, q, reply)
            elif kind == "roster":
                self._roster_reply(turn, q, reply)
            else:
                self._sources_reply(turn, q, reply)
            return
        handler = {
            "choice": self._choice_answer,
            "yes_no": self._yes_no_answer,
            "multi_choice": self._multi_answer,
            "int": self._int_answer,
            "number": self._number_answer,
            "money": self._money_answer,
            "commune": self._commune_answer,
            "summary": self._summary_answer,
            "text": self._name_answer,
            "phone": self._phone_answer,
            "hamlet": self._hamlet_answer,
            "roster": self._roster_count,
        }[q.type]
        handler(turn, q, reply)

    # ------------------------------------------------------------------------------------------------------------
    # State loading and small helpers

    def _load(self, state: Any, now: dt.datetime) -> tuple[dict[str, Any], bool]:
        """Return a private, checked copy of ``state`` and whether the conversation has not started."""
        if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
            return self.new_state(now), True
        by_id = self.qn.by_id
        fresh_state = self.new_state(now)
        st = {key: state.get(key, default) for key, default in fresh_state.items()}
        answers = state.get("answers")
        st["answers"] = (
            {
                k: v
                for k, v in answers.items()
                if k in by_id and isinstance(v, Mapping) and _valid_answer(by_id[k], v.get("value", _MISSING))
            }
            if isinstance(answers, Mapping)
            else {}
        )
        history = state.get("history")
        st["history"] = [h for h in history if isinstance(h, str) and h in by_id] if isinstance(history, list) else []
        st["tries"] = state.get("tries") if type(state.get("tries")) is int else 0
        st["mode"] = state.get("mode") if state.get("mode") in ("anonymous", "share") else None
        st["done"] = state.get("done") is True
        if st["overlay"] not in (None, "paused", "erase", "expired"):
            st["overlay"] = None
        if not isinstance(st["started_at"], str):
            st["started_at"] = fresh_state["started_at"]
        sub = state.get("sub")
        q = st.get("q")
        question = by_id.get(q) if isinstance(q, str) else None
        valid_q = question is not None and question.linear
        st["sub"] = (
            copy.deepcopy(dict(sub))
            if question is not None and valid_q and isinstance(sub, Mapping) and self._sub_ok(question, sub)
            else None
        )
        if st["qv"] != self.qn.version:
            # Answers the new questionnaire does not understand were dropped above; a half-done sub-step of
            # the old questions is not resumed.
            st["sub"] = None
            st["qv"] = self.qn.version
        self._load_collab(st, state, now)
        if q is not None and not valid_q:
            st["sub"] = None
            st["q"] = self._next_question(st["answers"], self._reference_date(now)).id if st["answers"] else None
        if st["q"] is None and not st["done"]:
            return st, True
        return st, False

    def _load_collab(self, st: dict[str, Any], state: Mapping[str, Any], now: dt.datetime) -> None:
        """Check the collaborator parts of a loaded state (hh, collab, offer, link_guard), repairing what is off."""
        st["collab"] = _collab_ok(state.get("collab"))
        hh = state.get("hh")
        st["hh"] = (
            {"key": hh["key"], "n": hh["n"]}
            if isinstance(hh, Mapping)
            and isinstance(hh.get("key"), str)
            and 0 < len(hh["key"]) <= 16
            and type(hh.get("n")) is int
            and hh["n"] > 0
            else None
        )
        consent = self.qn.consent.id
        entry = st["answers"].get(consent)
        if st["hh"] is not None and st["collab"] is None:
            # A household of a collaborator whose link is gone: nobody can vouch for it any more.
            blank = self.new_state(now)
            for key in _HOUSEHOLD_KEYS:
                st[key] = blank[key]
            st["overlay"] = None
        elif st["hh"] is not None:
            # The consent of a collaborator's household is the collaborator's word: always shared.
            st["answers"][consent] = {"value": "share", "raw": "", "collaborator": True}
            st["mode"] = "share"
        elif isinstance(entry, Mapping) and "collaborator" in entry:
            st["answers"][consent] = {k: v for k, v in entry.items() if k != "collaborator"}
        offer = state.get("offer")
        st["offer"] = (
            {"q": offer["q"], "options": list(offer["options"])}
            if isinstance(offer, Mapping)
            and isinstance(offer.get("q"), str)
            and offer["q"] in self.qn.by_id
            and isinstance(offer.get("options"), list)
            and len(offer["options"]) <= details.MAX_HAMLET_OPTIONS
            and all(isinstance(o, str) and details.detail_ok(o) for o in offer["options"])
            else None
        )
        guard = state.get("link_guard")
        fails = guard.get("fails") if isinstance(guard, Mapping) else None
        st["link_guard"] = (
            {"fails": [f for f in fails if isinstance(f, str)][-_LINK_MAX_FAILS:]} if isinstance(fails, list) else None
        )

    def _sub_ok(self, q: Question, sub: Mapping[str, Any]) -> bool:
        """Check a saved sub-step against its question, so that a damaged state cannot make every step fail."""
        kind = sub.get("kind")
        if kind == "confirm":
            detail = sub.get("detail")
            return (
                isinstance(sub.get("prompt"), str)
                and _valid_answer(q, sub.get("value", _MISSING))
                and (detail is None or isinstance(detail, Mapping))
                and isinstance(sub.get("raw", ""), str)
            )
        if kind == "pick":
            return q.type == "commune" and _options_ok(sub.get("options"))
        if kind == "roster":
            return q.type == "roster" and self._roster_ok(q, sub)
        if kind == "sources" and q.helper:
            helper = self.qn.by_id[q.helper]
            picked = sub.get("picked")
            amounts = sub.get("amounts")
            i = sub.get("i")
            stage = sub.get("stage")
            if not (
                isinstance(picked, list)
                and all(isinstance(p, str) and p in helper.choice_by_payload for p in picked)
                and isinstance(amounts, Mapping)
                and all(k in helper.choice_by_payload and type(v) is int and v >= 0 for k, v in amounts.items())
                and type(i) is int
                and 0 <= i <= len(picked)
            ):
                return False
            if stage in ("amount", "period"):
                return i < len(picked) and (stage == "amount" or type(sub.get("pending")) is int)
            return stage in ("pick", "total")
        return False

    def _reference_date(self, now: dt.datetime) -> dt.date:
        today = self._today
        if today is not None:
            return today() if callable(today) else today
        if now.tzinfo is not None:
            return now.astimezone(VN_TZ).date()
        return now.date()

    def _is_expired(self, st: Mapping[str, Any], now: dt.datetime) -> bool:
        """Return whether an unfinished conversation has been idle longer than ``expiry``."""
        if st.get("done") or not st.get("q"):
            return False
        elapsed = self._elapsed(st, now)
        return elapsed is not None and elapsed > self.expiry

    @staticmethod
    def _elapsed(st: Mapping[str, Any], now: dt.datetime) -> dt.timedelta | None:
        try:
            then = dt.datetime.fromisoformat(str(st.get("updated_at")))
        except ValueError:
            return None
        # Mixed naive/aware stamps (the host changed its clock type): treat naive ones as UTC.
        if then.tzinfo is None and now.tzinfo is not None:
            then = then.replace(tzinfo=dt.UTC)
        elif then.tzinfo is not None and now.tzinfo is None:
            then = then.astimezone(dt.UTC).replace(tzinfo=None)
        return now - then

    def _accepts_yes(self, st: Mapping[str, Any]) -> bool:
        if st.get("overlay") == "erase":
            return True
        if st.get("overlay") or st.get("done") or not st.get("q"):
            return False
        sub = st.get("sub")
        if sub is not None:
            if sub.get("kind") == "roster":
                return self.qn.by_id[sub["at"]].type == "yes_no"
            return sub.get("kind") == "confirm" or sub.get("stage") == "total"
        q = self.qn.by_id.get(st["q"])
        return q is not None and q.type in ("yes_no", "summary")

    def _step_id(self, st: Mapping[str, Any]) -> str:
        """Return the namespace of the current step's buttons (payload ``<step id>:<choice>``)."""
        overlay = st.get("overlay")
        if overlay:
            return str(overlay)
        sub = st.get("sub")
        if sub is not None:
            if sub["kind"] == "roster":
                # Per member and question, so that a tap on an earlier member's button is seen as stale.
                return f"{st['q']}.roster.{sub['i'] + 1}.{sub['at']}"
            return f"{st['q']}.{sub['kind']}"
        return str(st.get("q"))

    # ------------------------------------------------------------------------------------------------------------
    # Commands and overlays

    def _greet(self, turn: _Turn) -> None:
        st = turn.st
        st["q"] = self.qn.consent.id
        st["sub"] = None
        st["overlay"] = None
        st["tries"] = 0
        turn.say(self.qn.msg("greeting"))
        self._render(turn, full=True)

    def _command(self, turn: _Turn, action: str, reply: Reply) -> None:
        st = turn.st
        qn = self.qn
        if st.get("done") and action in ("pause", "resume", "help") and not st.get("overlay"):
            # Nothing to pause or resume once the result is given: say what can be done next.
            turn.say(qn.msg("done_hint") + "\n" + qn.msg("commands"))
            return
        if action == "restart":
            if st.get("hh") and st.get("collab"):
                self._restart_household(turn)
                return
            if st.get("q") or st.get("done") or st.get("answers"):
                turn.events.append({"type": "restart"})
                turn.say(qn.msg("restarted"))
            turn.st = self._blank(turn.now, st)
            self._greet(turn)
        elif action == "erase":
            st["overlay"] = "erase"
            self._render(turn, full=True)
        elif action == "pause":
            if st.get("overlay") != "paused" and st.get("q"):
                turn.events.append({"type": "pause"})
            if st.get("q"):
                st["overlay"] = "paused"
            turn.say(qn.msg("paused"), [self.views.cmd_choice("resume")])
        elif action == "resume":
            st["overlay"] = None
            st["tries"] = 0
            if not st.get("q"):
                self._greet(turn)
                return
            turn.say(qn.msg("resumed"))
            self._render(turn, full=True)
        elif action == "help":
            self._help(turn)
        elif action == "back":
            self._back(turn)

    def _help(self, turn: _Turn) -> None:
        st = turn.st
        qn = self.qn
        st["tries"] = 0
        if st.get("overlay") or st.get("done") or not st.get("q"):
            turn.say(qn.msg("commands"))
            self._render(turn, full=True)
            return
        helper = self._help_question(st)
        turn.say(f"{helper.help}\n\n{qn.msg('commands')}")
        self._render(turn, full=False)

    def _help_question(self, st: Mapping[str, Any]) -> Question:
        """The question whose help text fits the current step: the income helper, a member question, or the question."""
        q = self.qn.by_id[st["q"]]
        sub = st.get("sub") or {}
        if sub.get("kind") == "sources" and q.helper:
            return self.qn.by_id[q.helper]
        if sub.get("kind") == "roster":
            return self.qn.by_id[sub["at"]]
        return q

    def _back(self, turn: _Turn) -> None:
        st = turn.st
        st["tries"] = 0
        if st.get("overlay") in ("erase", "expired", "paused"):
            st["overlay"] = None
            self._render(turn, full=True)
            return
        if st.get("done"):
            st["done"] = False
            st["q"] = self.qn.linear[-1].id
            self._render(turn, full=True)
            return
        if not st.get("q"):
            self._greet(turn)
            return
        if st.get("sub") is not None:
            if st["sub"].get("kind") == "roster" and st["sub"]["trail"]:
                self._roster_back(turn)
                return
            st["sub"] = None
            self._render(turn, full=True)
            return
        history: list[str] = st["history"]
        while history:
            prev = history.pop()
            q = self.qn.by_id[prev]
            if prev != st["q"] and q.linear and q.applies(st["answers"], turn.on):
                st["q"] = prev
                self._render(turn, full=True)
                return
        turn.say(self.qn.msg("back_first"))
        self._render(turn, full=True)

    def _offer_resume(self, turn: _Turn) -> None:
        st = turn.st
        elapsed = self._elapsed(st, turn.now)
        st["overlay"] = "expired"
        st["expired_days"] = max(1, elapsed.days) if elapsed is not None else 1
        self._render(turn, full=True)

    def _expired_reply(self, turn: _Turn, reply: Reply) -> None:
        choice: str | None = None
        if reply.payload in ("resume", "restart"):
            choice = reply.payload
        elif reply.folded in ("1", "2"):
            choice = "resume" if reply.folded == "1" else "restart"
        else:
            choice = self._expired_labels.get(reply.folded)
        if choice == "restart":
            self._command(turn, "restart", reply)
        elif choice == "resume":
            turn.st["overlay"] = None
            turn.st["expired_days"] = None
            turn.say(self.qn.msg("resumed"))
            self._render(turn, full=True)
        else:
            turn.say(self.qn.msg("hint_choice", n=2))
            self._render(turn, full=True)

    def _erase_reply(self, turn: _Turn, reply: Reply) -> None:
        answer = self.read.yes_no(reply)
        if answer is None:
            answer = self._erase_labels.get(reply.folded)
        if answer is True:
            turn.events.append({"type": "erase"})
            # Erasing also ends the collaborator link (the store clears it too); the link-code guard stays.
            guard = copy.deepcopy(turn.st.get("link_guard"))
            turn.st = self.new_state(turn.now)
            turn.st["link_guard"] = guard
            turn.say(self.qn.msg("erased"))
        elif answer is False:
            turn.st["overlay"] = None
            turn.say(self.qn.msg("erase_cancelled"))
            if turn.st.get("done"):
                turn.say(self.qn.msg("done_hint"))
            elif turn.st.get("q"):
                self._render(turn, full=True)
            elif turn.st.get("collab"):
                self._collab_menu(turn, hello=False)
            else:
                self._greet(turn)
        else:
            turn.say(self.qn.msg("hint_confirm"))
            self._render(turn, full=True)

    def _done_reply(self, turn: _Turn, reply: Reply) -> None:
        match = _CORRECTION.match(reply.folded) if reply.payload is None else None
        if match:
            self._correct(turn, int(match.group(1)))
            return
        turn.say(self.qn.msg("done_hint"))
        if turn.st.get("collab"):
            self._collab_menu(turn, hello=False)

    # ------------------------------------------------------------------------------------------------------------
    # Rendering

    def _render(self, turn: _Turn, *, full: bool, lead: str | None = None) -> None:
        """Say the current step: the whole question (``full``) or its short form."""
        st = turn.st
        if not st.get("overlay") and st.get("q") and not st.get("done"):
            q = self.qn.by_id[st["q"]]
            if q.type == "hamlet" and st.get("sub") is None:
                # The list is fetched when the question is shown and kept, so that "2" means what was shown.
                st["offer"] = {"q": q.id, "options": self._hamlet_options(st)}
        text, choices = self.views.view(turn.st, turn.on, full)
        turn.say(f"{lead}\n{text}" if lead else text, choices)

    # ------------------------------------------------------------------------------------------------------------
    # Answer handling

    def _reject(self, turn: _Turn, hint: str, *, count: bool = True) -> None:
        """Refuse a reply: short hint and short question; after ``max_reasks`` in a row, the help text."""
        st = turn.st
        if count:
            st["tries"] = int(st.get("tries", 0)) + 1
        if st["tries"] > self.qn.settings.max_reasks:
            st["tries"] = 0
            helper = self._help_question(st)
            turn.say(f"{hint}\n{self.qn.msg('offer_help')}\n{helper.help}")
            self._render(turn, full=True)
            return
        self._render(turn, full=False, lead=hint)

    def _commit(
        self,
        turn: _Turn,
        q: Question,
        value: Any,
        raw: str,
        detail: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Record an answer, emit its event and move on."""
        st = turn.st
        entry: dict[str, Any] = {"value": value, "raw": raw}
        if detail:
            entry.update(detail)
        st["answers"][q.id] = entry
        event: dict[str, Any] = {"type": "answer", "question_id": q.id, "value": value, "raw": raw}
        collab = st.get("collab")
        if st.get("hh") and collab:
            event.update(provenance="collaborator", collaborator=collab["name"])
        turn.events.append(event)
        st["offer"] = None
        self._moved(turn, q, note)

    def _moved(self, turn: _Turn, q: Question, note: str | None) -> None:
        st = turn.st
        st["sub"] = None
        st["tries"] = 0
        history: list[str] = st["history"]
        if not history or history[-1] != q.id:
            history.append(q.id)
            del history[:-_MAX_HISTORY]
        nxt = self._next_question(st["answers"], turn.on)
        st["q"] = nxt.id
        self._render(turn, full=True, lead=note)

    def _next_question(self, answers: Mapping[str, Any], on: dt.date) -> Question:
        """Return the first question that applies and is not (completely) answered, else the summary."""
        for q in self.qn.linear:
            if q.role == "summary":
                return q
            if q.applies(answers, on) and not self._complete(q, answers, on):
                return q
        return self.qn.linear[-1]

    @staticmethod
    def _complete(q: Question, answers: Mapping[str, Any], on: dt.date) -> bool:
        entry = answers.get(q.id)
        if entry is None:
            return False
        if q.dynamic_choices:
            # Choices that appeared since (children added in a correction) have not been answered yet.
            shown = entry.get("shown")
            if isinstance(shown, list):
                return all(c.payload in shown for c in q.visible_choices(answers, on))
        return True

    def _choice_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        visible = q.visible_choices(turn.st["answers"], turn.on)
        choice = self.read.choice(q, visible, reply)
        if choice is None:
            self._reject(turn, self.qn.msg("hint_choice", n=len(visible)))
            return
        if q.role == "consent":
            self._consent(turn, q, choice, reply)
            return
        self._commit(turn, q, choice.payload, reply.raw)

    def _consent(self, turn: _Turn, q: Question, choice: ChoiceSpec, reply: Reply) -> None:
        qn = self.qn
        if choice.payload == "decline":
            turn.st = self._blank(turn.now, turn.st)
            turn.say(qn.msg("declined"))
            return
        mode = choice.payload
        st = turn.st
        st["mode"] = mode
        st["answers"][q.id] = {"value": mode, "raw": reply.raw}
        # The consent wording is part of the questionnaire, so its version identifies the text agreed to.
        turn.events.append({"type": "consent", "mode": mode, "text_version": self.qn.version})
        self._moved(turn, q, qn.msg("consent_share" if mode == "share" else "consent_anonymous"))

    def _yes_no_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        answer = self.read.yes_no(reply)
        if answer is None:
            self._reject(turn, self.qn.msg("hint_yes_no"))
            return
        self._commit(turn, q, answer, reply.raw)

    def _multi_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        visible = q.visible_choices(turn.st["answers"], turn.on)
        picked = self.read.multi(q, visible, reply)
        if picked is None:
            self._reject(turn, self.qn.msg("hint_multi", n=len(visible)))
            return
        detail = {"shown": [c.payload for c in visible]} if q.dynamic_choices else None
        self._commit(turn, q, [c.payload for c in picked], reply.raw, detail)

    def _shortcut(self, q: Question, reply: Reply) -> ChoiceSpec | None:
        """Return the shortcut of a numeric question the reply names (payload or label, never a number)."""
        if not q.choices:
            return None
        return self.read.choice(q, q.choices, reply, numbered=False)

    def _int_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        shortcut = self._shortcut(q, reply)
        if shortcut is not None:
            value: Any = shortcut.value
        elif reply.payload is not None:
            self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return
        elif reply.folded in self.qn.words["none"] and self._allows_zero(q):
            value = 0
        else:
            value = self.services.parse_int(reply.text)
        if value is None:
            self._reject(turn, self._invalid(q, "hint_int"))
            return
        if self._check_bounds(turn, q, value):
            self._commit(turn, q, value, reply.raw)

    def _number_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        shortcut = self._shortcut(q, reply)
        if shortcut is not None:
            self._commit(turn, q, shortcut.value, reply.raw)
            return
        if reply.payload is not None:
            self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return
        product = _PRODUCT.match(reply.text)
        value: float | None
        if product:
            a = self.services.parse_number(product.group(1))
            b = self.services.parse_number(product.group(2))
            value = a * b if a is not None and b is not None else None
        else:
            value = self.services.parse_number(_AREA_UNIT.sub("", reply.folded))
        if value is None:
            self._reject(turn, self._invalid(q, "hint_number"))
            return
        if not math.isfinite(value):
            self._reject(turn, self.qn.msg("hint_not_finite"))
            return
        value = int(value) if float(value).is_integer() else round(float(value), 2)
        if not self._check_bounds(turn, q, value):
            return
        if product:
            # "5x8" was worked out for the user: read the product back before recording it.
            prompt = self.qn.msg("confirm_number", value=number_text(value), unit=q.unit or "")
            turn.st["sub"] = {"kind": "confirm", "value": value, "raw": reply.raw, "prompt": prompt}
            self._render(turn, full=True)
            return
        self._commit(turn, q, value, reply.raw)

    def _money_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        qn = self.qn
        shortcut = self._shortcut(q, reply)
        if shortcut is not None and shortcut.goto is not None:
            turn.st["sub"] = {"kind": "sources", "stage": "pick", "picked": [], "i": 0, "amounts": {}}
            turn.st["tries"] = 0
            self._render(turn, full=True)
            return
        if shortcut is not None:
            self._commit(turn, q, shortcut.value, reply.raw)
            return
        if reply.payload is not None:
            self._reject(turn, qn.msg("hint_stale"), count=False)
            return
        if _DAILY.search(reply.folded):
            self._reject(turn, qn.msg("hint_period"))
            return
        parsed = self._parse_amount(reply)
        if parsed is None:
            self._reject(turn, self._invalid(q, "hint_money"))
            return
        amount = parsed.amount
        period = getattr(parsed, "period", None)
        monthly = round(amount / 12) if period == "year" else int(amount)
        if not self._check_bounds(turn, q, monthly):
            return
        exact = bool(getattr(parsed, "exact", False))
        plain = bool(_PLAIN_MONEY.match(reply.folded))
        if period == "year":
            prompt = qn.msg("confirm_money_year", amount=vnd(amount), monthly=vnd(monthly))
        elif (not exact and not plain) or monthly < _SMALL_INCOME:
            prompt = qn.msg("confirm_money", amount=vnd(monthly))
        else:
            note = None if exact else qn.msg("noted_money", amount=vnd(monthly))
            self._commit(turn, q, monthly, reply.raw, note=note)
            return
        turn.st["sub"] = {"kind": "confirm", "value": monthly, "raw": reply.raw, "prompt": prompt}
        self._render(turn, full=True)

    def _confirm_reply(self, turn: _Turn, q: Question, reply: Reply) -> None:
        sub = turn.st["sub"]
        answer = self.read.yes_no(reply)
        if answer is True:
            detail = sub.get("detail") if isinstance(sub.get("detail"), Mapping) else None
            self._commit(turn, q, sub["value"], str(sub.get("raw", "")), detail)
            return
        if answer is False:
            turn.st["tries"] = 0
            others = sub.get("others")
            if q.type == "commune" and others and _options_ok(others):
                turn.st["sub"] = {"kind": "pick", "raw": sub.get("raw", ""), "options": others}
                self._render(turn, full=True)
                return
            turn.st["sub"] = None
            lead = self.qn.msg("commune_retype") if q.type == "commune" else None
            self._render(turn, full=False, lead=lead)
            return
        if reply.payload is None and reply.kind == "text":
            # Not yes/no: most likely a corrected answer ("không, 2 triệu"); treat it as a new answer.
            turn.st["sub"] = None
            self._answer(turn, reply)
            return
        self._reject(turn, self.qn.msg("hint_confirm"))

    def _check_bounds(self, turn: _Turn, q: Question, value: float) -> bool:
        """Check min/max and cross-question limits; on failure re-ask with the message and return False."""
        v = q.validation
        if v is None:
            return True
        if v.min is not None and value < v.min:
            self._reject(turn, v.messages.get("min") or self._invalid(q, "hint_number"))
            return False
        if v.max is not None and value > v.max:
            self._reject(turn, v.messages.get("max") or self._invalid(q, "hint_number"))
            return False
        problem = self._at_most_problem(q, value, turn.st["answers"])
        if problem:
            self._reject(turn, problem)
            return False
        return True

    def _at_most_problem(self, q: Question, value: Any, answers: Mapping[str, Any]) -> str | None:
        v = q.validation
        if v is None or v.at_most is None:
            return None
        limit_entry = answers.get(v.at_most.limit)
        if limit_entry is None:
            return None
        total = value
        for other in v.at_most.total_with:
            entry = answers.get(other)
            if entry is not None and isinstance(entry.get("value"), (int, float)):
                total += entry["value"]
        limit = limit_entry.get("value")
        if isinstance(limit, (int, float)) and total > limit:
            return v.at_most.message.format(total=number_text(total), limit=number_text(limit))
        return None

    def _invalid(self, q: Question, default_key: str) -> str:
        if q.validation is not None and "invalid" in q.validation.messages:
            return q.validation.messages["invalid"]
        return self.qn.msg(default_key)

    @staticmethod
    def _allows_zero(q: Question) -> bool:
        return q.validation is None or q.validation.min is None or q.validation.min <= 0

    # -- share-mode details --------------------------------------------------------------------------------------

    def _skip(self, turn: _Turn, q: Question, reply: Reply, hint: str) -> bool:
        """Handle "bỏ qua" (and stray buttons) on a detail question; True when the reply was dealt with.

        Skipping records the answer None where the question is optional; where it is required (a collaborator
        must give the hamlet and the name) it is refused with ``hint``, never taken as the name "bỏ qua".
        """
        if reply.payload == "skip" or (reply.payload is None and reply.folded in self.qn.words["skip"]):
            if q.skippable(turn.st["answers"], turn.on):
                self._commit(turn, q, None, reply.raw)
            else:
                self._reject(turn, hint)
            return True
        if reply.payload is not None:
            self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return True
        return False

    def _name_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        hint = self.qn.msg("hint_name")
        if self._skip(turn, q, reply, hint):
            return
        name = details.clean_name(reply.text)
        if name is None:
            self._reject(turn, hint)
            return
        self._commit(turn, q, name, reply.raw)

    def _phone_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        hint = self.qn.msg("hint_phone")
        if self._skip(turn, q, reply, hint):
            return
        phone = details.normalize_phone(reply.text)
        if phone is None:
            self._reject(turn, hint)
            return
        self._commit(turn, q, phone, reply.raw)

    def _hamlet_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        offer = turn.st.get("offer")
        options: list[str] = list(offer["options"]) if offer is not None and offer["q"] == q.id else []
        hint = self.qn.msg("hint_hamlet", n=len(options)) if options else self.qn.msg("hint_hamlet_name")
        if reply.payload is not None and reply.payload.isdigit() and options:
            n = int(reply.payload)
            if 1 <= n <= len(options):
                self._commit(turn, q, options[n - 1], reply.raw)
            else:
                self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return
        if self._skip(turn, q, reply, hint):
            return
        if options:
            number = NUMBER_REPLY.match(reply.folded)
            if number:
                n = int(number.group(1))
                if 1 <= n <= len(options):
                    self._commit(turn, q, options[n - 1], reply.raw)
                else:
                    self._reject(turn, hint)
                return
            known = details.match_hamlet(reply.folded, options)
            if known is not None:
                self._commit(turn, q, known, reply.raw)
                return
        # Not on the commune's list (or the commune keeps none): kept as typed; officials may add it to the list.
        name = details.clean_hamlet(reply.text)
        if name is None:
            self._reject(turn, hint)
            return
        self._commit(turn, q, name, reply.raw)

    def _hamlet_options(self, st: Mapping[str, Any]) -> list[str]:
        """The hamlets of the commune answered, to offer as numbered choices (none: the name is typed)."""
        commune = st["answers"].get("commune") or {}
        code = commune.get("value") if isinstance(commune, Mapping) else None
        if not isinstance(code, str) or not code:
            return []
        names: list[str] = []
        for name in self.services.hamlets(code) or []:
            clean = details.clean_hamlet(name) if isinstance(name, str) else None
            if clean is not None and clean not in names:
                names.append(clean)
        return names if len(names) <= details.MAX_HAMLET_OPTIONS else []

    # -- detailed mode: the member roster ------------------------------------------------------------------------

    def _roster_count(self, turn: _Turn, q: Question, reply: Reply) -> None:
        """The roster's first answer: how many members; then the member questions, member by member."""
        if reply.payload is not None:
            self._reject(turn, self.qn.msg("hint_stale"), count=False)
            return
        value = self.services.parse_int(reply.text) if reply.text else None
        if value is None:
            self._reject(turn, self._invalid(q, "hint_int"))
            return
        if not self._check_bounds(turn, q, value):
            return
        turn.st["sub"] = {"kind": "roster", "n": value, "i": 0, "at": q.roster[0], "members": [{}], "trail": []}
        turn.st["tries"] = 0
        self._render(turn, full=True)

    def _roster_reply(self, turn: _Turn, q: Question, reply: Reply) -> None:
        sub = turn.st["sub"]
        mq = self.qn.by_id[sub["at"]]
        fields = self._member_fields(turn, mq, reply)
        if fields is None:
            return
        sub["members"][sub["i"]].update(fields)
        # What this answer set, so "quay lại" can take exactly it back.
        sub["trail"].append([sub["i"], mq.id, sorted(fields)])
        del sub["trail"][:-_MAX_HISTORY]
        turn.st["tries"] = 0
        self._roster_advance(turn, q)

    def _member_fields(self, turn: _Turn, mq: Question, reply: Reply) -> dict[str, Any] | None:
        """Read one member answer into member fields; None after re-asking when the reply does not fit."""
        spec = mq.member
        assert spec is not None
        qn = self.qn
        if mq.type == "int":  # the age, maybe with the sex ("nam 45")
            if reply.payload is not None:
                self._reject(turn, qn.msg("hint_stale"), count=False)
                return None
            text = reply.accented if reply.has_accents else reply.folded
            rest, sex = details.split_age_sex(text, accented=reply.has_accents)
            # With a sex word the age is what is left ("nam" alone is no age); without one, the whole reply.
            age = self.services.parse_int(rest if sex is not None else reply.text) if rest or sex is None else None
            if age is None:
                self._reject(turn, self._invalid(mq, "hint_int"))
                return None
            if not self._check_bounds(turn, mq, age):
                return None
            out: dict[str, Any] = {"age": age}
            if sex is not None:
                out["sex"] = sex
            return out
        if mq.type == "yes_no":
            answer = self.read.yes_no(reply)
            if answer is None:
                self._reject(turn, qn.msg("hint_yes_no"))
                return None
            return {str(spec.field): mq.yes_value if answer else mq.no_value}
        if mq.type == "choice":
            choice = self.read.choice(mq, mq.choices, reply)
            if choice is None:
                self._reject(turn, qn.msg("hint_choice", n=len(mq.choices)))
                return None
            return {str(spec.field): choice.value}
        picked = self.read.multi(mq, mq.choices, reply)
        if picked is None:
            self._reject(turn, qn.msg("hint_multi", n=len(mq.choices)))
            return None
        return {str(c.sets): c in picked for c in mq.choices if c.sets}

    def _roster_advance(self, turn: _Turn, q: Question) -> None:
        """Go to the next member question that applies, the next member, or record the roster."""
        sub = turn.st["sub"]
        order = q.roster
        member = sub["members"][sub["i"]]
        for mid in order[order.index(sub["at"]) + 1 :]:
            spec = self.qn.by_id[mid].member
            if spec is not None and spec.applies(member):
                sub["at"] = mid
                self._render(turn, full=True)
                return
        sub["i"] += 1
        if sub["i"] >= sub["n"]:
            members = [dict(m) for m in sub["members"]]
            raw = "; ".join(self.views.member_text(m) for m in members)
            self._commit(turn, q, members, raw, note=self.qn.msg("roster_done", n=len(members)))
            return
        sub["members"].append({})
        sub["at"] = order[0]
        self._render(turn, full=True)

    def _roster_back(self, turn: _Turn) -> None:
        """Take back the last roster answer and ask its question again."""
        sub = turn.st["sub"]
        i, mid, fields = sub["trail"].pop()
        del sub["members"][i + 1 :]
        for name in fields:
            sub["members"][i].pop(name, None)
        sub["i"] = i
        sub["at"] = mid
        self._render(turn, full=True)

    def _roster_ok(self, q: Question, sub: Mapping[str, Any]) -> bool:
        """Check a saved roster sub-step (a damaged one restarts the roster at its count question)."""
        n, i, at, members, trail = (sub.get(k) for k in ("n", "i", "at", "members", "trail"))
        limit = q.validation.max if q.validation is not None and q.validation.max is not None else 50
        if type(n) is not int or not 1 <= n <= limit or type(i) is not int or not 0 <= i < n:
            return False
        if at not in q.roster or not isinstance(members, list) or len(members) != i + 1:
            return False
        if not all(details.member_ok(m) for m in members):
            return False
        # Members before the current one are complete (they have an age); the current one has its age unless it
        # is being asked right now.
        if not all(type(m.get("age")) is int for m in members[:i]):
            return False
        if at != q.roster[0] and type(members[i].get("age")) is not int:
            return False
        return isinstance(trail, list) and all(
            isinstance(t, list)
            and len(t) == 3
            and type(t[0]) is int
            and 0 <= t[0] <= i
            and t[1] in q.roster
            and isinstance(t[2], list)
            and all(isinstance(f, str) for f in t[2])
            for t in trail
        )

    # -- linking a chat to a collaborator account ----------------------------------------------------------------

    def _link_request(self, turn: _Turn, reply: Reply) -> bool:
        """"liên kết 12345678" (or the bare code where no number is expected): emit ``link`` for the pipeline."""
        if reply.kind != "text" or reply.payload is not None or not reply.folded or reply.too_long:
            return False
        code: str | None = None
        match = self._link_code.match(reply.folded)
        if match is None and not self._expects_number(turn.st):
            match = _BARE_CODE.match(reply.folded)
        if match is not None:
            code = match.group(1) + match.group(2)
        elif self.read.keyword(reply, accepts_yes=False) == "link":
            turn.say(self.qn.msg("link_usage"))
            self._where_now(turn)
            return True
        else:
            return False
        if self._link_blocked(turn):
            turn.say(self.qn.msg("link_blocked"))
            self._where_now(turn)
            return True
        turn.events.append({"type": "link", "code": code})
        turn.say(self.qn.msg("link_checking"))
        return True

    def _expects_number(self, st: Mapping[str, Any]) -> bool:
        """Whether the current step reads a number (an 8-digit reply there is an amount, not a link code)."""
        if st.get("overlay") or st.get("done") or not st.get("q"):
            return False
        q = self.qn.by_id[st["q"]]
        sub = st.get("sub")
        if sub is not None:
            if sub["kind"] == "sources":
                return sub["stage"] in ("amount", "period")
            if sub["kind"] == "roster":
                return self.qn.by_id[sub["at"]].type == "int"
            return sub["kind"] == "confirm"  # a new amount may replace the one read back
        return q.type in _NUMERIC_TYPES

    def _recent_fails(self, st: Mapping[str, Any], now: dt.datetime) -> list[str]:
        guard = st.get("link_guard") or {}
        recent = []
        for stamp in guard.get("fails") or []:
            elapsed = self._elapsed({"updated_at": stamp}, now)
            if elapsed is not None and elapsed < _LINK_WINDOW:
                recent.append(stamp)
        return recent

    def _link_blocked(self, turn: _Turn) -> bool:
        return len(self._recent_fails(turn.st, turn.now)) >= _LINK_MAX_FAILS

    def _internal(self, turn: _Turn, inbound: Inbound) -> None:
        """What the pipeline reports: the link code was redeemed (``linked``) or not, or the link was removed."""
        st = turn.st
        qn = self.qn
        kind = inbound.kind
        if kind == "linked":
            info = _link_info(inbound.payload)
            if info is not None:
                self._linked(turn, info)
                return
            kind = "link_failed"  # an outcome the engine cannot read links nothing
        if kind == "link_failed":
            fails = self._recent_fails(st, turn.now) + [turn.now.isoformat()]
            st["link_guard"] = {"fails": fails[-_LINK_MAX_FAILS:]}
            turn.say(qn.msg("link_failed"))
            self._where_now(turn)
            return
        if st.get("collab") is None:
            turn.say(qn.msg("not_linked"))
        else:
            self._drop_collab(turn)
            turn.say(qn.msg("unlinked"))
        self._where_now(turn)

    def _linked(self, turn: _Turn, info: Mapping[str, Any]) -> None:
        st = turn.st
        old = st.get("collab")
        if old is not None and old["user_id"] == info["user_id"]:
            old.update(name=info["name"], communes=info["communes"])
        else:
            if st.get("hh"):
                self._clear_household(turn)  # another account's household: not this collaborator's to finish
            st["collab"] = {**info, "seq": 0, "paused": []}
        st["link_guard"] = None
        turn.say(self.qn.msg("link_ok", name=info["name"]))
        if self._in_progress(st) and (self._answered(st) > 0 or st.get("hh")):
            self._render(turn, full=True)  # their own assessment (or a household) in progress goes on
        else:
            self._clear_household(turn)
            self._collab_menu(turn, hello=False)

    def _drop_collab(self, turn: _Turn) -> None:
        """Forget the collaborator link and the households entered under it (answers already recorded stay).

        The person's own assessment, if one was set aside, comes back: it was never the account's.
        """
        st = turn.st
        collab = st.get("collab") or {}
        own = next((p for p in collab.get("paused", []) if not p.get("hh")), None)
        if st.get("hh"):
            self._clear_household(turn)
        st["collab"] = None
        if own is not None and not self._in_progress(st):
            merged = {**self.new_state(turn.now), **own}
            merged.update(v=STATE_VERSION, collab=None, hh=None, link_guard=st.get("link_guard"), overlay=None)
            restored, fresh = self._load(merged, turn.now)
            if not fresh:
                turn.st = restored

    def _where_now(self, turn: _Turn) -> None:
        """After an interjection (link messages), show the step the person is at, if any."""
        st = turn.st
        if st.get("overlay") or self._in_progress(st):
            self._render(turn, full=True)
        elif st.get("collab"):
            self._collab_menu(turn, hello=False)

    # -- collaborator mode ---------------------------------------------------------------------------------------

    def _collab_command(self, turn: _Turn, reply: Reply) -> bool:
        """A linked collaborator's commands (hộ mới, danh sách, tiếp tục N, tạm dừng, hủy liên kết)."""
        st = turn.st
        if st.get("overlay") == "erase":
            return False  # the erase question is answered first
        idle = not st.get("q") and not st.get("done")
        action: str | None = None
        number: int | None = None
        key: str | None = None
        keyword: str | None = None
        if reply.payload is not None:
            if reply.prefix == "collab":
                action = {"new": "new_household", "list": "households"}.get(reply.payload, "resume")
                key = reply.payload if action == "resume" else None
            elif reply.prefix == "cmd" and reply.payload in ("new_household", "households", "unlink"):
                action = reply.payload
        elif reply.kind == "text" and reply.folded:
            match = self._resume_number.match(reply.folded)
            if match:
                action, number = "resume", int(match.group(1))
            else:
                keyword = self.read.keyword(reply, accepts_yes=self._accepts_yes(st))
                if keyword in ("new_household", "households", "unlink", "pause"):
                    action = keyword
                elif keyword == "resume" and (idle or st.get("done")):
                    action = "resume"
        if action is None:
            if idle and keyword != "erase":
                self._collab_menu(turn, hello=True)
                return True
            return False
        if action == "new_household":
            self._new_household(turn)
        elif action == "households":
            self._list_households(turn)
        elif action == "unlink":
            turn.events.append({"type": "unlink"})
            self._drop_collab(turn)
            turn.say(self.qn.msg("unlinked"))
            self._where_now(turn)
        elif action == "pause":
            if self._in_progress(st):
                label = self._label(st)
                self._park(turn)
                turn.say(self.qn.msg("collab_paused", label=label))
            self._collab_menu(turn, hello=False)
        else:
            self._resume_household(turn, number=number, key=key)
        return True

    def _collab_menu(self, turn: _Turn, *, hello: bool) -> None:
        qn = self.qn
        collab = turn.st["collab"]
        lines = [qn.msg("collab_hello", name=collab["name"])] if hello else []
        if collab["paused"]:
            lines.append(self._households_text(collab["paused"]))
        lines.append(qn.msg("collab_menu"))
        turn.say(
            "\n".join(lines),
            [Choice(qn.msg("collab_new_button"), "collab:new"), Choice(qn.msg("collab_list_button"), "collab:list")],
        )

    @staticmethod
    def _in_progress(st: Mapping[str, Any]) -> bool:
        return bool(st.get("q")) and not st.get("done")

    def _answered(self, st: Mapping[str, Any]) -> int:
        consent = self.qn.consent.id
        answers = st.get("answers")
        return sum(1 for k in answers if k != consent) if isinstance(answers, Mapping) else 0

    def _label(self, st: Mapping[str, Any]) -> str:
        """How a household is named to the collaborator: "hộ số 3: Nguyễn Văn An, Ấp Phú Lợi"."""
        hh = st.get("hh")
        if not isinstance(hh, Mapping):
            return self.qn.msg("collab_self")
        label = self.qn.msg("collab_household", n=hh.get("n", "?"))
        raw_answers = st.get("answers")
        answers: Mapping[str, Any] = raw_answers if isinstance(raw_answers, Mapping) else {}
        parts = []
        for detail in ("household_head", "hamlet"):
            qid = self._detail_questions.get(detail)
            entry = answers.get(qid) if qid else None
            value = entry.get("value") if isinstance(entry, Mapping) else None
            if isinstance(value, str) and value:
                parts.append(value)
        return f"{label}: {', '.join(parts)}" if parts else label

    def _clear_household(self, turn: _Turn) -> None:
        """Empty the top level (the household being worked on), keeping the link."""
        st = turn.st
        blank = self.new_state(turn.now)
        for key in _HOUSEHOLD_KEYS:
            st[key] = blank[key]
        st.update(overlay=None, offer=None, expired_days=None)

    def _park(self, turn: _Turn) -> None:
        """Set the household being worked on aside (if anything was answered), leaving the top level empty."""
        st = turn.st
        if self._in_progress(st) and self._answered(st) > 0:
            snapshot = {key: copy.deepcopy(st[key]) for key in _HOUSEHOLD_KEYS}
            snapshot["qv"] = st["qv"]  # a household kept across a questionnaire change resumes at its question
            paused = st["collab"]["paused"]
            if st.get("hh") is None:
                # The collaborator's own self-assessment: at most one is kept.
                paused[:] = [p for p in paused if p.get("hh")]
            paused.append(snapshot)
        self._clear_household(turn)

    def _new_household(self, turn: _Turn) -> None:
        st = turn.st
        qn = self.qn
        collab = st["collab"]
        parks = self._in_progress(st) and self._answered(st) > 0
        if parks and len(collab["paused"]) >= _MAX_PAUSED:
            turn.say(qn.msg("collab_too_many", max=_MAX_PAUSED))
            self._where_now(turn)
            return
        if parks:
            turn.say(qn.msg("collab_paused", label=self._label(st)))
        self._park(turn)
        collab["seq"] += 1
        hh = {"key": f"h{collab['seq']}", "n": collab["seq"]}
        self._start_household(turn, hh, qn.msg("collab_new", label=qn.msg("collab_household", n=hh["n"])))

    def _restart_household(self, turn: _Turn) -> None:
        label = self._label(turn.st)
        self._start_household(turn, dict(turn.st["hh"]), self.qn.msg("collab_restarted", label=label))

    def _start_household(self, turn: _Turn, hh: dict[str, Any], lead: str) -> None:
        """Begin a household for the collaborator: always shared, so the consent is answered for it."""
        st = turn.st
        self._clear_household(turn)
        st["hh"] = hh
        st["mode"] = "share"
        st["answers"] = {self.qn.consent.id: {"value": "share", "raw": "", "collaborator": True}}
        st["q"] = self._next_question(st["answers"], turn.on).id
        self._render(turn, full=True, lead=lead)

    def _households_text(self, paused: Sequence[Mapping[str, Any]]) -> str:
        qn = self.qn
        lines = [qn.msg("collab_list_title")]
        for snapshot in sorted(paused, key=lambda p: self._number(p) or 0):
            lines.append(
                qn.msg(
                    "collab_list_item",
                    n=self._number(snapshot) or "",
                    label=self._label(snapshot),
                    answered=self._answered(snapshot),
                )
            )
        return "\n".join(lines)

    def _list_households(self, turn: _Turn) -> None:
        qn = self.qn
        st = turn.st
        paused = st["collab"]["paused"]
        if not paused:
            turn.say(qn.msg("collab_list_empty") + "\n" + qn.msg("collab_menu"))
        else:
            ordered = sorted(paused, key=lambda p: self._number(p) or 0)
            buttons = [Choice(self._label(p)[:60], f"collab:{self._key(p)}") for p in ordered[:10]]
            example = next((n for n in map(self._number, paused) if n is not None), 1)
            turn.say(self._households_text(paused) + "\n" + qn.msg("collab_list_footer", n=example), buttons)
        if self._in_progress(st) or st.get("overlay"):
            self._render(turn, full=False)

    @staticmethod
    def _number(snapshot: Mapping[str, Any]) -> int | None:
        """The household's number ("hộ số 3"): what "tiếp tục 3" names, stable however the list changes."""
        hh = snapshot.get("hh")
        n = hh.get("n") if isinstance(hh, Mapping) else None
        return n if type(n) is int else None

    @staticmethod
    def _key(snapshot: Mapping[str, Any]) -> str:
        hh = snapshot.get("hh")
        return str(hh.get("key")) if isinstance(hh, Mapping) and hh.get("key") else "self"

    def _resume_household(self, turn: _Turn, *, number: int | None, key: str | None) -> None:
        qn = self.qn
        st = turn.st
        paused = st["collab"]["paused"]
        index: int | None = None
        if key is not None:
            index = next((i for i, p in enumerate(paused) if self._key(p) == key), None)
        elif number is not None:
            index = next((i for i, p in enumerate(paused) if self._number(p) == number), None)
            if index is None:
                turn.say(qn.msg("collab_bad_number", n=number, max=len(paused)))
                self._list_households(turn)
                return
        elif len(paused) == 1:
            index = 0
        if index is None:  # several to choose from, none, or a stale button
            self._list_households(turn)
            return
        snapshot = paused.pop(index)
        self._park(turn)
        merged = {**self.new_state(turn.now), **snapshot}
        merged.update(v=STATE_VERSION, collab=st["collab"], link_guard=st["link_guard"], overlay=None)
        restored, fresh = self._load(merged, turn.now)
        if fresh or restored.get("collab") is None or restored.get("done"):
            # A snapshot the current questionnaire cannot continue: dropped rather than failing every time.
            self._list_households(turn)
            return
        turn.st = restored
        turn.say(qn.msg("collab_resumed", label=self._label(restored)))
        self._render(turn, full=True)

    # -- commune ----------------------------------------------------------------------------------------------------

    def _commune_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        qn = self.qn
        if reply.payload == "dont_know" or (reply.payload is None and reply.folded in qn.words["dont_know"]):
            self._commit(turn, q, None, reply.raw)
            return
        if reply.payload is not None:
            self._reject(turn, qn.msg("hint_stale"), count=False)
            return
        options = self._commune_options(reply.text)
        if not options:
            self._reject(turn, qn.msg("commune_not_found"))
            return
        top = options[0]
        keep = ("code", "name", "province", "area", "alias")
        limit = qn.settings.commune_choices
        clear = len(options) == 1 or (top["exact"] and top["score"] - options[1]["score"] >= 0.05)
        if clear:
            detail = {k: top[k] for k in ("name", "province", "area", "alias")}
            if top["alias"]:
                prompt = qn.msg("commune_confirm_alias", name=top["name"], province=top["province"], alias=top["alias"])
            else:
                prompt = qn.msg("commune_confirm", name=top["name"], province=top["province"])
            turn.st["sub"] = {
                "kind": "confirm",
                "value": top["code"],
                "raw": reply.raw,
                "prompt": prompt,
                "detail": detail,
                # Offered if the user says "không đúng" ("thuong phuc" is Thượng Phúc, but maybe Thường Phước).
                "others": [{k: o[k] for k in keep} for o in options[1 : limit + 1]],
            }
        else:
            turn.st["sub"] = {
                "kind": "pick",
                "raw": reply.raw,
                "options": [{k: o[k] for k in keep} for o in options[:limit]],
            }
        self._render(turn, full=True)

    def _commune_options(self, text: str) -> list[dict[str, Any]]:
        """Candidates from the resolver, best first, one per commune, weak fuzzy matches left out."""
        seen: set[str] = set()
        options: list[dict[str, Any]] = []
        for match in self.services.resolve_commune(text) or []:
            info = _commune_info(match)
            if info is None or info["code"] in seen or info["score"] < self.qn.settings.commune_min_score:
                continue
            seen.add(info["code"])
            options.append(info)
        return options

    def _pick_reply(self, turn: _Turn, q: Question, reply: Reply) -> None:
        sub = turn.st["sub"]
        options = sub["options"]
        picked: Mapping[str, Any] | None = None
        none_of_these = False
        if reply.payload is not None:
            none_of_these = reply.payload == "none"
            picked = next((o for o in options if o["code"] == reply.payload), None)
        else:
            number = NUMBER_REPLY.match(reply.folded)
            if number:
                n = int(number.group(1))
                if 1 <= n <= len(options):
                    picked = options[n - 1]
                none_of_these = n == len(options) + 1
            elif reply.folded == fold(self.qn.msg("commune_none_of_these")) or reply.folded in self.qn.words["no"]:
                none_of_these = True
            else:
                # A new name ("Tân Hòa, Đồng Tháp"): search again.
                turn.st["sub"] = None
                self._commune_answer(turn, q, reply)
                return
        if picked is not None:
            detail = {k: picked.get(k) for k in ("name", "province", "area", "alias")}
            self._commit(turn, q, picked["code"], f"{sub.get('raw', '')} → {reply.raw}", detail)
            return
        if none_of_these:
            turn.st["sub"] = None
            turn.st["tries"] = 0
            self._render(turn, full=False, lead=self.qn.msg("commune_retype"))
            return
        self._reject(turn, self.qn.msg("hint_choice", n=len(options) + 1))

    # -- income helper -------------------------------------------------------------------------------------------

    def _sources_reply(self, turn: _Turn, q: Question, reply: Reply) -> None:
        qn = self.qn
        st = turn.st
        sub = st["sub"]
        helper = qn.by_id[q.helper] if q.helper else q
        stage = sub["stage"]
        if stage == "pick":
            picked = self.read.multi(helper, helper.choices, reply)
            if picked is None:
                self._reject(turn, qn.msg("hint_multi", n=len(helper.choices)))
                return
            sub.update(picked=[c.payload for c in picked], i=0, amounts={})
            sub["stage"] = "amount" if picked else "total"
        elif stage == "amount":
            if reply.payload is not None:
                self._reject(turn, qn.msg("hint_stale"), count=False)
                return
            if not self._source_amount(turn, sub, reply):
                return
        elif stage == "period":
            period: str | None = None
            if reply.payload in ("month", "year"):
                period = reply.payload
            elif reply.folded in ("1", "2"):
                period = "month" if reply.folded == "1" else "year"
            elif reply.folded in _MONTH_WORDS:
                period = "month"
            elif reply.folded in _YEAR_WORDS:
                period = "year"
            else:
                period = self._period_labels.get(reply.folded)
            if period is not None:
                self._add_source(sub, int(sub.pop("pending", 0)), period)
            elif reply.payload is not None or not getattr(self._parse_amount(reply), "amount", 0):
                # Only a new non-zero amount replaces the one asked about ("không" here is no answer).
                self._reject(turn, qn.msg("hint_choice", n=2))
                return
            elif not self._source_amount(turn, sub, reply):  # the amount typed again, maybe with its period
                return
        else:  # total
            answer = self.read.yes_no(reply)
            if answer is None:
                self._reject(turn, qn.msg("hint_confirm"))
                return
            if answer is False:
                sub.update(stage="pick", picked=[], i=0, amounts={})
            else:
                amounts = {k: int(v) for k, v in sub["amounts"].items()}
                total = sum(amounts.values())
                if not self._check_bounds(turn, q, total):
                    sub.update(stage="pick", picked=[], i=0, amounts={})
                    return
                raw = "; ".join(f"{k}={v}" for k, v in amounts.items()) or "0"
                self._commit(turn, q, total, raw, {"sources": amounts})
                return
        st["tries"] = 0
        self._render(turn, full=True)

    def _parse_amount(self, reply: Reply) -> Any:
        """parse_money's result, or None when it found no usable amount."""
        parsed = self.services.parse_money(reply.text) if reply.text else None
        amount = getattr(parsed, "amount", None)
        if amount is None or isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            return None
        return parsed

    def _source_amount(self, turn: _Turn, sub: dict[str, Any], reply: Reply) -> bool:
        """Read one income source's amount; False (after re-asking) when it is not usable."""
        qn = self.qn
        if _DAILY.search(reply.folded):
            self._reject(turn, qn.msg("hint_period"))
            return False
        parsed = self._parse_amount(reply)
        # Nobody earns a few đồng from a source: "3" was meant as "3 triệu"; ask for the unit rather than guess.
        if parsed is None or 0 < parsed.amount < _MIN_SOURCE_AMOUNT:
            self._reject(turn, qn.msg("hint_money"))
            return False
        amount = int(parsed.amount)
        period = getattr(parsed, "period", None)
        if period is None and amount > 0:
            sub["pending"] = amount
            sub["stage"] = "period"
        else:
            sub.pop("pending", None)
            self._add_source(sub, amount, period or "month")
        return True

    @staticmethod
    def _add_source(sub: dict[str, Any], amount: int, period: str) -> None:
        """Record one source's amount per month and move to the next source, or to the total."""
        monthly = round(amount / 12) if period == "year" else amount
        source = sub["picked"][sub["i"]]
        sub["amounts"][source] = monthly
        sub["i"] += 1
        sub["stage"] = "amount" if sub["i"] < len(sub["picked"]) else "total"

    def _tag_fills(self, q: Question, sources: Mapping[str, Any], data: dict[str, Any]) -> None:
        """Set fields such as farm_household from the income helper: true when tagged sources are over half."""
        helper = self.qn.by_id[q.helper] if q.helper else q
        amounts = {s: v for s, v in sources.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        total = sum(amounts.values())
        for tag, target in helper.tag_fills.items():
            tagged = sum(
                v
                for s, v in amounts.items()
                if s in helper.choice_by_payload and tag in helper.choice_by_payload[s].tags
            )
            data[target] = total > 0 and tagged * 2 > total

    # -- summary and result --------------------------------------------------------------------------------------

    def _summary_answer(self, turn: _Turn, q: Question, reply: Reply) -> None:
        # Numbers here are the summary's item numbers ("3" = "sửa câu 3"), not yes/no.
        if reply.payload == "ok" or self.read.yes_no(reply, numbers=False) is True or reply.folded == self._summary_ok:
            self._finish(turn)
            return
        if reply.payload is None:
            match = _CORRECTION.match(reply.folded) or NUMBER_REPLY.match(reply.folded)
            if match:
                self._correct(turn, int(match.group(1)))
                return
        self._reject(turn, q.short)

    def _correct(self, turn: _Turn, n: int) -> None:
        st = turn.st
        items = self.views.summary_items(st["answers"], turn.on)
        if not 1 <= n <= len(items):
            turn.say(self.qn.msg("correction_bad", n=n, max=len(items)))
            return
        q = items[n - 1]
        old = self.views.display(q, st["answers"], turn.on)
        st.update(q=q.id, sub=None, done=False, tries=0, overlay=None)
        self._render(turn, full=True, lead=self.qn.msg("correction_prompt", n=n, old=old))

    def _finish(self, turn: _Turn) -> None:
        """Check the answers once more, ask the legal core, and give the result."""
        st = turn.st
        answers = st["answers"]
        for q in self.qn.summary_questions:
            entry = answers.get(q.id)
            if entry is None or not q.applies(answers, turn.on):
                continue
            problem = self._at_most_problem(q, entry.get("value"), answers)
            if problem:
                # A later correction (fewer members) contradicts an earlier answer: ask that one again.
                st.update(q=q.id, sub=None, tries=0)
                self._render(turn, full=True, lead=problem)
                return
        data = self.build_input(answers, turn.on)
        result = self._assess(turn, data)
        if result is None:
            return
        data, res = result
        st["done"] = True
        st["result"] = {"status": res.get("status"), "on": turn.on.isoformat()}
        event: dict[str, Any] = {"type": "assessment", "input": data, "result": res}
        if st.get("mode") == "share":
            # Personal details go beside the input, never into it: the core and the statistics never see them.
            event["household"] = self.household_details(answers, turn.on)
        collab = st.get("collab")
        if st.get("hh") and collab:
            event.update(
                provenance="collaborator", collaborator=collab["name"], collaborator_user_id=collab["user_id"]
            )
        turn.events.append(event)
        turn.assessment = res
        turn.say(render_result(self.qn, res, share=st.get("mode") == "share"))
        if st.get("hh") and collab:
            turn.say(self.qn.msg("collab_saved", label=self._label(st)) + "\n" + self.qn.msg("collab_menu"))

    def _assess(self, turn: _Turn, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Run the legal core; on invalid input, re-ask the question the core complains about."""
        st = turn.st
        for attempt in range(2):
            try:
                result = self.services.assess(data, on=turn.on)
            except Exception as exc:
                problems = list(getattr(exc, "problems", None) or [])
                if not problems:
                    raise
                codes = {getattr(p, "code", None) for p in problems}
                commune = st["answers"].get("commune") or {}
                if attempt == 0 and "unknown_commune" in codes and commune.get("area") in ("rural", "urban"):
                    # The resolver knows a code the core's geography does not: fall back to the area.
                    data = {k: v for k, v in data.items() if k != "commune_code"}
                    data["area"] = commune["area"]
                    continue
                first = problems[0]
                name = re.split(r"[.\[]", str(getattr(first, "field", "")), maxsplit=1)[0]
                qid = self.qn.field_questions.get(name)
                if qid is None:
                    raise
                st.update(q=qid, sub=None, tries=0, done=False)
                self._render(turn, full=True, lead=str(getattr(first, "message_vi", "")) or None)
                return None
            res = result.to_dict() if hasattr(result, "to_dict") else dict(result)
            return data, res
        return None


_MISSING: Final = object()


def _words(qn: Questionnaire, action: str) -> str:
    """A regex alternation of the folded keywords of ``action`` (longest first, so none is cut short)."""
    words = sorted((w for w, a in qn.keyword_plain.items() if a == action), key=len, reverse=True)
    return "|".join(re.escape(w) for w in words)


def _link_info(payload: Any) -> dict[str, Any] | None:
    """Read the pipeline's ``linked`` payload (JSON {user_id, name, communes}); None when it is not usable."""
    if not isinstance(payload, str) or len(payload) > 10_000:
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        return None
    user_id = data.get("user_id")
    name = data.get("name")
    if type(user_id) is not int or not isinstance(name, str) or not name.strip():
        return None
    communes = data.get("communes")
    return {
        "user_id": user_id,
        "name": " ".join(name.split())[: details.MAX_DETAIL_CHARS],
        "communes": [c for c in communes if isinstance(c, str)][:50] if isinstance(communes, list) else [],
    }


def _valid_answer(q: Question, value: Any) -> bool:
    """Check that a saved answer still fits its question (a changed questionnaire, or a damaged state)."""
    if value is _MISSING:
        return False
    if q.role == "consent":
        return value in ("anonymous", "share")
    kind = q.type
    if kind == "choice":
        return isinstance(value, str) and value in q.choice_by_payload
    if kind == "multi_choice":
        return isinstance(value, list) and all(isinstance(v, str) and v in q.choice_by_payload for v in value)
    if kind == "yes_no":
        return isinstance(value, bool)
    if kind == "int":
        return type(value) is int
    if kind in ("number", "money"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "commune":
        return value is None or isinstance(value, str)
    if kind in ("text", "hamlet"):
        return details.detail_ok(value)
    if kind == "phone":
        return details.phone_ok(value)
    if kind == "roster":
        return (
            isinstance(value, list)
            and 0 < len(value) <= 100
            and all(details.member_ok(m) and type(m.get("age")) is int for m in value)
        )
    return False


def _collab_ok(collab: Any) -> dict[str, Any] | None:
    """Check the saved collaborator link; None (not linked) when it is damaged."""
    if not isinstance(collab, Mapping):
        return None
    user_id = collab.get("user_id")
    name = collab.get("name")
    if type(user_id) is not int or not isinstance(name, str) or not name.strip():
        return None
    communes = collab.get("communes")
    paused = collab.get("paused")
    seq = collab.get("seq")
    return {
        "user_id": user_id,
        "name": name.strip()[: details.MAX_DETAIL_CHARS],
        "communes": [c for c in communes if isinstance(c, str)][:50] if isinstance(communes, list) else [],
        "seq": seq if type(seq) is int and seq >= 0 else 0,
        # Each snapshot is checked in full when it is resumed (through _load), so only its shape is checked here.
        "paused": [copy.deepcopy(dict(p)) for p in paused if isinstance(p, Mapping)][:_MAX_PAUSED]
        if isinstance(paused, list)
        else [],
    }


def _options_ok(options: Any) -> bool:
    """Check saved commune candidates: a non-empty list of {code, name, province, ...} strings."""
    return (
        isinstance(options, list)
        and bool(options)
        and all(
            isinstance(o, Mapping) and all(isinstance(o.get(k), str) for k in ("code", "name", "province"))
            for o in options
        )
    )


def _commune_info(match: Any) -> dict[str, Any] | None:
    """Read a ``CommuneMatch`` (or a bare commune) into plain JSON values."""
    commune = getattr(match, "commune", match)
    code = getattr(commune, "code", None)
    name = getattr(commune, "name", None)
    if not code or not name:
        return None
    area = getattr(commune, "area", None)
    score = getattr(match, "score", 1.0)
    return {
        "code": str(code),
        "name": str(name),
        "province": str(getattr(commune, "province_name", "") or ""),
        "area": area if area in ("rural", "urban") else None,
        "alias": getattr(match, "matched_alias", None),
        "score": float(score) if isinstance(score, (int, float)) else 0.0,
        "exact": bool(getattr(match, "exact", False)),
    }


@lru_cache(maxsize=1)
def _default_engine(path: str) -> Engine:
    return Engine(load_questionnaire(Path(path)))


def default_engine() -> Engine:
    """Return the shared engine over ``bot/data/questionnaire.yaml`` (loaded and compiled once per process)."""
    return _default_engine(str(DEFAULT_PATH))
