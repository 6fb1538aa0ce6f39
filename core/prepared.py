"""Queries the ORM builds once per process and runs again with other parameters, as
statements Postgres prepares once per connection.

Building a query is the dearest part of a simple lookup on the job path: on the project's
machine the ORM spends 0.5-1 ms of Python compiling ``filter(...).first()``, where
Postgres answers in 0.1 ms (bench/README.md). A :class:`Prepared` query is built by the
ORM once, from a function of named parameters called with stand-in values; its SQL (the
backend's own, so SQLite and Postgres alike) is then run with the real values, and its
rows go through the same converters the ORM would apply.

Planning is the dearest part for Postgres: with Django's client-side binding every
statement arrives as new text with its values inlined, and is parsed and planned again
(a job's submission cost Postgres 2.1-2.9 ms of CPU that way, 1.2 ms with its statements
prepared). :func:`cursor` sends the parameters apart and has each statement prepared on
its connection's first use (``DB_PREPARED_STATEMENTS``; off behind a connection pooler
in transaction mode that does not keep prepared statements). Every other query of the
project keeps Django's default binding.

    by_slug = Prepared(lambda slug: Cargo.objects.filter(slug=slug)[:1], slug=str)
    cargo = by_slug.first(slug="llm-chat")          # a Cargo, or None

Parameters are ``str``, ``int``, ``uuid.UUID`` or ``datetime`` values that stand alone in
the SQL (not inside ``__in`` lists, whose length would change the SQL); a ``uuid.UUID``
parameter may be given as its text too (the ids of NATS messages). A query that
locks rows (``lock=True``) must run inside a transaction, as with the ORM.

:func:`insert` and :func:`update` do the same for the job path's writes: their SQL is
written once per model (and set of field names) from the model's own fields, and every
value goes through its field's conversion for the backend, as with ``save()``.
"""

import contextlib
import functools
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connections
from django.db.models import Field, Model, QuerySet

_serial = itertools.count(1)


@functools.cache
def _preparing_cursor_class() -> type:
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        """Binds on the server, and prepares each statement on the connection's first use
        of it (psycopg keeps the prepared statements of a connection)."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            return super().execute(query, params, prepare=True, **kwargs)  # type: ignore[misc]

    return PreparingCursor


def open_cursor(using: str = "default") -> Any:
    """A Django cursor (query logging and execute wrappers included) whose statements
    Postgres prepares; a plain one on other databases or when turned off. The caller
    closes it (or uses :func:`cursor`)."""
    connection = connections[using]
    # Django logs a prepared statement without its SQL: where queries are logged (DEBUG,
    # the tests' query counts), they are sent as Django sends them.
    if (
        connection.vendor != "postgresql"
        or not settings.DB_PREPARED_STATEMENTS
        or connection.queries_logged
    ):
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _preparing_cursor_class()(connection.connection)
    # Django's internal: what connection.cursor() does with the cursor it makes itself
    # (its execute wrappers, query logging and error mapping). Django has no public way
    # to choose a cursor's class for one cursor; this is the one place that needs it.
    return connection._prepare_cursor(raw)  # type: ignore[attr-defined]


@contextlib.contextmanager
def cursor(using: str = "default") -> Iterator[Any]:
    """:func:`open_cursor`, closed at the end of the block."""
    opened = open_cursor(using)
    try:
        yield opened
    finally:
        opened.close()


def _stand_in(kind: type) -> Any:
    """A value of ``kind`` that no real parameter of the built query will equal."""
    n = next(_serial)
    if kind is str:
        return f"\x1fprepared-{n}\x1f"
    if kind is int:  # within a small integer's range: Django drops out-of-range lookups
        return 20_000 + n
    if kind is uuid.UUID:
        return uuid.UUID(int=(0x5EED << 112) + n)
    if kind is datetime:
        return datetime(1901, 1, 1, 0, 0, n % 60, n, tzinfo=UTC)
    raise TypeError(f"unsupported parameter type {kind!r}")


def _literal(value: Any) -> str | None:
    """``value`` as a SQL literal, for the plain constants a query is built with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isprintable() and "\\" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _inline_constants(sql: str, params: list, slots: dict[str, int]) -> tuple:
    """Write the query's constants (``status = 'queued'``, not its named parameters) into
    its text: a prepared statement's generic plan can then use a partial index whose
    condition names them, and estimate rows by their values (with ``status = $3`` the
    planner scanned the whole job table for a queued job)."""
    pieces = sql.split("%s")
    if len(pieces) != len(params) + 1:
        return sql, params, slots  # a "%s" in a literal: leave the query as it is
    at = {i: name for name, i in slots.items()}
    text = [pieces[0]]
    kept: list[Any] = []
    moved: dict[str, int] = {}
    for i, value in enumerate(params):
        literal = None if i in at else _literal(value)
        if literal is None:
            if i in at:
                moved[at[i]] = len(kept)
            kept.append(value)
            literal = "%s"
        text += [literal, pieces[i + 1]]
    return "".join(text), kept, moved


