"""Execute the chat's per-message statements on the driver's cursor, compiled once per database.

Why: every chat message runs the same handful of statements (lock the identity, read the
conversation, save it, record the answer, the inbound message and the replies). Through
``Connection.execute`` each costs tens of microseconds of Python besides the database's own
work (execution context, cache-key lookup, result metadata), which profiling under
``bench/chat_load.py`` showed to be about a sixth of a worker's CPU per message.

What stays the same: the SQL and the values sent are SQLAlchemy's own. Each statement is
compiled once per (dialect, parameter names) by SQLAlchemy's compiler, values go through
each column type's bind processor (JSON, aware UTC timestamps, enums), selected columns
through their result processors, scalar column defaults are filled in as SQLAlchemy
would, and driver errors are raised as SQLAlchemy's exception classes
(:class:`~sqlalchemy.exc.IntegrityError`, :class:`~sqlalchemy.exc.OperationalError`, ...),
with a lost connection invalidated, so :func:`bot.store.db.run_in_transaction` retries as
before. The statement runs on the connection of the caller's transaction.

Only simple statements take this path: a statement whose compiled form needs what only
SQLAlchemy's execution context provides (a callable column default, an expanding ``IN``)
is executed by ``Connection.execute`` instead, so nothing is ever silently different.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert

__all__ = ["DirectResult", "execute"]

_Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for one dialect and one set of parameter names."""

    statement: ClauseElement  # held, so its id cannot be reused by another statement while the plan exists
    sql: str
    #: Parameter names in placeholder order for positional paramstyles (qmark, format); None for named ones.
    positions: tuple[str, ...] | None
    #: Values of parameters not given by the caller (literals in the statement, scalar column defaults).
    fixed: Mapping[str, Any]
    #: Bind processors by parameter name (only those that convert something).
    binds: Mapping[str, _Processor]
    #: Row type and per-column result processors, when the statement returns rows with known columns.
    row: type[tuple[Any, ...]] | None
    results: tuple[_Processor | None, ...]


#: Compiled plans: (statement id, dialect name, parameter names) → plan, or None for "use Connection.execute".
#: Meant for statements built once (module constants); a statement built per call would only cost a compile.
_plans: dict[tuple[int, str, frozenset[str]], _Plan | None] = {}
_plans_lock: Final = threading.Lock()
#: More plans than this means statements are being built per call: start over rather than grow without end.
MAX_PLANS: Final = 512


