"""Queries the ORM builds once per process and runs again with other parameters.

Building a query is the dearest part of a simple lookup on the job path: on the project's
machine the ORM spends 0.5-1 ms of Python compiling ``filter(...).first()``, where
Postgres answers in 0.1 ms (bench/README.md). A :class:`Prepared` query is built by the
ORM once, from a function of named parameters called with stand-in values; its SQL (the
backend's own, so SQLite and Postgres alike) is then run with the real values, and its
rows go through the same converters the ORM would apply.

    by_slug = Prepared(lambda slug: Cargo.objects.filter(slug=slug)[:1], slug=str)
    cargo = by_slug.first(slug="llm-chat")          # a Cargo, or None

Parameters are ``str``, ``int``, ``uuid.UUID`` or ``datetime`` values that stand alone in
the SQL (not inside ``__in`` lists, whose length would change the SQL). A query that
locks rows (``select_for_update``) must run inside ``transaction.atomic``, as with the ORM.

:func:`insert` and :func:`update` do the same for the job path's writes: their SQL is
written once per model (and set of field names) from the model's own fields, and every
value goes through its field's conversion for the backend, as with ``save()``.
"""

import functools
import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.db.models import Field, Model, QuerySet

_serial = itertools.count(1)


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


class Prepared:
    def __init__(self, build: Callable[..., QuerySet], using: str = "default", **kinds: type):
        self.build, self.using, self.kinds = build, using, kinds
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
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        slots: dict[str, int] = {}
        for name, value in stand_ins.items():
            prepped = self._prep(value, connection)
            found = [i for i, p in enumerate(params) if p == prepped]
            if len(found) != 1:
                raise ValueError(f"parameter {name!r} appears {len(found)} times in {sql}")
            slots[name] = found[0]
        converters = compiler.get_converters([col for col, _, _ in compiler.select])
        klass_info = compiler.klass_info if queryset._fields is None else None
        if klass_info and klass_info.get("related_klass_infos"):
            raise ValueError("select_related is not supported")
        return sql, list(params), slots, compiler, converters, klass_info

    def rows(self, **values: Any) -> list[Any]:
        """The query's rows: model instances, or tuples for ``values_list`` queries."""
        sql, template, slots, compiler, converters, klass_info = self._compile()
        connection = connections[self.using]
        params = list(template)
        for name, i in slots.items():
            params[i] = self._prep(values[name], connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
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

    def first(self, **values: Any) -> Any:
        rows = self.rows(**values)
        return rows[0] if rows else None


# --- writes: one row in, some rows changed ------------------------------------------------
@functools.cache
def _insert_sql(model: type[Model], using: str) -> str:
    quote = connections[using].ops.quote_name
    fields = model._meta.concrete_fields
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    # Identifiers from the model's metadata, quoted; values are always parameters.
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608


def insert(obj: Model, using: str = "default") -> None:
    """Insert a new row for ``obj``, whose primary key is already set (a UUID default), as
    ``save()`` would, with SQL built once per model: ``save()`` spends milliseconds of
    Python on one row. No signals are sent (this project has no receivers on the models
    written this way)."""
    connection = connections[using]
    fields = type(obj)._meta.concrete_fields
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(type(obj), using), params)
    obj._state.adding, obj._state.db = False, using


def _field(model: type[Model], name: str) -> Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


@functools.cache
def _update_sql(model: type[Model], changed: tuple, where: tuple, using: str) -> str:
    quote = connections[using].ops.quote_name
    sets = ", ".join(f"{quote(_field(model, n).column)} = %s" for n in changed)
    tests = []
    for name, size in where:
        column = quote(_field(model, name).column)
        if size is None:
            tests.append(f"{column} = %s")
        else:
            tests.append(f"{column} IN ({', '.join(['%s'] * size)})")
    table = quote(model._meta.db_table)
    return f"UPDATE {table} SET {sets} WHERE {' AND '.join(tests)}"  # noqa: S608


def update(model: type[Model], where: dict[str, Any], values: dict[str, Any],
           using: str = "default") -> int:  # fmt: skip
    """``UPDATE ... SET values WHERE where``, the number of rows changed, with SQL built once
    per set of names. ``where`` holds equalities by field name (or ``pk``), or
    ``name__in`` with a collection; values are plain (no expressions)."""
    connection = connections[using]
    tests = [(k.removesuffix("__in"), len(v) if k.endswith("__in") else None)
             for k, v in where.items()]  # fmt: skip
    params = []
    for name, value in values.items():
        value = value.pk if isinstance(value, Model) else value
        params.append(_field(model, name).get_db_prep_save(value, connection))
    for (name, size), value in zip(tests, where.values(), strict=True):
        field = _field(model, name)
        for one in sorted(value) if size is not None else [value]:
            params.append(field.get_db_prep_value(one, connection))
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, tuple(values), tuple(tests), using), params)
        return cursor.rowcount
