"""Command line for the assessment core: ``python -m assessment``.

One household (JSON file, or ``-`` for standard input)::

    python -m assessment household.json [--on 2026-06-01]

prints the full result as JSON, or the structured errors with exit code 2.

Many households (CSV, one quick-form household per row)::

    python -m assessment --csv in.csv --out out.csv [--on DATE] [--format csv|jsonl] [--full]

streams row by row (constant memory, whatever the file size). Columns are the
quick-form fields; an empty cell means the field is absent; lists are written
``tv;smartphone``; booleans ``true/false``, ``1/0`` or ``có/không``. An ``id``
or ``household_id`` column is copied to the output, and an ``on`` column sets
the date of its row. Each bad row is reported on standard error with its line
number and the run goes on; the exit code is 0 when every row succeeded, 1
when some failed, 2 for unusable input (bad header, unreadable file).

Uses :func:`assessment.classify`, the fast path, unless ``--full`` asks for the
complete :func:`assessment.assess` result. Standard library only, on purpose:
this runs where the web stack is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import IO, Any, Final, TextIO

import assessment
from assessment import InputError, Problem

EXIT_OK: Final = 0
EXIT_ROWS_FAILED: Final = 1
EXIT_USAGE: Final = 2

#: Input columns copied to the output to identify a household (first found wins).
ID_COLUMNS: Final = ("id", "household_id")
#: Input column giving a row's own reference date.
ON_COLUMN: Final = "on"
#: Separator of list items inside one cell.
LIST_SEPARATOR: Final = ";"

TRUE_WORDS: Final = frozenset({"true", "1", "có", "co", "yes", "y", "x", "đúng", "dung"})
FALSE_WORDS: Final = frozenset({"false", "0", "không", "khong", "no", "n", "sai"})

#: Distinct cell values remembered per column; most quick-form columns have a few.
CACHE_LIMIT: Final = 4096
#: Seconds between two progress lines.
PROGRESS_EVERY_S: Final = 0.5

Converter = Callable[[str], Any]


# --------------------------------------------------------------------------- schema


def _load_schema() -> Mapping[str, Any] | None:
    """Return the household JSON Schema, or ``None`` if the core has none."""
    try:
        from assessment.schema import HOUSEHOLD_SCHEMA
    except ImportError:
        return None
    return HOUSEHOLD_SCHEMA


def _resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """Follow local ``$ref`` pointers (``#/$defs/...``) of a schema node."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        node, seen = target, seen + 1
    return node


def _types(node: Any, root: Mapping[str, Any]) -> set[str]:
    """Collect the JSON types a schema node allows (through refs, anyOf, oneOf, allOf, enum)."""
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        return set()
    found: set[str] = set()
    declared = node.get("type")
    if isinstance(declared, str):
        found.add(declared)
    elif isinstance(declared, list):
        found.update(t for t in declared if isinstance(t, str))
    values = list(node.get("enum", ())) + ([node["const"]] if "const" in node else [])
    for value in values:
        if isinstance(value, bool):
            found.add("boolean")
        elif isinstance(value, int):
            found.add("integer")
        elif isinstance(value, float):
            found.add("number")
        elif isinstance(value, str):
            found.add("string")
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, ()):
            found |= _types(sub, root)
    return found


def _parse_bool(text: str) -> Any:
    word = unicodedata.normalize("NFC", text.strip().lower())
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return text  # left as text: the core reports it with its own message


def _parse_int(text: str) -> Any:
    cleaned = text.strip().replace("_", "").replace(" ", "")
    try:
        return int(cleaned)
    except ValueError:
        pass
    # Thousands separators as typed in Vietnam (6.000.000) or in English (6,000,000).
    for sep in (".", ","):
        groups = cleaned.split(sep)
        if (
            len(groups) > 1
            and 1 <= len(groups[0].lstrip("-")) <= 3
            and all(len(g) == 3 and g.isdigit() for g in groups[1:])
        ):
            try:
                return int("".join(groups))
            except ValueError:
                break
    return text


