"""Support-policy catalogue and matcher: which support a household may get, given its estimated status.

The policies themselves are data (``assessment/data/policies.yaml``), as are the offices that run them
(``assessment/data/offices.yaml``). Each policy entry cites its own legal basis; the sources behind the data are the
domain reference (poverty-standard.md §4.5 status definitions, §5 support policies by status, §5.1 National Target
Program on Sustainable Poverty Reduction 2021–2025 under Decision 90/QĐ-TTg, §5.2 its 2026–2035 successor) and the
2022 district plan of huyện Hồng Ngự (section II projects, section V responsible offices).

This module is part of the pure legal core: it reads only its own packaged data files.

Usage (docs/CONTRACTS.md §3)::

    catalog = default_catalog()
    catalog = catalog.with_offices({"phong_ldtbxh": "Phòng Văn hóa - Xã hội xã ..."})
    matches = catalog.match(PolicyFacts(status="poor", area="rural", deprivations=frozenset({"water"})), on=today)
    [m.to_dict() for m in matches]

``match`` runs on every assessment, so eligibility is compiled at load time into per-(day, status, area) tuples of
pre-built :class:`PolicyMatch` objects; a call does a dict look-up and a short loop over a handful of candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

__all__ = [
    "AREAS",
    "CONFIDENCES",
    "FACTS",
    "INDICATORS",
    "OFFICES_PATH",
    "OFFICE_LEVELS",
    "POLICIES_PATH",
    "STATUSES",
    "Eligibility",
    "Office",
    "Policy",
    "PolicyCatalog",
    "PolicyDataError",
    "PolicyFacts",
    "PolicyMatch",
    "default_catalog",
    "load_catalog",
]

_DATA_DIR = Path(__file__).resolve().parent / "data"
POLICIES_PATH = _DATA_DIR / "policies.yaml"
OFFICES_PATH = _DATA_DIR / "offices.yaml"

# Vocabulary shared with the classifier (docs/CONTRACTS.md §1). Kept here rather than imported so that the policy data
# can be validated on its own; a typo in the YAML must fail at load time, not silently never match.
STATUSES: tuple[str, ...] = ("poor", "near_poor", "average_living", "not_poor")
AREAS: tuple[str, ...] = ("rural", "urban")
FACTS: tuple[str, ...] = (
    "children_under_16",
    "pregnant_or_breastfeeding",
    "working_age_member",
    "student",
    "farm_household",
    "ethnic_minority",
    "social_allowance_member",
    "disability_member",
)
# Indicator ids of Decree 07/2021 (12 indicators) plus "waste" of Decree 351/2025 (2027–2030).
INDICATORS: frozenset[str] = frozenset(
    {
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
    }
)
OFFICE_LEVELS: frozenset[str] = frozenset({"xa", "tinh", "huyen_cu"})
CONFIDENCES: frozenset[str] = frozenset({"confirmed", "provisional"})

# Decision 28/2015/QĐ-TTg (reference §4.5): a "hộ mới thoát nghèo" has per-capita income above the near-poor
# standard, so the newly-escaped route only applies to households estimated above that line.
_ABOVE_NEAR_POOR_LINE: frozenset[str] = frozenset({"average_living", "not_poor"})

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FACT_SET = frozenset(FACTS)
_STATUS_SET = frozenset(STATUSES)


class PolicyDataError(ValueError):
    """The policy or office data is invalid; the message names the file and the entry id."""

    def __init__(self, path: str | Path, entry: str | None, problem: str) -> None:
        self.path = str(path)
        self.entry = entry
        self.problem = problem
        where = f"{self.path}: {entry}" if entry else self.path
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------------------------------- data classes


@dataclass(frozen=True, slots=True)
class Office:
    """An office that runs a policy (deployment data; see offices.yaml for the meaning of each field)."""

    id: str
    name_vi: str
    level: str
    reference: str
    confidence: str
    note_vi: str | None = None

    @property
    def provisional(self) -> bool:
        return self.confidence == "provisional"


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Who qualifies for a policy, precompiled (see the schema block at the top of policies.yaml)."""

    statuses: frozenset[str]
    newly_escaped: bool = False
    facts_all: tuple[str, ...] = ()
    facts_any: tuple[str, ...] = ()
    deprivations_any: frozenset[str] = frozenset()
    area: str | None = None
    always_conditional: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """One support policy; ``reference`` carries its legal basis."""

    id: str
    name_vi: str
    benefit_vi: str
    eligibility: Eligibility
    condition_vi: str
    reference: str
    office: str
    confidence: str
    valid_from: date | None
    valid_to: date | None
    show_until: date | None = None
    note_vi: str | None = None
    note_after_valid_to_vi: str | None = None
    household_facing: bool = True

    @property
    def provisional(self) -> bool:
        return self.confidence == "provisional"

    def listed_on(self, on: date) -> bool:
        """Whether the policy is shown on ``on``: in force, or lapsed but kept visible until ``show_until``."""
        if self.valid_from is not None and on < self.valid_from:
            return False
        last = self.show_until or self.valid_to
        return last is None or on <= last

    def lapsed_on(self, on: date) -> bool:
        """Whether ``on`` is after ``valid_to`` (a previous-period policy still shown with its note)."""
        return self.valid_to is not None and on > self.valid_to


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    """What the matcher knows about a household.

    ``status`` is the estimated status (one of :data:`STATUSES`), ``area`` is ``rural`` or ``urban``, ``deprivations``
    the deprived indicator ids. Every boolean fact may be ``None`` = not asked: a policy that needs it is then listed
    as conditional. ``unanswered`` (an addition to the contract, default empty) holds indicator ids whose question was
    not answered, so that e.g. the water loan becomes conditional instead of disappearing.
    """

    status: str
    area: str
    deprivations: frozenset[str]
    newly_escaped: bool | None = None
    children_under_16: bool | None = None
    pregnant_or_breastfeeding: bool | None = None
    working_age_member: bool | None = None
    student: bool | None = None
    farm_household: bool | None = None
    ethnic_minority: bool | None = None
    social_allowance_member: bool | None = None
    disability_member: bool | None = None
    unanswered: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """A policy listed to a household. ``conditional`` means a needed fact is unknown; ``condition_vi`` then says who
    qualifies. ``lapsed`` means the policy's period has ended and it is shown as a previous-period policy."""

    policy: Policy
    office_vi: str
    conditional: bool
    condition_vi: str | None
    lapsed: bool = False
    # Built once: matches are shared, pre-built objects, so the dict is computed at load time, not per assessment.
    _dict: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_dict",
            {
                "id": self.policy.id,
                "name_vi": self.policy.name_vi,
                "benefit_vi": self.policy.benefit_vi,
                "office_id": self.policy.office,
                "office_vi": self.office_vi,
                "reference": self.policy.reference,
                "provisional": self.provisional,
                "condition_vi": self.condition_vi,
                "note_vi": self.note_vi,
            },
        )

    @property
    def provisional(self) -> bool:
        # A lapsed programme item "có thể thay đổi" (reference §5.2), so it is provisional whatever its tag.
        return self.policy.provisional or self.lapsed

    @property
    def note_vi(self) -> str | None:
        notes = [self.policy.note_after_valid_to_vi if self.lapsed else None, self.policy.note_vi]
        text = " ".join(n for n in notes if n)
        return text or None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: id, name_vi, benefit_vi, office_id, office_vi, reference, provisional, condition_vi, note_vi."""
        return dict(self._dict)


# --------------------------------------------------------------------------------------------------- catalogue

# A compiled candidate is either a PolicyMatch (nothing left to test: list it as is) or a tuple
# (newly_escaped_route, facts_all, facts_any, deprivations_any, full_match, conditional_match).
_MAX_CACHED_DAYS = 64


class PolicyCatalog:
    """The policies and offices, with a fast matcher. Immutable; :meth:`with_offices` returns a renamed copy."""

    __slots__ = ("_policies", "_offices", "_by_id", "_source", "_days")

    def __init__(self, policies: Iterable[Policy], offices: Mapping[str, Office], *, source: str = "<catalog>") -> None:
        self._policies: tuple[Policy, ...] = tuple(policies)
        self._offices: Mapping[str, Office] = MappingProxyType(dict(offices))
        self._source = source
        by_id: dict[str, Policy] = {}
        for policy in self._policies:
            if policy.id in by_id:
                raise PolicyDataError(source, f"policy '{policy.id}'", "duplicate id")
            if policy.office not in self._offices:
                raise PolicyDataError(source, f"policy '{policy.id}'", f"unknown office id '{policy.office}'")
            by_id[policy.id] = policy
        self._by_id: Mapping[str, Policy] = MappingProxyType(by_id)
        # day ordinal -> {(status, area): tuple of candidates}; built lazily, a day at a time.
        self._days: dict[int, dict[tuple[str, str], tuple[Any, ...]]] = {}

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    @property
    def offices(self) -> Mapping[str, Office]:
        return self._offices

    def get(self, policy_id: str) -> Policy:
        """The policy with this id (KeyError if none)."""
        return self._by_id[policy_id]

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._policies)

    def with_offices(self, mapping: Mapping[str, str]) -> PolicyCatalog:
        """A copy where the offices in ``mapping`` (id → new ``name_vi``) are renamed.

        Office names are deployment data: since the district level ended on 1/7/2025 (reference §6.1), each province
        or commune says which of its units now does the job of e.g. ``phong_ldtbxh``. Only the name changes; the
        office's confidence and note still describe the packaged data.
        """
        offices = dict(self._offices)
        for office_id, name in mapping.items():
            if office_id not in offices:
                raise PolicyDataError("with_offices", f"office '{office_id}'", "unknown office id")
            if not isinstance(name, str) or not name.strip():
                raise PolicyDataError("with_offices", f"office '{office_id}'", "name must be non-empty text")
            offices[office_id] = replace(offices[office_id], name_vi=name.strip())
        return PolicyCatalog(self._policies, offices, source=self._source)

    def match(self, facts: PolicyFacts, on: date) -> list[PolicyMatch]:
        """The policies listed to a household on ``on``, in data order.

        A policy matches when its status route passes (status listed, or the newly-escaped route of Decision
        28/2015/QĐ-TTg for a household above the near-poor line), the area fits, every ``facts_all`` fact is true,
        one ``facts_any`` fact is true and one ``deprivations_any`` indicator is deprived. A needed fact that is
        ``None`` (not asked) or an unanswered indicator makes the match conditional; a false fact excludes it.
        Policies not in force on ``on`` are skipped, except lapsed ones the data keeps visible (``show_until``).
        """
        day = on.toordinal()
        table = self._days.get(day)
        if table is None:
            table = self._compile_day(day)
        candidates = table.get((facts.status, facts.area))
        if candidates is None:
            raise ValueError(f"unknown status or area: {facts.status!r}, {facts.area!r}")

        out: list[PolicyMatch] = []
        append = out.append
        for entry in candidates:
            if entry.__class__ is PolicyMatch:  # nothing household-specific to test
                append(entry)
                continue
            ne_route, facts_all, facts_any, deprivations_any, full, conditional_match = entry
            conditional = False
            if ne_route:
                value = facts.newly_escaped
                if value is None:
                    conditional = True
                elif not value:
                    continue
            excluded = False
            for name in facts_all:
                value = getattr(facts, name)
                if value is None:
                    conditional = True
                elif not value:
                    excluded = True
                    break
            if excluded:
                continue
            if facts_any:
                found = unknown = False
                for name in facts_any:
                    value = getattr(facts, name)
                    if value:
                        found = True
                        break
                    if value is None:
                        unknown = True
                if not found:
                    if not unknown:
                        continue
                    conditional = True
            if deprivations_any and deprivations_any.isdisjoint(facts.deprivations):
                if deprivations_any.isdisjoint(facts.unanswered):
                    continue
                conditional = True
            append(conditional_match if conditional else full)
        return out

    def _compile_day(self, day: int) -> dict[tuple[str, str], tuple[Any, ...]]:
        """Precompute, for one day (an ordinal), the candidates of every (status, area) pair."""
        on = date.fromordinal(day)  # a plain date even if the caller passed a datetime (they do not compare)
        table: dict[tuple[str, str], list[Any]] = {(s, a): [] for s in STATUSES for a in AREAS}
        for policy in self._policies:
            if not policy.household_facing or not policy.listed_on(on):
                continue
            el = policy.eligibility
            lapsed = policy.lapsed_on(on)
            office_vi = self._offices[policy.office].name_vi
            conditional_match = PolicyMatch(policy, office_vi, True, policy.condition_vi, lapsed)
            full = conditional_match if el.always_conditional else PolicyMatch(policy, office_vi, False, None, lapsed)
            tests = bool(el.facts_all or el.facts_any or el.deprivations_any)
            for (status, area), bucket in table.items():
                if el.area is not None and el.area != area:
                    continue
                if status in el.statuses:
                    ne_route = False
                elif el.newly_escaped and status in _ABOVE_NEAR_POOR_LINE:
                    ne_route = True
                else:
                    continue
                if ne_route or tests:
                    bucket.append((ne_route, el.facts_all, el.facts_any, el.deprivations_any, full, conditional_match))
                else:
                    bucket.append(full)
        frozen = {key: tuple(bucket) for key, bucket in table.items()}
        if len(self._days) >= _MAX_CACHED_DAYS:  # callers normally use "today"; bound memory if they do not
            self._days.clear()
        self._days[day] = frozen
        return frozen


# --------------------------------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and keeps dates as text, so the loader can name the entry of a bad
    date (PyYAML would otherwise raise a bare ValueError for e.g. 2025-13-01 before we see the entry)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key; let PyYAML report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_yaml(path: Path, top_key: str) -> Any:
    try:
        # A file object (not its text) so that PyYAML's error marks name the file and line.
        with path.open("rb") as stream:
            data = yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except OSError as exc:
        raise PolicyDataError(path, None, f"cannot read file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyDataError(path, None, f"invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {top_key}:
        raise PolicyDataError(path, None, f"the file must be a mapping with the single key '{top_key}'")
    return data[top_key]


class _Entry:
    """Validation helpers that raise PolicyDataError naming the file and the entry."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label

    def fail(self, problem: str) -> NoReturn:
        raise PolicyDataError(self.path, self.label, problem)

    def keys(self, raw: Any, required: set[str], optional: set[str], what: str = "entry") -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(f"{what} must be a mapping")
        unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
        if unknown:
            self.fail(f"unknown key(s) in {what}: {', '.join(unknown)}")
        missing = sorted(required - set(raw))
        if missing:
            self.fail(f"missing key(s) in {what}: {', '.join(missing)}")
        return raw

    def text(self, raw: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
        value = raw.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"'{key}' must be non-empty text")
        return value.strip()

    def choice(self, raw: Mapping[str, Any], key: str, allowed: Iterable[str]) -> str:
        value = raw.get(key)
        allowed = sorted(allowed)
        if value not in allowed:
            self.fail(f"'{key}' must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def flag(self, raw: Mapping[str, Any], key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"'{key}' must be true or false, not {value!r}")
        return value

    def day(self, raw: Mapping[str, Any], key: str) -> date | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not _ISO_DATE_RE.match(value):
            self.fail(f"'{key}' must be an ISO date YYYY-MM-DD or null, not {value!r}")
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"'{key}' is not a valid date: {value!r}")

    def names(
        self, raw: Mapping[str, Any], key: str, vocabulary: Iterable[str], kind: str, *, allow_empty: bool = False
    ) -> tuple[str, ...]:
        value = raw.get(key)
        if not isinstance(value, list) or (not value and not allow_empty):
            self.fail(f"'{key}' must be a{'' if allow_empty else ' non-empty'} list of {kind} ids")
        known = frozenset(vocabulary)
        for item in value:
            if item not in known:
                self.fail(f"unknown {kind} {item!r} in '{key}' (known: {', '.join(sorted(known))})")
        if len(set(value)) != len(value):
            self.fail(f"duplicate {kind} in '{key}'")
        return tuple(value)


