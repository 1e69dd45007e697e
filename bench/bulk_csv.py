"""Benchmark of the bulk CSV path: ``python -m assessment --csv`` on N households.

Usage::

    python bench/bulk_csv.py [--rows 1000000] [--on 2026-06-01] [--full] [--keep DIR]

Generates a CSV of random but realistic quick-form households (income around
the poverty lines, a few deprivations, some unanswered questions, some commune
codes instead of an area) in a temporary folder, runs the CLI on it as a
subprocess, and prints its wall time, rows per second and peak RSS against the
goals (≤ 60 s and ≤ 300 MB for 1,000,000 rows), with PASS or MISS.

As a floor, the same file is copied by a plain ``csv.reader`` → ``csv.writer``
loop in another subprocess; the ratio says how much the assessment itself
costs over merely reading and writing the rows.

Exit code: 0 when both goals are met, 1 when one is missed, 2 when the CLI failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so the generator can read real commune codes

#: Goals for 1,000,000 rows; the time goal scales with --rows.
GOAL_SECONDS_PER_MILLION: Final = 60.0
GOAL_PEAK_RSS_MB: Final = 300.0
STARTUP_ALLOWANCE_S: Final = 1.0

COLUMNS: Final = (
    "id",
    "area",
    "commune_code",
    "household_size",
    "monthly_income_vnd",
    "monthly_income_per_capita_vnd",
    "dependants",
    "working_age_unemployed_or_no_contract",
    "child_under16_malnourished",
    "member_6plus_without_health_insurance",
    "member_16_30_lacking_education",
    "child_3_15_not_in_school",
    "housing",
    "floor_area_m2",
    "water_source",
    "toilet",
    "internet",
    "information_devices",
)

FLAGS: Final = COLUMNS[7:12]
HOUSING: Final = (("durable", 45), ("semi_durable", 35), ("less_durable", 12), ("simple", 8))
WATER: Final = (
    ("piped", 50),
    ("drilled_well", 25),
    ("protected_dug_well", 6),
    ("rainwater", 6),
    ("bottled", 3),
    ("surface_water", 7),
    ("unprotected_well", 3),
)
TOILETS: Final = (("septic", 60), ("semi_septic", 15), ("pour_flush", 8), ("pit", 8), ("fish_pond", 5), ("none", 4))
DEVICES: Final = ("", "smartphone", "tv;smartphone", "tv", "tv;radio;smartphone", "computer;smartphone;tv")

# The copy loop of the baseline, run as its own process like the CLI.
BASELINE_SCRIPT: Final = """
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig", buffering=1 << 20) as src, \\
        open(sys.argv[2], "w", newline="", encoding="utf-8", buffering=1 << 20) as dst:
    csv.writer(dst, lineterminator="\\n").writerows(csv.reader(src))
