"""Load, validate and compile the questionnaire (``bot/data/questionnaire.yaml``).

The file is checked strictly once, at load: an unknown key, a missing text, a ``fills`` field outside the
household input contract, a value that the field does not accept, or a condition naming an unknown (or later)
question raises ``QuestionnaireError`` naming the question. Everything the engine needs per message is
precomputed here (folded labels and aliases, keyword tables, compiled conditions), so a step does no parsing of
the file and compiles no regular expression.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from bot.parsing.text import fold

from .contract import FIELD_SPECS, HOUSEHOLD_DETAILS, MEMBER_FIELD_SPECS, FieldSpec

__all__ = [
    "DEFAULT_PATH",
    "ChoiceSpec",
    "Condition",
    "Fill",
    "MemberSpec",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "Settings",
    "Validation",
    "AtMost",
    "load_questionnaire",
    "parse_questionnaire",
    "normalize",
]

DEFAULT_PATH: Final = Path(__file__).resolve().parent.parent / "data" / "questionnaire.yaml"

QUESTION_TYPES: Final = frozenset(
    {
        "yes_no",
        "choice",
        "multi_choice",
        "int",
        "number",
        "money",
        "commune",
        "income_sources",
        "summary",
        # Share and collaborator mode: personal details kept beside the input (``household``), not in it.
        "text",
        "phone",
        "hamlet",
        # Detailed mode: the member roster (a count, then the ``roster`` questions for each member).
        "roster",
    }
)
#: Question types whose answer is one of the household details (``household`` key) and nothing else.
DETAIL_TYPES: Final = frozenset({"text", "phone", "hamlet"})
#: Types a roster's member question may have.
MEMBER_TYPES: Final = frozenset({"int", "yes_no", "choice", "multi_choice"})
ROLES: Final = frozenset({"consent", "summary"})
CONSENT_PAYLOADS: Final = frozenset({"anonymous", "share", "decline"})
TRANSFORMS: Final = frozenset({"value", "sum", "positive"})
KEYWORD_ACTIONS: Final = (
    "restart",
    "back",
    "help",
    "pause",
    "resume",
    "erase",
    # Collaborator mode: "liên kết" (followed by the code), and the commands of a linked collaborator.
    "link",
    "unlink",
    "new_household",
    "households",
)
WORD_SETS: Final = ("yes", "no", "none", "dont_know", "skip")

_TOP_KEYS: Final = frozenset({"version", "settings", "keywords", "words", "messages", "questions"})
_QUESTION_KEYS: Final = frozenset(
    {
        "id",
        "type",
        "role",
        "text",
        "short",
        "help",
        "summary_label",
        "unit",
        "fills",
        "values",
        "choices",
        "validation",
        "ask_if",
        "when_skipped",
        "helper",
        "linear",
        "tag_fills",
        "household",
        "optional",
        "required_if",
        "flow",
        "member",
        "roster",
    }
)
_MEMBER_KEYS: Final = frozenset({"field", "age_min", "age_max", "unless"})
_CHOICE_KEYS: Final = frozenset(
    {
        "payload",
        "label",
        "short_label",
        "description",
        "value",
        "sets",
        "hidden_value",
        "show_if",
        "aliases",
        "goto",
        "tags",
    }
)
_VALIDATION_KEYS: Final = frozenset({"min", "max", "messages", "at_most"})
_VALIDATION_MESSAGES: Final = frozenset({"invalid", "min", "max"})
_AT_MOST_KEYS: Final = frozenset({"limit", "total_with", "message"})
_SETTINGS_TYPES: Final[dict[str, type]] = {
    "max_reasks": int,
    "max_answer_chars": int,
    "commune_min_score": float,
    "commune_choices": int,
}
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PAYLOAD = re.compile(r"^[a-z0-9_]+$")
_PUNCT = re.compile(r"[^\w\s]")

#: Every engine message and the placeholders it may use (checked at load so a typo cannot fail mid-conversation).
MESSAGE_FIELDS: Final[dict[str, frozenset[str]]] = {
    key: frozenset(fields)
    for key, fields in {
        "greeting": (),
        "welcome_back": (),
        "goodbye": (),
        "declined": (),
        "consent_anonymous": (),
        "consent_share": (),
        "hint_empty": (),
        "hint_media": (),
        "hint_too_long": (),
        "hint_unknown_command": (),
        "hint_stale": (),
        "hint_choice": ("n",),
        "hint_multi": ("n",),
        "hint_yes_no": (),
        "hint_confirm": (),
        "hint_int": (),
        "hint_number": (),
        "hint_money": (),
        "hint_period": (),
        "hint_not_finite": (),
        "offer_help": (),
        "commands": (),
        "back_first": (),
        "paused": (),
        "still_paused": (),
        "resumed": (),
        "expired": ("days",),
        "expired_resume": (),
        "expired_restart": (),
        "erase_confirm": (),
        "erase_yes": (),
        "erase_no": (),
        "erased": (),
        "erase_cancelled": (),
        "restarted": (),
        "apology": (),
        "confirm_yes": (),
        "confirm_no": (),
        "answer_yes": (),
        "answer_no": (),
        "confirm_money": ("amount",),
        "confirm_money_year": ("amount", "monthly"),
        "confirm_number": ("value", "unit"),
        "noted_money": ("amount",),
        "commune_confirm": ("name", "province"),
        "commune_confirm_alias": ("name", "province", "alias"),
        "commune_pick": (),
        "commune_none_of_these": (),
        "commune_not_found": (),
        "commune_retype": (),
        "commune_set": ("name", "province"),
        "income_amount": ("source",),
        "income_amount_short": ("source",),
        "income_period": ("amount",),
        "income_month": (),
        "income_year": (),
        "income_total": ("lines", "total"),
        "income_total_line": ("source", "amount"),
        "summary_mode_anonymous": (),
        "summary_mode_share": (),
        "summary_item": ("n", "label", "value"),
        "summary_none": (),
        "summary_money": ("amount",),
        "summary_footer": (),
        "summary_ok": (),
        "summary_income_sources": ("sources",),
        "correction_bad": ("n", "max"),
        "correction_prompt": ("n", "old"),
        "done_hint": (),
        "result_title": (),
        "result_status": ("standard", "status"),
        "result_official": (),
        "result_income": ("income", "area", "line"),
        "result_income_below": ("gap",),
        "result_income_equal": (),
        "result_income_above": ("gap",),
        "result_deprivations_none": ("total",),
        "result_deprivations": ("count", "total", "threshold"),
        "result_deprivation_item": ("name", "reason", "reference"),
        "result_unanswered": ("names",),
        "result_change": (),
        "result_next": ("standard", "status", "area", "line", "count"),
        "result_next_items": ("names",),
        "result_policies": (),
        "result_policy_item": ("name", "benefit", "office", "reference"),
        "result_policy_condition": ("condition",),
        "result_no_policies": (),
        "result_provisional": (),
        "result_apply": (),
        "result_shared": (),
        "result_after": (),
        "area_rural": (),
        "area_urban": (),
        # Share-mode details (optional answers).
        "optional_hint": (),
        "skip_label": (),
        "summary_skipped": (),
        "hint_name": (),
        "hint_phone": (),
        "hint_hamlet": ("n",),
        "hint_hamlet_name": (),
        # Linking a chat to a collaborator account, and collaborator mode.
        "link_checking": (),
        "link_ok": ("name",),
        "link_failed": (),
        "link_usage": (),
        "link_blocked": (),
        "unlinked": (),
        "not_linked": (),
        "collab_hello": ("name",),
        "collab_menu": (),
        "collab_new_button": (),
        "collab_list_button": (),
        "collab_new": ("label",),
        "collab_paused": ("label",),
        "collab_list_title": (),
        "collab_list_item": ("n", "label", "answered"),
        "collab_list_empty": (),
        "collab_list_footer": ("n",),
        "collab_resumed": ("label",),
        "collab_bad_number": ("n", "max"),
        "collab_saved": ("label",),
        "collab_too_many": ("max",),
        "collab_household": ("n",),
        "collab_self": (),
        "collab_restarted": ("label",),
        "erase_confirm_collaborator": (),
        "summary_mode_collaborator": ("name",),
        # Detailed mode: the member roster.
        "member_lead": ("i", "n"),
        "member_lead_known": ("i", "n", "sex", "age"),
        "member_male": (),
        "member_female": (),
        "member_item": ("sex", "age"),
        "members_summary": ("count", "items"),
        "roster_done": ("n",),
    }.items()
}


class QuestionnaireError(ValueError):
    """The questionnaire file is invalid; the message names the file and the question or key at fault."""


def normalize(text: str) -> str:
    """Lower-case ``text``, keep its accents, turn punctuation into spaces and collapse spaces.

    Used where accents matter ("dừng" pauses, "đúng" says yes, both fold to "dung").
    """
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFC", text).lower()).split())


AnswerMap = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled skip/show condition over the answers so far and the reference date."""

    test: Callable[[AnswerMap, dt.date], bool]
    refs: frozenset[str]

    def __call__(self, answers: AnswerMap, on: dt.date) -> bool:
        """Return whether the condition holds."""
        return self.test(answers, on)


