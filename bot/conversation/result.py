"""Turn the legal core's result (``AssessmentResult.to_dict()``) into the Vietnamese result message.

Only wording lives here; every number, reason and legal reference comes from the core, every sentence template
from the questionnaire's ``messages``. The text is built as paragraphs so that ``split_text`` can cut it into
channel chunks at paragraph boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .questionnaire import Questionnaire

__all__ = ["render_result", "vnd"]


def vnd(amount: float | int) -> str:
    """Format an amount of đồng the Vietnamese way: ``1.500.000 đồng``."""
    return f"{round(amount):,}".replace(",", ".") + " đồng"


def _area(qn: Questionnaire, area: Any) -> str:
    return qn.msg("area_urban") if area == "urban" else qn.msg("area_rural")


def _indicators(res: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = res.get("indicators") or []
    return [i for i in items if isinstance(i, Mapping)]


def _names(indicators: Sequence[Mapping[str, Any]], ids: Sequence[Any]) -> str:
    by_id = {i.get("id"): i.get("name_vi") or i.get("id") for i in indicators}
    return ", ".join(str(by_id.get(x, x)) for x in ids)


def _income(qn: Questionnaire, res: Mapping[str, Any]) -> str | None:
    income = res.get("income_per_capita_vnd")
    line = res.get("income_line_vnd")
    if income is None or line is None:
        return None
    text = qn.msg("result_income", income=vnd(income), area=_area(qn, res.get("area")), line=vnd(line))
    gap = res.get("income_gap_vnd")
    if gap is None:
        gap = line - income
    if gap > 0:
        text += " " + qn.msg("result_income_below", gap=vnd(gap))
    elif gap < 0:
        text += " " + qn.msg("result_income_above", gap=vnd(-gap))
    else:
        text += " " + qn.msg("result_income_equal")
    return text


def _deprivations(qn: Questionnaire, res: Mapping[str, Any]) -> str:
    indicators = _indicators(res)
    deprived = [i for i in indicators if i.get("deprived")]
    total = len(indicators) or 12
    if not deprived:
        text = qn.msg("result_deprivations_none", total=total)
    else:
        lines = [
            qn.msg(
                "result_deprivations",
                count=res.get("deprivation_count", len(deprived)),
                total=total,
                threshold=res.get("deprivation_threshold", 3),
            )
        ]
        for i in deprived:
            name = str(i.get("name_vi") or i.get("id"))
            if i.get("provisional"):
                name += " (*)"
            lines.append(
                qn.msg(
                    "result_deprivation_item",
                    name=name,
                    reason=str(i.get("reason_vi") or "").rstrip(". "),
                    reference=i.get("reference") or "",
                )
            )
        text = "\n".join(lines)
    unanswered = res.get("unanswered") or []
    if unanswered:
        text += "\n" + qn.msg("result_unanswered", names=_names(indicators, unanswered))
    return text


def _next_standard(qn: Questionnaire, nxt: Mapping[str, Any]) -> str:
    std = nxt.get("standard") or {}
    indicators = _indicators(nxt)
    deprived_ids = nxt.get("deprivations") or [i.get("id") for i in indicators if i.get("deprived")]
    text = qn.msg(
        "result_next",
        standard=std.get("name_vi") or std.get("id") or "",
        status=nxt.get("status_vi") or nxt.get("status") or "",
        area=_area(qn, nxt.get("area")),
        line=vnd(nxt["income_line_vnd"]) if nxt.get("income_line_vnd") is not None else "?",
        count=nxt.get("deprivation_count", len(deprived_ids)),
    )
    if deprived_ids:
        text += "\n" + qn.msg("result_next_items", names=_names(indicators, deprived_ids))
    return text


def _policies(qn: Questionnaire, res: Mapping[str, Any]) -> list[str]:
    policies = [p for p in (res.get("policies") or []) if isinstance(p, Mapping)]
    if not policies:
        return [qn.msg("result_no_policies")]
    out = [qn.msg("result_policies")]
    for p in policies:
        name = str(p.get("name_vi") or p.get("id") or "")
        if p.get("provisional"):
            name += " (*)"
        item = qn.msg(
            "result_policy_item",
            name=name,
            benefit=str(p.get("benefit_vi") or "").rstrip(". ") + ".",
            office=str(p.get("office_vi") or "").rstrip("."),
            reference=str(p.get("reference") or "").rstrip("."),
        )
        if p.get("condition_vi"):
            item += "\n" + qn.msg("result_policy_condition", condition=p["condition_vi"])
        out.append(item)
    return out


def render_result(qn: Questionnaire, res: Mapping[str, Any], *, share: bool) -> str:
    """Return the whole result message as paragraphs separated by blank lines."""
    std = res.get("standard") or {}
    paragraphs: list[str] = [
        "\n".join(
            [
                qn.msg("result_title"),
                qn.msg(
                    "result_status",
                    standard=std.get("name_vi") or std.get("id") or "",
                    status=res.get("status_vi") or res.get("status") or "",
                ),
                qn.msg("result_official"),
            ]
        )
    ]
    income = _income(qn, res)
    if income:
        paragraphs.append(income)
    paragraphs.append(_deprivations(qn, res))
    changes = [str(s) for s in (res.get("what_would_change") or []) if s]
    if changes:
        paragraphs.append("\n".join([qn.msg("result_change"), *(f"• {s}" for s in changes)]))
    nxt = res.get("next_standard")
    if isinstance(nxt, Mapping) and nxt:
        paragraphs.append(_next_standard(qn, nxt))
    policies = _policies(qn, res)
    # One paragraph per policy, so a long list splits between policies rather than inside one.
    paragraphs.append(policies[0] + ("\n" + policies[1] if len(policies) > 1 else ""))
    paragraphs.extend(policies[2:])
    paragraphs.append(qn.msg("result_apply"))
    # The core's disclaimer_vi says what result_official and result_apply already say (estimate only, Mẫu số
    # 01, review dates); it stays in the stored result rather than being repeated to someone on a small phone.
    if res.get("provisional"):
        paragraphs.append(qn.msg("result_provisional"))
    closing = [qn.msg("result_shared")] if share else []
    closing.append(qn.msg("result_after"))
    paragraphs.append("\n".join(closing))
    return "\n\n".join(p for p in paragraphs if p)