"""


def _weighted(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _commune_codes() -> list[str]:
    """A few hundred real commune codes (urban and rural), or none if geo is unavailable."""
    try:
        from assessment.geo import iter_communes
    except ImportError:
        return []
    return [c.code for i, c in enumerate(iter_communes()) if i % 10 == 0]


def generate(path: Path, rows: int, seed: int = 20260601) -> None:
    """Write ``rows`` random households to ``path``.

    Per-capita incomes are log-normal around 2.2M đồng so that many fall near
    the 1.5M / 2.0M / 2.2M / 2.8M lines; about 1 answer in 12 is left empty
    (not asked), as in real field data.
    """
    rng = random.Random(seed)
    communes = _commune_codes()
    pools = {  # pre-drawn choices: generating 1M rows should not dominate the bench
        "housing": [_weighted(rng, HOUSING) for _ in range(4096)],
        "water": [_weighted(rng, WATER) for _ in range(4096)],
        "toilet": [_weighted(rng, TOILETS) for _ in range(4096)],
    }
    with path.open("w", newline="", encoding="utf-8", buffering=1 << 20) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        rand, randint, choice = rng.random, rng.randint, rng.choice
        for n in range(1, rows + 1):
            size = min(1 + int(rng.expovariate(0.3)), 12)
            per_capita = int(rng.lognormvariate(14.6, 0.5)) // 1000 * 1000
            use_commune = communes and rand() < 0.2
            by_head = rand() < 0.1
            row = [
                f"H{n:07d}",
                "" if use_commune else ("rural" if rand() < 0.62 else "urban"),
                choice(communes) if use_commune else "",
                size,
                "" if by_head else per_capita * size,
                per_capita if by_head else "",
                sum(rand() < 0.3 for _ in range(size)) if rand() < 0.9 else "",
            ]
            row += [("" if rand() < 0.08 else ("true" if rand() < 0.12 else "false")) for _ in FLAGS]
            row += [
                choice(pools["housing"]),
                "" if rand() < 0.08 else randint(8, 40) * size,
                choice(pools["water"]),
                choice(pools["toilet"]),
                "" if rand() < 0.08 else ("true" if rand() < 0.8 else "false"),
                choice(DEVICES),
            ]
            writer.writerow(row)


def _run(args: list[str]) -> tuple[int, float, float]:
    """Run a child process; return its exit code, wall seconds and peak RSS in MB.

    ``os.wait4`` gives this child's own ``ru_maxrss`` (the same figure as
    ``getrusage(RUSAGE_CHILDREN)`` for a single child), so the baseline and the
    CLI are measured separately within one run.
    """
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()  # the CLI writes bad rows here; drain it so it never blocks
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0,):
        sys.stderr.write(stderr.decode("utf-8", "replace")[-2000:])
    return process.returncode, elapsed, usage.ru_maxrss / 1024  # Linux reports KiB


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="households to generate")
    parser.add_argument("--on", default="2026-06-01", help="reference date passed to the CLI")
    parser.add_argument("--full", action="store_true", help="bench the complete assess() path")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tusoat-bench-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        source, result, copy = folder / "in.csv", folder / "out.csv", folder / "copy.csv"

        start = time.perf_counter()
        generate(source, args.rows)
        size_mb = source.stat().st_size / 1e6
        print(f"generated {args.rows:,} households ({size_mb:,.1f} MB) in {time.perf_counter() - start:.1f} s")

        cli = [sys.executable, "-m", "assessment", "--csv", str(source), "--out", str(result)]
        cli += ["--on", args.on] + (["--full"] if args.full else [])
        code, seconds, rss = _run(cli)
        if code != 0:
            print(f"CLI failed with exit code {code}")
            return 2
        with result.open(encoding="utf-8") as f:
            written = sum(1 for _ in f) - 1
        if written != args.rows:
            print(f"CLI wrote {written:,} rows for {args.rows:,}")
            return 2

        base_code, base_seconds, base_rss = _run([sys.executable, "-c", BASELINE_SCRIPT, str(source), str(copy)])
        if base_code != 0:
            print(f"baseline copy failed with exit code {base_code}")
            return 2

    # Linear in rows, plus a second of interpreter start-up that only matters for small runs.
    goal_seconds = GOAL_SECONDS_PER_MILLION * args.rows / 1_000_000 + STARTUP_ALLOWANCE_S
    time_ok, rss_ok = seconds <= goal_seconds, rss <= GOAL_PEAK_RSS_MB
    mode = "assess (--full)" if args.full else "classify"
    for label, secs, peak in ((f"CLI ({mode}):", seconds, rss), ("baseline copy:", base_seconds, base_rss)):
        print(f"{label:<22} {secs:7.2f} s  {args.rows / secs:>10,.0f} rows/s  peak RSS {peak:6.1f} MB")
    print(f"{'ratio CLI/copy:':<22} {seconds / base_seconds:7.1f}x")
    print(f"goal time   ≤ {goal_seconds:.1f} s for {args.rows:,} rows: {'PASS' if time_ok else 'MISS'}")
    print(f"goal memory ≤ {GOAL_PEAK_RSS_MB:.0f} MB peak RSS:       {'PASS' if rss_ok else 'MISS'}")
    return 0 if time_ok and rss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
