"""Run the data-driven legal cases in tests/cases/*.yaml and check every dated parameter value has a case."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from assessment import assess, default_standards

CASES_DIR = Path(__file__).parent / "cases"


def _load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            case["file"] = path.name
            cases.append(case)
    return cases


CASES = _load_cases()


def _lookup(result: dict[str, Any], dotted: str) -> Any:
    """Follow a dotted path; `indicators.<id>` selects an indicator by id; a missing key reads as None."""
    node: Any = result
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        if node is None:
            return None
        if part == "indicators" and i + 1 < len(parts):
            node = next((x for x in node["indicators"] if x["id"] == parts[i + 1]), None)
            i += 2
            continue
        node = node.get(part)
        i += 1
    return node


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_legal_case(case: dict[str, Any]) -> None:
    household = {k: v for k, v in case["input"].items() if v is not None}
    result = assess(household, on=case["date"]).to_dict()
    for key, expected in case["output"].items():
        assert _lookup(result, key) == expected, f"{case['file']}: {case['name']}: {key}"


def test_every_dated_parameter_value_has_a_case() -> None:
    covered: set[tuple[str, str]] = set()
    for case in CASES:
        on = case["date"] if isinstance(case["date"], dt.date) else dt.date.fromisoformat(case["date"])
        for item in case.get("covers", []):
            name, start = item.split("@")
            covered.add((name, start))
            # The case must actually fall inside the interval in which that value is in force.
            standard = next(s for s in default_standards() if s.covers(on))
            assert standard.value(name, on).start.isoformat() == start, f"{case['name']} does not exercise {item}"
    missing = [
        f"{s.id}: {p.name}@{v.start.isoformat()}"
        for s in default_standards()
        for p in s.parameters.values()
        for v in p.values
        if (p.name, v.start.isoformat()) not in covered
    ]
    assert not missing, "dated values without a test case: " + ", ".join(missing)
