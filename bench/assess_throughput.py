"""Throughput of the legal core on generated households (issue A benchmark; figures, not a test).

Three figures from one run on the same households:
  (a) floor: a minimal inline classifier (a few comparisons, no validation, no explanation);
  (b) assessment.classify(): validated input -> status and deprivation ids;
  (c) assessment.assess(): everything, with explanation, policies and the next-standard result.
Goals: (b) >= 0.25 x (a) and >= 200,000 households/s; (c) >= 30,000 households/s.

    .venv/bin/python bench/assess_throughput.py [--n 100000] [--on 2026-06-01]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assessment import assess, classify  # noqa: E402

HOUSING = ["durable", "semi_durable", "less_durable", "simple"]
WATER = ["piped", "drilled_well", "rainwater", "surface_water", "unprotected_well"]
TOILET = ["septic", "semi_septic", "pit", "fish_pond", "none"]


def households(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Generate realistic quick-form households (sizes 1–8, incomes around the lines)."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        size = rnd.randint(1, 8)
        out.append(
            {
                "area": "rural" if rnd.random() < 0.7 else "urban",
                "household_size": size,
                "monthly_income_vnd": rnd.randint(0, 4_000_000) * size,
                "dependants": rnd.randint(0, size),
                "working_age_unemployed_or_no_contract": rnd.random() < 0.2,
                "child_under16_malnourished": rnd.random() < 0.05,
                "member_6plus_without_health_insurance": rnd.random() < 0.2,
                "member_16_30_lacking_education": rnd.random() < 0.15,
                "child_3_15_not_in_school": rnd.random() < 0.05,
                "housing": rnd.choice(HOUSING),
                "floor_area_m2": rnd.randint(6, 120),
                "water_source": rnd.choice(WATER),
                "toilet": rnd.choice(TOILET),
                "internet": rnd.random() < 0.8,
                "information_devices": ["tv"] if rnd.random() < 0.85 else [],
            }
        )
    return out


def floor_classifier(h: dict[str, Any], on: Any = None) -> str:
    """The floor: the rule with its numbers inlined, no validation, no explanation."""
    line = 1_500_000 if h["area"] == "rural" else 2_000_000
    d = (
        h["working_age_unemployed_or_no_contract"]
        + (h["dependants"] * 2 > h["household_size"])
        + h["child_under16_malnourished"]
        + h["member_6plus_without_health_insurance"]
        + h["member_16_30_lacking_education"]
        + h["child_3_15_not_in_school"]
        + (h["housing"] in ("less_durable", "simple"))
        + (h["floor_area_m2"] < 8 * h["household_size"])
        + (h["water_source"] in ("surface_water", "unprotected_well"))
        + (h["toilet"] in ("pit", "fish_pond", "none"))
        + (not h["internet"])
        + (not h["information_devices"])
    )
    if h["monthly_income_vnd"] <= line * h["household_size"]:
        return "poor" if d >= 3 else "near_poor"
    return "other"


def rate(fn: Callable[[dict[str, Any], Any], Any], data: list[dict[str, Any]], on: Any, repeat: int = 5) -> float:
    """Best of `repeat` runs, in households per second; every contender is called the same way, fn(h, on)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for h in data:
            fn(h, on)
        best = min(best, time.perf_counter() - t0)
    return len(data) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--on", default="2026-06-01")
    args = parser.parse_args()
    import datetime as dt

    on = dt.date.fromisoformat(args.on)
    data = households(args.n)
    assess(data[0], on=on)  # load and compile the standards outside the timing

    a = rate(floor_classifier, data, on)
    b = rate(classify, data, on)
    c = rate(assess, data[: max(args.n // 5, 1)], on)
    print(f"households: {args.n:,}   reference date: {on}")
    print(f"(a) floor inline classifier : {a:>12,.0f} households/s")
    print(f"(b) assessment.classify()   : {b:>12,.0f} households/s   ratio to floor {b / a:.2f}  (goal >= 0.25 and >= 200,000/s)  {'PASS' if b / a >= 0.25 and b >= 200_000 else 'MISS'}")
    print(f"(c) assessment.assess()     : {c:>12,.0f} households/s   (goal >= 30,000/s)  {'PASS' if c >= 30_000 else 'MISS'}")


if __name__ == "__main__":
    main()
