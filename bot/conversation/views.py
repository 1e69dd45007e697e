"""How each step of the conversation is shown: question texts, numbered choices, buttons, the summary.

Views are pure functions of the state; the texts come from the questionnaire. Button payloads are namespaced by
step (``<step id>:<choice>``) so that a tap on an old message's button is recognised as stale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from .messages import Choice
from .questionnaire import ChoiceSpec, Question, Questionnaire
from .result import vnd

__all__ = ["Views", "number_text"]


class Views:
    """Renders steps of one questionnaire."""

    def __init__(self, qn: Questionnaire) -> None:
        self.qn = qn

    def cmd_choice(self, action: str) -> Choice:
        """Return a button for a global command ("Làm tiếp", "Làm lại từ đầu")."""
        labels = {"resume": "expired_resume", "restart": "expired_restart"}
        return Choice(self.qn.msg(labels[action]), f"cmd:{action}")

    def view(self, st: Mapping[str, Any], on: dt.date, full: bool) -> tuple[str, list[Choice]]:
        qn = self.qn
        overlay = st.get("overlay")
        if overlay == "erase":
            # A collaborator is told what erasing costs them (households in progress, the link).
            confirm = qn.msg("erase_confirm_collaborator" if st.get("collab") else "erase_confirm")
            return confirm + "\n1. " + qn.msg("erase_yes") + "\n2. " + qn.msg("erase_no"), [
                Choice(qn.msg("erase_yes"), "erase:yes"),
                Choice(qn.msg("erase_no"), "erase:no"),
            ]
        if overlay == "expired":
            text = qn.msg("expired", days=st.get("expired_days") or 1)
            return text + f"\n1. {qn.msg('expired_resume')}\n2. {qn.msg('expired_restart')}", [
                Choice(qn.msg("expired_resume"), "expired:resume"),
                Choice(qn.msg("expired_restart"), "expired:restart"),
            ]
        if overlay == "paused":
            return qn.msg("paused"), [self.cmd_choice("resume")]
        q = qn.by_id[st["q"]]
        sub = st.get("sub")
        if sub is not None:
            return self.sub_view(st, q, sub, on, full)
        if q.type == "summary":
            return self.summary_view(st, q, on, full)
        answers = st["answers"]
        prefix = q.id
        if q.type in ("choice", "multi_choice"):
            visible = q.visible_choices(answers, on)
            text = q.text if full else q.short
            if full:
                text += "\n" + self.numbered(visible)
            if q.type == "choice":
                return text, [Choice(c.short_label, f"{prefix}:{c.payload}") for c in visible]
            return text, [Choice(qn.msg("summary_none"), f"{prefix}:none")]
        if q.type == "yes_no":
            text = q.text if full else q.short
            return text, [Choice(qn.msg("answer_yes"), f"{prefix}:yes"), Choice(qn.msg("answer_no"), f"{prefix}:no")]
        if q.household is not None:
            return self.detail_view(st, q, on, full)
        text = q.text if full else q.short
        return text, [Choice(c.short_label, f"{prefix}:{c.payload}") for c in q.choices]

    def detail_view(
        self, st: Mapping[str, Any], q: Question, on: dt.date, full: bool
    ) -> tuple[str, list[Choice]]:
        """A share-mode detail: the question, the commune's hamlets numbered, and "bỏ qua" when allowed."""
        qn = self.qn
        text = q.text if full else q.short
        choices: list[Choice] = []
        offer = st.get("offer")
        if q.type == "hamlet" and isinstance(offer, Mapping) and offer.get("q") == q.id and offer.get("options"):
            options = offer["options"]
            if full:
                text += "\n" + "\n".join(f"{i}. {name}" for i, name in enumerate(options, 1))
            choices = [Choice(name, f"{q.id}:{i}") for i, name in enumerate(options, 1)]
        if q.skippable(st["answers"], on):
            if full:
                text += "\n" + qn.msg("optional_hint")
            choices.append(Choice(qn.msg("skip_label"), f"{q.id}:skip"))
        return text, choices

    @staticmethod
    def numbered(choices: Sequence[ChoiceSpec]) -> str:
        return "\n".join(
            f"{i}. {c.label}" + (f": {c.description}" if c.description else "") for i, c in enumerate(choices, 1)
        )

    def yes_no_choices(self, step: str) -> list[Choice]:
        return [Choice(self.qn.msg("confirm_yes"), f"{step}:yes"), Choice(self.qn.msg("confirm_no"), f"{step}:no")]

    def sub_view(
        self, st: Mapping[str, Any], q: Question, sub: Mapping[str, Any], on: dt.date, full: bool
    ) -> tuple[str, list[Choice]]:
        qn = self.qn
        step = f"{q.id}.{sub['kind']}"
        kind = sub["kind"]
        if kind == "confirm":
            return str(sub["prompt"]), self.yes_no_choices(step)
        if kind == "pick":
            options = sub["options"]
            lines = [f"{i}. {o['name']}, {o['province']}" for i, o in enumerate(options, 1)]
            lines.append(f"{len(options) + 1}. {qn.msg('commune_none_of_these')}")
            choices = [Choice(f"{o['name']}, {o['province']}", f"{step}:{o['code']}") for o in options]
            choices.append(Choice(qn.msg("commune_none_of_these"), f"{step}:none"))
            return qn.msg("commune_pick") + "\n" + "\n".join(lines), choices
        if kind == "roster":
            return self.roster_view(q, sub, full)
        helper = qn.by_id[q.helper] if q.helper else q
        stage = sub["stage"]
        if stage == "pick":
            text = helper.text + "\n" + self.numbered(helper.choices) if full else helper.short
            return text, [Choice(qn.msg("summary_none"), f"{step}:none")]
        if stage == "amount":
            source = self.source_label(helper, sub["picked"][sub["i"]])
            return qn.msg("income_amount" if full else "income_amount_short", source=source), []
        if stage == "period":
            text = qn.msg("income_period", amount=vnd(sub.get("pending", 0)))
            text += f"\n1. {qn.msg('income_month')}\n2. {qn.msg('income_year')}"
            return text, [
                Choice(qn.msg("income_month"), f"{step}:month"),
                Choice(qn.msg("income_year"), f"{step}:year"),
            ]
        lines = [
            qn.msg("income_total_line", source=self.source_label(helper, src), amount=vnd(amount))
            for src, amount in sub["amounts"].items()
        ]
        total = sum(sub["amounts"].values())
        text = qn.msg("income_total", lines="\n".join(lines) or "•", total=vnd(total))
        return text, self.yes_no_choices(step)

    def roster_view(self, q: Question, sub: Mapping[str, Any], full: bool) -> tuple[str, list[Choice]]:
        """The current member question, after a line saying whose turn it is ("Người thứ 2/4 (nữ, 42 tuổi):")."""
        qn = self.qn
        mq = qn.by_id[sub["at"]]
        i, n = sub["i"] + 1, sub["n"]
        member = sub["members"][sub["i"]]
        if type(member.get("age")) is int:
            sex = self.sex_text(member.get("sex"))
            lead = qn.msg("member_lead_known", i=i, n=n, sex=sex, age=member["age"]) if sex else None
            lead = lead or qn.msg("member_lead", i=i, n=n)
        else:
            lead = qn.msg("member_lead", i=i, n=n)
        step = f"{q.id}.roster.{i}.{mq.id}"
        text = mq.text if full else mq.short
        if mq.type in ("choice", "multi_choice") and full:
            text += "\n" + self.numbered(mq.choices)
        if mq.type == "yes_no":
            choices = [Choice(qn.msg("answer_yes"), f"{step}:yes"), Choice(qn.msg("answer_no"), f"{step}:no")]
        elif mq.type == "choice":
            choices = [Choice(c.short_label, f"{step}:{c.payload}") for c in mq.choices]
        elif mq.type == "multi_choice":
            choices = [Choice(qn.msg("summary_none"), f"{step}:none")]
        else:
            choices = []
        return f"{lead}\n{text}", choices

    def sex_text(self, sex: Any) -> str | None:
        """"nam" / "nữ" for a member's sex, None when not known."""
        if sex == "male":
            return self.qn.msg("member_male")
        if sex == "female":
            return self.qn.msg("member_female")
        return None

    def member_text(self, member: Mapping[str, Any]) -> str:
        """One member in a few words for the summary: "nam 45"."""
        sex = self.sex_text(member.get("sex")) or ""
        return self.qn.msg("member_item", sex=sex, age=member.get("age", "?")).strip()

    @staticmethod
    def source_label(helper: Question, payload: str) -> str:
        choice = helper.choice_by_payload.get(payload)
        return choice.short_label if choice is not None else payload

    def summary_items(self, answers: Mapping[str, Any], on: dt.date) -> list[Question]:
        return [q for q in self.qn.summary_questions if q.id in answers and q.applies(answers, on)]

    def summary_view(self, st: Mapping[str, Any], q: Question, on: dt.date, full: bool) -> tuple[str, list[Choice]]:
        qn = self.qn
        ok = [Choice(qn.msg("summary_ok"), f"{q.id}:ok")]
        if not full:
            return q.short, ok
        answers = st["answers"]
        lines = [q.text]
        collab = st.get("collab")
        if st.get("hh") and isinstance(collab, Mapping):
            lines.append(qn.msg("summary_mode_collaborator", name=collab.get("name", "")))
        elif st.get("mode"):
            lines.append(qn.msg("summary_mode_share" if st["mode"] == "share" else "summary_mode_anonymous"))
        for n, item in enumerate(self.summary_items(answers, on), 1):
            lines.append(qn.msg("summary_item", n=n, label=item.summary_label, value=self.display(item, answers, on)))
        lines.append(qn.msg("summary_footer"))
        return "\n".join(lines), ok

    def display(self, q: Question, answers: Mapping[str, Any], on: dt.date) -> str:
        """Show an answer in the summary the way the user would say it."""
        qn = self.qn
        entry = answers[q.id]
        value = entry.get("value")
        if q.type == "choice":
            choice = q.choice_by_payload.get(value) if isinstance(value, str) else None
            return choice.short_label if choice is not None else str(value)
        if q.type == "multi_choice":
            chosen = value if isinstance(value, list) else []
            labels = [c.short_label for c in q.choices if c.payload in chosen]
            return ", ".join(labels) if labels else qn.msg("summary_none")
        if q.type == "yes_no":
            return qn.msg("answer_yes" if value else "answer_no")
        if q.household is not None:
            return str(value) if isinstance(value, str) and value else qn.msg("summary_skipped")
        if q.type == "roster":
            members = [m for m in value if isinstance(m, Mapping)] if isinstance(value, list) else []
            items = ", ".join(self.member_text(m) for m in members)
            return qn.msg("members_summary", count=len(members), items=items)
        if q.type == "commune":
            if value is None:
                return qn.msg("summary_none")
            return f"{entry.get('name', value)}, {entry.get('province', '')}".rstrip(", ")
        if q.type == "money":
            text = qn.msg("summary_money", amount=vnd(value))
            sources = entry.get("sources")
            if isinstance(sources, Mapping) and sources and q.helper:
                helper = qn.by_id[q.helper]
                names = ", ".join(self.source_label(helper, s) for s in sources)
                text += " " + qn.msg("summary_income_sources", sources=names)
            return text
        return number_text(value) + (f" {q.unit}" if q.unit else "")


def number_text(value: Any) -> str:
    """Write a number the Vietnamese way: 40, 12,5, 1.000."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}".replace(",", ".")
    return f"{value:,.2f}".rstrip("0").rstrip(".").replace(",", " ").replace(".", ",").replace(" ", ".")
