"""Transactions of the job path on Django's connection and on an async connection
(core.tx), against the real Postgres."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connections

from compute.models import Cargo
from core import tx
from core.prepared import Prepared
from tests.factories import CargoFactory

by_slug = Prepared(lambda slug: Cargo.objects.filter(slug=slug).values_list("name"), slug=str)
locked = Prepared(
    lambda slug: Cargo.objects.filter(slug=slug).values_list("pk"), lock=True, slug=str
)
queued_jobs = Prepared(
    lambda cargo: Cargo.objects.filter(pk=cargo, jobs__status="queued").values_list("pk"),
    cargo=int,
)


def rename(slug: str, name: str) -> tx.Statement:
    return tx.update(Cargo, {"slug": slug}, {"name": name})


@pytest.fixture
async def adb():
    """An AsyncTx on the test database; the pool closes after the test."""
    async with tx.async_tx() as db:
        yield db
    await tx.close_pool()
    await sync_to_async(connections.close_all)()


def test_run_sync_gives_the_result_or_the_error_of_a_coroutine_that_never_waits():
    async def answer() -> int:
        return 42

    async def refuse() -> None:
        raise ValueError("no")

    assert tx.run_sync(answer()) == 42
    with pytest.raises(ValueError, match="no"):
        tx.run_sync(refuse())


class Pending:
    """Something a coroutine waits for (as real I/O would make it)."""

    def __await__(self):
        yield


def test_run_sync_refuses_a_coroutine_that_waits_for_something():
    async def waits() -> None:
        await Pending()

    with pytest.raises(RuntimeError, match="waited"):
        tx.run_sync(waits())


@pytest.mark.django_db
def test_statements_run_together_give_each_its_own_result():
    CargoFactory(slug="a", name="A")
    CargoFactory(slug="b", name="B")
    db = tx.SyncTx()
    names, changed, none = tx.run_sync(
        db.run(tx.query(by_slug, slug="a"), rename("b", "Bee"), tx.query(by_slug, slug="zzz"))
    )
    assert (names, changed, none) == ([("A",)], 1, [])
    assert Cargo.objects.get(slug="b").name == "Bee"


async def renaming(db: tx.Db, slug: str, *, name: str, hooks: list) -> list:
    """A service written once, as the job path's are."""
    async with db.atomic():
        changed = await db.one(rename(slug, name))
        db.on_commit(lambda: hooks.append(name))
    return [changed, *await db.one(tx.query(by_slug, slug=slug))]


@pytest.mark.django_db(transaction=True)
async def test_one_service_runs_alike_on_djangos_connection_and_on_the_loops():
    await sync_to_async(CargoFactory)(slug="a", name="A")
    hooks: list[str] = []
    try:
        on_django = await sync_to_async(tx.sync)(renaming, "a", name="Django", hooks=hooks)
        on_loop = await tx.work(renaming, "a", name="Loop", hooks=hooks)
    finally:
        await tx.close_pool()
        await sync_to_async(connections.close_all)()
    assert (on_django, on_loop) == ([1, ("Django",)], [1, ("Loop",)])
    assert hooks == ["Django", "Loop"]  # each after its commit


@pytest.mark.django_db(transaction=True)
async def test_an_async_transaction_commits_then_runs_its_hooks(adb):
    await sync_to_async(CargoFactory)(slug="a", name="A")
    ran = []
    async with adb.atomic():
        [changed] = await adb.run(rename("a", "Changed"))
        adb.on_commit(lambda: ran.append("committed"))
        assert ran == []
    assert changed == 1
    assert ran == ["committed"]
    assert await adb.one(tx.query(by_slug, slug="a")) == [("Changed",)]


@pytest.mark.django_db(transaction=True)
async def test_an_async_transaction_that_fails_changes_nothing_and_runs_no_hook(adb):
    await sync_to_async(CargoFactory)(slug="a", name="A")
    ran = []

    async def change_then_break() -> None:
        async with adb.atomic():
            await adb.run(rename("a", "Changed"))
            adb.on_commit(lambda: ran.append("committed"))
            await adb.run(tx.update(Cargo, {"slug": "a"}, {"slug": None}))

    with pytest.raises(IntegrityError):  # a Django error, as on Django's connection
        await change_then_break()
    assert ran == []
    assert await adb.one(tx.query(by_slug, slug="a")) == [("A",)]


@pytest.mark.django_db(transaction=True)
async def test_a_nested_block_joins_the_open_transaction_and_never_commits_it(adb):
    await sync_to_async(CargoFactory)(slug="a", name="A")

    async def inner_then_fail() -> None:
        async with adb.atomic():
            async with adb.atomic():
                await adb.run(rename("a", "Inner"))
                await adb.commit_with(rename("a", "Inner again"))  # not the transaction's end
            raise RuntimeError("the outer block fails")

    with pytest.raises(RuntimeError):
        await inner_then_fail()
    assert await adb.one(tx.query(by_slug, slug="a")) == [("A",)]


@pytest.mark.django_db(transaction=True)
async def test_last_statements_go_with_the_commit_of_the_outermost_block(adb):
    """GIVEN an open transaction WHEN its last statements are sent with commit_with THEN
    they are committed in the same round trip (the connection is idle, not in a
    transaction, before the block ends), and the hooks run when the block ends."""
    from psycopg.pq import TransactionStatus

    await sync_to_async(CargoFactory)(slug="a", name="A")
    ran = []
    async with adb.atomic():
        await adb.run(tx.query(by_slug, slug="a"))
        adb.on_commit(lambda: ran.append("committed"))
        [changed] = await adb.commit_with(rename("a", "Last"))
        assert adb.connection.info.transaction_status == TransactionStatus.IDLE
        assert ran == []
    assert (changed, ran) == (1, ["committed"])
    assert await adb.one(tx.query(by_slug, slug="a")) == [("Last",)]


@pytest.mark.django_db(transaction=True)
async def test_last_statements_that_fail_take_the_whole_transaction_back(adb):
    await sync_to_async(CargoFactory)(slug="a", name="A")
    await sync_to_async(CargoFactory)(slug="b", name="B")

    async def change_then_fail_at_the_end() -> None:
        async with adb.atomic():
            await adb.run(rename("a", "Changed"))
            await adb.commit_with(tx.update(Cargo, {"slug": "b"}, {"slug": None}))

    with pytest.raises(IntegrityError):
        await change_then_fail_at_the_end()
    assert await adb.one(tx.query(by_slug, slug="a")) == [("A",)]


@pytest.mark.django_db(transaction=True)
async def test_a_locked_row_waits_for_the_transaction_that_holds_it(adb):
    """GIVEN one transaction holding a Cargo's row lock (Prepared(lock=True))
    WHEN a second one asks for it THEN it gets it only after the first commits."""
    await sync_to_async(CargoFactory)(slug="a", name="A")
    order = []
    async with tx.async_tx() as other:

        async def second() -> None:
            async with other.atomic():
                await other.run(tx.query(locked, slug="a"))
                order.append("second locked")

        async with adb.atomic():
            await adb.run(tx.query(locked, slug="a"))
            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.2)
            order.append("first commits")
        await asyncio.wait_for(waiting, 5)
    assert order == ["first commits", "second locked"]


def test_a_prepared_query_keeps_its_constants_in_its_text_and_locks_when_asked(db):
    sql, params = queued_jobs.statement(cargo=7)
    assert "'queued'" in sql
    assert params == [7]
    sql, _ = locked.statement(slug="a")
    assert sql.endswith("FOR NO KEY UPDATE")