@dataclass(frozen=True, slots=True)
class ChoiceSpec:
    """One choice of a question; ``keys`` are the folded texts that select it when typed."""

    payload: str
    label: str
    short_label: str
    description: str | None
    value: Any
    sets: str | None
    hidden_value: bool | None
    show_if: Condition | None
    goto: str | None
    tags: frozenset[str]
    keys: frozenset[str]
    accented_keys: frozenset[str]
    folded_label: str


@dataclass(frozen=True, slots=True)
class AtMost:
    """Cross-question bound: this answer plus the answers of ``total_with`` must not exceed answer ``limit``."""

    limit: str
    total_with: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Validation:
    """Bounds of a numeric answer and the Vietnamese messages shown when they are broken."""

    min: float | None
    max: float | None
    messages: Mapping[str, str]
    at_most: AtMost | None


@dataclass(frozen=True, slots=True)
class Fill:
    """One input field filled by a question, and how the answer becomes its value."""

    field: str
    transform: str  # value | sum | positive


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """Where a roster question's answer goes in a member, and which members are asked (ages in completed years).

    ``field`` is None for a multi_choice whose choices ``sets`` the member fields. The question is skipped when the
    member's age is outside ``age_min``..``age_max`` (both inclusive), when ``field`` is already known (the sex given
    with the age), or when one of the ``unless`` fields is true (no education level asked of someone studying).
    """

    field: str | None
    age_min: int | None
    age_max: int | None
    unless: tuple[str, ...]

    def applies(self, member: Mapping[str, Any]) -> bool:
        """Return whether this question is asked of ``member`` (which already has its age)."""
        age = member.get("age")
        if type(age) is not int:
            return self.field == "age"
        if self.field is not None and self.field in member:
            return False
        if self.age_min is not None and age < self.age_min:
            return False
        if self.age_max is not None and age > self.age_max:
            return False
        return not any(member.get(name) is True for name in self.unless)