class DirectResult:
    """The part of :class:`sqlalchemy.engine.CursorResult` the repository uses, already fetched."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return list(self._rows)

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise exc.NoResultFound("no row") if not self._rows else exc.MultipleResultsFound("rows")
        return self._rows[0]

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise exc.MultipleResultsFound("more than one row")
        return self._rows[0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return row[0] if row is not None else None


def execute(
    connection: Connection,
    statement: ClauseElement,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> Any:
    """Execute ``statement`` with ``params`` (one mapping, or a list for executemany) on ``connection``.

    Returns:
        A :class:`DirectResult` (rows fetched), or the ``CursorResult`` of ``Connection.execute``
        for a statement this path does not take.
    """
    many = not isinstance(params, Mapping)
    rows: Sequence[Mapping[str, Any]] = params if many else (params,)  # type: ignore[assignment]
    if not rows:
        return connection.execute(statement, list(rows))
    dialect = connection.dialect
    key = (id(statement), dialect.name, frozenset(rows[0]))
    plan = _plans.get(key, _MISSING)
    if plan is _MISSING or (plan is not None and plan.statement is not statement):
        plan = _compile(statement, dialect, rows[0])
        with _plans_lock:
            if len(_plans) >= MAX_PLANS:
                _plans.clear()
            _plans[key] = plan
    if plan is None:
        return connection.execute(statement, params)
    assert isinstance(plan, _Plan)
    values = [_values(plan, row) for row in rows]
    raw = connection.connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        try:
            if many:
                cursor.executemany(plan.sql, values)
            else:
                cursor.execute(plan.sql, values[0])
            # The driver builds the description on each call: read it once, and only when the columns are unknown.
            description = cursor.description if plan.row is None else None
            fetched = cursor.fetchall() if plan.row is not None or description is not None else []
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(connection, dialect, plan, values, error, raw, cursor) from error
        rowcount = cursor.rowcount
        names = tuple(d[0] for d in description) if fetched and description else ()
    finally:
        cursor.close()
    if plan.row is not None:
        results = plan.results
        fetched = [
            plan.row(*(v if p is None or v is None else p(v) for p, v in zip(results, r, strict=True)))
            for r in fetched
        ]
    elif names:  # textual SQL: name the columns as the driver does
        row = _row_type(names)
        fetched = [row(*r) for r in fetched]
    return DirectResult(fetched, rowcount)


_MISSING: Final[Any] = object()


def _values(plan: _Plan, given: Mapping[str, Any]) -> Any:
    merged = {**plan.fixed, **given} if plan.fixed else dict(given)
    for name, process in plan.binds.items():
        if name in merged:
            merged[name] = process(merged[name])  # None too, as SQLAlchemy does (a JSON column may write 'null')
    if plan.positions is not None:
        return tuple(merged[name] for name in plan.positions)
    return merged


def _compile(statement: ClauseElement, dialect: Dialect, sample: Mapping[str, Any]) -> _Plan | None:
    """Compile ``statement`` for ``dialect`` as ``Connection.execute`` would with ``sample``'s keys."""
    compiling = statement
    if isinstance(statement, Insert) and not statement.exported_columns:
        # No RETURNING asked for: don't let the dialect add one for the new primary key (PostgreSQL would),
        # which nobody reads here and which executemany cannot return.
        compiling = statement.inline()
    compiled = compiling.compile(dialect=dialect, column_keys=list(sample))
    if any(getattr(b, "expanding", False) for b in compiled.binds.values()):
        return None
    fixed: dict[str, Any] = {}
    for column in [*getattr(compiled, "insert_prefetch", ()), *getattr(compiled, "update_prefetch", ())]:
        default = column.onupdate if column in getattr(compiled, "update_prefetch", ()) else column.default
        if default is None or not default.is_scalar:
            return None  # a callable default: leave it to SQLAlchemy
        fixed[column.key] = default.arg
    binds: dict[str, _Processor] = {}
    for bind, name in compiled.bind_names.items():
        if name not in sample and name not in fixed:
            if bind.required:
                return None  # a parameter the caller must give and did not: let SQLAlchemy say so
            fixed[name] = bind.effective_value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process
    positions = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    columns = _returned_columns(statement)
    row: type[tuple[Any, ...]] | None = None
    results: tuple[_Processor | None, ...] = ()
    if columns:
        names = [str(getattr(c, "key", None) or getattr(c, "name", "")) for c in columns]
        row = _row_type(tuple(names))
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return _Plan(statement, compiled.string, positions, fixed, binds, row, results)


def _returned_columns(statement: ClauseElement) -> list[Any]:
    """The columns ``statement`` returns (SELECT list or RETURNING), or [] when it names none."""
    for attribute in ("selected_columns", "exported_columns"):
        columns = getattr(statement, attribute, None)
        if columns is not None:
            return list(columns)
    return []


_row_types: dict[tuple[str, ...], type[tuple[Any, ...]]] = {}


def _row_type(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """A named tuple with ``names`` as fields: attribute and index access, like SQLAlchemy's Row."""
    found = _row_types.get(names)
    if found is None:
        found = _row_types[names] = collections.namedtuple("DirectRow", names, rename=True)  # type: ignore[misc]
    return found


def _wrapped(
    connection: Connection,
    dialect: Dialect,
    plan: _Plan,
    values: list[Any],
    error: Exception,
    raw: Any,
    cursor: Any,
) -> BaseException:
    """The SQLAlchemy exception ``Connection.execute`` would raise for ``error``."""
    lost = False
    try:
        lost = bool(dialect.is_disconnect(error, raw, cursor))
    except Exception:  # noqa: BLE001 - classifying must never hide the error itself
        lost = False
    if lost:
        connection.invalidate(error)
    return exc.DBAPIError.instance(
        plan.sql,
        values[0] if len(values) == 1 else values,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
