"""Fixed-shape reads on hot paths, compiled to SQL once per process and planned by PostgreSQL once per connection.

The ORM builds a query and compiles its SQL again every time a queryset is evaluated. For the few reads that run on
every visit join and admit, always the same shape with other values, that compiling was about a third of the CPU
of the whole call, and a visit's calls queue on its process's one sync thread (docs/decisions.md, "Prepared reads").
A `PreparedRead` builds its queryset once with stand-in values, keeps the SQL and where each stand-in landed among
the parameters, and from then on runs that SQL with the real values, turning rows into model instances the way the
ORM's own iterable does (related objects of select_related, annotations, field converters such as decryption).

Only plain model querysets qualify: no prefetch_related, no values()/values_list(), no queryset of a related manager.
Each stand-in must land among the parameters (a value the ORM folds into the SQL text cannot be replaced), which is
checked when the read is first compiled.

Their SQL runs through `statement_cursor`, which has the server prepare each statement once per pooled connection;
other fixed statements of the hot paths (the audit trail's INSERT, the consent check) use it directly.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.backends.postgresql.base import CursorDebugWrapper, ServerBindingCursor
from django.db.backends.utils import CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=Model)

# What the ORM's own iterable builds select_related objects with (typed loosely: its stubs follow a later Django).
_related_populators: Any = get_related_populators

# Stand-ins nobody stores: a UUID in no generator's range, text with control characters, and integers that still fit
# a 32-bit column (the ORM turns a lookup of an integer outside its column's range into an empty result, with no SQL).
# They are never sent to the database: they only show where each value lands among the query's parameters.
_INT_BASE = 0x5EED_0000


def _stand_in(kind: type, index: int) -> Any:
    if kind is int:
        return _INT_BASE + 7919 * (index + 1)
    if kind is uuid.UUID:
        return uuid.UUID(int=(0x5EED << 112) + index + 1)
    if kind is str:
        return f"\x1fprepared-read-{index}\x1f"
    raise TypeError(f"PreparedRead takes int, uuid.UUID or str values, not {kind.__name__}")


@dataclass
class _Compiled:
    sql: str
    params: list[Any]
    slots: list[tuple[int, str]]  # (position among the parameters, name of the value)
    compiler: Any
    init_list: list[str]
    model_slice: tuple[int, int]
    populators: list[Any]
    annotations: dict[str, int]
    for_update: bool
    converters: dict[int, Any]  # position → (the fields' from-database converters, expression), found once


# Prepared only when asked: a threshold that nothing reaches (Django's own cursors bind on the client side and are
# never prepared anyway; psycopg would otherwise prepare nothing, as Django turns preparing off).
_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


_ServerBindingCursor: Any = ServerBindingCursor  # defined by Django only with psycopg 3 (untyped there)


class _PreparingCursor(_ServerBindingCursor):
    """Django's server-binding cursor that prepares every statement it runs, once per connection."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return super().execute(query, params, prepare=True)


