"""Routes and commands of the interop area: the XLSForm, CSV imports and their progress.

| route | roles | what |
|---|---|---|
| ``GET /interop/xlsform.xlsx`` | anyone | the questionnaire as an XLSForm (public: it holds only the questions) |
| ``GET /interop/import`` | collaborator, official, admin | upload form |
| ``POST /interop/import`` | collaborator, official, admin | start an import (runs in the background) |
| ``GET /interop/import/<id>`` | the job's owner, admin | progress page (polls the JSON below) |
| ``GET /interop/import/<id>.json`` | the job's owner, admin | progress and per-row errors |

Commands: ``flask export-xlsform OUT.xlsx`` and ``flask import-csv FILE --kind kobo|quick --commune CODE``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Final

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.cli import with_appcontext

from bot.reports.access import current_scope, require_roles
from bot.store.db import get_session, get_store
from bot.store.models import ImportJob

from .importer import KINDS, count_rows, create_job, job_status, run_import
from .xlsform import FORM_ID, build_xlsform, write_xlsform

__all__ = ["bp"]

log = logging.getLogger(__name__)

# cli_group=None: the commands are top-level (``flask import-csv``), not ``flask interop import-csv``.
bp = Blueprint("interop", __name__, url_prefix="/interop", cli_group=None)

XLSX_MIMETYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ROLES: Final = ("collaborator", "official", "admin")
#: Largest upload (a Kobo export of a whole commune is a few MiB).
DEFAULT_IMPORT_MAX_BYTES: Final = 50 * 1024 * 1024


def _pseudonym_key(app: Flask) -> str:
    return str(app.config.get("PSEUDONYM_KEY") or app.config["SECRET_KEY"])


def _every(app: Flask) -> int:
    return int(app.config.get("IMPORT_PROGRESS_EVERY", 50))


# ---------------------------------------------------------------------------------------------------- XLSForm


@bp.get("/xlsform.xlsx")
def xlsform() -> Response:
    """The questionnaire as an XLSForm for KoboToolbox / ODK (generated from the questionnaire file)."""
    buffer = io.BytesIO()
    write_xlsform(buffer, build_xlsform())
    buffer.seek(0)
    return send_file(buffer, mimetype=XLSX_MIMETYPE, as_attachment=True, download_name=f"{FORM_ID}.xlsx")


@click.command("export-xlsform")
@with_appcontext
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
def export_xlsform_command(out: str) -> None:
    """Write the questionnaire as an XLSForm workbook to OUT (e.g. tu_ra_soat.xlsx)."""
    form = build_xlsform()
    write_xlsform(out, form)
    questions = sum(1 for r in form.survey if r.get("type") not in ("begin_group", "end_group", "calculate"))
    click.echo(f"Đã ghi {out}: {questions} câu hỏi, {len(form.calculations)} trường tính toán.")


bp.cli.add_command(export_xlsform_command)


# ---------------------------------------------------------------------------------------------------- imports


def _job_or_404(job_id: int) -> ImportJob:
    job = get_session().get(ImportJob, job_id)
    if job is None:
        abort(404)
    scope = current_scope()
    if not (scope.role == "admin" or (job.user_id is not None and job.user_id == scope.user_id)):
        abort(404)  # someone else's import: not even its existence is shown
    return job


def _uploads(app: Flask) -> Path:
    folder = Path(app.instance_path) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_job(app: Flask, job_id: int, path: Path, kind: str, commune: str | None, scope: Any,
             collaborator_user_id: int | None) -> None:
    """Run one import (in a background thread for the web upload) and delete the uploaded file."""
    try:
        with app.app_context():
            run_import(
                get_store(app).sessions,
                job_id,
                path,
                kind=kind,
                commune=commune,
                pseudonym_key=_pseudonym_key(app),
                scope=scope,
                collaborator_user_id=collaborator_user_id,
                every=_every(app),
            )
    except Exception:  # the thread has no one to raise to: log it and mark the job failed
        log.exception("import job %s failed", job_id)
        with app.app_context(), get_store(app).sessions() as session:
            job = session.get(ImportJob, job_id)
            if job is not None and job.status == "running":
                job.status = "failed"
                job.errors = {**(job.errors or {}), "message_vi": "Lỗi hệ thống khi nhập; hãy thử lại."}
                job.finished_at = dt.datetime.now(dt.UTC)
                session.commit()
    finally:
        path.unlink(missing_ok=True)  # the upload holds personal data: keep it no longer than the import


def _communes_for(scope: Any) -> list[str]:
    visible = scope.visible_communes() if hasattr(scope, "visible_communes") else None
    return sorted(visible) if visible is not None else []


@bp.get("/import")
@require_roles(*ROLES)
def import_form() -> str:
    """Upload form for a Kobo/ODK or quick-form CSV."""
    scope = current_scope()
    return render_template("interop/import.html", kinds=KINDS, communes=_communes_for(scope), error=None)


@bp.post("/import")
@require_roles(*ROLES)
def import_upload() -> Any:
    """Save the upload, create the job and start it in the background; go to its progress page."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # A whole commune's export is larger than the API's 1 MiB body limit.
    request.max_content_length = int(app.config.get("IMPORT_MAX_CONTENT_LENGTH", DEFAULT_IMPORT_MAX_BYTES))
    scope = current_scope()
    kind = request.form.get("kind", "")
    commune = (request.form.get("commune") or "").strip() or None
    upload = request.files.get("file")

    def refuse(message: str) -> tuple[str, int]:
        return render_template("interop/import.html", kinds=KINDS, communes=_communes_for(scope), error=message), 400

    if kind not in KINDS:
        return refuse("Chọn loại tệp: Kobo/ODK hoặc phiếu nhanh.")
    if upload is None or not upload.filename:
        return refuse("Chọn tệp CSV để nhập.")
    if commune is None and scope.role != "admin":
        return refuse("Chọn xã/phường của các hộ trong tệp.")
    if commune is not None and not scope.reaches(commune):
        abort(403)
    path = _uploads(app) / f"{uuid.uuid4().hex}.csv"
    upload.save(path)
    try:
        total = count_rows(path)
    except (UnicodeDecodeError, ValueError, csv.Error):
        path.unlink(missing_ok=True)
        return refuse("Tệp không phải CSV UTF-8. Hãy lưu lại dạng CSV UTF-8 rồi thử lại.")
    session = get_session()
    job_id = create_job(session, kind=kind, filename=upload.filename, user_id=scope.user_id, commune=commune,
                        total_rows=total)
    session.commit()
    collaborator = scope.user_id if scope.role == "collaborator" else None
    args = (app, job_id, path, kind, commune, scope, collaborator)
    if app.config.get("IMPORT_IN_BACKGROUND", True):
        threading.Thread(target=_run_job, args=args, name=f"import-{job_id}", daemon=True).start()
    else:
        _run_job(*args)
    return redirect(url_for("interop.import_job", job_id=job_id), code=303)


