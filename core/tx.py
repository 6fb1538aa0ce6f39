"""The job path's database: one small interface, :class:`Db`, and two ways to run it.

A job's submission is the hottest write of the coordinator. Its services (submission,
dispatch, lifecycle) are written once, as coroutines taking a :class:`Db`
(``async def service(db, ...)``), and run either way:

- ``tx.sync(service, ...)``: on Django's connection of the current thread
  (:class:`SyncTx`). None of its awaits ever suspends, so the coroutine is driven to its
  end without an event loop: Celery tasks, DRF views and tests (inside Django's test
  transaction) call the job path as plain functions.
- ``await tx.work(service, ...)``: on an async psycopg connection of the event loop's
  own pool (:class:`AsyncTx`, Postgres only): the API's fast lane submits a job without
  leaving the loop, with no thread hop and no lock shared with other threads.

Both send the statements given to one :meth:`Db.run` call together, in one round trip on
Postgres (psycopg's pipeline mode), and prepare them on the server (core.prepared).
Errors come out as Django's database exceptions either way.
"""

import asyncio
import contextlib
import functools
import logging
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Model

from core import prepared

logger = logging.getLogger(__name__)
T = TypeVar("T")
ROWS, ROWCOUNT, NOTHING = "rows", "rowcount", "nothing"


@dataclass(frozen=True)
class Statement:
    """One statement and what its caller wants back: its rows (``convert``-ed), the
    number of rows it changed, or nothing."""

    sql: str
    params: list
    want: str = ROWS
    convert: Callable[[list], list] | None = None
    model: Model | None = None  # an insert: marked stored once it ran

    def result(self, rows: list | None, rowcount: int) -> Any:
        if self.model is not None:
            prepared.inserted(self.model)
        if self.want == ROWCOUNT:
            return rowcount
        if self.want == NOTHING:
            return None
        return self.convert(rows or []) if self.convert else rows or []


def query(query: prepared.Prepared, **values: Any) -> Statement:
    sql, params = query.statement(**values)
    return Statement(sql, params, ROWS, query.convert)


def insert(obj: Model) -> Statement:
    sql, params = prepared.insert_statement(obj)
    return Statement(sql, params, NOTHING, model=obj)


def update(model: type[Model], where: dict[str, Any], values: dict[str, Any]) -> Statement:
    sql, params = prepared.update_statement(model, where, values)
    return Statement(sql, params, ROWCOUNT)


def raw(sql: str, params: Any) -> Statement:
    return Statement(sql, params, ROWS)


