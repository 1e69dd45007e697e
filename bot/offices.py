"""Deployment names of the offices that handle each support policy.

Since 1/7/2025 the district offices named in the programme (Phòng Lao động - Thương binh và Xã hội, Phòng Nông
nghiệp …) were reorganised, so each deployment says which of its units now does the job, without code changes:
a YAML file mapping office ids (assessment/data/offices.yaml) to names, set by ``OFFICES_FILE`` in the app config
or the ``TUSOAT_OFFICES_FILE`` environment variable::

    phong_ldtbxh: Phòng Văn hóa - Xã hội UBND xã Thường Phước
    phong_nnptnt: Phòng Kinh tế UBND xã Thường Phước

Every part of the bot that assesses (the API, the chat engine, the Rasa actions) goes through :func:`assess` here.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import yaml

import assessment
from assessment.policies import PolicyCatalog, PolicyDataError, default_catalog

_lock = threading.Lock()
_catalog: PolicyCatalog | None = None
_configured = False


class OfficesFileError(RuntimeError):
    """The offices file cannot be used; the message names the file and the entry."""


def load_office_names(path: str | Path) -> dict[str, str]:
    """Read an offices file: a mapping of office id to its Vietnamese name."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OfficesFileError(f"{path}: cannot read the offices file ({exc})") from exc
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise OfficesFileError(f"{path}: expected a mapping of office id to name, e.g. 'phong_ldtbxh: Phòng …'")
    return raw


def configure(path: str | Path | None) -> PolicyCatalog:
    """Use the office names of `path` (None: the packaged names) from now on in this process."""
    global _catalog, _configured
    catalog = default_catalog()
    if path:
        try:
            catalog = catalog.with_offices(load_office_names(path))
        except PolicyDataError as exc:
            raise OfficesFileError(f"{path}: {exc}") from exc
    with _lock:
        _catalog, _configured = catalog, True
    return catalog


def catalog() -> PolicyCatalog:
    """The policy catalogue with this deployment's office names."""
    if not _configured:
        configure(os.environ.get("TUSOAT_OFFICES_FILE"))
    assert _catalog is not None
    return _catalog


def assess(data: Any, on: Any = None, **options: Any) -> assessment.AssessmentResult:
    """`assessment.assess` with this deployment's office names."""
    return assessment.assess(data, on, catalog=catalog(), **options)
