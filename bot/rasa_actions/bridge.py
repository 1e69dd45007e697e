"""The bridge between Rasa slots and our conversation engine (no rasa_sdk imports: the actions stay thin).

Every answer a Rasa user types is judged by the engine itself, so Rasa and our own channels accept exactly the
same answers with the same Vietnamese hints. For one slot the bridge builds an engine state positioned at that
slot's question (earlier answers rebuilt from the other slots), runs ``Engine.step`` (contract section 5) on the
reply, and reads the outcome: an answer recorded, a sub-step opened (read-back confirmation, commune pick list,
income helper), the reply refused with a hint, or a global command. Nothing about parsing or validation is
re-implemented here.

Slots follow the questionnaire (``bot/data/questionnaire.yaml``): one slot per question, named by its id, except
the multi-choice "hardships" question, whose choices each set one input field and become one yes/no slot named
after that field. A few derived slots mirror input fields for Rasa stories (``commune_code``, ``dependants``,
``internet``). An engine sub-step is carried between turns in the ``followup_state`` slot and answered through the
``followup`` slot, which the form requests before the question it belongs to.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

from assessment import assess
from bot.conversation import Engine, Inbound, default_engine
from bot.conversation.engine import VN_TZ
from bot.conversation.messages import Choice, StepResult
from bot.conversation.questionnaire import Question
from bot.conversation.replies import Reply, read_inbound

__all__ = [
    "DERIVED_SLOTS",
    "FOLLOWUP_SLOT",
    "FOLLOWUP_STATE_SLOT",
    "FORM_NAME",
    "RASA_COMMANDS",
    "REFERENCE_DATE_ENV",
    "REFERENCE_DATE_SLOT",
    "Bridge",
    "Outcome",
    "SlotSpec",
    "choose_payload",
    "default_bridge",
    "reference_date",
]

FORM_NAME: Final = "household_form"
#: Transient slot the form requests while an engine sub-step waits for its answer.
FOLLOWUP_SLOT: Final = "followup"
#: ``{"q": question id, "sub": engine sub-step}``: the engine's own sub-step state, kept between turns.
FOLLOWUP_STATE_SLOT: Final = "followup_state"
#: ISO date the assessment is made on ("2026-06-01"); pins results in tests and demos.
REFERENCE_DATE_SLOT: Final = "reference_date"
#: Same, for the whole action server (the slot wins when both are set).
REFERENCE_DATE_ENV: Final = "TUSOAT_REFERENCE_DATE"
#: Slots that mirror household input fields filled by a question (set when that question is answered).
DERIVED_SLOTS: Final[tuple[str, ...]] = ("commune_code", "dependants", "internet")
#: Slot holding the income helper's per-source amounts (the engine derives ``farm_household`` from them).
INCOME_SOURCES_SLOT: Final = "income_sources"
#: Rasa intent and entity carried by button payloads: ``/choose{"choice": "housing:durable"}``.
CHOOSE_INTENT: Final = "choose"
CHOICE_ENTITY: Final = "choice"

#: Engine commands that are Rasa's to handle (intents and rules in ``rasa/``); the engine's help text is used as is,
#: and the collaborator words ("liên kết", "hộ mới"...) mean nothing special to a resident, as in the engine.
RASA_COMMANDS: Final = frozenset({"restart", "back", "pause", "resume", "erase"})

_SPLIT_KIND: Final = "multi_choice"
#: Question types a slot can hold (the quick form); other types are steps of share or collaborator mode.
_FORM_TYPES: Final = frozenset({"commune", "choice", "int", "number", "money", "multi_choice", "yes_no"})
_COMMUNE: Final = "commune"  # the question type whose answer is a commune code


def choose_payload(engine_payload: str) -> str:
    """Return the Rasa button payload that delivers an engine button payload as the ``choice`` entity."""
    return f"/{CHOOSE_INTENT}" + json.dumps({CHOICE_ENTITY: engine_payload}, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One form slot: the question whose answers it holds, and for yes/no indicator slots the choice it stands for."""

    slot: str
    question: str
    choice: str | None = None  # payload of the split multi-choice option; None for a whole question

    @property
    def is_indicator(self) -> bool:
        """Tell whether this is a yes/no slot split out of a multi-choice question."""
        return self.choice is not None


