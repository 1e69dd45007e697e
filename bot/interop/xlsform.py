"""The questionnaire as an XLSForm (survey / choices / settings), for KoboToolbox and ODK Collect.

Generated from ``bot/data/questionnaire.yaml``, the one copy of the questions: labels, hints, choices,
bounds and messages come from the compiled questionnaire (:mod:`bot.conversation.questionnaire`), and the
skip and show conditions (``ask_if``, ``show_if``) from the same file's raw mapping, translated to XPath
(the compiled conditions are closures and cannot be printed). What the chat does in conversation becomes
form logic:

* ``ask_if`` → ``relevant``; ``show_if`` on a choice → a ``choice_filter`` over a ``filter`` column;
* ``validation`` (min, max, at_most) → ``constraint`` with the YAML's Vietnamese messages;
* the consent step → a first question; "decline" ends the form (the household group is not relevant);
* the income helper (``income_sources`` with ``helper``) → a list of sources with one monthly amount each,
  the total question being asked only when no source is listed;
* every household input field of the quick form (issue A) the answers fill → a ``calculate`` of that name,
  so a Kobo export carries the quick form beside the answers (fields named like their question need none).

Two fields the chat does not ask are added for field collection: the hamlet (thôn/ấp), and the commune's
household code when the household agrees to share. The importer (:mod:`bot.interop.importer`) reads the
columns this form produces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Final

import yaml

from bot.conversation.questionnaire import DEFAULT_PATH, ChoiceSpec, Question, Questionnaire, load_questionnaire

__all__ = [
    "EXTRA_FIELDS",
    "FORM_ID",
    "GROUP",
    "LANGUAGE",
    "XLSForm",
    "amount_field",
    "build_xlsform",
    "condition_xpath",
    "write_xlsform",
]

#: Language column suffix: Kobo and ODK show it as the form's language.
LANGUAGE: Final = "Tiếng Việt (vi)"
FORM_ID: Final = "tu_ra_soat"
#: The group holding the household questions (Kobo exports its columns as ``ho/<name>``).
GROUP: Final = "ho"
#: The repeat of the roster (one instance per household member).
MEMBER_REPEAT: Final = "member"
#: Fields added for field collection (not asked by the chat): name -> (label, hint).
EXTRA_FIELDS: Final = {
    "hamlet": ("Thôn, ấp, khóm hoặc tổ dân phố nơi hộ ở", "Ghi đúng tên thôn/ấp như danh sách của xã (nếu biết)."),
    "household_code": ("Mã hộ (theo sổ theo dõi của xã, nếu có)", "Chỉ ghi khi hộ đồng ý chia sẻ kết quả với UBND xã/phường."),
}
_TYPES: Final = {
    "int": "integer",
    "number": "decimal",
    "money": "integer",
    "choice": "select_one",
    "multi_choice": "select_multiple",
    "yes_no": "select_one",
    "commune": "text",
    "income_sources": "select_multiple",
    "text": "text",
    "phone": "text",
    "hamlet": "text",
}
#: Vietnamese mobile numbers (10 digits, 03/05/07/08/09, or +84), spaces and dots allowed as typed.
PHONE_CONSTRAINT: Final = "regex(translate(., ' .-', ''), '^(\\+84|84|0)[35789][0-9]{8}$')"
_OPS: Final = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_TYPING_HINT = re.compile(r"\([^()]*\bgõ\b[^()]*\)", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.?!])\s+")
_PLACEHOLDER = re.compile(r"\s*\(\{\w+\}\)|\{\w+\}")


class XLSFormError(ValueError):
    """The questionnaire uses something this translation does not know (names the question)."""


@dataclass
class XLSForm:
    """The three sheets, as lists of row mappings (column -> value), plus what the importer needs to know."""

    survey: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] = field(default_factory=list)
    settings: list[dict[str, Any]] = field(default_factory=list)
    #: Names of the calculate fields (household input fields of the quick form).
    calculations: dict[str, str] = field(default_factory=dict)

    def sheets(self) -> dict[str, list[dict[str, Any]]]:
        """Return the sheets in pyxform's dict form (``convert(form.sheets())``)."""
        return {"survey": self.survey, "choices": self.choices, "settings": self.settings}