# CSRF protection reads the form before the view runs: it honours this limit (bot.accounts.security), so a whole
# commune's export is not refused with 413 at 1 MiB.
import_upload.max_content_length = lambda: int(  # type: ignore[attr-defined]
    current_app.config.get("IMPORT_MAX_CONTENT_LENGTH", DEFAULT_IMPORT_MAX_BYTES)
)


@bp.get("/import/<int:job_id>")
@require_roles(*ROLES)
def import_job(job_id: int) -> str:
    """Progress page: a bar fed by the JSON status, then the per-row errors."""
    job = _job_or_404(job_id)
    return render_template("interop/job.html", job=job, status=job_status(job))


@bp.get("/import/<int:job_id>.json")
@require_roles(*ROLES)
def import_job_json(job_id: int) -> Response:
    """Progress of an import and its per-row errors (line, column, Vietnamese message)."""
    response = jsonify(job_status(_job_or_404(job_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@click.command("import-csv")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(KINDS), required=True, help="kobo: tệp xuất từ Kobo/ODK; quick: phiếu nhanh.")
@click.option("--commune", "commune", default=None, help="Mã xã/phường (5 số) của các hộ trong tệp.")
@click.option("--every", default=None, type=int, help="Cập nhật tiến độ sau mỗi N dòng.")
def import_csv_command(file: str, kind: str, commune: str | None, every: int | None) -> None:
    """Import households from FILE (CSV, UTF-8) and print the per-row errors."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    path = Path(file)
    store = get_store(app)
    with store.sessions() as session:
        job_id = create_job(session, kind=kind, filename=path.name, user_id=None, commune=commune,
                            total_rows=count_rows(path))
        session.commit()
    result = run_import(store.sessions, job_id, path, kind=kind, commune=commune,
                        pseudonym_key=_pseudonym_key(app), every=every or _every(app))
    for entry in result.errors:
        for problem in entry["problems"]:
            click.echo(f"dòng {entry['line']}: {problem['field']}: {problem['message_vi']}", err=True)
    if result.message_vi:
        click.echo(f"lỗi: {result.message_vi}", err=True)
    click.echo(
        f"Lần nhập {job_id}: {result.total_rows} dòng, {result.ok_rows} đã nhập, "
        f"{result.skipped_rows} đã có từ trước, {result.failed_rows} lỗi."
    )
    sys.exit(0 if result.status == "done" and not result.failed_rows else 1)


bp.cli.add_command(import_csv_command)
