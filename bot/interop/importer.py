"""Bulk import of households from a Kobo/ODK CSV export or a quick-form CSV (issue A), with a per-row report.

Each row becomes an assessment through the same path as a chat (``assessment.assess`` then
``bot.store.repository.record_assessment``) with provenance ``imported`` and channel ``import``, so it is
counted in every aggregate and, when the household agreed to share, queued for the commune review.

* **Kobo/ODK** (``kind="kobo"``): the columns of the XLSForm of :mod:`bot.interop.xlsform`, with or without
  Kobo's group prefixes (``ho/household_size``), comma or semicolon separated, XML values (not labels).
  The answers are checked against the questionnaire (choices, bounds and their Vietnamese messages,
  conditions) and turned into the quick form by the conversation engine's own ``build_input``. The
  assessment's date is the submission's (``end``, ``_submission_time`` or ``today``).
* **Quick form** (``kind="quick"``): the columns of ``python -m assessment --csv`` (cells converted by that
  command's own converters), plus optional ``hamlet``, ``household_code``, ``household_head``, ``phone`` and
  ``shared`` (có/không, default không: only anonymous statistics).

Idempotent: every row has a key (Kobo's ``_uuid`` / ``meta/instanceID``; the quick form's ``id`` or
``household_id`` column, else a hash of the row) and is stored under an ``import`` identity keyed by it, so a
second import of the same rows adds nothing (they are counted as skipped), and a row erased on request is not
brought back. A key seen twice in one file is an error on the second row.

Progress: the :class:`~bot.store.models.ImportJob` row is updated every ``every`` rows, in the transaction that
stores them, so a status page sees steady progress and a crash loses at most one batch (re-running the import
finishes the job without duplicates).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import assessment
from assessment import InputError
from assessment.geo import commune_by_code
from bot.conversation.questionnaire import Question, Questionnaire
from bot.store.db import run_in_transaction
from bot.store.models import Assessment, Identity, ImportJob, Provenance, utcnow
from bot.store.repository import VIETNAM_TZ, lock_identity, pseudonymise, record_assessment

__all__ = [
    "IMPORT_CHANNEL",
    "KINDS",
    "MAX_ERROR_ROWS",
    "ImportResult",
    "RowProblem",
    "count_rows",
    "create_job",
    "job_status",
    "run_import",
]

KINDS: Final = ("kobo", "quick")
IMPORT_CHANNEL: Final = "import"
#: Error rows kept in the job (the counts stay exact beyond it).
MAX_ERROR_ROWS: Final = 1000
#: Kobo's own columns that name a submission, best first.
KOBO_KEYS: Final = ("_uuid", "meta/instanceID", "instanceID", "_id")
KOBO_TIMES: Final = ("end", "_submission_time", "today", "start")
#: Quick-form columns besides the household fields.
QUICK_ID_COLUMNS: Final = ("id", "household_id")
QUICK_EXTRA: Final = ("hamlet", "household_code", "household_head", "phone", "shared")
TRUE_WORDS: Final = frozenset({"true", "1", "yes", "có", "co", "x", "đúng"})
FALSE_WORDS: Final = frozenset({"false", "0", "no", "không", "khong"})


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem of one row: the column at fault and a Vietnamese message."""

    field: str
    message_vi: str

    def to_dict(self) -> dict[str, str]:
        """JSON form stored in the job."""
        return {"field": self.field, "message_vi": self.message_vi}


@dataclass
class _Prepared:
    """A row ready to store: what to assess and record, or the problems that stop it."""

    line: int
    key: str | None = None
    problems: list[RowProblem] = field(default_factory=list)
    data: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    now: dt.datetime | None = None
    shared: bool = False
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportResult:
    """Final counts of an import (also in the job row)."""

    job_id: int
    status: str
    total_rows: int
    ok_rows: int
    failed_rows: int
    skipped_rows: int
    errors: list[dict[str, Any]]
    message_vi: str | None = None


class HeaderError(ValueError):
    """The file cannot be imported at all (unknown column, no key column...); ``message_vi`` says why."""

    def __init__(self, message_vi: str) -> None:
        super().__init__(message_vi)
        self.message_vi = message_vi


# ---------------------------------------------------------------------------------------------------- reading