class Db(Protocol):
    """What the job path asks of its database. How it is made fast stays behind it: the
    pipelined round trips, the prepared statements, the ``BEGIN`` and ``COMMIT`` sent with
    the first and last statements, the event loop's own connections."""

    async def run(self, *statements: Statement) -> list[Any]:
        """The statements' results, in order; sent together (one round trip)."""

    async def one(self, statement: Statement) -> Any:
        """One statement's result."""

    async def commit_with(self, *statements: Statement) -> list[Any]:
        """The transaction's last statements, sent with its commit where that can be."""

    def atomic(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A transaction, or the one already open."""

    def on_commit(self, function: Callable[[], Any]) -> None:
        """Call ``function`` once the transaction commits (now, outside one)."""

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Blocking work (the ORM, Redis) that must not run on an event loop."""


def sync(service: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
    """``service(db, *args, **kwargs)`` on Django's connection of this thread, as a
    plain function call (see the module)."""
    return run_sync(service(SyncTx(), *args, **kwargs))


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a job-path coroutine on :class:`SyncTx`, which never suspends."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a synchronous transaction waited for something")


class SyncTx:
    """Django's connection in this thread (see the module)."""

    async def run(self, *statements: Statement) -> list[Any]:
        connection = connections["default"]
        if len(statements) == 1 or connection.vendor != "postgresql":
            return [self._one(s) for s in statements]
        cursors = [prepared.open_cursor() for _ in statements]
        try:
            with connection.wrap_database_errors, connection.connection.pipeline():
                for statement, c in zip(statements, cursors, strict=True):
                    c.execute(statement.sql, statement.params)
            return [_result(s, c) for s, c in zip(statements, cursors, strict=True)]
        finally:
            for c in cursors:
                c.close()

    @staticmethod
    def _one(statement: Statement) -> Any:
        with prepared.cursor() as c:
            c.execute(statement.sql, statement.params)
            return _result(statement, c)

    async def one(self, statement: Statement) -> Any:
        return (await self.run(statement))[0]

    async def commit_with(self, *statements: Statement) -> list[Any]:
        """The transaction's last statements (Django commits when its block ends)."""
        return await self.run(*statements)

    @contextlib.asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        with transaction.atomic():
            yield

    def on_commit(self, function: Callable[[], Any]) -> None:
        transaction.on_commit(function, robust=True)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Blocking work outside the transaction's statements (here: in place)."""
        return function(*args)


def _result(statement: Statement, cursor: Any) -> Any:
    rows = cursor.fetchall() if statement.want == ROWS else None
    return statement.result(rows, cursor.rowcount)


BEGIN, COMMIT = (Statement(sql, [], NOTHING) for sql in ("BEGIN", "COMMIT"))


class AsyncTx:
    """A connection of the event loop's pool (see the module); get one with
    :func:`async_tx`. Its transaction's ``BEGIN`` goes with the transaction's first
    statements rather than on its own round trip."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.commit_hooks: list[Callable[[], Any]] | None = None  # in a transaction
        self.begun = self.committed = False
        self.depth = 0  # atomic blocks open

    async def run(self, *statements: Statement) -> list[Any]:
        if self.commit_hooks is not None and not self.begun:
            self.begun = True
            return (await self._run((BEGIN, *statements)))[1:]
        return await self._run(statements)

    async def _run(self, statements: tuple[Statement, ...]) -> list[Any]:
        conn = self.connection
        # Django's error mapping (an undocumented attribute of its connection, the one
        # Django's own cursors use): psycopg's errors come out as Django's.
        with connections["default"].wrap_database_errors:
            cursors = []
            async with conn.pipeline():
                for statement in statements:
                    c = conn.cursor()
                    await c.execute(statement.sql, statement.params, prepare=_prepare(statement))
                    cursors.append(c)
            results = []
            for statement, c in zip(statements, cursors, strict=True):
                rows = await c.fetchall() if statement.want == ROWS else None
                results.append(statement.result(rows, c.rowcount))
        return results

    async def one(self, statement: Statement) -> Any:
        return (await self.run(statement))[0]

    async def commit_with(self, *statements: Statement) -> list[Any]:
        """The transaction's last statements, sent with its ``COMMIT`` in one round trip
        when the caller's block is the transaction (nothing may follow them in it); in a
        block nested in another, as :meth:`run`."""
        if self.depth != 1 or not self.begun:
            return await self.run(*statements)
        results = await self._run((*statements, COMMIT))
        self.committed = True
        return results[:-1]

    @contextlib.asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """A transaction, or the one already open (no savepoints)."""
        self.depth += 1
        try:
            if self.depth > 1:
                yield
            else:
                async with self._transaction():
                    yield
        finally:
            self.depth -= 1

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        hooks: list[Callable[[], Any]] = []
        self.commit_hooks, self.begun, self.committed = hooks, False, False
        try:
            yield
        except BaseException:
            if self.begun:
                # psycopg's own rollback: it also forgets the connection's prepared
                # statements, as it does after any rollback, in step with the server.
                with contextlib.suppress(Exception):  # a broken connection leaves the pool
                    await self.connection.rollback()
            raise
        else:
            if self.begun and not self.committed:
                await self._run((COMMIT,))
        finally:
            self.commit_hooks = None
        for hook in hooks:  # committed: as Django's robust on_commit hooks
            try:
                hook()
            except Exception:
                logger.exception("a hook after a commit failed")

    def on_commit(self, function: Callable[[], Any]) -> None:
        if self.commit_hooks is None:
            function()
        else:
            self.commit_hooks.append(function)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Blocking work (the ORM) in a thread: never on the event loop."""
        return await in_thread(function, *args)


def _prepare(statement: Statement) -> bool:
    return bool(statement.params and settings.DB_PREPARED_STATEMENTS)


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(settings.WEB_THREADS, thread_name_prefix="blocking")


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking code (the ORM) from an event loop, on threads of its own; its
    database connection goes back (to the pool, when there is one) afterwards, as at the
    end of a request."""

    def run() -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(run, thread_sensitive=False, executor=_executor())()


async def work(unit: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """``unit(db, *args, **kwargs)`` on a connection of this event loop's pool
    (Postgres), or on Django's connection in a thread (SQLite has no async driver)."""
    if async_available():
        async with async_tx() as db:
            return await unit(db, *args, **kwargs)
    return await in_thread(sync, unit, *args, **kwargs)  # type: ignore[arg-type]


def async_available() -> bool:
    """Whether :func:`async_tx` can serve (Postgres; SQLite has no async driver)."""
    return connections["default"].vendor == "postgresql"


_pools: dict[asyncio.AbstractEventLoop, Any] = {}


def _connect_kwargs() -> dict[str, Any]:
    """Django's own connection parameters (database, credentials, its type adapters),
    for an async connection: its backend's method (not a documented API) rather than a
    second reading of the settings that could drift from Django's."""
    params = dict(connections["default"].get_connection_params())
    params.pop("cursor_factory", None)  # Django's is a sync class
    params.pop("pool", None)
    params["autocommit"] = True  # transactions are explicit (AsyncTx.atomic)
    if settings.DB_PREPARED_STATEMENTS:
        params["prepare_threshold"] = 2**31 - 1  # see config.settings
    return params


async def _check(conn: Any) -> None:
    """Before a pooled connection is handed out: a connection whose server went away
    (Postgres restarted, the link was cut) has data or an end of file waiting on its
    socket, where a healthy idle one has nothing; only then is it checked with a round
    trip, which fails and makes the pool replace it. Costs the fast lane a ``poll``."""
    from psycopg_pool import AsyncConnectionPool

    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


async def _configure(conn: Any) -> None:
    # Django's connections speak UTC; timestamps read here must come back alike.
    await conn.execute("SET TIME ZONE 'UTC'")


async def _pool() -> Any:
    from psycopg_pool import AsyncConnectionPool

    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        for old_loop, old in list(_pools.items()):  # a loop of an earlier test
            _pools.pop(old_loop)
            if not old_loop.is_closed():
                old_loop.call_soon_threadsafe(lambda old=old: asyncio.ensure_future(old.close()))  # type: ignore[misc]
        pool = AsyncConnectionPool(
            kwargs=_connect_kwargs(),
            min_size=1,
            max_size=settings.DB_ASYNC_POOL_SIZE,
            configure=_configure,
            check=_check,
            open=False,
            timeout=10,
        )
        _pools[loop] = pool
        await pool.open()
    return pool


async def close_pool() -> None:
    """Close this event loop's pool (its connections end now; tests, shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()


@contextlib.asynccontextmanager
async def async_tx() -> AsyncIterator[AsyncTx]:
    """An :class:`AsyncTx` on a connection of this event loop's pool, for one unit of
    work (the connection goes back to the pool after it)."""
    pool = await _pool()
    async with pool.connection() as conn:
        yield AsyncTx(conn)