class _DebugCursor(CursorDebugWrapper):
    """Django's debug wrapper (DEBUG, tests capturing queries), logging the statement with its values: Django reads
    them back from the cursor's last query, which psycopg does not keep for a prepared statement."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        try:
            logged = self.db.ops.compose_sql(sql, params) if params else sql
        except Exception:  # a value the client side cannot render: the statement as written
            logged = sql
        with self.debug_sql(logged, params):
            return CursorWrapper.execute(self, sql, params)  # the execute_wrappers, as for any statement


# One such cursor per psycopg connection, reused: a new cursor copies the connection's adapter map, which costs about
# what a short statement costs. Weak keys: it goes with its connection (a pooled one lives as long as the pool does).
_cursors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def statement_cursor(connection: Any) -> Any:
    """A cursor of `connection` (Django's wrapper: error translation, query logging, execute_wrappers, thread checks)
    whose statements the server parses and plans once per connection and keeps: a pooled connection runs the same few
    statements of the hot paths thousands of times, and planning them (0.2–0.8 ms each) cost more than running them.

    For fixed SQL with parameters bound on the server (types follow the Python values: an int, a str, a UUID, a list
    for `= ANY(%s)`). Not to be closed (no `with`): the cursor is shared by the connection's later statements."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = connection.connection
    cursor = _cursors.get(raw)
    if cursor is None or cursor.closed:
        if raw.prepare_threshold is None:
            raw.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
        # Made by Django's create_cursor (it sets the cursor's time zone as for any cursor of this connection).
        factory, raw.cursor_factory = raw.cursor_factory, _PreparingCursor
        try:
            cursor = _cursors[raw] = connection.create_cursor()
        finally:
            raw.cursor_factory = factory
    return _DebugCursor(cursor, connection) if connection.queries_logged else connection.make_cursor(cursor)


class PreparedRead(Generic[M]):
    """`build(**values)` returns the queryset; `kinds` names each value's type (int, uuid.UUID or str)."""

    def __init__(self, build: Callable[..., QuerySet[M]], **kinds: type) -> None:
        self._build = build
        self._kinds = kinds
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _compile(self, alias: str) -> _Compiled:
        stand_ins = {name: _stand_in(kind, index) for index, (name, kind) in enumerate(self._kinds.items())}
        queryset: Any = self._build(**stand_ins)
        if (
            queryset._iterable_class is not ModelIterable
            or queryset._prefetch_related_lookups
            or queryset._known_related_objects
        ):
            raise TypeError("PreparedRead needs a plain model queryset (no values(), prefetch or related manager).")
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        slots = [
            (position, name)
            for position, param in enumerate(params)
            for name, stand_in in stand_ins.items()
            if type(param) is type(stand_in) and param == stand_in
        ]
        missing = set(stand_ins) - {name for _position, name in slots}
        if missing:
            raise ValueError(f"PreparedRead values not found among the query's parameters: {sorted(missing)}")
        # What results_iter would look up at every call: which columns need converting, and with what.
        columns = [column[0] for column in compiler.select[0 : compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise TypeError("PreparedRead does not read composite fields.")
        klass_info = compiler.klass_info
        select_fields = klass_info["select_fields"]
        start, end = select_fields[0], select_fields[-1] + 1
        return _Compiled(
            sql=sql,
            params=list(params),
            slots=slots,
            compiler=compiler,
            init_list=[column[0].target.attname for column in compiler.select[start:end]],
            model_slice=(start, end),
            populators=_related_populators(klass_info, compiler.select, alias),
            annotations=dict(compiler.annotation_col_map or {}),
            for_update=bool(queryset.query.select_for_update),
            converters=compiler.get_converters(columns),
        )

    def _compiled_for(self, alias: str) -> _Compiled:
        compiled = self._compiled.get(alias)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(alias)
                if compiled is None:
                    compiled = self._compiled[alias] = self._compile(alias)
        return compiled

    def all(self, using: str = "default", **values: Any) -> list[M]:
        if set(values) != set(self._kinds):
            raise TypeError(f"PreparedRead expects the values {sorted(self._kinds)}")
        connection = connections[using]
        compiled = self._compiled_for(using)
        if compiled.for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(compiled.params)
        for position, name in compiled.slots:
            params[position] = values[name]
        cursor = statement_cursor(connection)
        cursor.execute(compiled.sql, params)
        rows = cursor.fetchall()
        model = compiled.compiler.klass_info["model"]
        start, end = compiled.model_slice
        found: list[M] = []
        converted = compiled.compiler.apply_converters(rows, compiled.converters) if compiled.converters else rows
        for row in converted:
            instance = model.from_db(using, compiled.init_list, row[start:end])
            for populator in compiled.populators:
                populator.populate(row, instance)
            for attribute, position in compiled.annotations.items():
                setattr(instance, attribute, row[position])
            found.append(instance)
        return found

    def first(self, using: str = "default", **values: Any) -> M | None:
        """The first row (the queryset orders and limits itself, e.g. `.order_by(...)[:1]`)."""
        found = self.all(using, **values)
        return found[0] if found else None