def _parse_number(text: str) -> Any:
    value = _parse_int(text)
    if not isinstance(value, str):
        return value
    try:
        return float(text.strip().replace(",", "."))  # "12,5" is 12.5 in Vietnamese
    except ValueError:
        return text


def _parse_json_cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _converter(node: Any, root: Mapping[str, Any]) -> Converter:
    """Build the cell converter for one property of the schema."""
    types = _types(node, root)
    resolved = _resolve(node, root)
    if "array" in types:
        items = resolved.get("items", {}) if isinstance(resolved, Mapping) else {}
        if "object" in _types(items, root):
            return _parse_json_cell  # a list of objects only fits a cell as JSON
        item = _converter(items, root)

        def split(text: str) -> Any:
            stripped = text.strip()
            if stripped.startswith("["):
                return _parse_json_cell(stripped)
            # A tuple: immutable, so it can be cached and shared between rows.
            return tuple(item(part.strip()) for part in stripped.split(LIST_SEPARATOR) if part.strip())

        return split
    if "object" in types:
        return _parse_json_cell
    if "boolean" in types and not types & {"integer", "number"}:
        return _parse_bool
    if "integer" in types and "number" not in types:
        return _parse_int
    if "number" in types:
        return _parse_number
    return str.strip


class _Memo(dict):  # type: ignore[type-arg]
    """Cell text → converted value, filled on first sight.

    Quick-form columns repeat a handful of values ("rural", "false",
    "tv;smartphone"), so after the first rows a cell costs one C-level dict
    lookup instead of a Python call: this is most of the CLI's own per-row cost.
    """

    def __init__(self, convert: Converter) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, text: str) -> Any:
        value = self.convert(text)
        # Only immutable values are shared between rows; JSON cells (members) are not.
        if len(self) < CACHE_LIMIT and (
            value.__class__ in (str, int, float, bool)
            or (value.__class__ is tuple and all(v.__class__ is str for v in value))
        ):
            self[text] = value
        return value


def _cached(convert: Converter) -> Converter:
    """Memoise a converter (see :class:`_Memo`)."""
    return _Memo(convert).__getitem__


def _column_plan(
    header: Sequence[str], schema: Mapping[str, Any] | None
) -> tuple[list[tuple[int, str, Converter]], int | None, int | None, list[str]]:
    """Decide what to do with each CSV column.

    Returns:
        (field columns as ``(index, name, converter)``, index of the id column,
        index of the ``on`` column, problems with the header).
    """
    root: Mapping[str, Any] = schema or {}
    properties: Mapping[str, Any] = root.get("properties", {})
    # With a closed schema an unknown column would fail every row: stop at the header instead.
    closed = root.get("additionalProperties") is False
    errors: list[str] = []
    seen: set[str] = set()
    fields: list[tuple[int, str, Converter]] = []
    id_index: int | None = None
    on_index: int | None = None
    for index, raw_name in enumerate(header):
        name = raw_name.strip()
        if not name:
            if any(h.strip() for h in header[index + 1 :]):
                errors.append(f"cột {index + 1} không có tên")
            continue
        if name in seen:
            errors.append(f"cột “{name}” bị lặp")
            continue
        seen.add(name)
        if name == ON_COLUMN:
            on_index = index
            continue
        if name in ID_COLUMNS:
            if id_index is None:
                id_index = index
            if name not in properties:
                continue  # only echoed; passed to the core only if its schema knows it
        if name in properties:
            fields.append((index, name, _cached(_converter(properties[name], root))))
        elif closed:
            errors.append(f"cột “{name}” không phải trường của phiếu hộ gia đình")
        else:
            fields.append((index, name, _cached(str.strip)))
    return fields, id_index, on_index, errors


# --------------------------------------------------------------------------- output