@dataclass(frozen=True, slots=True)
class Question:
    """One compiled question."""

    id: str
    type: str
    index: int
    text: str
    short: str
    help: str
    summary_label: str | None
    unit: str | None
    role: str | None
    fills: tuple[Fill, ...]
    yes_value: Any
    no_value: Any
    choices: tuple[ChoiceSpec, ...]
    validation: Validation | None
    ask_if: Condition | None
    when_skipped: Mapping[str, Any]
    helper: str | None
    linear: bool
    tag_fills: Mapping[str, str]
    dynamic_choices: bool
    choice_by_payload: Mapping[str, ChoiceSpec]
    accented_index: Mapping[str, ChoiceSpec]
    folded_index: Mapping[str, ChoiceSpec]
    #: Share/collaborator details: which ``household`` key the answer fills (text, phone, hamlet questions).
    household: str | None = None
    #: "bỏ qua" records no answer (None) instead of being refused; ``required_if`` makes it required again.
    optional: bool = False
    required_if: Condition | None = None
    #: The answer only steers the flow (conditions); it fills no input field.
    flow: bool = False
    #: A member question of the roster (linear: false).
    member: MemberSpec | None = None
    #: Roster questions: the member questions, in the order they are asked of each member.
    roster: tuple[str, ...] = ()

    def skippable(self, answers: AnswerMap, on: dt.date) -> bool:
        """Return whether "bỏ qua" is accepted here, given the answers so far."""
        return self.optional and not (self.required_if is not None and self.required_if(answers, on))

    def applies(self, answers: AnswerMap, on: dt.date) -> bool:
        """Return whether this question is asked, given the answers so far."""
        return self.ask_if is None or self.ask_if(answers, on)

    def visible_choices(self, answers: AnswerMap, on: dt.date) -> tuple[ChoiceSpec, ...]:
        """Return the choices shown (and numbered) given the answers so far."""
        if not self.dynamic_choices:
            return self.choices
        return tuple(c for c in self.choices if c.show_if is None or c.show_if(answers, on))


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunables of the conversation (from the ``settings`` block)."""

    max_reasks: int = 2
    max_answer_chars: int = 300
    commune_min_score: float = 0.7
    commune_choices: int = 3


@dataclass(frozen=True)
class Questionnaire:
    """The compiled questionnaire: questions in order plus the tables the engine looks things up in."""

    version: str
    settings: Settings
    messages: Mapping[str, str]
    questions: tuple[Question, ...]
    by_id: Mapping[str, Question]
    linear: tuple[Question, ...]
    keyword_accented: Mapping[str, str]
    keyword_plain: Mapping[str, str]
    ambiguous_keywords: frozenset[str]
    words: Mapping[str, frozenset[str]]
    field_questions: Mapping[str, str]
    source: str = "<data>"
    summary_questions: tuple[Question, ...] = field(default=())

    @property
    def consent(self) -> Question:
        """The consent question (always the first)."""
        return self.linear[0]

    def msg(self, key: str, **values: Any) -> str:
        """Return message ``key`` with its placeholders filled."""
        template = self.messages[key]
        return template.format(**values) if values else template


def load_questionnaire(path: str | Path = DEFAULT_PATH) -> Questionnaire:
    """Read, validate and compile a questionnaire file; raise ``QuestionnaireError`` on any defect."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise QuestionnaireError(f"{path.name}: not valid YAML: {exc}") from exc
    return parse_questionnaire(data, source=path.name)


def parse_questionnaire(data: Any, source: str = "<data>") -> Questionnaire:
    """Validate and compile an already-parsed questionnaire mapping (see ``load_questionnaire``)."""
    return _Compiler(source).compile(data)


# --------------------------------------------------------------------------------------------------------------
# Compilation


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


def _unambiguous(choices: tuple[ChoiceSpec, ...]) -> dict[str, ChoiceSpec]:
    """Map folded labels/aliases to their choice, leaving out keys that fold the same for two choices.

    "nước mưa" (rain) and "nước mua" (bought) both fold to "nuoc mua": such a key only selects a choice when
    typed with its accents (``accented_index``).
    """
    index: dict[str, ChoiceSpec] = {}
    clash: set[str] = set()
    for c in choices:
        for key in c.keys:
            other = index.get(key)
            if other is not None and other is not c:
                clash.add(key)
            index[key] = c
    for key in clash:
        del index[key]
    return index


TestFn = Callable[[AnswerMap, dt.date], bool]


def _all_of(tests: tuple[TestFn, ...]) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        return all(f(answers, on) for f in tests)

    return test


def _any_of(tests: tuple[TestFn, ...]) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        return any(f(answers, on) for f in tests)

    return test


def _negate(inner: TestFn) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        return not inner(answers, on)

    return test


def _date_test(compare: Callable[[Any, Any], bool], day: dt.date) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        return bool(compare(on, day))

    return test


def _answered(qid: str) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        return _answer_value(answers, qid)[0]

    return test


def _consent_test(consent: str, key: str, wanted: bool) -> TestFn:
    def test(answers: AnswerMap, on: dt.date) -> bool:
        entry = answers.get(consent)
        if not isinstance(entry, Mapping):
            return not wanted
        found = entry.get("collaborator") is True if key == "collaborator" else entry.get("value") == "share"
        return found is wanted

    return test


def _answer_value(answers: AnswerMap, qid: str) -> tuple[bool, Any]:
    entry = answers.get(qid)
    if not isinstance(entry, Mapping) or "value" not in entry:
        return False, None
    return True, entry["value"]