_OFFICE_REQUIRED = {"name_vi", "level", "reference", "confidence"}
_OFFICE_OPTIONAL = {"note_vi"}


def _load_offices(path: Path) -> dict[str, Office]:
    raw_offices = _read_yaml(path, "offices")
    if not isinstance(raw_offices, dict) or not raw_offices:
        raise PolicyDataError(path, None, "'offices' must be a non-empty mapping of office id to office")
    offices: dict[str, Office] = {}
    for office_id, raw in raw_offices.items():
        entry = _Entry(path, f"office '{office_id}'")
        if not isinstance(office_id, str) or not _ID_RE.match(office_id):
            entry.fail("office id must be snake_case")
        entry.keys(raw, _OFFICE_REQUIRED, _OFFICE_OPTIONAL, "office")
        offices[office_id] = Office(
            id=office_id,
            name_vi=entry.text(raw, "name_vi"),
            level=entry.choice(raw, "level", OFFICE_LEVELS),
            reference=entry.text(raw, "reference"),
            confidence=entry.choice(raw, "confidence", CONFIDENCES),
            note_vi=entry.text(raw, "note_vi", optional=True),
        )
    return offices


_POLICY_REQUIRED = {
    "id", "name_vi", "benefit_vi", "condition_vi", "reference", "office", "confidence", "valid_from", "valid_to",
}  # fmt: skip
_POLICY_OPTIONAL = {"eligibility", "show_until", "note_vi", "note_after_valid_to_vi", "household_facing"}
_ELIGIBILITY_REQUIRED = {"statuses"}
_ELIGIBILITY_OPTIONAL = {"newly_escaped", "facts_all", "facts_any", "deprivations_any", "area", "always_conditional"}


