"""Load the poverty standards from their dated data files, strictly, and find the one in force on a date.

Each file in `assessment/data/standards/` is one legal period (OpenFisca-style parameters): every parameter has
`values` keyed by the ISO date it takes effect, each with `value`, `reference` and `confidence`. The loader rejects
anything it does not understand and names the file, so a typo in the law can never become a silent default.
"""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import StandardDataError

CONFIDENCES = frozenset({"confirmed", "provisional"})

#: Every parameter a standard may define; the rules read them by these names. A name outside this set is a typo.
KNOWN_PARAMETERS = frozenset(
    {
        "income_line.rural",
        "income_line.urban",
        "average_living_max.rural",
        "average_living_max.urban",
        "deprivation_threshold",
        "employment.working_age_min",
        "employment.retirement_age_months.male",
        "employment.retirement_age_months.female",
        "dependants.max_share",
        "dependants.child_age_below",
        "nutrition.child_age_below",
        "health_insurance.min_age",
        "adult_education.min_age",
        "adult_education.max_age",
        "adult_education.upper_secondary_from_age",
        "child_schooling.min_age",
        "child_schooling.age_below",
        "housing_quality.deprived_grades",
        "housing_area.min_m2_per_person",
        "water.safe_sources",
        "sanitation.hygienic_toilets",
        "information_devices.accepted",
        "waste.deprived_methods",
    }
)

#: Stable indicator ids (issue A §3); a standard uses twelve of them.
KNOWN_INDICATORS = (
    "employment",
    "dependants",
    "nutrition",
    "health_insurance",
    "adult_education",
    "child_schooling",
    "housing_quality",
    "housing_area",
    "water",
    "sanitation",
    "telecom",
    "information_devices",
    "waste",
)

_TOP_KEYS = frozenset({"id", "name_vi", "reference", "valid_from", "valid_to", "parameters", "indicators"})
_PARAM_KEYS = frozenset({"description", "unit", "values"})
_VALUE_KEYS = frozenset({"value", "reference", "confidence", "note"})
_INDICATOR_KEYS = frozenset(
    {"id", "dimension", "name_vi", "reference", "confidence", "deprived_vi", "not_deprived_vi"}
)


@dataclass(frozen=True, slots=True)
class DatedValue:
    """One value of a parameter, in force from `start` until the next dated value."""

    start: dt.date
    value: Any
    reference: str
    confidence: str

    @property
    def provisional(self) -> bool:
        """True when the value is not confirmed from the official text."""
        return self.confidence == "provisional"


@dataclass(frozen=True, slots=True)
class Parameter:
    """A named legal parameter with its dated history (oldest first)."""

    name: str
    description: str
    unit: str
    values: tuple[DatedValue, ...]

    def at(self, on: dt.date) -> DatedValue:
        """Return the value in force on `on` (the latest one starting on or before it)."""
        starts = [v.start for v in self.values]
        i = bisect.bisect_right(starts, on) - 1
        if i < 0:
            raise StandardDataError(f"parameter {self.name} has no value on {on.isoformat()}")
        return self.values[i]


@dataclass(frozen=True, slots=True)
class IndicatorDef:
    """Legal text of one deprivation indicator: names, citation and the reason templates."""

    id: str
    dimension: str
    name_vi: str
    reference: str
    confidence: str
    deprived_vi: str
    not_deprived_vi: str

    @property
    def provisional(self) -> bool:
        """True when the indicator's wording is not confirmed from the official text."""
        return self.confidence == "provisional"