def form_text(text: str) -> str:
    """Drop the chat's typing instructions ("Gõ các số, ví dụ: 1,3") that make no sense on a form."""
    text = _TYPING_HINT.sub("", " ".join(text.split()))
    kept = [s for s in _SENTENCE.split(text) if not re.search(r"\bgõ\b", s, re.IGNORECASE)]
    return " ".join(kept).replace(" .", ".").strip()


def _message(text: str) -> str:
    return _PLACEHOLDER.sub("", text).strip()


def amount_field(payload: str) -> str:
    """Name of the monthly amount field of one income source."""
    return f"income_{payload}"


def _number(value: float) -> str:
    """XPath has no exponent notation: 1e10 must be written 10000000000."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, (int, float)):
        return _number(value)
    return "'" + str(value).replace("'", "") + "'"


def _choice_payload(q: Question, value: Any) -> Any:
    """The choice name (payload) whose value is ``value``, for comparing a select in XPath."""
    if q.type != "choice":
        return value  # shortcuts of a numeric question ("không có" = 0) are not choices on a form
    for c in q.choices:
        if c.value == value and not isinstance(c.value, bool):
            return c.payload
    return value


def condition_xpath(spec: Any, by_id: Mapping[str, Question], *, collaborator: bool = True) -> str:
    """Translate a questionnaire condition (``ask_if`` / ``show_if`` mapping) to an XPath expression.

    Follows the engine's semantics: a comparison with a question not answered is false (an empty field is
    ``''`` in XForms, so ``ne``/``not_in`` check it is not empty); ``eq: null`` means "answered: don't know",
    which a form records as an empty field. ``{collaborator: true|false}`` is a constant of the form: a form
    for field collection is filled in by collaborators (``collaborator=True``).
    """
    if "all" in spec:
        return "(" + " and ".join(condition_xpath(s, by_id, collaborator=collaborator) for s in spec["all"]) + ")"
    if "any" in spec:
        return "(" + " or ".join(condition_xpath(s, by_id, collaborator=collaborator) for s in spec["any"]) + ")"
    if "not" in spec:
        return f"not({condition_xpath(spec['not'], by_id, collaborator=collaborator)})"
    if "collaborator" in spec:
        return "true()" if bool(spec["collaborator"]) == collaborator else "false()"
    if "shared" in spec:
        consent = next(q.id for q in by_id.values() if q.role == "consent")
        return f"${{{consent}}} {'=' if spec['shared'] else '!='} 'share'"
    if "date_before" in spec:
        return f"today() < date('{spec['date_before']}')"
    if "date_from" in spec:
        return f"today() >= date('{spec['date_from']}')"
    if "answered" in spec:
        return f"${{{spec['answered']}}} != ''"
    if "answer" not in spec:
        raise XLSFormError(f"condition {dict(spec)!r} has no XLSForm translation")
    qid = spec["answer"]
    q = by_id[qid]
    ref = f"${{{qid}}}"
    op = next(k for k in spec if k != "answer")
    value = spec[op]
    if q.type == "multi_choice" and op in ("eq", "ne", "in", "not_in"):
        raise XLSFormError(f"question {qid!r}: conditions on a multi_choice answer are not translated")
    if op in ("in", "not_in"):
        parts = " or ".join(f"{ref} = {_literal(_choice_payload(q, v))}" for v in value)
        return f"({parts})" if op == "in" else f"({ref} != '' and not({parts}))"
    if value is None:
        if op == "eq":
            return f"{ref} = ''"
        if op == "ne":
            return f"{ref} != ''"
        raise XLSFormError(f"question {qid!r}: {op} null has no meaning")
    literal = _literal(_choice_payload(q, value))
    if op == "ne":
        return f"({ref} != '' and {ref} != {literal})"
    return f"{ref} {_OPS[op]} {literal}"


def _constraint(q: Question) -> tuple[str | None, str | None]:
    v = q.validation
    if v is None:
        return (". >= 0", None) if q.type == "money" else (None, None)
    parts: list[str] = []
    messages: list[str] = []
    if v.min is not None:
        parts.append(f". >= {_number(v.min)}")
        if "min" in v.messages:
            messages.append(v.messages["min"])
    if v.max is not None:
        parts.append(f". <= {_number(v.max)}")
        if "max" in v.messages:
            messages.append(v.messages["max"])
    if v.at_most is not None:
        total = " + ".join(["."] + [f"coalesce(${{{o}}}, 0)" for o in v.at_most.total_with])
        parts.append(f"{total} <= ${{{v.at_most.limit}}}")
        messages.append(_message(v.at_most.message))
    return (" and ".join(parts) or None), (" ".join(messages) or None)


def _choice_label(c: ChoiceSpec) -> str:
    return f"{c.label} ({c.description})" if c.description else c.label


def _selected(qid: str, payload: str) -> str:
    return f"selected(${{{qid}}}, '{payload}')"


def _bool(expr: str) -> str:
    return f"if({expr}, 'true', 'false')"


class _Builder:
    def __init__(self, qn: Questionnaire, raw: Mapping[str, Any], collaborator: bool) -> None:
        self.qn = qn
        self.raw = {r["id"]: r for r in raw["questions"]}
        self.collaborator = collaborator
        self.form = XLSForm()
        self.label = f"label::{LANGUAGE}"
        self.hint = f"hint::{LANGUAGE}"
        self.message = f"constraint_message::{LANGUAGE}"
        self.names: set[str] = set()

    def cond(self, spec: Any) -> str:
        return condition_xpath(spec, self.qn.by_id, collaborator=self.collaborator)

    def raw_choice(self, qid: str, payload: str) -> Mapping[str, Any]:
        return next(r for r in self.raw[qid]["choices"] if r["payload"] == payload)

    # -- sheets ---------------------------------------------------------------------------------------------

    def row(self, **values: Any) -> None:
        name = values.get("name")
        if name and values.get("type") not in ("end_group", "end_repeat"):
            if name in self.names:
                raise XLSFormError(f"duplicate field name {name!r}")
            self.names.add(name)
        self.form.survey.append({k: v for k, v in values.items() if v not in (None, "")})

    def choice_list(self, list_name: str, choices: Sequence[ChoiceSpec], filters: Mapping[str, str] | None = None) -> None:
        for c in choices:
            entry: dict[str, Any] = {"list_name": list_name, "name": c.payload, self.label: _choice_label(c)}
            if filters is not None:
                entry["filter"] = filters.get(c.payload, "")
            self.form.choices.append(entry)

    # -- questions ------------------------------------------------------------------------------------------

    def build(self) -> XLSForm:
        qn = self.qn
        self.row(type="start", name="start")
        self.row(type="end", name="end")
        consent = qn.consent
        self.row(**{"type": f"select_one {consent.id}", "name": consent.id, self.label: form_text(consent.text),
                    self.hint: form_text(consent.help), "required": "yes"})
        self.choice_list(consent.id, consent.choices)
        self.row(**{"type": "note", "name": "declined", self.label: qn.msg("declined").split(".")[0] + ".",
                    "relevant": f"${{{consent.id}}} = 'decline'"})
        self.row(**{"type": "begin_group", "name": GROUP, self.label: "Phiếu tự rà soát hộ gia đình",
                    "relevant": f"${{{consent.id}}} != 'decline'"})
        for q in qn.linear:
            if q.role is not None:
                continue
            if q.helper:
                self.helper(q, qn.by_id[q.helper])
            if q.type == "roster":
                self.roster(q)
            else:
                self.question(q)
            if q.type == "commune":
                for name, (label, hint) in EXTRA_FIELDS.items():
                    if any(other.household == name or other.id == name for other in qn.questions):
                        continue  # the questionnaire asks it itself
                    relevant = f"${{{consent.id}}} = 'share'" if name == "household_code" else None
                    self.row(**{"type": "text", "name": name, self.label: label, self.hint: hint, "relevant": relevant})
        self.row(type="end_group", name=GROUP)
        self.calculations()
        self.form.settings.append(
            {
                "form_title": "Tự rà soát – phiếu hộ gia đình",
                "form_id": FORM_ID,
                "version": qn.version,
                "default_language": LANGUAGE,
                "style": "pages",
            }
        )
        return self.form

    def relevance(self, q: Question) -> str | None:
        raw = self.raw[q.id].get("ask_if")
        return self.cond(raw) if raw is not None else None

    def question(self, q: Question, *, name: str | None = None, relevant: str | None = None) -> None:
        kind = _TYPES.get(q.type)
        if kind is None:
            raise XLSFormError(f"question {q.id!r}: type {q.type!r} has no XLSForm translation")
        row: dict[str, Any] = {
            "name": name or q.id,
            self.label: form_text(q.text),
            self.hint: form_text(q.help),
            "relevant": relevant if relevant is not None else self.relevance(q),
        }
        if q.type in ("choice", "multi_choice"):
            row["type"] = f"{kind} {q.id}"
            show = [c for c in q.choices if c.show_if is not None]
            if show:
                filters: dict[str, str] = {}
                tests: list[str] = []
                for i, c in enumerate(show, start=1):
                    filters[c.payload] = f"f{i}"
                    tests.append(f"(filter = 'f{i}' and {self.cond(self.raw_choice(q.id, c.payload)['show_if'])})")
                row["choice_filter"] = "filter = '' or " + " or ".join(tests)
                self.choice_list(q.id, q.choices, filters)
            else:
                self.choice_list(q.id, q.choices)
            # "None of these" is an answer on a form: a multiple choice may stay empty.
            row["required"] = "yes" if q.type == "choice" else None
        elif q.type == "yes_no":
            row["type"] = f"select_one {q.id}"
            self.form.choices += [
                {"list_name": q.id, "name": "yes", self.label: self.qn.msg("answer_yes")},
                {"list_name": q.id, "name": "no", self.label: self.qn.msg("answer_no")},
            ]
            row["required"] = "yes"
        elif q.type == "commune":
            row["type"] = kind
            row[self.hint] = (form_text(q.help) + " Để trống nếu không rõ.").strip()
        elif q.type in ("text", "phone", "hamlet"):
            row["type"] = kind
            if q.optional:
                raw_required = self.raw[q.id].get("required_if")
                row["required"] = self.cond(raw_required) if raw_required is not None else None
            else:
                row["required"] = "yes"
            if q.type == "phone":
                row["constraint"] = PHONE_CONSTRAINT
                row[self.message] = self.qn.messages.get("hint_phone")
                row["appearance"] = "numbers"
        else:
            row["type"] = kind
            constraint, message = _constraint(q)
            row["constraint"] = constraint
            row[self.message] = message
            row["required"] = "yes"
            if q.type == "money":
                row[self.label] = f"{row[self.label]} (đồng mỗi tháng)"
                if q.helper:
                    row["relevant"] = f"count-selected(${{{q.helper}}}) = 0"
            if q.unit:
                row[self.label] = f"{row[self.label]} ({q.unit})"
        self.row(**row)

    def roster(self, q: Question) -> None:
        """A roster: the number of members, then a repeat with the member questions, each for the right ages."""
        relevant = self.relevance(q)
        constraint, message = _constraint(q)
        self.row(**{"type": "integer", "name": q.id, self.label: form_text(q.text), self.hint: form_text(q.help),
                    "relevant": relevant, "required": "yes", "constraint": constraint, self.message: message})
        self.row(**{"type": "begin_repeat", "name": MEMBER_REPEAT, self.label: "Thành viên của hộ",
                    "relevant": relevant, "repeat_count": f"${{{q.id}}}"})
        members = [self.qn.by_id[m] for m in q.roster]
        by_field = {m.member.field: m for m in members if m.member is not None and m.member.field}
        age = next((m for m in members if m.member is not None and m.member.field == "age"), None)
        for m in members:
            spec = m.member
            tests: list[str] = []
            if spec is not None and age is not None and m is not age:
                if spec.age_min is not None:
                    tests.append(f"${{{age.id}}} >= {spec.age_min}")
                if spec.age_max is not None:
                    tests.append(f"${{{age.id}}} <= {spec.age_max}")
                for name in spec.unless:
                    other = by_field.get(name)
                    if other is not None:
                        tests.append(f"${{{other.id}}} != 'yes'")
            self.question(m, relevant=" and ".join(tests) or "")
        self.row(type="end_repeat", name=MEMBER_REPEAT)

    def helper(self, q: Question, helper: Question) -> None:
        """The income helper: pick the sources, then one monthly amount per source."""
        self.row(**{"type": f"select_multiple {helper.id}", "name": helper.id,
                    self.label: form_text(helper.text),
                    self.hint: "Nếu biết tổng thu nhập cả nhà, bỏ qua câu này. " + form_text(helper.help)})
        self.choice_list(helper.id, helper.choices)
        for c in helper.choices:
            self.row(**{"type": "integer", "name": amount_field(c.payload),
                        self.label: f"{c.short_label}: trung bình mỗi tháng được bao nhiêu tiền lời (đồng)?",
                        self.hint: form_text(q.help),
                        "relevant": _selected(helper.id, c.payload), "required": "yes",
                        "constraint": ". >= 0"})

    # -- the quick form as calculations ---------------------------------------------------------------------

    def calc(self, name: str, expression: str) -> None:
        if name in self.names or name in self.form.calculations:
            return  # a question of the same name already carries the value; the first filler wins
        self.form.calculations[name] = expression

    def calculations(self) -> None:
        qn = self.qn
        sums: dict[str, list[str]] = {}
        for q in qn.linear:
            if q.role is not None or q.type == "roster" or q.flow:
                continue
            ref = f"${{{q.id}}}"
            relevant = self.relevance(q)
            for c in q.choices:
                if c.sets is None:
                    continue
                expr = _bool(_selected(q.id, c.payload))
                if c.show_if is not None and c.hidden_value is not None:
                    shown = self.cond(self.raw_choice(q.id, c.payload)["show_if"])
                    expr = f"if({shown}, {expr}, {_literal(c.hidden_value)})"
                self.calc(c.sets, expr)
            for f in q.fills:
                if f.transform == "sum":
                    sums.setdefault(f.field, []).append(f"coalesce({ref}, 0)")
                    continue
                if f.transform == "positive":
                    expr = _bool(f"{ref} > 0")
                elif q.type == "money" and q.helper:
                    helper = qn.by_id[q.helper]
                    total = " + ".join(f"coalesce(${{{amount_field(c.payload)}}}, 0)" for c in helper.choices)
                    expr = f"if(count-selected(${{{helper.id}}}) > 0, {total}, {ref})"
                    for tag, target in helper.tag_fills.items():
                        tagged = " + ".join(
                            f"coalesce(${{{amount_field(c.payload)}}}, 0)" for c in helper.choices if tag in c.tags
                        )
                        self.calc(target, f"if(count-selected(${{{helper.id}}}) > 0 and ({total}) > 0, "
                                          f"{_bool(f'({tagged}) * 2 > ({total})')}, '')")
                elif q.type == "multi_choice":
                    items = ", ".join(f"if({_selected(q.id, c.payload)}, '{c.value} ', '')"
                                      for c in q.choices if c.sets is None)
                    expr = f"normalize-space(concat({items}, ''))"
                elif q.type == "choice" and any(c.value != c.payload for c in q.choices):
                    expr = "''"
                    for c in reversed(q.choices):
                        expr = f"if({ref} = '{c.payload}', {_literal(c.value)}, {expr})"
                elif q.type == "yes_no":
                    expr = f"if({ref} = 'yes', {_literal(q.yes_value)}, {_literal(q.no_value)})"
                else:
                    expr = ref
                if relevant and f.transform == "value" and q.type not in ("commune",):
                    # A question skipped gives its when_skipped value (or nothing), as in the chat.
                    skipped = _literal(q.when_skipped[f.field]) if f.field in q.when_skipped else "''"
                    expr = f"if({relevant}, {expr}, {skipped})"
                self.calc(f.field, expr)
        for name, parts in sums.items():
            self.calc(name, " + ".join(parts))
        for name, expression in self.form.calculations.items():
            self.form.survey.append({"type": "calculate", "name": name, "calculation": expression})


@lru_cache(maxsize=4)
def _raw(path: str) -> Mapping[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def build_xlsform(path: str | Path = DEFAULT_PATH, *, collaborator: bool = True) -> XLSForm:
    """Build the XLSForm of the questionnaire file (default: ``bot/data/questionnaire.yaml``).

    Args:
        path: The questionnaire YAML.
        collaborator: Value of the ``{collaborator: ...}`` conditions: a field form is filled in by a
            collaborator (the household's details are then required, and the detailed roster is offered).
    """
    qn = load_questionnaire(path)
    return _Builder(qn, _raw(str(path)), collaborator).build()


def write_xlsform(sink: str | Path | IO[bytes], form: XLSForm | None = None) -> None:
    """Write the XLSForm workbook (sheets survey, choices, settings) to a path or binary file."""
    from openpyxl import Workbook

    form = form or build_xlsform()
    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in form.sheets().items():
        sheet = workbook.create_sheet(title)
        columns: list[str] = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
        sheet.append(columns)
        for row in rows:
            sheet.append([row.get(c, "") for c in columns])
    workbook.save(sink)