def _load_eligibility(entry: _Entry, raw: Any) -> Eligibility:
    entry.keys(raw, _ELIGIBILITY_REQUIRED, _ELIGIBILITY_OPTIONAL, "eligibility")
    statuses = entry.names(raw, "statuses", STATUSES, "status", allow_empty=True)
    newly_escaped = entry.flag(raw, "newly_escaped", False)
    if not statuses and not newly_escaped:
        entry.fail("eligibility has no route: 'statuses' is empty and 'newly_escaped' is not true")
    area = raw.get("area")
    if area is not None and area not in AREAS:
        entry.fail(f"'area' must be rural, urban or absent, not {area!r}")
    return Eligibility(
        statuses=frozenset(statuses),
        newly_escaped=newly_escaped,
        facts_all=entry.names(raw, "facts_all", FACTS, "fact") if "facts_all" in raw else (),
        facts_any=entry.names(raw, "facts_any", FACTS, "fact") if "facts_any" in raw else (),
        deprivations_any=(
            frozenset(entry.names(raw, "deprivations_any", INDICATORS, "indicator"))
            if "deprivations_any" in raw
            else frozenset()
        ),
        area=area,
        always_conditional=entry.flag(raw, "always_conditional", False),
    )


def _load_policies(path: Path, offices: Mapping[str, Office], offices_path: Path) -> list[Policy]:
    raw_policies = _read_yaml(path, "policies")
    if not isinstance(raw_policies, list) or not raw_policies:
        raise PolicyDataError(path, None, "'policies' must be a non-empty list")
    policies: list[Policy] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_policies):
        policy_id = raw.get("id") if isinstance(raw, dict) else None
        label = f"policy '{policy_id}'" if isinstance(policy_id, str) else f"policy #{index + 1}"
        entry = _Entry(path, label)
        entry.keys(raw, _POLICY_REQUIRED, _POLICY_OPTIONAL)
        if not isinstance(policy_id, str) or not _ID_RE.match(policy_id):
            entry.fail("'id' must be snake_case text")
        if policy_id in seen:
            entry.fail("duplicate id")
        seen.add(policy_id)

        household_facing = entry.flag(raw, "household_facing", True)
        if "eligibility" in raw:
            eligibility = _load_eligibility(entry, raw["eligibility"])
        elif household_facing:
            entry.fail("missing key(s) in entry: eligibility")
        else:  # officials-only policy (e.g. Dự án 7): never matched, so no eligibility is needed
            eligibility = Eligibility(statuses=frozenset())

        office = entry.text(raw, "office")
        if office not in offices:
            entry.fail(f"unknown office id '{office}' (not in {offices_path})")

        valid_from = entry.day(raw, "valid_from")
        valid_to = entry.day(raw, "valid_to")
        show_until = entry.day(raw, "show_until")
        if valid_from and valid_to and valid_from > valid_to:
            entry.fail("'valid_from' is after 'valid_to'")
        note_after = entry.text(raw, "note_after_valid_to_vi", optional=True)
        if show_until is not None:
            if valid_to is None:
                entry.fail("'show_until' needs a 'valid_to'")
            if show_until < valid_to:
                entry.fail("'show_until' is before 'valid_to'")
            if note_after is None:
                # The household must be told that a lapsed policy is from the previous period (reference §5.2).
                entry.fail("'show_until' needs 'note_after_valid_to_vi'")
        elif note_after is not None:
            entry.fail("'note_after_valid_to_vi' is only shown with 'show_until'")

        policies.append(
            Policy(
                id=policy_id,
                name_vi=entry.text(raw, "name_vi"),
                benefit_vi=entry.text(raw, "benefit_vi"),
                eligibility=eligibility,
                condition_vi=entry.text(raw, "condition_vi"),
                reference=entry.text(raw, "reference"),
                office=office,
                confidence=entry.choice(raw, "confidence", CONFIDENCES),
                valid_from=valid_from,
                valid_to=valid_to,
                show_until=show_until,
                note_vi=entry.text(raw, "note_vi", optional=True),
                note_after_valid_to_vi=note_after,
                household_facing=household_facing,
            )
        )
    return policies


def load_catalog(policies_path: str | Path = POLICIES_PATH, offices_path: str | Path = OFFICES_PATH) -> PolicyCatalog:
    """Load and validate a catalogue; raises :class:`PolicyDataError` naming the file and entry on any problem."""
    policies_path, offices_path = Path(policies_path), Path(offices_path)
    offices = _load_offices(offices_path)
    policies = _load_policies(policies_path, offices, offices_path)
    return PolicyCatalog(policies, offices, source=str(policies_path))


@cache
def default_catalog() -> PolicyCatalog:
    """The packaged catalogue, loaded once per process."""
    return load_catalog(POLICIES_PATH, OFFICES_PATH)