class Prepared:
    """``lock``: the rows are locked ``FOR NO KEY UPDATE`` (where the database has row
    locks), as ``select_for_update(no_key=True)`` would; written so rather than in the
    queryset because Django compiles a locking query only inside a transaction of its
    own connection, which a query run on an async connection (core.tx) never is."""

    def __init__(
        self,
        build: Callable[..., QuerySet],
        using: str = "default",
        *,
        lock: bool = False,
        **kinds: type,
    ) -> None:
        self.build, self.using, self.lock, self.kinds = build, using, lock, kinds
        self._lock = threading.Lock()
        self._compiled: tuple | None = None

    def _prep(self, value: Any, connection: Any) -> Any:
        if isinstance(value, uuid.UUID) and not connection.features.has_native_uuid_field:
            return value.hex
        if isinstance(value, datetime):
            return connection.ops.adapt_datetimefield_value(value)
        return value

    def _compile(self) -> tuple:
        if self._compiled is None:  # built once; every later call reads it without a lock
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._build()
        return self._compiled

    def _build(self) -> tuple:
        connection = connections[self.using]
        stand_ins = {name: _stand_in(kind) for name, kind in self.kinds.items()}
        queryset = self.build(**stand_ins)
        if queryset.query.select_for_update:
            raise ValueError("lock the rows with Prepared(lock=True)")
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        if self.lock and connection.features.has_select_for_update:
            sql = f"{sql} {connection.ops.for_update_sql(no_key=True)}"
        slots: dict[str, int] = {}
        for name, value in stand_ins.items():
            prepped = self._prep(value, connection)
            found = [i for i, p in enumerate(params) if p == prepped]
            if len(found) != 1:
                raise ValueError(f"parameter {name!r} appears {len(found)} times in {sql}")
            slots[name] = found[0]
        if connection.vendor == "postgresql":
            sql, params, slots = _inline_constants(sql, list(params), slots)
        converters = compiler.get_converters([col for col, _, _ in compiler.select])
        # Model instances unless values()/values_list() chose the columns (which clear the
        # query's default columns): then its rows are tuples.
        klass_info = compiler.klass_info if queryset.query.default_cols else None
        if klass_info and klass_info.get("related_klass_infos"):
            raise ValueError("select_related is not supported")
        return sql, list(params), slots, compiler, converters, klass_info

    def statement(self, **values: Any) -> tuple[str, list]:
        """The query's SQL and its parameters for ``values``."""
        sql, template, slots = self._compile()[:3]
        connection = connections[self.using]
        params = list(template)
        for name, i in slots.items():
            value = values[name]
            if self.kinds[name] is uuid.UUID and isinstance(value, str):
                value = uuid.UUID(value)
            params[i] = self._prep(value, connection)
        return sql, params

    def convert(self, rows: list) -> list[Any]:
        """Rows as the database returned them, as the ORM would: model instances, or
        tuples for ``values_list`` queries."""
        compiler, converters, klass_info = self._compile()[3:]
        if converters:
            rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
        if klass_info is None:
            return rows
        model = klass_info["model"]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        names = [col.target.attname for col, _, _ in compiler.select[start:end]]
        extra = (compiler.annotation_col_map or {}).items()
        objects = []
        for row in rows:
            obj = model.from_db(self.using, names, row[start:end])
            for name, i in extra:  # annotate(): set on the instance, as the ORM does
                setattr(obj, name, row[i])
            objects.append(obj)
        return objects

    def rows(self, **values: Any) -> list[Any]:
        """The query's rows (see :meth:`convert`)."""
        sql, params = self.statement(**values)
        with cursor(self.using) as c:
            c.execute(sql, params)
            return self.convert(c.fetchall())

    def first(self, **values: Any) -> Any:
        rows = self.rows(**values)
        return rows[0] if rows else None


# --- writes: one row in, some rows changed ------------------------------------------------
@functools.cache
def _insert_sql(model: type[Model], using: str) -> str:
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(quote(f.column) for f in fields)  # type: ignore[arg-type]
    # JSON goes to Postgres as text: psycopg's binary format would copy orjson's bytes
    # behind a version byte (a job's input may be an image of megabytes: issue 20).
    text = connection.vendor == "postgresql"
    marks = ", ".join(
        "%t" if text and f.get_internal_type() == "JSONField" else "%s" for f in fields
    )
    # Identifiers from the model's metadata, quoted; values are always parameters.
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608


