"""A job's submission on the event loop's own connection (core.tx.AsyncTx), as the
fast lane runs it: the same job, hold and assignment as on Django's connection, and the
quota and an Island's slots exact under parallel submissions."""

import asyncio
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError

from billing.models import Balance, LedgerEntry
from compute.models import Cargo, Job
from compute.services import jobs, submission
from compute.services.publish import Outbox
from core import tx
from core.errors import ApiError
from tests.compute.jobs_support import island
from tests.factories import CargoFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("closed_pool")]


@pytest.fixture
async def cargo():
    return await sync_to_async(CargoFactory)(slug="async-chat", runtime_type="container")


async def submit(user, cargo) -> tuple[jobs.Job, Outbox]:
    outbox = Outbox()
    async with tx.async_tx() as db:
        job = await submission.submit_job(
            db, user=user, workload=cargo.slug, job_input={"prompt": "Hi"}, outbox=outbox
        )
    return job, outbox


async def outcome(user, cargo) -> str:
    """``created``, or the code of the submission's refusal."""
    try:
        await submit(user, cargo)
    except ApiError as exc:
        return exc.code
    return "created"


def stored(job_id) -> tuple:
    job = Job.objects.get(pk=job_id)
    holds = LedgerEntry.objects.filter(job_id=job_id, kind="hold").count()
    return job.status, job.island_id, job.attempts, job.price is not None, holds


async def test_a_submission_stores_the_job_assigned_and_held_and_leaves_its_assignment(cargo):
    host = await sync_to_async(island)()
    user = await sync_to_async(UserFactory)(credits=10)
    job, outbox = await submit(user, cargo)
    assert await sync_to_async(stored)(job.pk) == ("running", host.pk, 1, True, 1)
    [assignment] = outbox.items
    assert (assignment.island_id, assignment.attempt) == (str(host.pk), 1)
    assert assignment.payload["job_id"] == str(job.pk)


async def test_without_credits_a_submission_leaves_no_job_and_no_hold(cargo):
    await sync_to_async(island)()
    poor = await sync_to_async(UserFactory)()  # no balance row at all
    with pytest.raises(ApiError) as refused:
        await submit(poor, cargo)
    assert refused.value.status_code == 402
    assert not await Job.objects.filter(user=poor).aexists()
    assert not await LedgerEntry.objects.filter(user=poor, kind="hold").aexists()


async def test_parallel_submissions_of_one_account_never_pass_its_quota(cargo, settings):
    settings.JOB_CONCURRENT_LIMIT = 3
    await sync_to_async(island)(max_concurrent_jobs=100)
    user = await sync_to_async(UserFactory)(credits=10)

    results = await asyncio.gather(*(outcome(user, cargo) for _ in range(8)))
    assert sorted(results) == ["concurrent_job_limit"] * 5 + ["created"] * 3
    assert await Job.objects.filter(user=user).acount() == 3


async def test_parallel_submissions_never_overfill_an_island(cargo):
    """GIVEN an Island with two slots WHEN six accounts submit at once THEN two jobs run
    on it and four wait queued."""
    host = await sync_to_async(island)(max_concurrent_jobs=2)
    users = [await sync_to_async(UserFactory)(credits=10) for _ in range(6)]
    await asyncio.gather(*(submit(user, cargo) for user in users))
    statuses = sorted([j.status async for j in Job.objects.all()])
    assert statuses == ["queued"] * 4 + ["running"] * 2
    assert await Job.objects.filter(island=host).acount() == 2


class SpentAfterRead(tx.AsyncTx):
    """The submission's connection; once its first round trip (which reads the
    balance) is answered, another connection spends the account's credits."""

    def __init__(self, connection, user) -> None:
        super().__init__(connection)
        self.user, self.spent = user, False

    async def run(self, *statements):
        results = await super().run(*statements)
        if not self.spent:
            self.spent = True
            async with tx.async_tx() as other:
                await other.run(
                    tx.update(Balance, {"user_id": self.user.pk}, {"available": Decimal(0)})
                )
        return results


async def test_credits_spent_between_the_read_and_the_hold_refuse_the_whole_job(cargo):
    """The hold goes with the commit, checked by the balance's constraint: a balance read
    with enough credits but spent before the hold gives 402, and neither job nor hold."""
    await sync_to_async(island)()
    user = await sync_to_async(UserFactory)(credits=10)
    pool = await tx._pool()
    async with pool.connection() as conn:
        db = SpentAfterRead(conn, user)
        with pytest.raises(ApiError) as refused:
            await submission.submit_job(
                db, user=user, workload=cargo.slug, job_input={"prompt": "Hi"}, outbox=Outbox()
            )
    assert (db.spent, refused.value.status_code) == (True, 402)
    assert refused.value.code == "insufficient_credits"
    assert not await Job.objects.filter(user=user).aexists()
    assert not await LedgerEntry.objects.filter(user=user, kind="hold").aexists()