@dataclass(frozen=True)
class Standard:
    """One legal period of the multidimensional poverty standard."""

    id: str
    name_vi: str
    reference: str
    valid_from: dt.date
    valid_to: dt.date
    parameters: Mapping[str, Parameter]
    indicators: tuple[IndicatorDef, ...]
    source: str
    change_dates: tuple[dt.date, ...] = field(default=())

    def covers(self, on: dt.date) -> bool:
        """True when `on` falls inside this period (both ends inclusive)."""
        return self.valid_from <= on <= self.valid_to

    def value(self, name: str, on: dt.date) -> DatedValue:
        """Return the dated value of parameter `name` on `on`."""
        try:
            return self.parameters[name].at(on)
        except KeyError:
            raise StandardDataError(f"{self.source}: standard {self.id} has no parameter {name}") from None

    def epoch(self, on: dt.date) -> dt.date:
        """Return the start of the stretch of days on which every parameter keeps the same value."""
        i = bisect.bisect_right(self.change_dates, on) - 1
        return self.change_dates[max(i, 0)]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready description served at GET /api/v1/standards."""
        return {
            "id": self.id,
            "name_vi": self.name_vi,
            "reference": self.reference,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat(),
            "parameters": {
                p.name: {
                    "description": p.description,
                    "unit": p.unit,
                    "values": [
                        {
                            "from": v.start.isoformat(),
                            "value": v.value,
                            "reference": v.reference,
                            "confidence": v.confidence,
                        }
                        for v in p.values
                    ],
                }
                for p in self.parameters.values()
            },
            "indicators": [
                {
                    "id": i.id,
                    "dimension": i.dimension,
                    "name_vi": i.name_vi,
                    "reference": i.reference,
                    "confidence": i.confidence,
                }
                for i in self.indicators
            ],
        }


def _date(raw: object, where: str) -> dt.date:
    """Parse a YAML date (already a date, or an ISO string) or fail naming `where`."""
    if isinstance(raw, dt.datetime):
        raise StandardDataError(f"{where}: {raw!r} is a timestamp, expected a date YYYY-MM-DD")
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            pass
    raise StandardDataError(f"{where}: {raw!r} is not a date YYYY-MM-DD")


def _unknown(keys: Iterable[str], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise StandardDataError(f"{where}: unknown key(s) {', '.join(map(str, extra))}")


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise StandardDataError(f"{where}: '{key}' is missing or empty")
    return value


def parse_standard(raw: object, source: str) -> Standard:
    """Validate one standard's parsed YAML and build it; every error names `source`."""
    if not isinstance(raw, Mapping):
        raise StandardDataError(f"{source}: expected a mapping at the top level")
    _unknown(raw.keys(), _TOP_KEYS, source)
    sid = _text(raw, "id", source)
    valid_from = _date(raw.get("valid_from"), f"{source}: valid_from")
    valid_to = _date(raw.get("valid_to"), f"{source}: valid_to")
    if valid_to < valid_from:
        raise StandardDataError(f"{source}: valid_to is before valid_from")

    params_raw = raw.get("parameters")
    if not isinstance(params_raw, Mapping) or not params_raw:
        raise StandardDataError(f"{source}: 'parameters' is missing")
    params: dict[str, Parameter] = {}
    changes: set[dt.date] = {valid_from}
    for name, spec in params_raw.items():
        where = f"{source}: parameter {name}"
        if name not in KNOWN_PARAMETERS:
            raise StandardDataError(f"{where}: unknown parameter")
        if not isinstance(spec, Mapping):
            raise StandardDataError(f"{where}: expected a mapping")
        _unknown(spec.keys(), _PARAM_KEYS, where)
        values_raw = spec.get("values")
        if not isinstance(values_raw, Mapping) or not values_raw:
            raise StandardDataError(f"{where}: 'values' is missing")
        values: list[DatedValue] = []
        for key, entry in values_raw.items():
            start = _date(key, f"{where}: values")
            vwhere = f"{where} @ {start.isoformat()}"
            if not valid_from <= start <= valid_to:
                raise StandardDataError(f"{vwhere}: date outside the period {valid_from}…{valid_to}")
            if not isinstance(entry, Mapping):
                raise StandardDataError(f"{vwhere}: expected {{value, reference, confidence}}")
            _unknown(entry.keys(), _VALUE_KEYS, vwhere)
            if "value" not in entry:
                raise StandardDataError(f"{vwhere}: 'value' is missing")
            reference = _text(entry, "reference", vwhere)
            confidence = entry.get("confidence")
            if confidence not in CONFIDENCES:
                raise StandardDataError(f"{vwhere}: confidence must be confirmed or provisional")
            value = entry["value"]
            if isinstance(value, list):
                value = tuple(value)
            values.append(DatedValue(start, value, reference, confidence))
            changes.add(start)
        values.sort(key=lambda v: v.start)
        if values[0].start != valid_from:
            raise StandardDataError(f"{where}: the first value must start on valid_from {valid_from}")
        params[name] = Parameter(name, str(spec.get("description", "")), str(spec.get("unit", "")), tuple(values))

    ind_raw = raw.get("indicators")
    if not isinstance(ind_raw, list) or not ind_raw:
        raise StandardDataError(f"{source}: 'indicators' is missing")
    indicators: list[IndicatorDef] = []
    for i, entry in enumerate(ind_raw):
        where = f"{source}: indicators[{i}]"
        if not isinstance(entry, Mapping):
            raise StandardDataError(f"{where}: expected a mapping")
        _unknown(entry.keys(), _INDICATOR_KEYS, where)
        iid = _text(entry, "id", where)
        if iid not in KNOWN_INDICATORS:
            raise StandardDataError(f"{where}: unknown indicator id {iid}")
        if entry.get("confidence") not in CONFIDENCES:
            raise StandardDataError(f"{where}: confidence must be confirmed or provisional")
        indicators.append(
            IndicatorDef(
                id=iid,
                dimension=_text(entry, "dimension", where),
                name_vi=_text(entry, "name_vi", where),
                reference=_text(entry, "reference", where),
                confidence=entry["confidence"],
                deprived_vi=_text(entry, "deprived_vi", where),
                not_deprived_vi=_text(entry, "not_deprived_vi", where),
            )
        )
    ids = [i.id for i in indicators]
    if len(set(ids)) != len(ids):
        raise StandardDataError(f"{source}: an indicator is listed twice")

    standard = Standard(
        id=sid,
        name_vi=_text(raw, "name_vi", source),
        reference=_text(raw, "reference", source),
        valid_from=valid_from,
        valid_to=valid_to,
        parameters=params,
        indicators=tuple(indicators),
        source=source,
        change_dates=tuple(sorted(changes)),
    )
    # Imported here: rules depends on this module's types.
    from .rules import required_parameters

    missing = sorted(required_parameters(ids) - params.keys())
    if missing:
        raise StandardDataError(f"{source}: missing parameter(s) {', '.join(missing)}")
    return standard