def insert_statement(obj: Model, using: str = "default") -> tuple[str, list]:
    """The INSERT of a new row for ``obj``, whose primary key is already set (a UUID
    default), with its values prepared as ``save()`` would; SQL built once per model
    (``save()`` spends milliseconds of Python on one row). No signals are sent (this
    project has no receivers on the models written this way)."""
    connection = connections[using]
    fields = type(obj)._meta.concrete_fields
    params = [_json_bytes(f.get_db_prep_save(f.pre_save(obj, True), connection)) for f in fields]
    return _insert_sql(type(obj), using), params


def _json_bytes(value: Any) -> Any:
    """A JSON value (psycopg's ``Jsonb``) written by orjson, as bytes: Django's
    ``json.dumps`` writes a str that psycopg then encodes, two more copies of a job's
    input, which may be an image of megabytes, and ten times slower."""
    if getattr(value, "dumps", None) is json.dumps:
        value.dumps = _dumps
    return value


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def inserted(obj: Model, using: str = "default") -> None:
    """Mark ``obj`` as stored (after its :func:`insert_statement` ran)."""
    obj._state.adding, obj._state.db = False, using


def insert(obj: Model, using: str = "default") -> None:
    """Insert ``obj`` now (see :func:`insert_statement`)."""
    sql, params = insert_statement(obj, using)
    with cursor(using) as c:
        c.execute(sql, params)
    inserted(obj, using)


def _field(model: type[Model], name: str) -> Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)  # type: ignore[return-value]


NULL = -1  # the size of an ``__isnull`` test: no parameter
LESS = -2  # the size of a ``__lt`` test: one parameter


def _test(key: str, value: Any) -> tuple[str, int | None]:
    """``(field name, size)`` of a ``where`` entry: ``None`` for an equality, the number
    of values of an ``__in``, :data:`NULL` for ``__isnull=True``, :data:`LESS` for
    ``__lt``."""
    if key.endswith("__lt"):
        return key.removesuffix("__lt"), LESS
    if key.endswith("__isnull"):
        if value is not True:
            raise ValueError(f"{key} must be True")
        return key.removesuffix("__isnull"), NULL
    if key.endswith("__in"):
        return key.removesuffix("__in"), len(value)
    return key, None


@functools.cache
def _update_sql(model: type[Model], changed: tuple, where: tuple, using: str) -> str:
    quote = connections[using].ops.quote_name
    sets = ", ".join(f"{quote(_field(model, n).column)} = %s" for n in changed)  # type: ignore[arg-type]
    tests = []
    for name, size in where:
        column = quote(_field(model, name).column)  # type: ignore[arg-type]
        if size is None:
            tests.append(f"{column} = %s")
        elif size == NULL:
            tests.append(f"{column} IS NULL")
        elif size == LESS:
            tests.append(f"{column} < %s")
        else:
            tests.append(f"{column} IN ({', '.join(['%s'] * size)})")
    table = quote(model._meta.db_table)
    return f"UPDATE {table} SET {sets} WHERE {' AND '.join(tests)}"  # noqa: S608


def update_statement(model: type[Model], where: dict[str, Any], values: dict[str, Any],
                     using: str = "default") -> tuple[str, list]:  # fmt: skip
    """``UPDATE ... SET values WHERE where``, with SQL built once per set of names.
    ``where`` holds equalities by field name (or ``pk``), ``name__in`` with a collection,
    ``name__isnull`` with ``True`` or ``name__lt``; values are plain (no expressions)."""
    connection = connections[using]
    tests = [_test(key, value) for key, value in where.items()]
    params = []
    for name, value in values.items():
        value = value.pk if isinstance(value, Model) else value
        params.append(_field(model, name).get_db_prep_save(value, connection))
    for (name, size), value in zip(tests, where.values(), strict=True):
        field = _field(model, name)
        if size == NULL:
            continue
        for one in sorted(value) if size is not None and size >= 0 else [value]:
            params.append(field.get_db_prep_value(one, connection))
    return _update_sql(model, tuple(values), tuple(tests), using), params


def update(model: type[Model], where: dict[str, Any], values: dict[str, Any],
           using: str = "default") -> int:  # fmt: skip
    """Run :func:`update_statement` now; the number of rows changed."""
    sql, params = update_statement(model, where, values, using)
    with cursor(using) as c:
        c.execute(sql, params)
        return c.rowcount