class _Compiler:
    """Checks and compiles one questionnaire mapping; every error names ``source`` and the place at fault."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> QuestionnaireError:
        return QuestionnaireError(f"{self.source}: {where}: {problem}")

    # -- helpers -------------------------------------------------------------------------------------------------

    def mapping(self, value: Any, where: str, allowed: frozenset[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be a mapping")
        if allowed is not None:
            unknown = sorted(str(k) for k in value if k not in allowed)
            if unknown:
                raise self.fail(where, f"unknown key(s) {', '.join(repr(k) for k in unknown)}")
        return value

    def text(self, value: Any, where: str, *, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "missing or empty text")
        return value.strip()

    def str_list(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(where, "must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    # -- top level -----------------------------------------------------------------------------------------------

    def compile(self, data: Any) -> Questionnaire:
        top = self.mapping(data, "top level", _TOP_KEYS)
        for key in ("version", "messages", "questions"):
            if key not in top:
                raise self.fail("top level", f"missing {key!r}")
        version = top["version"]
        if not isinstance(version, str) or not version.strip():
            raise self.fail("version", "must be a non-empty string")
        settings = self.settings(top.get("settings", {}))
        messages = self.messages(top["messages"])
        words = self.words(top.get("words", {}))
        accented, plain, ambiguous = self.keywords(top.get("keywords", {}), words)
        questions = self.questions(top["questions"])
        by_id = {q.id: q for q in questions}
        linear = tuple(q for q in questions if q.linear)
        field_questions: dict[str, str] = {}
        for q in questions:
            for f in q.fills:
                field_questions.setdefault(f.field, q.id)
            for c in q.choices:
                if c.sets:
                    field_questions.setdefault(c.sets, q.id)
        # Fields filled by a helper are corrected through the question that offers the helper.
        for q in questions:
            if q.helper:
                for target in by_id[q.helper].tag_fills.values():
                    field_questions[target] = q.id
        if "commune_code" in field_questions:
            field_questions.setdefault("area", field_questions["commune_code"])
        summary_questions = tuple(q for q in linear if q.role is None)
        return Questionnaire(
            version=version.strip(),
            settings=settings,
            messages=messages,
            questions=questions,
            by_id=by_id,
            linear=linear,
            keyword_accented=accented,
            keyword_plain=plain,
            ambiguous_keywords=ambiguous,
            words=words,
            field_questions=field_questions,
            source=self.source,
            summary_questions=summary_questions,
        )

    def settings(self, value: Any) -> Settings:
        raw = self.mapping(value, "settings", frozenset(_SETTINGS_TYPES))
        out: dict[str, Any] = {}
        for key, kind in _SETTINGS_TYPES.items():
            if key not in raw:
                continue
            v = raw[key]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else type(v) is int
            if not ok or v < 0:
                raise self.fail(f"settings.{key}", f"must be a non-negative {kind.__name__}")
            out[key] = kind(v)
        return Settings(**out)

    def messages(self, value: Any) -> dict[str, str]:
        raw = self.mapping(value, "messages", frozenset(MESSAGE_FIELDS))
        missing = sorted(set(MESSAGE_FIELDS) - set(raw))
        if missing:
            raise self.fail("messages", f"missing message(s) {', '.join(missing)}")
        out: dict[str, str] = {}
        for key, template in raw.items():
            text = self.text(template, f"messages.{key}")
            assert text is not None
            self.check_placeholders(text, MESSAGE_FIELDS[key], f"messages.{key}")
            out[key] = text
        return out

    def check_placeholders(self, text: str, allowed: frozenset[str], where: str) -> None:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as exc:
            raise self.fail(where, f"bad placeholder syntax: {exc}") from exc
        unknown = sorted(n for n in names if n not in allowed)
        if unknown:
            raise self.fail(where, f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}")

    def words(self, value: Any) -> dict[str, frozenset[str]]:
        raw = self.mapping(value, "words", frozenset(WORD_SETS))
        out: dict[str, frozenset[str]] = {}
        for key in WORD_SETS:
            listed = self.str_list(raw.get(key, []), f"words.{key}") if key in raw else ()
            out[key] = frozenset(fold(w) for w in listed)
        return out

    def keywords(
        self, value: Any, words: Mapping[str, frozenset[str]]
    ) -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
        raw = self.mapping(value, "keywords", frozenset(KEYWORD_ACTIONS))
        accented: dict[str, str] = {}
        plain: dict[str, str] = {}
        for action in KEYWORD_ACTIONS:
            if action not in raw:
                raise self.fail("keywords", f"missing {action!r}")
            for word in self.str_list(raw[action], f"keywords.{action}"):
                for table, key in ((accented, normalize(word)), (plain, fold(word))):
                    if not key:
                        raise self.fail(f"keywords.{action}", f"{word!r} is empty once normalised")
                    other = table.get(key)
                    if other is not None and other != action:
                        raise self.fail(f"keywords.{action}", f"{word!r} is also a keyword for {other!r}")
                    table[key] = action
        # A keyword that folds to a yes/no word ("dừng" and "đúng" are both "dung") is only a command when typed
        # with its accents, or when the current question cannot take yes/no.
        ambiguous = frozenset(k for k in plain if k in words["yes"] or k in words["no"])
        return accented, plain, ambiguous

    # -- questions -----------------------------------------------------------------------------------------------

    def questions(self, value: Any) -> tuple[Question, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("questions", "must be a non-empty list")
        compiled: list[Question] = []
        seen: dict[str, Question] = {}
        raw_by_id: dict[str, Mapping[str, Any]] = {}
        for i, raw in enumerate(value):
            where = f"questions[{i}]"
            if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
                where = f"question {raw['id']!r}"
            q = self.question(raw, i, where, seen)
            if q.id in seen:
                raise self.fail(where, "duplicate id")
            seen[q.id] = q
            raw_by_id[q.id] = raw
            compiled.append(q)
        self.check_structure(compiled, seen)
        return tuple(compiled)

    def check_structure(self, questions: list[Question], by_id: Mapping[str, Question]) -> None:
        linear = [q for q in questions if q.linear]
        consents = [q for q in questions if q.role == "consent"]
        summaries = [q for q in questions if q.role == "summary"]
        if len(consents) != 1 or not linear or linear[0].role != "consent":
            raise self.fail("questions", "exactly one question with role 'consent' must come first")
        if len(summaries) != 1 or linear[-1].role != "summary":
            raise self.fail("questions", "exactly one question with role 'summary' must come last")
        helpers_used: set[str] = set()
        for q in questions:
            if q.helper is not None:
                target = by_id.get(q.helper)
                if target is None:
                    raise self.fail(f"question {q.id!r}", f"helper names unknown question {q.helper!r}")
                if target.linear or target.type != "income_sources":
                    raise self.fail(
                        f"question {q.id!r}",
                        f"helper {q.helper!r} must be an income_sources question with linear: false",
                    )
                if q.type != "money":
                    raise self.fail(f"question {q.id!r}", "only a money question can have a helper")
                helpers_used.add(q.helper)
            for c in q.choices:
                if c.goto is not None and c.goto != q.helper:
                    raise self.fail(f"question {q.id!r}", f"choice {c.payload!r}: goto must name the question's helper")
        members_used: set[str] = set()
        for q in questions:
            for mid in q.roster:
                target = by_id.get(mid)
                if target is None or target.member is None:
                    raise self.fail(f"question {q.id!r}", f"roster names {mid!r}, which is not a member question")
                if mid in members_used:
                    raise self.fail(f"question {q.id!r}", f"member question {mid!r} is in a roster twice")
                members_used.add(mid)
            if q.roster:
                first = by_id[q.roster[0]].member
                if first is None or first.field != "age":
                    raise self.fail(f"question {q.id!r}", "a roster starts with the member's age")
        for q in questions:
            if q.member is not None and q.id not in members_used:
                raise self.fail(f"question {q.id!r}", "a member question that no roster asks")
            if not q.linear and q.member is None and q.id not in helpers_used:
                raise self.fail(f"question {q.id!r}", "linear: false but no question uses it as its helper")

    def question(self, raw: Any, index: int, where: str, earlier: Mapping[str, Question]) -> Question:
        raw = self.mapping(raw, where, _QUESTION_KEYS)
        qid = raw.get("id")
        if not isinstance(qid, str) or not _ID.match(qid):
            raise self.fail(where, "id must be snake_case")
        qtype = raw.get("type")
        if qtype not in QUESTION_TYPES:
            raise self.fail(where, f"type must be one of {', '.join(sorted(QUESTION_TYPES))}")
        role = raw.get("role")
        if role is not None and role not in ROLES:
            raise self.fail(where, f"role must be one of {', '.join(sorted(ROLES))}")
        if (role == "summary") != (qtype == "summary"):
            raise self.fail(where, "type 'summary' goes with role 'summary'")
        linear = raw.get("linear", True)
        if not isinstance(linear, bool):
            raise self.fail(where, "linear must be true or false")
        text = self.text(raw.get("text"), f"{where}: text")
        short = self.text(raw.get("short"), f"{where}: short")
        help_text = self.text(raw.get("help"), f"{where}: help")
        summary_label = self.text(raw.get("summary_label"), f"{where}: summary_label", required=False)
        if linear and role is None and summary_label is None:
            raise self.fail(where, "missing summary_label")
        unit = self.text(raw.get("unit"), f"{where}: unit", required=False)
        ask_if = self.condition(raw["ask_if"], f"{where}: ask_if", earlier) if "ask_if" in raw else None
        if ask_if is not None and role is not None:
            raise self.fail(where, "the consent and summary steps cannot be skipped")
        specs = MEMBER_FIELD_SPECS if "member" in raw else FIELD_SPECS
        choices = self.choices(raw.get("choices"), qtype, where, earlier, specs)
        fills = self.fills(raw.get("fills"), where)
        yes_value, no_value = self.yes_no_values(raw.get("values"), qtype, where)
        validation = self.validation(raw.get("validation"), qtype, where, earlier)
        when_skipped = self.when_skipped(raw.get("when_skipped"), ask_if, where)
        helper = raw.get("helper")
        if helper is not None and (not isinstance(helper, str) or not _ID.match(helper)):
            raise self.fail(where, "helper must be a question id")
        tag_fills = self.tag_fills(raw.get("tag_fills"), qtype, choices, where)
        household = raw.get("household")
        if (household is not None or qtype in DETAIL_TYPES) and (
            household not in HOUSEHOLD_DETAILS or qtype not in DETAIL_TYPES
        ):
            raise self.fail(
                where, f"text, phone and hamlet questions (and only they) fill household: {', '.join(HOUSEHOLD_DETAILS)}"
            )
        optional = raw.get("optional", False)
        if not isinstance(optional, bool):
            raise self.fail(where, "optional must be true or false")
        if optional and qtype not in DETAIL_TYPES:
            raise self.fail(where, "only text, phone and hamlet questions can be optional")
        required_if = None
        if "required_if" in raw:
            if not optional:
                raise self.fail(where, "required_if is for optional questions")
            required_if = self.condition(raw["required_if"], f"{where}: required_if", earlier)
        flow = raw.get("flow", False)
        if not isinstance(flow, bool) or (flow and qtype != "choice"):
            raise self.fail(where, "flow (true/false) is for choice questions that only steer the flow")
        member = self.member(raw.get("member"), qtype, linear, where)
        if member is not None and ask_if is not None:
            raise self.fail(where, "a member question is asked by age (member: age_min, age_max), not ask_if")
        roster = raw.get("roster", [])
        if qtype == "roster":
            if not isinstance(roster, list) or not roster or not all(isinstance(r, str) for r in roster):
                raise self.fail(where, "a roster question lists its member questions in 'roster'")
        elif roster:
            raise self.fail(where, "'roster' is only for roster questions")
        q = Question(
            id=qid,
            type=qtype,
            index=index,
            text=text or "",
            short=short or "",
            help=help_text or "",
            summary_label=summary_label,
            unit=unit,
            role=role,
            fills=fills,
            yes_value=yes_value,
            no_value=no_value,
            choices=choices,
            validation=validation,
            ask_if=ask_if,
            when_skipped=when_skipped,
            helper=helper,
            linear=linear,
            tag_fills=tag_fills,
            dynamic_choices=any(c.show_if is not None for c in choices),
            choice_by_payload={c.payload: c for c in choices},
            accented_index={k: c for c in choices for k in c.accented_keys},
            folded_index=_unambiguous(choices),
            household=household,
            optional=optional,
            required_if=required_if,
            flow=flow,
            member=member,
            roster=tuple(roster),
        )
        self.check_fills(q, where)
        return q

    def member(self, value: Any, qtype: str, linear: bool, where: str) -> MemberSpec | None:
        if value is None:
            return None
        raw = self.mapping(value, f"{where}: member", _MEMBER_KEYS)
        if linear or qtype not in MEMBER_TYPES:
            raise self.fail(where, "a member question has linear: false and type int, yes_no, choice or multi_choice")
        field_name = raw.get("field")
        if field_name is not None and field_name not in MEMBER_FIELD_SPECS:
            raise self.fail(where, f"member field {field_name!r} is not a member input field")
        if (field_name is None) != (qtype == "multi_choice"):
            raise self.fail(where, "a member question names its field, except a multi_choice (its choices 'sets')")
        if (field_name == "age") != (qtype == "int"):
            raise self.fail(where, "the member's age is the (only) int member question")
        bounds: dict[str, int | None] = {}
        for key in ("age_min", "age_max"):
            v = raw.get(key)
            if v is not None and type(v) is not int:
                raise self.fail(where, f"member.{key} must be a whole number")
            bounds[key] = v
        unless = raw.get("unless", [])
        if not isinstance(unless, list) or not all(
            u in MEMBER_FIELD_SPECS and MEMBER_FIELD_SPECS[u].kind == "bool" for u in unless
        ):
            raise self.fail(where, "member.unless lists yes/no member fields")
        return MemberSpec(field_name, bounds["age_min"], bounds["age_max"], tuple(unless))

    def choices(
        self,
        value: Any,
        qtype: str,
        where: str,
        earlier: Mapping[str, Question],
        specs: Mapping[str, FieldSpec] = FIELD_SPECS,
    ) -> tuple[ChoiceSpec, ...]:
        needs = qtype in ("choice", "multi_choice", "income_sources")
        if value is None:
            if needs:
                raise self.fail(where, f"a {qtype} question needs choices")
            return ()
        if qtype in ("yes_no", "commune", "summary", "roster") or qtype in DETAIL_TYPES:
            raise self.fail(where, f"a {qtype} question takes no choices")
        if not isinstance(value, list) or not value:
            raise self.fail(where, "choices must be a non-empty list")
        out: list[ChoiceSpec] = []
        payloads: set[str] = set()
        keys_seen: dict[str, str] = {}
        for i, raw in enumerate(value):
            cwhere = f"{where}: choices[{i}]"
            raw = self.mapping(raw, cwhere, _CHOICE_KEYS)
            payload = raw.get("payload")
            if not isinstance(payload, str) or not _PAYLOAD.match(payload):
                raise self.fail(cwhere, "payload must be lower-case letters, digits or _")
            cwhere = f"{where}: choice {payload!r}"
            if payload in payloads:
                raise self.fail(cwhere, "duplicate payload")
            payloads.add(payload)
            label = self.text(raw.get("label"), f"{cwhere}: label")
            assert label is not None
            short_label = self.text(raw.get("short_label"), f"{cwhere}: short_label", required=False) or label
            description = self.text(raw.get("description"), f"{cwhere}: description", required=False)
            aliases = self.str_list(raw["aliases"], f"{cwhere}: aliases") if "aliases" in raw else ()
            sets = raw.get("sets")
            if sets is not None:
                if qtype != "multi_choice":
                    raise self.fail(cwhere, "'sets' is only for multi_choice questions")
                spec = specs.get(sets)
                if spec is None:
                    raise self.fail(cwhere, f"sets {sets!r}, which is not a household input field")
                if spec.kind != "bool":
                    raise self.fail(cwhere, f"sets {sets!r}, which is not a yes/no field")
            show_if = self.condition(raw["show_if"], f"{cwhere}: show_if", earlier) if "show_if" in raw else None
            hidden_value = raw.get("hidden_value")
            if hidden_value is not None and (not isinstance(hidden_value, bool) or sets is None or show_if is None):
                raise self.fail(cwhere, "hidden_value (true/false) needs both 'sets' and 'show_if'")
            goto = raw.get("goto")
            if goto is not None and (qtype not in ("money",) or not isinstance(goto, str)):
                raise self.fail(cwhere, "goto is only for money questions and names the helper question")
            tags = raw.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) and _ID.match(t) for t in tags):
                raise self.fail(cwhere, "tags must be a list of snake_case words")
            if qtype in ("int", "number", "money") and goto is None and "value" not in raw:
                raise self.fail(cwhere, "a shortcut of a numeric question needs a value or a goto")
            value_given = "value" in raw
            choice_value = raw.get("value") if value_given else payload
            texts = (label, short_label, *aliases)
            accented = {normalize(t) for t in texts} - {""}
            for key in accented:
                other = keys_seen.get(key)
                if other is not None and other != payload:
                    raise self.fail(cwhere, f"label or alias {key!r} also selects choice {other!r}")
                keys_seen[key] = payload
            keys = {fold(t) for t in texts} | {payload, fold(payload.replace("_", " "))}
            keys.discard("")
            out.append(
                ChoiceSpec(
                    payload=payload,
                    label=label,
                    short_label=short_label,
                    description=description,
                    value=choice_value,
                    sets=sets,
                    hidden_value=hidden_value,
                    show_if=show_if,
                    goto=goto,
                    tags=frozenset(tags),
                    keys=frozenset(keys),
                    accented_keys=frozenset(accented),
                    folded_label=fold(label),
                )
            )
        return tuple(out)

    def fills(self, value: Any, where: str) -> tuple[Fill, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = {value: "value"}
        raw = self.mapping(value, f"{where}: fills")
        out: list[Fill] = []
        for name, transform in raw.items():
            if name not in FIELD_SPECS:
                raise self.fail(where, f"fills {name!r}, which is not a household input field")
            if transform not in TRANSFORMS:
                raise self.fail(where, f"fills {name!r} with unknown transform {transform!r}")
            out.append(Fill(str(name), str(transform)))
        return tuple(out)

    def yes_no_values(self, value: Any, qtype: str, where: str) -> tuple[Any, Any]:
        if value is None:
            return True, False
        if qtype != "yes_no":
            raise self.fail(where, "'values' is only for yes_no questions")
        raw = self.mapping(value, f"{where}: values", frozenset({"yes", "no"}))
        if "yes" not in raw or "no" not in raw:
            raise self.fail(where, "values needs both 'yes' and 'no'")
        return raw["yes"], raw["no"]

    def validation(self, value: Any, qtype: str, where: str, earlier: Mapping[str, Question]) -> Validation | None:
        if value is None:
            return None
        if qtype not in ("int", "number", "money", "roster"):
            raise self.fail(where, "validation is only for int, number, money and roster questions")
        raw = self.mapping(value, f"{where}: validation", _VALIDATION_KEYS)
        bounds: dict[str, float | None] = {}
        for key in ("min", "max"):
            v = raw.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise self.fail(where, f"validation.{key} must be a number")
            bounds[key] = v
        if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
            raise self.fail(where, "validation.min is above validation.max")
        messages_raw = self.mapping(raw.get("messages", {}), f"{where}: validation.messages", _VALIDATION_MESSAGES)
        messages = {}
        for key, text in messages_raw.items():
            t = self.text(text, f"{where}: validation.messages.{key}")
            assert t is not None
            self.check_placeholders(t, frozenset(), f"{where}: validation.messages.{key}")
            messages[key] = t
        at_most = None
        if "at_most" in raw:
            am = self.mapping(raw["at_most"], f"{where}: validation.at_most", _AT_MOST_KEYS)
            limit = am.get("limit")
            total_with = am.get("total_with", [])
            names = [limit, *total_with] if isinstance(total_with, list) else None
            if names is None:
                raise self.fail(where, "validation.at_most.total_with must be a list of question ids")
            for name in names:
                if name not in earlier:
                    raise self.fail(where, f"validation.at_most names unknown or later question {name!r}")
            message = self.text(am.get("message"), f"{where}: validation.at_most.message")
            assert message is not None
            self.check_placeholders(message, frozenset({"total", "limit"}), f"{where}: validation.at_most.message")
            at_most = AtMost(str(limit), tuple(total_with), message)
        return Validation(bounds["min"], bounds["max"], messages, at_most)

    def when_skipped(self, value: Any, ask_if: Condition | None, where: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if ask_if is None:
            raise self.fail(where, "when_skipped needs an ask_if")
        raw = self.mapping(value, f"{where}: when_skipped")
        for name, v in raw.items():
            spec = FIELD_SPECS.get(name)
            if spec is None:
                raise self.fail(where, f"when_skipped fills {name!r}, which is not a household input field")
            self.check_value(spec, v, f"{where}: when_skipped.{name}")
        return dict(raw)

    def tag_fills(self, value: Any, qtype: str, choices: tuple[ChoiceSpec, ...], where: str) -> Mapping[str, str]:
        if value is None:
            return {}
        if qtype != "income_sources":
            raise self.fail(where, "tag_fills is only for income_sources questions")
        raw = self.mapping(value, f"{where}: tag_fills")
        tags = set().union(*(c.tags for c in choices))
        for tag, target in raw.items():
            if tag not in tags:
                raise self.fail(where, f"tag_fills names tag {tag!r}, which no choice has")
            spec = FIELD_SPECS.get(target)
            if spec is None or spec.kind != "bool":
                raise self.fail(where, f"tag_fills fills {target!r}, which is not a yes/no household input field")
        return dict(raw)

    def check_value(self, spec: FieldSpec, value: Any, where: str) -> None:
        """Check that ``value`` is acceptable for a field of ``spec``."""
        ok = {
            "bool": lambda v: isinstance(v, bool),
            "int": lambda v: type(v) is int,
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "money": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "enum": lambda v: isinstance(v, str) and v in spec.values,
            "enum_list": lambda v: isinstance(v, str) and v in spec.values,
            "code": lambda v: isinstance(v, str),
            "members": lambda v: isinstance(v, list),
        }[spec.kind](value)
        if not ok:
            allowed = f" (one of {', '.join(sorted(spec.values))})" if spec.values else ""
            raise self.fail(where, f"value {value!r} does not fit a {spec.kind} field{allowed}")

    def check_fills(self, q: Question, where: str) -> None:
        """Check that what ``q`` produces fits the fields it fills."""
        if q.member is not None:
            if q.fills:
                raise self.fail(where, "a member question fills its member field, not 'fills'")
            spec = MEMBER_FIELD_SPECS.get(q.member.field or "")
            if q.type == "multi_choice":
                if not all(c.sets for c in q.choices):
                    raise self.fail(where, "every choice of a member multi_choice 'sets' a member field")
            elif q.type == "choice" and spec is not None:
                for c in q.choices:
                    self.check_value(spec, c.value, f"{where}: member {q.member.field!r}, choice {c.payload!r}")
            elif q.type == "yes_no" and spec is not None:
                self.check_value(spec, q.yes_value, f"{where}: member {q.member.field!r}")
                self.check_value(spec, q.no_value, f"{where}: member {q.member.field!r}")
            return
        if q.type == "roster":
            if [f.field for f in q.fills] != ["members"] or q.fills[0].transform != "value":
                raise self.fail(where, "a roster question fills exactly members")
            return
        if q.type in DETAIL_TYPES or q.flow:
            if q.fills or any(c.sets for c in q.choices):
                raise self.fail(where, "fills nothing: its answer goes to 'household' or only steers the flow")
            return
        if q.role is not None or q.type in ("summary", "income_sources"):
            if q.fills:
                raise self.fail(where, f"a {q.role or q.type} step fills nothing")
            return
        if q.type == "commune":
            if [f.field for f in q.fills] != ["commune_code"] or q.fills[0].transform != "value":
                raise self.fail(where, "a commune question fills exactly commune_code")
            return
        if not q.fills and not any(c.sets for c in q.choices):
            raise self.fail(where, "fills nothing (add 'fills' or choices with 'sets')")
        for f in q.fills:
            spec = FIELD_SPECS[f.field]
            fwhere = f"{where}: fills {f.field!r}"
            if f.transform == "positive":
                if q.type != "int" or spec.kind != "bool":
                    raise self.fail(fwhere, "'positive' turns an int answer into a yes/no field")
                continue
            if f.transform == "sum":
                if q.type != "int" or spec.kind != "int":
                    raise self.fail(fwhere, "'sum' adds int answers into an int field")
                continue
            if q.type == "yes_no":
                self.check_value(spec, q.yes_value, fwhere)
                self.check_value(spec, q.no_value, fwhere)
            elif q.type == "choice":
                for c in q.choices:
                    self.check_value(spec, c.value, f"{fwhere}, choice {c.payload!r}")
            elif q.type == "multi_choice":
                if spec.kind != "enum_list":
                    raise self.fail(fwhere, "a multi_choice question fills a list field")
                for c in q.choices:
                    if c.sets is None:
                        self.check_value(spec, c.value, f"{fwhere}, choice {c.payload!r}")
            elif q.type in ("int", "number", "money"):
                wanted = {"int": ("int",), "number": ("number",), "money": ("money",)}[q.type]
                if spec.kind not in wanted:
                    raise self.fail(fwhere, f"a {q.type} answer does not fit a {spec.kind} field")
                for c in q.choices:
                    if c.goto is None:
                        self.check_value(spec, c.value, f"{fwhere}, shortcut {c.payload!r}")

    # -- conditions ----------------------------------------------------------------------------------------------

    def condition(self, spec: Any, where: str, earlier: Mapping[str, Question]) -> Condition:
        if not isinstance(spec, Mapping) or not spec:
            raise self.fail(where, "a condition must be a non-empty mapping")
        for combinator in ("all", "any"):
            if combinator in spec:
                if len(spec) != 1 or not isinstance(spec[combinator], list) or not spec[combinator]:
                    raise self.fail(where, f"'{combinator}' takes a non-empty list and nothing else")
                parts = [self.condition(s, where, earlier) for s in spec[combinator]]
                tests = tuple(p.test for p in parts)
                refs = frozenset().union(*(p.refs for p in parts))
                return Condition(_all_of(tests) if combinator == "all" else _any_of(tests), refs)
        if "not" in spec:
            if len(spec) != 1:
                raise self.fail(where, "'not' takes one condition and nothing else")
            inner = self.condition(spec["not"], where, earlier)
            return Condition(_negate(inner.test), inner.refs)
        for key, keep in (("date_before", operator.lt), ("date_from", operator.ge)):
            if key in spec:
                if len(spec) != 1:
                    raise self.fail(where, f"'{key}' stands alone")
                day = self.date(spec[key], f"{where}: {key}")
                return Condition(_date_test(keep, day), frozenset())
        for key in ("collaborator", "shared"):
            # collaborator: a household entered by a linked collaborator (the engine marks the consent answer so);
            # shared: the result is shared with the commune (consent "share", always so for a collaborator).
            if key in spec:
                if len(spec) != 1 or not isinstance(spec[key], bool):
                    raise self.fail(where, f"'{key}' stands alone and takes true or false")
                consent = next((q.id for q in earlier.values() if q.role == "consent"), None)
                # Without a consent question first the structure check fails anyway, naming the real defect.
                refs = frozenset({consent}) if consent is not None else frozenset()
                return Condition(_consent_test(consent or "", key, spec[key]), refs)
        if "answered" in spec:
            if len(spec) != 1:
                raise self.fail(where, "'answered' stands alone")
            qid = self.known(spec["answered"], where, earlier)
            return Condition(_answered(qid), frozenset({qid}))
        if "answer" in spec:
            ops = [k for k in spec if k != "answer"]
            if len(ops) != 1 or ops[0] not in _COMPARE:
                raise self.fail(where, f"'answer' needs exactly one of {', '.join(_COMPARE)}")
            qid = self.known(spec["answer"], where, earlier)
            op = ops[0]
            expected = spec[op]
            if op in ("in", "not_in") and not isinstance(expected, list):
                raise self.fail(where, f"'{op}' takes a list")
            if op in ("in", "not_in"):
                expected = tuple(expected)
            compare = _COMPARE[op]

            def test(
                a: AnswerMap, on: dt.date, q: str = qid, c: Callable[[Any, Any], bool] = compare, e: Any = expected
            ) -> bool:
                found, v = _answer_value(a, q)
                if not found:
                    return False
                try:
                    return bool(c(v, e))
                except TypeError:
                    return False

            return Condition(test, frozenset({qid}))
        raise self.fail(where, f"unknown condition {dict(spec)!r}")

    def known(self, qid: Any, where: str, earlier: Mapping[str, Question]) -> str:
        if not isinstance(qid, str) or qid not in earlier:
            raise self.fail(where, f"condition names unknown or later question {qid!r}")
        return qid

    def date(self, value: Any, where: str) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise self.fail(where, f"not an ISO date: {value!r}") from exc