def load_standard_file(path: str | Path) -> Standard:
    """Read and validate one standard file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StandardDataError(f"{path.name}: not valid YAML ({exc})") from exc
    return parse_standard(raw, path.name)


def load_standards(paths: Iterable[str | Path]) -> tuple[Standard, ...]:
    """Load several standard files, sorted by start date, refusing overlapping periods."""
    standards = sorted((load_standard_file(p) for p in paths), key=lambda s: s.valid_from)
    for before, after in zip(standards, standards[1:]):
        if after.valid_from <= before.valid_to:
            raise StandardDataError(f"{after.source}: period overlaps {before.source}")
    return tuple(standards)


@lru_cache(maxsize=1)
def default_standards() -> tuple[Standard, ...]:
    """Return the packaged standards, loaded and validated once per process."""
    folder = resources.files("assessment") / "data" / "standards"
    return load_standards(sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")))


def standard_for(on: dt.date, standards: tuple[Standard, ...] | None = None) -> Standard | None:
    """Return the standard in force on `on`, or None when no period covers the date."""
    for s in standards if standards is not None else default_standards():
        if s.covers(on):
            return s
    return None


def next_standard(current: Standard, standards: tuple[Standard, ...] | None = None) -> Standard | None:
    """Return the period that starts the day after `current` ends, if there is one."""
    for s in standards if standards is not None else default_standards():
        if s.valid_from == current.valid_to + dt.timedelta(days=1):
            return s
    return None
