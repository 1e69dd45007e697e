"""``python -m assessment``: one household from a file or stdin, many from a CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from assessment.__main__ import main, run_csv

ROOT = Path(__file__).resolve().parents[1]
ON = "2026-06-01"

POOR_HOUSEHOLD: dict[str, Any] = {
    "area": "rural",
    "household_size": 4,
    "monthly_income_vnd": 6_000_000,
    "housing": "simple",
    "toilet": "none",
    "internet": False,
}

HEADER = "id,area,household_size,monthly_income_vnd,housing,toilet,internet,information_devices"
CSV_ROWS = [
    "h1,rural,4,6000000,simple,none,false,",  # line 2: poor
    "h2,rural,4,6000004,simple,none,không,tv;smartphone",  # line 3: average living
    "h3,rural,abc,6000000,simple,none,false,",  # line 4: broken
    "h4,urban,2,10.000.000,durable,septic,có,smartphone",  # line 5: not poor
]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "assessment", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def household_file(tmp_path: Path) -> Path:
    path = tmp_path / "household.json"
    path.write_text(json.dumps(POOR_HOUSEHOLD), encoding="utf-8")
    return path


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "households.csv"
    path.write_text("\n".join([HEADER, *CSV_ROWS]) + "\n", encoding="utf-8")
    return path


def test_one_household_file(household_file: Path) -> None:
    done = cli(str(household_file), "--on", ON)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "poor"
    assert result["income_per_capita_vnd"] == 1_500_000
    assert "Hộ nghèo" in done.stdout or "nghèo" in done.stdout  # UTF-8, not \u escapes
    assert "\\u" not in done.stdout


def test_one_household_from_stdin() -> None:
    done = cli("-", "--on", ON, stdin=json.dumps({**POOR_HOUSEHOLD, "monthly_income_vnd": 6_000_004}))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "average_living"


def test_invalid_household_prints_structured_errors_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**POOR_HOUSEHOLD, "household_size": 0, "housing": "castle"}))
    done = cli(str(path), "--on", ON)
    assert done.returncode == 2
    problems = json.loads(done.stdout)["error"]["problems"]
    assert {p["field"] for p in problems} == {"household_size", "housing"}
    assert "household_size" in done.stderr


def test_not_json_exits_2_on_field_body() -> None:
    done = cli("-", stdin="not json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["problems"][0]["field"] == "body"


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = cli(str(tmp_path / "nope.json"))
    assert done.returncode == 2
    assert "nope.json" in done.stderr


def test_csv_with_a_broken_row_in_the_middle(csv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    done = cli("--csv", str(csv_file), "--out", str(out), "--on", ON)
    assert done.returncode == 1, done.stderr  # some rows failed
    # The bad row is reported with its line number in the file (header = line 1).
    assert "dòng 4:" in done.stderr and "household_size" in done.stderr
    assert "dòng 2:" not in done.stderr and "dòng 5:" not in done.stderr
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(CSV_ROWS)  # one output row per input row, the run went on
    assert list(rows[0]) == [
        "row",
        "id",
        "status",
        "deprivation_count",
        "deprivations",
        "income_per_capita_vnd",
        "income_line_vnd",
        "standard",
        "error",
    ]
    assert [r["id"] for r in rows] == ["h1", "h2", "h3", "h4"]
    assert [r["row"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["status"] for r in rows] == ["poor", "average_living", "error", "not_poor"]
    assert rows[0]["income_per_capita_vnd"] == "1500000"
    assert rows[0]["income_line_vnd"] == "1500000"
    assert rows[0]["deprivation_count"] == "3"
    assert len(rows[0]["deprivations"].split(";")) == 3
    assert rows[1]["income_per_capita_vnd"] == "1500001"
    assert rows[2]["error"].startswith("household_size: ")
    assert rows[3]["income_per_capita_vnd"] == "5000000"  # "10.000.000" read as ten million
    assert rows[3]["income_line_vnd"] == "2000000"  # urban line


def test_csv_all_good_exits_0(tmp_path: Path) -> None:
    source = tmp_path / "good.csv"
    source.write_text("\n".join([HEADER, CSV_ROWS[0], CSV_ROWS[1]]) + "\n", encoding="utf-8")
    done = cli("--csv", str(source), "--on", ON)  # --out defaults to stdout
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert done.stderr == ""  # no progress noise when stderr is not a terminal


def test_jsonl_format(csv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = cli("--csv", str(csv_file), "--out", str(out), "--on", ON, "--format", "jsonl")
    assert done.returncode == 1
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(CSV_ROWS)
    assert records[0]["status"] == "poor" and records[0]["id"] == "h1"
    assert records[0]["deprivation_count"] == 3 and len(records[0]["deprivations"]) == 3
    assert records[0]["error"] is None
    assert records[2]["status"] == "error"
    assert records[2]["problems"][0]["field"] == "household_size"


def test_full_mode_agrees_with_the_fast_path(csv_file: Path, tmp_path: Path) -> None:
    fast, full = tmp_path / "fast.csv", tmp_path / "full.csv"
    assert cli("--csv", str(csv_file), "--out", str(fast), "--on", ON).returncode == 1
    assert cli("--csv", str(csv_file), "--out", str(full), "--on", ON, "--full").returncode == 1
    assert fast.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


def test_full_jsonl_carries_the_whole_result(tmp_path: Path) -> None:
    source = io.StringIO("\n".join([HEADER, CSV_ROWS[0]]) + "\n")
    sink, errors = io.StringIO(), io.StringIO()
    assert run_csv(source, sink, errors, date(2026, 6, 1), "jsonl", full=True) == 0
    record = json.loads(sink.getvalue())
    assert record["status"] == record["result"]["status"] == "poor"
    assert "indicators" in record["result"]


def test_csv_conversions_and_row_dates() -> None:
    # Booleans in Vietnamese, lists with ';', a per-row date, a BOM-less short row.
    source = io.StringIO(
        "household_id,on,area,household_size,monthly_income_per_capita_vnd,internet,information_devices\n"
        "A-1,2026-06-01,rural,3,1500000,Có,tv;radio\n"
        "A-2,2027-06-01,rural,3,1500000,không\n"
        ",,,,,,\n"
    )
    sink, errors = io.StringIO(), io.StringIO()
    assert run_csv(source, sink, errors, None) == 0, errors.getvalue()
    rows = list(csv.DictReader(io.StringIO(sink.getvalue())))
    assert [r["household_id"] for r in rows] == ["A-1", "A-2"]  # blank line skipped
    assert rows[0]["income_line_vnd"] == "1500000"  # Decree 07 line in 2026
    assert rows[1]["income_line_vnd"] == "2200000"  # Decree 351 line from 2027
    assert rows[0]["standard"] != rows[1]["standard"]


def test_csv_with_unknown_column_stops_before_any_row() -> None:
    source = io.StringIO("household_size,monthly_income_vnd,pets\n4,6000000,2\n")
    sink, errors = io.StringIO(), io.StringIO()
    assert run_csv(source, sink, errors, date(2026, 6, 1)) == 2
    assert "pets" in errors.getvalue()
    assert sink.getvalue() == ""


def test_csv_row_with_extra_cells_is_a_row_error() -> None:
    source = io.StringIO(
        "area,household_size,monthly_income_vnd\nrural,4,6000000,surprise\nrural,4,6000000\n"
    )
    sink, errors = io.StringIO(), io.StringIO()
    assert run_csv(source, sink, errors, date(2026, 6, 1)) == 1
    assert "dòng 2:" in errors.getvalue()
    assert len(sink.getvalue().splitlines()) == 3


def test_bad_on_option_is_a_usage_error(csv_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--csv", str(csv_file), "--on", "2026-13-01"])
    assert exit_info.value.code == 2
    assert "2026-13-01" in capsys.readouterr().err


def test_file_and_csv_together_is_a_usage_error(csv_file: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(csv_file), "--csv", str(csv_file)])
    assert exit_info.value.code == 2