def _problems_text(problems: Iterable[Problem]) -> str:
    return "; ".join(f"{p.field}: {p.message_vi}" if p.field else p.message_vi for p in problems)


def _money(value: Any) -> Any:
    """Whole đồng as an integer (``1500000``, not ``1500000.0``), as ``to_dict`` does."""
    if value.__class__ is float:
        return int(value) if value.is_integer() else round(value, 2)
    return value


class _Progress:
    """Rows-per-second on standard error, only when a person is watching."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.start = self.last = time.monotonic()

    def tick(self, rows: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = rows / max(now - self.start, 1e-9)
            self.stream.write(f"\r{rows:,} dòng, {rate:,.0f} dòng/s ".replace(",", "."))
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")

    def done(self, rows: int) -> None:
        """Replace the progress line with the total, for the person watching."""
        if self.enabled:
            seconds = time.monotonic() - self.start
            self.clear()
            self.stream.write(f"{rows:,} dòng trong {seconds:.1f} s\n".replace(",", "."))


class _Output:
    """Writes one result row per input row, as CSV or JSON Lines."""

    FIELDS: Final = (
        "status",
        "deprivation_count",
        "deprivations",
        "income_per_capita_vnd",
        "income_line_vnd",
        "standard",
        "error",
    )

    def __init__(self, sink: TextIO, fmt: str, id_name: str | None) -> None:
        self.id_name = id_name
        self.jsonl = fmt == "jsonl"
        self.write = sink.write
        self.dumps = json.JSONEncoder(ensure_ascii=False).encode
        self.writerow = csv.writer(sink, lineterminator="\n").writerow
        if not self.jsonl:
            self.writerow(["row", *([id_name] if id_name else []), *self.FIELDS])

    def ok(
        self,
        row: int,
        ident: str | None,
        status: str,
        deprivations: Sequence[str],
        per_capita: Any,
        line: Any,
        standard: str,
        result: dict[str, Any] | None,
    ) -> None:
        """Write the result of an assessed row."""
        if not self.jsonl:
            if self.id_name:
                self.writerow(
                    (row, ident, status, len(deprivations), ";".join(deprivations),
                     per_capita, line, standard, "")
                )
            else:
                self.writerow(
                    (row, status, len(deprivations), ";".join(deprivations),
                     per_capita, line, standard, "")
                )
            return
        record: dict[str, Any] = {"row": row}
        if self.id_name:
            record[self.id_name] = ident
        record.update(
            status=status,
            deprivation_count=len(deprivations),
            deprivations=list(deprivations),
            income_per_capita_vnd=per_capita,
            income_line_vnd=line,
            standard=standard,
            error=None,
        )
        if result is not None:
            record["result"] = result
        self.write(self.dumps(record) + "\n")

    def error(self, row: int, ident: str | None, problems: Sequence[Problem]) -> None:
        """Write the row of a failed input row: status ``error`` and the problems."""
        text = _problems_text(problems)
        if not self.jsonl:
            ids = [ident] if self.id_name else []
            self.writerow([row, *ids, "error", "", "", "", "", "", text])
            return
        record: dict[str, Any] = {"row": row}
        if self.id_name:
            record[self.id_name] = ident
        record.update(
            status="error",
            deprivation_count=None,
            deprivations=None,
            income_per_capita_vnd=None,
            income_line_vnd=None,
            standard=None,
            error=text,
            problems=[p.to_dict() for p in problems],
        )
        self.write(self.dumps(record) + "\n")


def run_csv(
    source: TextIO,
    sink: TextIO,
    errors: TextIO,
    on: date | None,
    fmt: str = "csv",
    full: bool = False,
) -> int:
    """Assess every row of ``source`` and write one result row per household.

    Args:
        source: CSV text with a header row.
        sink: Where results go (CSV or JSON Lines).
        errors: Where bad rows and progress are reported.
        on: Reference date for rows without their own ``on`` cell.
        fmt: ``"csv"`` or ``"jsonl"``.
        full: Use the complete ``assess`` instead of the fast ``classify``.

    Returns:
        The process exit code.
    """
    reader = csv.reader(source)
    try:
        header = next(reader)
    except StopIteration:
        errors.write("lỗi: tệp CSV trống (cần một dòng tiêu đề)\n")
        return EXIT_USAGE
    except csv.Error as exc:
        errors.write(f"lỗi: không đọc được dòng tiêu đề CSV: {exc}\n")
        return EXIT_USAGE
    fields, id_index, on_index, header_errors = _column_plan(header, _load_schema())
    if header_errors:
        for message in header_errors:
            errors.write(f"lỗi tiêu đề: {message}\n")
        return EXIT_USAGE
    width = len(header)
    output = _Output(sink, fmt, header[id_index].strip() if id_index is not None else None)
    judge: Callable[..., Any] = assessment.assess if full else assessment.classify
    progress = _Progress(errors)

    def fail(row: int, ident: str | None, problems: Sequence[Problem]) -> None:
        progress.clear()
        errors.write(f"dòng {reader.line_num}: {_problems_text(problems)}\n")
        output.error(row, ident, problems)

    count = failed = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # A malformed record (a NUL byte, a quote left open at the end of the file).
            count += 1
            failed += 1
            fail(count, None, [Problem("invalid_csv", "", f"dòng CSV không đọc được ({exc})")])
            continue
        if not any(cells):
            continue  # blank lines are not households (spreadsheets leave some at the end)
        count += 1
        ident = cells[id_index] if id_index is not None and id_index < len(cells) else None
        if len(cells) != width:
            if len(cells) > width and any(cells[width:]):
                failed += 1
                message = f"dòng có {len(cells)} ô nhưng tiêu đề có {width} cột"
                fail(count, ident, [Problem("invalid_csv", "", message)])
                continue
            # Spreadsheets drop trailing empty cells: pad (or trim) to the header.
            cells = (cells + [""] * width)[:width]
        data = {name: convert(cell) for index, name, convert in fields if (cell := cells[index])}
        row_on: Any = on
        if on_index is not None and cells[on_index]:
            row_on = cells[on_index].strip()
        try:
            outcome = judge(data, on=row_on)
        except InputError as exc:
            failed += 1
            fail(count, ident, exc.problems)
            continue
        except Exception as exc:  # a bug in the core must not stop a million-row run
            failed += 1
            message = f"lỗi nội bộ {type(exc).__name__}: {exc}"
            fail(count, ident, [Problem("internal_error", "", message)])
            continue
        if full:
            result = outcome.to_dict()
            output.ok(
                count,
                ident,
                result["status"],
                result["deprivations"],
                result["income_per_capita_vnd"],
                result["income_line_vnd"],
                result["standard"]["id"],
                result if output.jsonl else None,
            )
        else:
            output.ok(
                count,
                ident,
                outcome.status,
                outcome.deprivations,
                _money(outcome.income_per_capita_vnd),
                _money(outcome.income_line_vnd),
                outcome.standard_id,
                None,
            )
        if progress.enabled and not count & 0xFFF:
            progress.tick(count)

    progress.done(count)
    sink.flush()
    if failed:
        errors.write(f"{failed:,}/{count:,} dòng lỗi\n".replace(",", "."))
    return EXIT_ROWS_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- one household


def run_one(path: str, on: str | None, stdin: IO[bytes], out: TextIO, errors: TextIO) -> int:
    """Assess the household in JSON file ``path`` (``-`` = standard input) and print it.

    Returns:
        The process exit code: 0, or 2 with the structured errors printed.
    """
    try:
        if path == "-":
            raw = stdin.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError as exc:
        errors.write(f"lỗi: không mở được tệp {path}: {exc.strerror}\n")
        return EXIT_USAGE
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return _print_errors(
            out, errors, [Problem("invalid_json", "body", "Nội dung tệp không phải JSON hợp lệ.")]
        )
    if not isinstance(data, dict):
        return _print_errors(
            out,
            errors,
            [Problem("invalid_type", "body", "Tệp phải chứa một đối tượng JSON ({...}).")],
        )
    if "on" in data:  # the file's own date wins, as in the HTTP API
        data = dict(data)
        on = data.pop("on")
    try:
        result = assessment.assess(data, on=on).to_dict()
    except InputError as exc:
        return _print_errors(out, errors, exc.problems)
    json.dump(result, out, ensure_ascii=False, indent=2)
    out.write("\n")
    return EXIT_OK


def _print_errors(out: TextIO, errors: TextIO, problems: Sequence[Problem]) -> int:
    body = {
        "error": {
            "code": "invalid_input",
            "message_vi": "Thông tin hộ gia đình chưa hợp lệ.",
            "problems": [p.to_dict() for p in problems],
        }
    }
    json.dump(body, out, ensure_ascii=False, indent=2)
    out.write("\n")
    for problem in problems:
        errors.write(f"lỗi: {_problems_text([problem])}\n")
    return EXIT_USAGE


# --------------------------------------------------------------------------- entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m assessment",
        description=(
            "Tự rà soát: ước tính tình trạng hộ nghèo / cận nghèo theo chuẩn nghèo đa chiều. "
            "Một hộ (tệp JSON) hoặc nhiều hộ (tệp CSV)."
        ),
    )
    parser.add_argument("file", nargs="?", help="tệp JSON của một hộ; '-' để đọc từ stdin")
    parser.add_argument("--csv", metavar="IN.csv", help="tệp CSV, mỗi dòng một hộ; '-' = stdin")
    parser.add_argument("--out", metavar="OUT", default="-", help="tệp kết quả (mặc định stdout)")
    parser.add_argument("--on", metavar="YYYY-MM-DD", help="ngày áp dụng chuẩn (mặc định hôm nay)")
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        default="csv",
        help="định dạng tệp kết quả: csv hoặc jsonl (JSON Lines)",
    )
    parser.add_argument(
        "--full", action="store_true", help="tính đầy đủ (assess) thay vì nhanh (classify)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.file is None) == (args.csv is None):
        parser.error("cần đúng một trong hai: FILE (JSON) hoặc --csv IN.csv")
    if args.file is not None:
        return run_one(args.file, args.on, sys.stdin.buffer, sys.stdout, sys.stderr)

    on: date | None = None
    if args.on:
        try:
            on = date.fromisoformat(args.on)
        except ValueError:
            parser.error(f"--on {args.on}: ngày không hợp lệ (dạng YYYY-MM-DD)")
    try:
        source: TextIO = (
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
            if args.csv == "-"
            else open(args.csv, encoding="utf-8-sig", newline="", buffering=1 << 20)  # noqa: SIM115
        )
        sink: TextIO = (
            sys.stdout
            if args.out == "-"
            else open(args.out, "w", encoding="utf-8", newline="", buffering=1 << 20)  # noqa: SIM115
        )
    except OSError as exc:
        sys.stderr.write(f"lỗi: {exc.filename}: {exc.strerror}\n")
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        stack.enter_context(source)
        if sink is not sys.stdout:
            stack.enter_context(sink)
        try:
            return run_csv(source, sink, sys.stderr, on, args.format, args.full)
        except UnicodeDecodeError as exc:
            sys.stderr.write(
                f"lỗi: tệp CSV không phải UTF-8 ({exc.reason}); hãy lưu lại dạng CSV UTF-8\n"
            )
            return EXIT_USAGE
        except BrokenPipeError:
            return EXIT_OK  # `... | head` closed the pipe; nothing more to say
    return EXIT_OK  # not reached; keeps type checkers content


if __name__ == "__main__":
    sys.exit(main())