async def test_parallel_submissions_never_hold_more_than_the_balance(cargo):
    """GIVEN credits for exactly two jobs WHEN five are submitted at once THEN two are
    held, three refused with 402, and nothing is left available."""
    await sync_to_async(island)(max_concurrent_jobs=100)
    user = await sync_to_async(UserFactory)(credits=cargo.price_per_job * 2)

    results = await asyncio.gather(*(outcome(user, cargo) for _ in range(5)))
    assert sorted(results) == ["created"] * 2 + ["insufficient_credits"] * 3
    balance = await Balance.objects.aget(user=user)
    assert (balance.available, balance.held) == (0, cargo.price_per_job * 2)


async def test_a_hold_sent_with_the_commit_never_commits_without_its_balance_row(cargo):
    """The hold that goes with the COMMIT cannot succeed by changing nothing: for an
    account whose balance row is missing (however it was read), the transaction fails and
    the statement sent before the hold is undone with it."""
    from billing import services as ledger

    user = await sync_to_async(UserFactory)()  # no balance row

    async def change_then_hold() -> None:
        async with tx.async_tx() as db, db.atomic():
            await db.run(tx.update(Cargo, {"pk": cargo.pk}, {"name": "Changed"}))
            await ledger.hold_with(
                db, tx.update(Cargo, {"pk": cargo.pk}, {"name": "Changed again"}),
                user_id=user.pk, job_id=uuid.uuid4(), amount=Decimal(1), available=Decimal(10),
            )  # fmt: skip

    with pytest.raises(IntegrityError):
        await change_then_hold()
    assert (await Cargo.objects.aget(pk=cargo.pk)).name == cargo.name
    assert not await LedgerEntry.objects.filter(user=user).aexists()


class Counted(tx.AsyncTx):
    """The submission's connection, counting its round trips."""

    trips = 0

    async def _run(self, statements):
        self.trips += 1
        return await super()._run(statements)


async def counted(user, cargo) -> tuple[Job, int]:
    """A job submitted, and the round trips it took."""
    pool = await tx._pool()
    async with pool.connection() as conn:
        db = Counted(conn)
        job = await submission.submit_job(
            db, user=user, workload=cargo.slug, job_input={"prompt": "Hi"}, outbox=Outbox()
        )
    return job, db.trips


async def test_a_cargo_submitted_before_takes_its_island_s_lock_in_the_first_round_trip(cargo):
    """GIVEN a Cargo this process has not seen WHEN two of its jobs are submitted THEN
    the first is placed once the Cargo is read (three round trips), the second on the
    Island guessed before (two: the Island's lock and count go with the Cargo's read)."""
    host = await sync_to_async(island)(max_concurrent_jobs=10)
    user = await sync_to_async(UserFactory)(credits=10)
    submission._last.clear()
    first, trips_first = await counted(user, cargo)
    second, trips_second = await counted(user, cargo)
    assert (trips_first, trips_second) == (3, 2)
    for job in (first, second):
        assert await sync_to_async(stored)(job.pk) == ("running", host.pk, 1, True, 1)


async def test_a_guess_made_from_a_cargo_since_changed_is_not_used(cargo):
    """GIVEN a Cargo's last job went to the only Island serving its runtime WHEN the
    Cargo moves to another runtime THEN the next job goes to the Island serving that one,
    although the guess (from the Cargo as it was) named the first Island."""
    old = await sync_to_async(island)(runtimes=["container"], max_concurrent_jobs=10)
    new = await sync_to_async(island)(runtimes=["wasm"], max_concurrent_jobs=10)
    user = await sync_to_async(UserFactory)(credits=10)
    submission._last.clear()
    first, _ = await counted(user, cargo)
    await Cargo.objects.filter(pk=cargo.pk).aupdate(runtime_type="wasm")
    second, trips = await counted(user, cargo)
    assert await sync_to_async(stored)(first.pk) == ("running", old.pk, 1, True, 1)
    assert await sync_to_async(stored)(second.pk) == ("running", new.pk, 1, True, 1)
    assert trips == 3