def _open_text(path: Path) -> io.TextIOWrapper:
    # utf-8-sig: Excel and Kobo put a byte-order mark in front of UTF-8 CSV files.
    return open(path, encoding="utf-8-sig", newline="")


def _dialect(first_line: str) -> str:
    """Kobo exports use ``;`` by default, spreadsheets ``,``: pick the one the header uses more."""
    return ";" if first_line.count(";") > first_line.count(",") else ","


def _records(handle: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number where the record starts, cells)`` for every non-blank record after the header."""
    first = handle.readline()
    handle.seek(0)
    reader = csv.reader(handle, delimiter=_dialect(first))
    previous = 0
    for cells in reader:
        start = previous + 1
        previous = reader.line_num
        if start == 1:
            yield 1, cells
            continue
        if any(c.strip() for c in cells):
            yield start, cells


def count_rows(path: Path) -> int:
    """Count the data rows of a CSV file (blank lines and the header excluded)."""
    with _open_text(path) as handle:
        return max(sum(1 for _ in _records(handle)) - 1, 0)


# ---------------------------------------------------------------------------------------------------- Kobo rows


def _parse_when(text: str) -> dt.datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(12), VIETNAM_TZ)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    # Kobo's _submission_time is UTC without an offset.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class _KoboPlan:
    """Which column holds which question, meta field or select_multiple option."""

    def __init__(self, header: Sequence[str], qn: Questionnaire, extra: Sequence[str]) -> None:
        self.qn = qn
        self.columns: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.options: dict[str, dict[str, int]] = {}
        known = {q.id for q in qn.questions} | set(extra)
        multi = {q.id for q in qn.questions if q.type in ("multi_choice", "income_sources")}
        for index, raw in enumerate(header):
            name = raw.strip()
            if name in KOBO_KEYS or name in KOBO_TIMES:
                self.columns.setdefault(name, index)
                self.names.setdefault(name, name)
                continue
            parts = [p for p in name.split("/") if p]
            if not parts:
                continue
            if len(parts) >= 2 and parts[-2] in multi:
                # Kobo's one-column-per-option form of a multiple choice: "ho/devices/tv" = 1 / 0.
                self.options.setdefault(parts[-2], {})[parts[-1]] = index
                continue
            last = parts[-1]
            if last in known and last not in self.columns:
                self.columns[last] = index
                self.names[last] = name
        if not any(k in self.columns for k in KOBO_KEYS):
            raise HeaderError("Tệp không có cột _uuid (hoặc meta/instanceID) của Kobo/ODK, nên không nhập được.")
        consent = qn.consent.id
        if consent not in self.columns:
            raise HeaderError(f"Tệp không có cột “{consent}”: đây không phải tệp xuất từ biểu mẫu Tự rà soát.")

    def cell(self, cells: Sequence[str], name: str) -> str:
        index = self.columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def column(self, name: str) -> str:
        return self.names.get(name, name)

    def picked(self, cells: Sequence[str], qid: str) -> list[str] | None:
        """The payloads of a multiple choice: the main column, else Kobo's option columns (None: no column)."""
        if qid in self.columns:
            text = self.cell(cells, qid)
            return [p for p in re.split(r"[\s;,]+", text) if p]
        options = self.options.get(qid)
        if options is None:
            return None
        return [p for p, i in options.items() if i < len(cells) and cells[i].strip() in ("1", "True", "true")]


def _label(q: Question) -> str:
    return q.summary_label or q.id


def _number(q: Question, text: str) -> tuple[Any, str | None]:
    """Convert a numeric cell with the quick-form CLI's converters; return (value, problem message)."""
    from assessment.__main__ import _parse_int, _parse_number

    value = _parse_int(text) if q.type == "int" else _parse_number(text)
    if isinstance(value, (str, bool)):
        invalid = q.validation.messages.get("invalid") if q.validation else None
        return None, f"“{text}” không phải là số hợp lệ. {invalid or ''}".strip()
    v = q.validation
    if v is not None:
        if v.min is not None and value < v.min:
            return None, v.messages.get("min") or f"Giá trị phải từ {v.min:g} trở lên."
        if v.max is not None and value > v.max:
            return None, v.messages.get("max") or f"Giá trị phải từ {v.max:g} trở xuống."
    elif value < 0:
        return None, "Giá trị không được âm."
    return value, None