Kind = Literal["answer", "followup", "retry", "command"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the engine made of one reply to one question.

    ``answer``: recorded, ``value``/``entry`` are the engine's answer; ``followup``: a sub-step opened or moved on
    (``sub``); ``retry``: refused or cancelled, ask the question again; ``command``: a global command word
    (pause, restart, ...) that Rasa's own rules must handle. ``lead`` is what to tell the user first (a hint, a
    "noted" read-back, the help text); the question itself is asked again by Rasa, so it is never part of it.
    """

    kind: Kind
    lead: str = ""
    value: Any = None
    entry: Mapping[str, Any] = field(default_factory=dict)
    sub: Mapping[str, Any] | None = None
    command: str | None = None


def reference_date(slots: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dt.date:
    """Return the assessment date: the ``reference_date`` slot, else ``TUSOAT_REFERENCE_DATE``, else today in Vietnam.

    Raises:
        ValueError: a set value is not an ISO date; a misconfigured date must not silently become today.
    """
    env = os.environ if environ is None else environ
    for source, raw in (
        (REFERENCE_DATE_SLOT, slots.get(REFERENCE_DATE_SLOT)),
        (REFERENCE_DATE_ENV, env.get(REFERENCE_DATE_ENV)),
    ):
        if raw in (None, ""):
            continue
        try:
            return dt.date.fromisoformat(str(raw).strip())
        except ValueError:
            raise ValueError(f"{source} must be an ISO date such as 2026-06-01, got {raw!r}") from None
    return dt.datetime.now(VN_TZ).date()


class Bridge:
    """Maps form slots to engine answers and runs the engine on one reply at a time.

    Args:
        engine: the conversation engine whose questionnaire, parsers and validators are used.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.qn = engine.qn
        self.specs: tuple[SlotSpec, ...] = tuple(self._build_specs())
        self.by_slot: dict[str, SlotSpec] = {s.slot: s for s in self.specs}
        self.slot_of_question: dict[str, str] = {s.question: s.slot for s in self.specs if not s.is_indicator}

    # ---------------------------------------------------------------------------------------------------------
    # Slots

    def _build_specs(self) -> list[SlotSpec]:
        specs: list[SlotSpec] = []
        for q in self.qn.linear:
            if q.role is not None or q.type not in _FORM_TYPES:
                # Consent and summary are conversation steps; the member roster, household details (hamlet,
                # head, phone) and the collaborator's entry choice belong to share / collaborator mode, which a
                # Rasa form for residents does not offer.
                continue
            if self._is_split(q):
                specs.extend(SlotSpec(c.sets, q.id, c.payload) for c in q.choices if c.sets)
            elif q.fills:
                specs.append(SlotSpec(q.id, q.id))
        return specs

    @staticmethod
    def _is_split(q: Question) -> bool:
        """Tell whether a multi-choice question becomes yes/no slots: every choice only sets a field ("hardships").

        Yes/no questions suit Rasa's affirm/deny intents far better than "type the numbers, e.g. 1,3".
        """
        return q.type == _SPLIT_KIND and not q.fills and all(c.sets for c in q.choices)

    def _is_commune(self, question: str) -> bool:
        return self.qn.by_id[question].type == _COMMUNE

    @property
    def form_slots(self) -> list[str]:
        """Return every slot the form may require, in questionnaire order (the domain's ``required_slots``)."""
        return [s.slot for s in self.specs]

    def answers(self, slots: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Rebuild the engine's answer map (``{question id: {"value": ...}}``) from the slots filled so far."""
        answers: dict[str, dict[str, Any]] = {self.qn.consent.id: {"value": "anonymous", "raw": ""}}
        split: dict[str, list[str]] = {}
        for spec in self.specs:
            value = slots.get(spec.slot)
            if spec.is_indicator:
                if value is not None:
                    chosen = split.setdefault(spec.question, [])
                    if value is True:
                        chosen.append(str(spec.choice))
                continue
            if value is None:
                continue
            entry: dict[str, Any] = {"value": value, "raw": ""}
            if self._is_commune(spec.question):
                # The slot holds what the user sees ("Xã Thường Phước, Đồng Tháp"); the answer is the code.
                entry = {"value": slots.get("commune_code"), "raw": str(value)}
                if slots.get("area") in ("rural", "urban"):
                    entry["area"] = slots["area"]
            sources = slots.get(INCOME_SOURCES_SLOT)
            if self.qn.by_id[spec.question].helper and isinstance(sources, Mapping):
                entry["sources"] = dict(sources)
            answers[spec.question] = entry
        for qid, chosen in split.items():
            answers[qid] = {"value": chosen, "raw": ""}
        return answers

    def required_slots(self, slots: Mapping[str, Any], on: dt.date) -> list[str]:
        """Return the slots the form needs now: questions that apply, plus ``followup`` when a sub-step is pending.

        Uses the questionnaire's own ``ask_if`` / ``show_if`` conditions, so that "area" is asked only when the
        commune is unknown, "floor_area" only for a household with a home, child questions only with children.
        """
        answers = self.answers(slots)
        pending = self.pending_question(slots)
        required: list[str] = []
        for spec in self.specs:
            q = self.qn.by_id[spec.question]
            if not q.applies(answers, on):
                continue
            if spec.is_indicator and q.choice_by_payload[str(spec.choice)] not in q.visible_choices(answers, on):
                continue
            if pending == spec.question and (not required or required[-1] != FOLLOWUP_SLOT):
                required.append(FOLLOWUP_SLOT)
            required.append(spec.slot)
        return required

    def missing_slots(self, slots: Mapping[str, Any], on: dt.date) -> list[str]:
        """Return the required slots not filled yet (``followup`` counts as missing while a sub-step is pending)."""
        return [s for s in self.required_slots(slots, on) if s == FOLLOWUP_SLOT or slots.get(s) is None]

    def pending_question(self, slots: Mapping[str, Any]) -> str | None:
        """Return the question an engine sub-step is pending for, if any."""
        state = slots.get(FOLLOWUP_STATE_SLOT)
        if (
            isinstance(state, Mapping)
            and state.get("q") in self.slot_of_question
            and isinstance(state.get("sub"), Mapping)
        ):
            return str(state["q"])
        return None

    def is_settled(self, slot: str, value: Any, slots: Mapping[str, Any]) -> bool:
        """Tell whether ``value`` is already a validated slot value rather than something the user typed.

        Rasa validates the filled slots again when a form is (re)activated ("tiếp tục" after "dừng"); a value set
        by a validator (an integer, a choice payload, a list, a yes/no) is kept as it is instead of being parsed
        again as if typed. Typed text always arrives as a string, so it is never mistaken for a settled number.
        """
        spec = self.by_slot.get(slot)
        if spec is None or value is None:
            return False
        if spec.is_indicator:
            return isinstance(value, bool)
        q = self.qn.by_id[spec.question]
        if q.type == _COMMUNE:
            # The display name stands for a resolved code; "không biết" (no code) is simply read again.
            return isinstance(value, str) and slots.get("commune_code") is not None
        if q.type == "choice":
            return isinstance(value, str) and value in q.choice_by_payload
        if q.type == "multi_choice":
            return isinstance(value, list) and all(isinstance(v, str) and v in q.choice_by_payload for v in value)
        if q.type == "int":
            return type(value) is int
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    # ---------------------------------------------------------------------------------------------------------
    # Replies

    @staticmethod
    def inbound(value: Any, latest_message: Mapping[str, Any]) -> Inbound:
        """Turn a slot value (from_text / from_intent mapping) into the engine's ``Inbound``.

        A Rasa button payload (``/choose{"choice": "housing:durable"}``, ``/affirm``) reaches the slot as its raw
        text; the structured part is read from the parsed message instead, the way every other channel delivers
        button payloads to the engine.
        """
        if isinstance(value, bool):  # from_intent: affirm -> true, deny -> false
            return Inbound(payload="yes" if value else "no", kind="payload")
        if isinstance(value, (int, float)):
            return Inbound(text=str(value))
        text = value if isinstance(value, str) else ""
        if text.startswith("/"):
            for entity in reversed(latest_message.get("entities") or []):
                if (
                    isinstance(entity, Mapping)
                    and entity.get("entity") == CHOICE_ENTITY
                    and isinstance(entity.get("value"), str)
                ):
                    return Inbound(payload=entity["value"], kind="payload")
            intent = latest_message.get("intent") or {}
            name = intent.get("name") if isinstance(intent, Mapping) else None
            if name in ("affirm", "deny"):
                return Inbound(payload="yes" if name == "affirm" else "no", kind="payload")
        return Inbound(text=text)

    def _now(self, on: dt.date) -> dt.datetime:
        # A naive noon on the reference date: the engine takes its reference date from it, and the probe state
        # is stamped with the same instant, so it is never "expired".
        return dt.datetime.combine(on, dt.time(12))

    def probe(
        self,
        question: str,
        inbound: Inbound,
        slots: Mapping[str, Any],
        on: dt.date,
        sub: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Run the engine on one reply to ``question`` (or to its pending sub-step) and classify the result."""
        engine = self.engine
        reply = read_inbound(inbound, self.qn.settings.max_answer_chars)
        command = self._command(reply)
        # "trợ giúp" is answered by the engine's help text; "quay lại" inside a sub-step cancels it. Any other
        # command (dừng, làm lại, xóa dữ liệu...) is Rasa's business: its rules own the conversation's flow.
        if command is not None and not (command == "back" and sub is not None):
            return Outcome("command", command=command)
        now = self._now(on)
        state = engine.new_state(now)
        answers = self.answers(slots)
        answers.pop(question, None)
        state.update(q=question, mode="anonymous", answers=answers, sub=dict(sub) if sub is not None else None)
        res = engine.step(state, inbound, now)
        answered = [e for e in res.events if e.get("type") == "answer" and e.get("question_id") == question]
        done = [str(e.get("type")) for e in res.events if e.get("type") in RASA_COMMANDS]
        if done or res.state.get("overlay"):
            # e.g. unaccented "dung" read as "dừng" (pause) where no yes/no is expected
            return Outcome("command", command=done[0] if done else str(res.state.get("overlay")))
        lead = self._lead(res, on)
        if answered:
            entry = res.state["answers"][question]
            return Outcome("answer", lead=lead, value=entry.get("value"), entry=entry)
        if res.state.get("q") == question and res.state.get("sub") is not None:
            return Outcome("followup", lead=lead, sub=res.state["sub"])
        return Outcome("retry", lead=lead)

    def _command(self, reply: Reply) -> str | None:
        """Return the global command a reply is, among those Rasa's rules handle (help is answered, not passed on)."""
        command = self.engine.read.keyword(reply, accepts_yes=True)
        return command if command in RASA_COMMANDS else None

    def _lead(self, res: StepResult, on: dt.date) -> str:
        """Return the engine's messages minus the question it asks next (Rasa asks that itself, with buttons)."""
        texts = [m.text for m in res.messages]
        st = res.state
        if texts and st.get("q") and not st.get("overlay") and not st.get("done"):
            for full in (True, False):
                view = self.engine.views.view(st, on, full)[0]
                if texts[-1] == view:
                    texts.pop()
                    break
                if texts[-1].endswith("\n" + view):
                    texts[-1] = texts[-1][: -len(view) - 1]
                    break
        return "\n\n".join(t.strip() for t in texts if t.strip())

    def yes_no(self, question: str, inbound: Inbound) -> Outcome:
        """Read a yes/no indicator slot with the engine's yes/no reader (no engine question asks it alone)."""
        reply = read_inbound(inbound, self.qn.settings.max_answer_chars)
        if self.engine.read.keyword(reply, accepts_yes=True) == "help":
            return Outcome("retry", lead=self.qn.by_id[question].help)
        command = self._command(reply)
        if command is not None:
            return Outcome("command", command=command)
        answer = self.engine.read.yes_no(reply)
        if answer is None and reply.payload is None and reply.folded in self.qn.words["none"]:
            # "không có": the engine's multi-choice question these slots come from reads it as "none of them".
            answer = False
        if answer is None:
            return Outcome("retry", lead=self.qn.msg("hint_yes_no"))
        return Outcome("answer", value=answer, entry={"value": answer})

    # ---------------------------------------------------------------------------------------------------------
    # Slot values from outcomes

    def slot_value(self, question: str, entry: Mapping[str, Any], slots: Mapping[str, Any], on: dt.date) -> Any:
        """Return the value a question's slot holds for an engine answer (the commune slot: its display name)."""
        if self._is_commune(question):
            answers = {question: dict(entry)}
            if entry.get("value") is None:
                return entry.get("raw") or self.qn.msg("summary_none")
            return self.engine.views.display(self.qn.by_id[question], answers, on)
        return entry.get("value")

    def derived(self, question: str, entry: Mapping[str, Any], slots: Mapping[str, Any], on: dt.date) -> dict[str, Any]:
        """Return the derived slots an answer fills (``commune_code``, ``dependants``, ``internet``, area, sources).

        Values come from ``Engine.build_input`` over all answers, so that e.g. ``dependants`` is the engine's sum
        of children and allowance recipients.
        """
        q = self.qn.by_id[question]
        answers = self.answers(slots)
        answers[question] = dict(entry)
        data = self.engine.build_input(answers, on)
        fields = {f.field for f in q.fills} | {c.sets for c in q.choices if c.sets}
        out: dict[str, Any] = {name: data.get(name) for name in DERIVED_SLOTS if name in fields}
        if self._is_commune(question):
            out["area"] = entry.get("area") if entry.get("value") is not None else None
        if q.helper:
            sources = entry.get("sources")
            out[INCOME_SOURCES_SLOT] = dict(sources) if isinstance(sources, Mapping) else None
        return out

    def tentative(self, question: str, sub: Mapping[str, Any]) -> dict[str, Any]:
        """Return the derived slots known while a sub-step waits: a commune being confirmed has its code and area."""
        if not self._is_commune(question):
            return {}
        if sub.get("kind") == "confirm":
            detail = sub.get("detail")
            if not isinstance(detail, Mapping):
                detail = {}
            return {"commune_code": sub.get("value"), "area": detail.get("area")}
        return {"commune_code": None, "area": None}

    def followup_view(self, slots: Mapping[str, Any], on: dt.date) -> tuple[str, list[Choice]] | None:
        """Render the pending sub-step the engine's way (prompt and buttons); None when nothing is pending."""
        question = self.pending_question(slots)
        if question is None:
            return None
        state = self.engine.new_state(self._now(on))
        state.update(q=question, answers=self.answers(slots), sub=dict(slots[FOLLOWUP_STATE_SLOT]["sub"]))
        try:
            return self.engine.views.view(state, on, True)
        except (KeyError, TypeError, ValueError, IndexError):
            return None  # a damaged sub-step: the caller asks the question afresh

    # ---------------------------------------------------------------------------------------------------------
    # Assessment

    def assess(self, slots: Mapping[str, Any], on: dt.date) -> tuple[dict[str, Any], dict[str, Any]]:
        """Build the household input from the slots the way the engine does and run the legal core.

        Raises:
            assessment.InputError: the core refuses the input (its problems name the field at fault).
        """
        data = self.engine.build_input(self.answers(slots), on)
        result = assess(data, on=on)
        return data, result.to_dict()

    def slot_for_field(self, field_path: str) -> str | None:
        """Return the slot to ask again when the core refuses input field ``field_path`` ("household_size")."""
        name = field_path.split(".", 1)[0].split("[", 1)[0]
        for spec in self.specs:
            if spec.is_indicator and spec.slot == name:
                return spec.slot
        question = self.qn.field_questions.get(name)
        return self.slot_of_question.get(question) if question else None


@lru_cache(maxsize=1)
def default_bridge() -> Bridge:
    """Return the bridge over the shared default engine (questionnaire loaded once per process)."""
    return Bridge(default_engine())
