"""The terminal chat ``python -m bot.console``: a whole assessment with no server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console import main
from bot.store.testing import temporary_database

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[1]

#: A typical household, typed as a person would (the consent option by its number).
ANSWERS = [
    "1",  # consent: just look
    "thuong phuoc 1",
    "đúng",
    "4",
    "#1",  # the "Không có" button under "how many children": picked as [#1]
    "0",
    "8 triệu",
    "không",
    "2",
    "45",
    "2",
    "1",
    "1,4,6",
    "1",
    "đúng",
]


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    with temporary_database(tmp_path) as url:
        yield url


def run(database_url: str, lines: list[str], user: str = "tester") -> str:
    out = io.StringIO()
    status = main(
        ["--user", user, "--database-url", database_url],
        stdin=io.StringIO("".join(f"{line}\n" for line in lines)),
        stdout=out,
    )
    assert status == 0
    return out.getvalue()


def test_whole_assessment_in_the_terminal(database_url: str) -> None:
    output = run(database_url, ANSWERS)
    assert output.lstrip().startswith("Xin chào")  # greeted without typing anything
    assert "[#1] Không có" in output  # buttons the text does not list are numbered
    assert "KẾT QUẢ SƠ BỘ" in output
    assert output.rstrip().endswith("Lần sau gõ lại lệnh này để tiếp tục.")  # clean exit on EOF


def test_same_user_continues_where_they_left_off(database_url: str) -> None:
    run(database_url, ANSWERS[:4])  # stops at "how many children"
    output = run(database_url, [])
    assert "trẻ em dưới 16 tuổi" in output
    assert "Xin chào! Mình là" not in output  # not greeted as a stranger again


def test_another_user_starts_afresh(database_url: str) -> None:
    run(database_url, ANSWERS[:4], user="a")
    assert "Xin chào" in run(database_url, [], user="b")


def test_runs_as_a_module_and_exits_on_end_of_input(database_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.console", "--user", "m", "--database-url", database_url],
        input="1\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Xin chào" in done.stdout and "Nhà bạn ở xã hay phường nào?" in done.stdout