def _at_most(q: Question, value: Any, answers: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The questionnaire's cross-question limit (children + allowance ≤ household size), with its message."""
    v = q.validation
    if v is None or v.at_most is None:
        return None
    limit = (answers.get(v.at_most.limit) or {}).get("value")
    if not isinstance(limit, (int, float)):
        return None
    total = value + sum(
        (answers.get(o) or {}).get("value") or 0
        for o in v.at_most.total_with
        if isinstance((answers.get(o) or {}).get("value"), (int, float))
    )
    if total > limit:
        return v.at_most.message.format(total=f"{total:g}", limit=f"{limit:g}")
    return None


def _resolve_commune(text: str, min_score: float) -> str | None:
    """A commune code from a cell: the code itself, or a name that matches one commune clearly."""
    if text.isdigit():
        commune = commune_by_code(text)
        return commune.code if commune is not None else None
    from bot.parsing.communes import resolve_commune

    matches = [m for m in resolve_commune(text, limit=2) if m.score >= min_score]
    if not matches:
        return None
    if len(matches) > 1 and not matches[0].exact and matches[1].score >= matches[0].score - 0.05:
        return None  # two communes fit as well: do not guess
    return matches[0].commune.code


class _KoboRows:
    """Turns Kobo rows into assessments."""

    def __init__(self, header: Sequence[str], qn: Questionnaire, engine: Any, commune: str | None,
                 today: dt.date, now: dt.datetime) -> None:
        from bot.interop.xlsform import EXTRA_FIELDS, amount_field

        self.qn = qn
        self.engine = engine
        self.commune = commune
        self.today = today
        self.now = now
        self.amount_field = amount_field
        helpers = [qn.by_id[q.helper] for q in qn.questions if q.helper]
        extra = list(EXTRA_FIELDS) + [amount_field(c.payload) for h in helpers for c in h.choices]
        self.plan = _KoboPlan(header, qn, extra)

    def key(self, cells: Sequence[str]) -> str | None:
        for name in KOBO_KEYS:
            value = self.plan.cell(cells, name)
            if value:
                return "kobo:" + value.removeprefix("uuid:")
        return None

    def when(self, cells: Sequence[str]) -> dt.datetime:
        for name in KOBO_TIMES:
            moment = _parse_when(self.plan.cell(cells, name))
            if moment is not None:
                return min(moment, self.now)  # a device clock in the future does not date it later
        return self.now

    def prepare(self, line: int, cells: Sequence[str]) -> _Prepared:
        qn, plan = self.qn, self.plan
        row = _Prepared(line=line, key=self.key(cells))
        problems = row.problems
        if row.key is None:
            problems.append(RowProblem("_uuid", "Thiếu mã bản ghi (_uuid) nên không biết dòng này đã nhập hay chưa."))
            return row
        moment = self.when(cells)
        on = moment.astimezone(VIETNAM_TZ).date()
        consent = qn.consent
        mode = plan.cell(cells, consent.id)
        if mode not in consent.choice_by_payload:
            problems.append(self.unknown(consent, mode) if mode else self.required(consent))
            return row
        if mode == "decline":
            problems.append(RowProblem(plan.column(consent.id), "Hộ không đồng ý cho ghi lại câu trả lời; dòng này không được nhập."))
            return row
        answers: dict[str, dict[str, Any]] = {consent.id: {"value": mode, "collaborator": True}}
        details: dict[str, str] = {}
        for q in qn.linear:
            if q.role is not None or not q.applies(answers, on):
                continue
            column = plan.column(q.id)
            if q.type == "roster":
                problems.append(RowProblem(column, "Hộ nhập theo cách chi tiết (từng người): tệp CSV không chứa danh "
                                                   "sách thành viên; hãy nhập hộ này theo cách nhanh."))
                continue
            if q.type == "money" and q.helper:
                entry = self.income(q, cells, answers, on, problems)
                if entry is not None:
                    answers[q.id] = entry
                continue
            if q.type in ("multi_choice", "income_sources"):
                picked = plan.picked(cells, q.id) or []
                unknown = [p for p in picked if p not in q.choice_by_payload]
                if unknown:
                    problems.append(self.unknown(q, " ".join(unknown)))
                    continue
                answers[q.id] = {"value": list(dict.fromkeys(picked))}
                continue
            text = plan.cell(cells, q.id)
            if q.type == "commune":
                code = None
                if text:
                    code = _resolve_commune(text, qn.settings.commune_min_score)
                    if code is None:
                        problems.append(RowProblem(column, f"Không tìm thấy xã/phường “{text}” (ghi mã xã 5 số hoặc tên đúng)."))
                        continue
                if self.commune and code and code != self.commune:
                    problems.append(RowProblem(column, f"Xã/phường {code} khác xã của lần nhập này ({self.commune})."))
                    continue
                answers[q.id] = {"value": code or self.commune}
                continue
            if not text:
                if q.type in ("text", "phone", "hamlet") and q.skippable(answers, on):
                    continue
                problems.append(self.required(q))
                continue
            if q.type == "choice":
                if text not in q.choice_by_payload:
                    problems.append(self.unknown(q, text))
                    continue
                answers[q.id] = {"value": text}
            elif q.type == "yes_no":
                word = text.lower()
                if word not in TRUE_WORDS and word not in FALSE_WORDS:
                    problems.append(self.unknown(q, text))
                    continue
                answers[q.id] = {"value": word in TRUE_WORDS}
            elif q.type in ("int", "number", "money"):
                value, message = _number(q, text)
                if message is None:
                    message = _at_most(q, value, answers)
                if message is not None:
                    problems.append(RowProblem(column, message))
                    continue
                answers[q.id] = {"value": value}
            elif q.type in ("text", "phone", "hamlet"):
                if q.type == "phone" and not re.fullmatch(r"(\+?84|0)[35789]\d{8}", re.sub(r"[\s.\-]", "", text)):
                    problems.append(RowProblem(column, qn.messages.get("hint_phone", "Số điện thoại không hợp lệ.")))
                    continue
                answers[q.id] = {"value": text}
                if q.household:
                    details[q.household] = text
        for name in ("household_code",):
            value = plan.cell(cells, name)
            if value:
                details[name] = value
        if problems:
            return row
        data = self.engine.build_input(answers, on)
        row.data, row.now, row.shared, row.details = data, moment, mode == "share", details
        return row

    def income(self, q: Question, cells: Sequence[str], answers: dict[str, dict[str, Any]], on: dt.date,
               problems: list[RowProblem]) -> dict[str, Any] | None:
        """The income: the total, or the sum of the helper's sources (which also fills farm_household)."""
        helper = self.qn.by_id[q.helper] if q.helper else None
        picked = self.plan.picked(cells, helper.id) if helper is not None else None
        if helper is not None and picked:
            unknown = [p for p in picked if p not in helper.choice_by_payload]
            if unknown:
                problems.append(self.unknown(helper, " ".join(unknown)))
                return None
            sources: dict[str, int] = {}
            for payload in dict.fromkeys(picked):
                name = self.amount_field(payload)
                text = self.plan.cell(cells, name)
                if not text:
                    problems.append(RowProblem(self.plan.column(name), f"Thiếu số tiền của nguồn thu “{helper.choice_by_payload[payload].short_label}”."))
                    return None
                amount, message = _number(q, text)
                if message is not None:
                    problems.append(RowProblem(self.plan.column(name), message))
                    return None
                sources[payload] = int(amount)
            return {"value": sum(sources.values()), "sources": sources}
        text = self.plan.cell(cells, q.id)
        if not text:
            problems.append(self.required(q))
            return None
        value, message = _number(q, text)
        if message is not None:
            problems.append(RowProblem(self.plan.column(q.id), message))
            return None
        return {"value": value}

    def required(self, q: Question) -> RowProblem:
        return RowProblem(self.plan.column(q.id), f"Thiếu câu trả lời: {_label(q)}.")

    def unknown(self, q: Question, value: str) -> RowProblem:
        allowed = ", ".join(c.payload for c in q.choices)
        return RowProblem(
            self.plan.column(q.id),
            f"“{value}” không có trong các lựa chọn của câu “{_label(q)}” (giá trị hợp lệ: {allowed}). "
            "Khi xuất từ Kobo, chọn “XML values and headers”.",
        )

    def field_column(self, name: str) -> str:
        """The column to blame for a problem the legal core found in input field ``name``."""
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        qid = self.qn.field_questions.get(base)
        return self.plan.column(qid) if qid else (name or "")


# ---------------------------------------------------------------------------------------------------- quick rows


class _QuickRows:
    """Turns quick-form rows into assessments, converting cells as ``python -m assessment --csv`` does."""

    def __init__(self, header: Sequence[str], commune: str | None, today: dt.date, now: dt.datetime) -> None:
        from assessment.__main__ import _cached, _converter, _load_schema

        schema = _load_schema() or {}
        properties: Mapping[str, Any] = schema.get("properties", {})
        self.commune = commune
        self.today = today
        self.now = now
        self.header = [h.strip() for h in header]
        self.fields: list[tuple[int, str, Callable[[str], Any]]] = []
        self.index: dict[str, int] = {}
        unknown: list[str] = []
        for i, name in enumerate(self.header):
            if not name:
                continue
            if name in self.index:
                raise HeaderError(f"Cột “{name}” bị lặp.")
            self.index[name] = i
            if name in properties and name != "on":
                self.fields.append((i, name, _cached(_converter(properties[name], schema))))
            elif name not in (*QUICK_ID_COLUMNS, *QUICK_EXTRA, "on"):
                unknown.append(name)
        if unknown:
            raise HeaderError("Cột không phải trường của phiếu hộ gia đình: " + ", ".join(f"“{n}”" for n in unknown) + ".")

    def cell(self, cells: Sequence[str], name: str) -> str:
        i = self.index.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    def prepare(self, line: int, cells: Sequence[str]) -> _Prepared:
        row = _Prepared(line=line)
        ident = next((self.cell(cells, n) for n in QUICK_ID_COLUMNS if self.cell(cells, n)), "")
        data = {name: convert(cells[i]) for i, name, convert in self.fields if i < len(cells) and cells[i].strip()}
        code = str(data.get("commune_code") or "") or self.commune
        if self.commune and code != self.commune:
            row.problems.append(RowProblem("commune_code", f"Xã/phường {code} khác xã của lần nhập này ({self.commune})."))
            return row
        if code:
            data["commune_code"] = code
        digest = hashlib.sha256("\x1f".join(c.strip() for c in cells).encode()).hexdigest()[:32]
        row.key = f"quick:{code or '-'}:{ident}" if ident else f"quick:{code or '-'}:sha256:{digest}"
        on_text = self.cell(cells, "on")
        moment = self.now
        if on_text:
            when = _parse_when(on_text)
            if when is None:
                row.problems.append(RowProblem("on", f"Ngày “{on_text}” không hợp lệ (dạng YYYY-MM-DD)."))
                return row
            moment = min(when, self.now)
        shared_text = self.cell(cells, "shared").lower()
        if shared_text and shared_text not in TRUE_WORDS | FALSE_WORDS:
            row.problems.append(RowProblem("shared", f"“{shared_text}”: ghi có hoặc không."))
            return row
        row.data = data
        row.now = moment
        row.shared = shared_text in TRUE_WORDS
        row.details = {k: v for k in ("hamlet", "household_code", "household_head", "phone") if (v := self.cell(cells, k))}
        return row

    @staticmethod
    def field_column(name: str) -> str:
        return re.split(r"[.\[]", name, maxsplit=1)[0] or name


# ---------------------------------------------------------------------------------------------------- the run


def create_job(session: Session, *, kind: str, filename: str | None, user_id: int | None, commune: str | None,
               total_rows: int, now: dt.datetime | None = None) -> int:
    """Insert a running ImportJob and return its id (the caller commits)."""
    job = ImportJob(
        user_id=user_id,
        kind=kind,
        filename=(filename or "")[:255] or None,
        status="running",
        total_rows=total_rows,
        errors={"rows": [], "skipped_rows": 0, "truncated": False, "commune_code": commune, "message_vi": None},
        created_at=now or utcnow(),
    )
    session.add(job)
    session.flush()
    return int(job.id)


def _assess(row: _Prepared, blame: Callable[[str], str]) -> None:
    """Run the legal core on a prepared row; its problems become the row's, each naming its column."""
    assert row.data is not None and row.now is not None
    on = row.data.get("on") or row.now.astimezone(VIETNAM_TZ).date().isoformat()
    data = {k: v for k, v in row.data.items() if k != "on"}
    try:
        row.result = assessment.assess(data, on=on).to_dict()
        row.data = {**data, "on": str(on)}
    except InputError as exc:
        row.problems.extend(RowProblem(blame(p.field), p.message_vi) for p in exc.problems)


def _already(session: Session, user_hash: str) -> str | None:
    """Why a key needs no import: ``"imported"``, ``"erased"`` (the household asked to erase it), or None."""
    found = session.execute(
        select(Identity.id, Identity.erased_at).where(Identity.channel == IMPORT_CHANNEL, Identity.user_hash == user_hash)
    ).one_or_none()
    if found is None:
        return None
    if found.erased_at is not None:
        return "erased"
    exists = session.execute(select(Assessment.id).where(Assessment.identity_id == found.id).limit(1)).first()
    return "imported" if exists is not None else None


def run_import(
    sessions: Callable[[], Session],
    job_id: int,
    path: Path,
    *,
    kind: str,
    commune: str | None,
    pseudonym_key: str,
    questionnaire_version: str | None = None,
    scope: Any | None = None,
    collaborator_user_id: int | None = None,
    every: int = 50,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Import every row of ``path`` into job ``job_id``; update the job every ``every`` rows.

    Args:
        sessions: Session factory (each batch runs in a transaction of its own).
        job_id: The ImportJob to report into (see :func:`create_job`).
        path: The CSV file (UTF-8).
        kind: ``"kobo"`` or ``"quick"``.
        commune: The commune the rows belong to (fills rows without one; a row of another commune is an error).
        pseudonym_key: Key of the ``import`` identities (``PSEUDONYM_KEY`` / ``SECRET_KEY``).
        questionnaire_version: Recorded on Kobo assessments.
        scope: The uploader's ``Scope``; rows outside it are errors (None: no check, the CLI's case).
        collaborator_user_id: Recorded as the collaborator who entered the households.
        every: Rows per batch (transaction and progress update).
        now: Import time (tests); rows without a date of their own get it.
    """
    now = now or utcnow()
    today = now.astimezone(VIETNAM_TZ).date()
    every = max(1, int(every))
    counts = {"ok": 0, "failed": 0, "skipped": 0, "done": 0}
    error_rows: list[dict[str, Any]] = []
    truncated = False
    seen: dict[str, int] = {}

    def finish(status: str, message_vi: str | None = None) -> ImportResult:
        with sessions() as session:
            def work(s: Session) -> None:
                s.execute(
                    update(ImportJob).where(ImportJob.id == job_id).values(
                        status=status, done_rows=counts["done"], ok_rows=counts["ok"], failed_rows=counts["failed"],
                        errors=_errors_doc(), finished_at=utcnow(),
                        **({"total_rows": counts["done"]} if status == "done" else {}),
                    )
                )
            run_in_transaction(session, work)
        return ImportResult(job_id, status, counts["done"], counts["ok"], counts["failed"], counts["skipped"],
                            list(error_rows), message_vi)

    def _errors_doc() -> dict[str, Any]:
        return {"rows": error_rows, "skipped_rows": counts["skipped"], "truncated": truncated,
                "commune_code": commune, "message_vi": message}

    message: str | None = None
    try:
        handle = _open_text(path)
    except OSError as exc:
        message = f"Không mở được tệp: {exc.strerror}"
        return finish("failed", message)
    with handle:
        records = _records(handle)
        try:
            _line, header = next(records)
        except StopIteration:
            message = "Tệp CSV trống (cần một dòng tiêu đề)."
            return finish("failed", message)
        except (UnicodeDecodeError, csv.Error) as exc:
            message = f"Tệp không phải CSV UTF-8 hợp lệ ({exc}). Hãy lưu lại dạng CSV UTF-8."
            return finish("failed", message)
        try:
            if kind == "kobo":
                from bot.conversation import default_engine

                engine = default_engine()
                reader: Any = _KoboRows(header, engine.qn, engine, commune, today, now)
                questionnaire_version = questionnaire_version or engine.qn.version
            elif kind == "quick":
                reader = _QuickRows(header, commune, today, now)
            else:
                raise HeaderError(f"Loại tệp không hợp lệ: {kind} (kobo hoặc quick).")
        except HeaderError as exc:
            message = exc.message_vi
            return finish("failed", message)

        def fail(line: int, problems: Sequence[RowProblem]) -> None:
            nonlocal truncated
            counts["failed"] += 1
            if len(error_rows) < MAX_ERROR_ROWS:
                error_rows.append({"line": line, "problems": [p.to_dict() for p in problems]})
            else:
                truncated = True

        def store(batch: list[_Prepared]) -> None:
            """Store one batch and the job's progress in one transaction."""
            outcome: dict[str, Any] = {}

            def work(session: Session) -> None:
                outcome.clear()
                ok = skipped = 0
                for row in batch:
                    assert row.key is not None and row.result is not None and row.now is not None
                    user_hash = pseudonymise(pseudonym_key, IMPORT_CHANNEL, row.key)
                    if _already(session, user_hash) is not None:
                        skipped += 1
                        continue
                    identity = lock_identity(session, IMPORT_CHANNEL, user_hash, now=row.now)
                    if _already(session, user_hash) is not None:  # a parallel import got there first
                        skipped += 1
                        continue
                    personal = row.details if row.shared else {}
                    record_assessment(
                        session,
                        input=row.data,
                        result=row.result,
                        now=row.now,
                        identity=identity,
                        questionnaire_version=questionnaire_version if kind == "kobo" else None,
                        provenance=Provenance.IMPORTED,
                        shared=row.shared,
                        channel=IMPORT_CHANNEL,
                        hamlet=row.details.get("hamlet"),
                        household_head=personal.get("household_head"),
                        phone=personal.get("phone"),
                        household_code=personal.get("household_code"),
                        collaborator_user_id=collaborator_user_id,
                    )
                    ok += 1
                outcome.update(ok=ok, skipped=skipped)
                session.execute(
                    update(ImportJob).where(ImportJob.id == job_id).values(
                        done_rows=counts["done"] + pending_done[0],
                        ok_rows=counts["ok"] + ok,
                        failed_rows=counts["failed"],
                        errors={**_errors_doc(), "skipped_rows": counts["skipped"] + skipped},
                    )
                )

            with sessions() as session:
                run_in_transaction(session, work)
            counts["ok"] += outcome["ok"]
            counts["skipped"] += outcome["skipped"]

        batch: list[_Prepared] = []
        pending_done = [0]
        try:
            for line, cells in records:
                row = reader.prepare(line, cells)
                if not row.problems and row.key is not None:
                    first = seen.get(row.key)
                    if first is not None:
                        column = "_uuid" if kind == "kobo" else "id"
                        row.problems.append(RowProblem(column, f"Trùng mã bản ghi với dòng {first}; dòng này không được nhập."))
                    else:
                        seen[row.key] = line
                if not row.problems and scope is not None:
                    code = str((row.data or {}).get("commune_code") or "")
                    if not scope.allows(code, row.details.get("hamlet")):
                        row.problems.append(RowProblem(
                            "commune_code",
                            f"Xã/phường {code or '(trống)'} hoặc thôn/ấp này ngoài phạm vi tài khoản của bạn.",
                        ))
                if not row.problems:
                    _assess(row, reader.field_column)
                if row.problems:
                    fail(line, row.problems)
                else:
                    batch.append(row)
                pending_done[0] += 1
                if pending_done[0] >= every:
                    store(batch)
                    counts["done"] += pending_done[0]
                    batch, pending_done[0] = [], 0
            if pending_done[0]:
                store(batch)
                counts["done"] += pending_done[0]
        except (UnicodeDecodeError, csv.Error) as exc:
            message = f"Tệp không đọc được đến hết (dòng sau {counts['done'] + 1}): {exc}. Hãy lưu lại dạng CSV UTF-8."
            return finish("failed", message)
    return finish("done")


def job_status(job: ImportJob, *, max_errors: int = 200) -> dict[str, Any]:
    """The JSON document of a job's status page."""
    doc = job.errors or {}
    total = int(job.total_rows or 0)
    done = int(job.done_rows or 0)
    if job.status == "done":
        percent = 100
    else:
        percent = int(done * 100 / total) if total else 0
        percent = min(percent, 99)
    rows = list(doc.get("rows") or [])
    return {
        "id": job.id,
        "kind": job.kind,
        "filename": job.filename,
        "status": job.status,
        "total_rows": total,
        "done_rows": done,
        "ok_rows": int(job.ok_rows or 0),
        "failed_rows": int(job.failed_rows or 0),
        "skipped_rows": int(doc.get("skipped_rows") or 0),
        "percent": percent,
        "commune_code": doc.get("commune_code"),
        "message_vi": doc.get("message_vi"),
        "errors": rows[:max_errors],
        "errors_truncated": bool(doc.get("truncated")) or len(rows) > max_errors,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
